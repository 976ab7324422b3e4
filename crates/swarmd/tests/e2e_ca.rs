//! End to end, with the docker CLI and the raw API: the swarm's root CA key is kept apart
//! from the spec (never stored in it, never shown, never on disk or in a log in
//! plaintext), CA requests swarmd cannot honour are refused, never silently ignored, and
//! `docker swarm ca --rotate` rotates the root across the swarm.

mod common;

use common::*;
use swarmd_testkit::{Daemon, Executor, unique_loopback, unique_name, wait_until};

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
    // A root whose key is not its certificate's: swarmkit's message.
    let other = swarmd_pki::generate_root_ca().unwrap();
    let stranger = swarmd_pki::generate_root_ca().unwrap();
    let cert = m.data_root().join("other-ca.pem");
    let key = m.data_root().join("stranger-ca.key");
    std::fs::write(&cert, &other.cert_pem).unwrap();
    std::fs::write(&key, &stranger.key_pem).unwrap();
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let mismatch = m
        .docker(&[
            "swarm",
            "ca",
            "--rotate",
            "-d",
            "--ca-cert",
            cert,
            "--ca-key",
            key,
        ])
        .fail();
    assert!(
        mismatch.stderr.contains("certificate key mismatch"),
        "{}",
        mismatch.report("rotate to a root with another key")
    );
    let ext = m
        .docker(&[
            "swarm",
            "ca",
            "--rotate",
            "-d",
            "--ca-cert",
            cert,
            "--external-ca",
            "protocol=cfssl,url=https://ca.example.com",
        ])
        .fail();
    assert!(
        ext.stderr.contains("external CAs are not supported"),
        "{}",
        ext.report("rotate to an external CA")
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

/// `{{json .Description.TLSInfo}}` of every node, by node ID.
fn nodes_tls(m: &Daemon) -> Vec<(String, serde_json::Value)> {
    let ids = m.docker(&["node", "ls", "-q"]).ok().stdout.clone();
    ids.lines()
        .map(|id| {
            let out = m
                .docker(&[
                    "node",
                    "inspect",
                    "--format",
                    "{{json .Description.TLSInfo}}",
                    id,
                ])
                .ok()
                .stdout_trimmed()
                .to_string();
            (id.to_string(), serde_json::from_str(&out).unwrap())
        })
        .collect()
}

fn cluster_tls(m: &Daemon) -> serde_json::Value {
    let out = m
        .docker(&["info", "--format", "{{json .Swarm.Cluster.TLSInfo}}"])
        .ok()
        .stdout_trimmed()
        .to_string();
    serde_json::from_str(&out).unwrap()
}

/// `docker swarm ca --rotate` on three nodes (a manager, two workers), waiting on the CLI's
/// own progress display: it returns once every node has a certificate from a new root and
/// trusts it alone; `docker info` and every node's TLS info show that root; the old join
/// token is refused and a manager joins with the new one; the service's tasks ran through
/// it. Then a rotation to a root given with `--ca-cert/--ca-key`, with two managers.
#[test]
fn swarm_ca_rotate_moves_every_node_to_a_new_root() {
    let nodes = three_nodes(Executor::Process, "rot");
    let _leave: Vec<Leave<'_>> = nodes.iter().map(Leave).collect();
    let m = &nodes[0];
    let old_root = m.docker(&["swarm", "ca"]).ok().stdout_trimmed().to_string();
    let old_token = m
        .docker(&["swarm", "join-token", "-q", "manager"])
        .ok()
        .stdout_trimmed()
        .to_string();
    let svc = unique_name("through");
    m.docker(&[
        "service",
        "create",
        "-d",
        "--name",
        &svc,
        "--replicas",
        "3",
        "busybox",
        "sleep",
        "600",
    ])
    .ok();
    wait_until(T, POLL, "3/3 before the rotation", || {
        replicas(m, &svc) == "3/3"
    });
    let tasks_before = running_tasks(m, &svc);

    // The CLI waits for the rotation with its progress display, then prints the new root.
    let rotate = m.docker(&["swarm", "ca", "--rotate"]).ok();
    let new_root = m.docker(&["swarm", "ca"]).ok().stdout_trimmed().to_string();
    assert_ne!(new_root, old_root, "a new root");
    assert!(
        rotate.stdout.trim_end().ends_with(new_root.as_str()),
        "{}",
        rotate.report("swarm ca --rotate")
    );

    let cluster = cluster_tls(m);
    assert_eq!(cluster["TrustRoot"].as_str().unwrap().trim(), new_root);
    let all = nodes_tls(m);
    assert_eq!(all.len(), 3);
    for (id, tls) in &all {
        assert_eq!(tls, &cluster, "node {id} is on the new root");
    }
    let swarm = m.http("GET", "/v1.50/swarm", None).expect("answers");
    let swarm: serde_json::Value = serde_json::from_slice(&swarm.body).unwrap();
    assert_eq!(swarm["RootRotationInProgress"], false, "{swarm}");

    // The join tokens carry the new root's digest: the old one is refused.
    let new_token = m
        .docker(&["swarm", "join-token", "-q", "manager"])
        .ok()
        .stdout_trimmed()
        .to_string();
    assert_ne!(new_token, old_token);
    let addr = format!("{}:2377", m.node_addr());
    let late = process_node("rotlate");
    let _late = Leave(&late);
    let refused = late
        .docker(&["swarm", "join", "--token", &old_token, &addr])
        .fail();
    assert!(
        refused
            .stderr
            .contains("remote CA does not match fingerprint"),
        "{}",
        refused.report("join with the old token")
    );
    late.docker(&["swarm", "join", "--token", &new_token, &addr])
        .ok();
    wait_ready_nodes(m, 4);

    // The tasks kept running through it (none restarted).
    assert_eq!(running_tasks(m, &svc), tasks_before);
    assert_eq!(replicas(m, &svc), "3/3");

    // Again, to a root the user brings, now with two managers (Raft's own connections
    // move too): the second manager runs it.
    let given = swarmd_pki::generate_root_ca().unwrap();
    let (cert, key) = (
        late.data_root().join("ca.pem"),
        late.data_root().join("ca.key"),
    );
    std::fs::write(&cert, &given.cert_pem).unwrap();
    std::fs::write(&key, &given.key_pem).unwrap();
    late.docker(&[
        "swarm",
        "ca",
        "--rotate",
        "-q",
        "--ca-cert",
        cert.to_str().unwrap(),
        "--ca-key",
        key.to_str().unwrap(),
    ])
    .ok();
    let shown = m.docker(&["swarm", "ca"]).ok().stdout_trimmed().to_string();
    assert_eq!(
        shown,
        given.cert_pem.trim(),
        "the given root is the swarm's"
    );
    let cluster = cluster_tls(m);
    let all = nodes_tls(m);
    assert_eq!(all.len(), 4);
    for (id, tls) in &all {
        assert_eq!(tls, &cluster, "node {id} is on the given root");
    }
    wait_ready_nodes(m, 4);
    assert_eq!(running_tasks(m, &svc), tasks_before);
}

/// As in swarmkit, a rotation waits for every node, a down one too: it stays in progress
/// while a stopped worker cannot renew (the manager already has a certificate from the new
/// root), and completes once that node is removed.
#[test]
fn a_rotation_waits_for_a_down_node_until_it_is_removed() {
    let m = process_node("rotwait");
    m.docker(&["swarm", "init", "--dispatcher-heartbeat", "1s"])
        .ok();
    let _lm = Leave(&m);
    let token = m
        .docker(&["swarm", "join-token", "-q", "worker"])
        .ok()
        .stdout_trimmed()
        .to_string();
    let mut w = process_node("rotwaitw");
    w.docker(&[
        "swarm",
        "join",
        "--token",
        &token,
        &format!("{}:2377", m.node_addr()),
    ])
    .ok();
    wait_ready_nodes(&m, 2);
    let worker_id = w
        .docker(&["info", "--format", "{{.Swarm.NodeID}}"])
        .ok()
        .stdout_trimmed()
        .to_string();
    let old = cluster_tls(&m);
    w.sigterm().expect("the worker stops");

    m.docker(&["swarm", "ca", "--rotate", "-d"]).ok();
    let in_progress = |m: &Daemon| {
        m.docker(&[
            "info",
            "--format",
            "{{.Swarm.Cluster.RootRotationInProgress}}",
        ])
        .ok()
        .stdout_trimmed()
            == "true"
    };
    wait_until(T, POLL, "the manager renewed from the new root", || {
        let own = m
            .docker(&[
                "node",
                "inspect",
                "self",
                "--format",
                "{{json .Description.TLSInfo}}",
            ])
            .ok()
            .stdout_trimmed()
            .to_string();
        let own: serde_json::Value = serde_json::from_str(&own).unwrap();
        own["CertIssuerPublicKey"] != old["CertIssuerPublicKey"]
    });
    assert!(in_progress(&m), "the stopped worker holds the rotation");
    assert_eq!(
        m.docker(&["swarm", "ca"]).ok().stdout_trimmed(),
        old["TrustRoot"].as_str().unwrap().trim()
    );

    m.docker(&["node", "rm", "--force", &worker_id]).ok();
    wait_until(T, POLL, "the rotation completes", || !in_progress(&m));
    let now = cluster_tls(&m);
    assert_ne!(now["TrustRoot"], old["TrustRoot"]);
    wait_until(T, POLL, "the manager trusts the new root alone", || {
        nodes_tls(&m)[0].1 == now
    });
}
