//! End to end, with the docker CLI and the raw API: the swarm's root CA key is kept apart
//! from the spec (never stored in it, never shown, never on disk or in a log in
//! plaintext), and CA requests swarmd cannot honour are refused, never silently ignored.

mod common;

use common::*;
use swarmd_testkit::{Daemon, Executor, unique_loopback, unique_name};

/// Every form the key's bytes could take in a file or a log: each base64 line of its PEM
/// (a JSON string keeps them as they are) and the hex of its DER.
fn key_encodings(key_pem: &str) -> Vec<String> {
    let mut forms: Vec<String> = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 16)
        .map(str::to_string)
        .collect();
    let der = pem_der(key_pem);
    forms.push(der.iter().map(|b| format!("{b:02x}")).collect());
    assert!(forms.len() >= 2, "no key material in {key_pem:?}");
    forms
}

fn pem_der(pem: &str) -> Vec<u8> {
    let certs = swarmd_pki::load_private_key(pem).expect("a key");
    certs.secret_der().to_vec()
}

/// A root CA given in the init spec becomes the swarm's root (`docker swarm ca` shows it),
/// and its key is in no API answer, no file under the data root and no log line.
#[test]
fn a_signing_key_given_at_init_is_never_shown_nor_on_disk() {
    let mut m = Daemon::builder(env!("CARGO_BIN_EXE_swarmd"))
        .node_addr(unique_loopback())
        .executor(Executor::Process)
        .hostname(unique_name("cakey"))
        .log_level("debug")
        .start()
        .expect("swarmd starts");
    let root = swarmd_pki::generate_root_ca().unwrap();
    let body = serde_json::json!({
        "ListenAddr": "0.0.0.0:2377",
        "Spec": {"CAConfig": {"SigningCACert": root.cert_pem, "SigningCAKey": root.key_pem}},
    });
    let init = m
        .http(
            "POST",
            "/v1.50/swarm/init",
            Some(body.to_string().as_bytes()),
        )
        .expect("init answers");
    assert_eq!(init.status, 200, "{}", String::from_utf8_lossy(&init.body));
    let shown = m.docker(&["swarm", "ca"]).ok().stdout_trimmed().to_string();
    assert_eq!(shown, root.cert_pem.trim(), "the given root is the swarm's");

    let forms = key_encodings(&root.key_pem);
    for path in ["/v1.50/swarm", "/v1.50/info"] {
        let r = m.http("GET", path, None).expect("answers");
        let text = String::from_utf8_lossy(&r.body).to_string();
        assert_eq!(r.status, 200, "{path}: {text}");
        assert!(
            text.contains("CAConfig"),
            "{path} shows the CA config: {text}"
        );
        assert!(!text.contains("SigningCAKey"), "{path}: {text}");
        for f in &forms {
            assert!(!text.contains(f.as_str()), "{path} shows the key: {text}");
        }
    }
    let node_id = m
        .docker(&["info", "--format", "{{.Swarm.NodeID}}"])
        .ok()
        .stdout_trimmed()
        .to_string();
    m.sigterm().expect("stops");
    // Control: the search does see the data root.
    assert!(
        !grep_tree(m.data_root(), &node_id).is_empty(),
        "grep sees nothing"
    );
    for f in &forms {
        let found = grep_tree(m.data_root(), f);
        assert!(found.is_empty(), "the CA key in plaintext in {found:?}");
        assert!(!m.log().contains(f.as_str()), "the CA key in the log");
    }
    m.restart().expect("restarts");
    m.docker(&["swarm", "leave", "--force"]).ok();
}

/// What swarmd cannot do is refused with a clear error, and the swarm is unchanged.
#[test]
fn ca_requests_swarmd_cannot_honour_are_refused() {
    let m = process_node("carefuse");
    m.docker(&["swarm", "init"]).ok();
    let _leave = Leave(&m);
    let before = m.docker(&["swarm", "ca"]).ok().stdout_trimmed().to_string();
    let ext = m
        .docker(&[
            "swarm",
            "update",
            "--external-ca",
            "protocol=cfssl,url=https://ca.example.com",
        ])
        .fail();
    assert!(
        ext.stderr.contains("external CAs are not supported"),
        "{}",
        ext.report("external CA")
    );
    let rotate = m.docker(&["swarm", "ca", "--rotate", "-d"]).fail();
    assert!(
        rotate
            .stderr
            .contains("root CA rotation is not supported yet"),
        "{}",
        rotate.report("rotate")
    );
    let after = m.docker(&["swarm", "ca"]).ok().stdout_trimmed().to_string();
    assert_eq!(before, after);
    let swarm = m.http("GET", "/v1.50/swarm", None).expect("answers");
    let swarm: serde_json::Value = serde_json::from_slice(&swarm.body).unwrap();
    assert!(
        swarm["Spec"]["CAConfig"].get("ExternalCAs").is_none(),
        "{swarm}"
    );
}
