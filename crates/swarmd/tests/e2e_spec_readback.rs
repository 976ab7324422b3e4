//! End to end: every spec field a client sets reads back as Docker's daemon returns it,
//! through a real swarmd (manager, store, Raft) and its HTTP API. Swarm (at init), node,
//! network, secret and config specs are each sent with every field swarmd honours set, and
//! what `inspect` serves must equal what moby's Go types write for that spec (`omitempty`
//! decides what an unset field looks like). Service specs are pinned field by field at the
//! API layer in crates/engine-api/tests/wire_names.rs.

mod common;

use std::collections::BTreeSet;

use common::*;
use serde_json::{Value, json};
use swarmd_testkit::{Daemon, unique_name};

/// Every leaf of `v` as a dotted path; `[]` stands for any array element, and an empty
/// object or array (or null) is a leaf.
fn paths(v: &Value) -> BTreeSet<String> {
    fn walk(v: &Value, at: String, out: &mut BTreeSet<String>) {
        let join = |k: &str| {
            if at.is_empty() {
                k.to_string()
            } else {
                format!("{at}.{k}")
            }
        };
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, v) in m {
                    walk(v, join(k), out);
                }
            }
            Value::Array(a) if !a.is_empty() => {
                for v in a {
                    walk(v, format!("{at}[]"), out);
                }
            }
            _ => {
                out.insert(at);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(v, String::new(), &mut out);
    out
}

/// The keys `served` has must be those moby's Go types write (`want`), no more, no less.
fn assert_keys(kind: &str, served: &Value, want: &[&str]) {
    let got = paths(served);
    let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        got, want,
        "{kind}: keys differ from Docker's (left: served, right: moby's)\n{served:#}"
    );
}

/// Sends `body` as JSON and returns the decoded answer, failing on a non-2xx status.
fn api(n: &Daemon, method: &str, path: &str, body: Option<Value>) -> Value {
    let bytes = body.map(|b| serde_json::to_vec(&b).unwrap());
    let r = n
        .http(method, path, bytes.as_deref())
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    assert!(
        (200..300).contains(&r.status),
        "{method} {path}: {} {}",
        r.status,
        r.text()
    );
    if r.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&r.body).unwrap()
    }
}

/// A swarm spec with every field `swarm init` keeps, each set to a value other than the
/// default (moby's `swarm.Spec`; the signing CA pair belongs to the CA code), except the
/// Raft ticks: swarmd's Raft timing is fixed, so only swarmkit's defaults (1 and 10) are
/// accepted and others are refused (e2e_swarm_options).
fn full_swarm_spec() -> Value {
    json!({
        "Name": "default",
        "Labels": {"k": "v"},
        "Orchestration": {"TaskHistoryRetentionLimit": 7},
        "Raft": {"SnapshotInterval": 5000, "KeepOldSnapshots": 2,
                 "LogEntriesForSlowFollowers": 600, "ElectionTick": 10, "HeartbeatTick": 1},
        "Dispatcher": {"HeartbeatPeriod": 7_000_000_000u64},
        "CAConfig": {"NodeCertExpiry": 7_200_000_000_000u64, "ForceRotate": 3},
        "TaskDefaults": {"LogDriver": {"Name": "json-file", "Options": {"max-size": "1m"}}},
        "EncryptionConfig": {"AutoLockManagers": true}
    })
}

#[test]
fn every_spec_field_reads_back_as_docker_returns_it() {
    let n = process_node("readback");
    api(
        &n,
        "POST",
        "/v1.50/swarm/init",
        Some(json!({"ListenAddr": "0.0.0.0:2377", "Spec": full_swarm_spec()})),
    );
    let _leave = Leave(&n);

    // Swarm: the spec given at init, ForceRotate included (issue 18 item 4).
    let swarm = api(&n, "GET", "/v1.50/swarm", None);
    assert_eq!(swarm["Spec"], full_swarm_spec(), "swarm spec");

    // Node: every field of moby's `swarm.NodeSpec`.
    let info = api(&n, "GET", "/v1.50/info", None);
    let id = info["Swarm"]["NodeID"].as_str().unwrap().to_string();
    let node = api(&n, "GET", &format!("/v1.50/nodes/{id}"), None);
    let version = node["Version"]["Index"].as_u64().unwrap();
    let node_spec = json!({"Name": "n1", "Labels": {"k": "v"}, "Role": "manager",
                           "Availability": "pause"});
    api(
        &n,
        "POST",
        &format!("/v1.50/nodes/{id}/update?version={version}"),
        Some(node_spec.clone()),
    );
    let node = api(&n, "GET", &format!("/v1.50/nodes/{id}"), None);
    assert_eq!(node["Spec"], node_spec, "node spec");

    // Network: every field of `network.CreateRequest` a swarm network keeps.
    let net = unique_name("rbnet");
    let created = api(
        &n,
        "POST",
        "/v1.50/networks/create",
        Some(json!({
            "Name": net, "Driver": "overlay", "Internal": true, "Attachable": true,
            "IPAM": {"Driver": "default", "Options": {"o": "p"},
                     "Config": [{"Subnet": "10.231.7.0/24", "IPRange": "10.231.7.128/25",
                                 "Gateway": "10.231.7.1"}]},
            "Options": {"com.docker.network.driver.mtu": "1400"},
            "Labels": {"k": "v"}
        })),
    );
    let nid = created["Id"].as_str().unwrap();
    let got = api(&n, "GET", &format!("/v1.50/networks/{nid}"), None);
    for (k, want) in [
        ("Name", json!(net)),
        ("Driver", json!("overlay")),
        ("Scope", json!("swarm")),
        ("EnableIPv4", json!(true)),
        ("EnableIPv6", json!(false)),
        ("Internal", json!(true)),
        ("Attachable", json!(true)),
        ("Ingress", json!(false)),
        ("Labels", json!({"k": "v"})),
        (
            "IPAM",
            json!({"Driver": "default", "Options": {"o": "p"},
                   "Config": [{"Subnet": "10.231.7.0/24", "IPRange": "10.231.7.128/25",
                               "Gateway": "10.231.7.1"}]}),
        ),
    ] {
        assert_eq!(got[k], want, "network {k}: {got:#}");
    }
    // The driver options as given (the daemon adds the VXLAN ID beside them).
    assert_eq!(
        got["Options"]["com.docker.network.driver.mtu"], "1400",
        "{got:#}"
    );
    // Every key as moby's `network.Inspect` writes it for a swarm network.
    assert_keys(
        "network",
        &got,
        &[
            "Name",
            "Id",
            "Created",
            "Scope",
            "Driver",
            "EnableIPv4",
            "EnableIPv6",
            "IPAM.Driver",
            "IPAM.Options.o",
            "IPAM.Config[].Subnet",
            "IPAM.Config[].IPRange",
            "IPAM.Config[].Gateway",
            "Internal",
            "Attachable",
            "Ingress",
            "ConfigFrom.Network",
            "ConfigOnly",
            "Containers",
            "Options.com.docker.network.driver.mtu",
            "Options.com.docker.network.driver.overlay.vxlanid_list",
            "Labels.k",
        ],
    );

    // Secret and config: name, labels and templating (options included); a secret's data
    // is never returned, a config's is.
    let templating = json!({"Name": "golang", "Options": {"o": "p"}});
    let sname = unique_name("rbsecret");
    let created = api(
        &n,
        "POST",
        "/v1.50/secrets/create",
        Some(
            json!({"Name": sname, "Labels": {"k": "v"}, "Data": "aHVudGVyMg==",
                    "Templating": templating}),
        ),
    );
    let sid = created["ID"].as_str().unwrap();
    let got = api(&n, "GET", &format!("/v1.50/secrets/{sid}"), None);
    assert_eq!(
        got["Spec"],
        json!({"Name": sname, "Labels": {"k": "v"}, "Templating": templating}),
        "secret spec"
    );
    let object_keys = |data: bool| {
        let mut k = vec![
            "ID",
            "Version.Index",
            "CreatedAt",
            "UpdatedAt",
            "Spec.Name",
            "Spec.Labels.k",
            "Spec.Templating.Name",
            "Spec.Templating.Options.o",
        ];
        if data {
            k.push("Spec.Data");
        }
        k
    };
    assert_keys("secret", &got, &object_keys(false));
    let cname = unique_name("rbconfig");
    let config_spec = json!({"Name": cname, "Labels": {"k": "v"}, "Data": "eD0x",
                             "Templating": templating});
    let created = api(
        &n,
        "POST",
        "/v1.50/configs/create",
        Some(config_spec.clone()),
    );
    let cid = created["ID"].as_str().unwrap();
    let got = api(&n, "GET", &format!("/v1.50/configs/{cid}"), None);
    assert_eq!(got["Spec"], config_spec, "config spec");
    assert_keys("config", &got, &object_keys(true));
}
