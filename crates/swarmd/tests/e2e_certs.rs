//! End to end: node certificates renew themselves before they expire, and a node whose
//! first certificate has long expired still reconnects (with the renewed one).

mod common;

use std::collections::BTreeSet;

use common::*;
use swarmd_testkit::{Daemon, Executor, unique_loopback, unique_name, wait_until};

/// A node allowed certificates of a few seconds (the test knob below Docker's 1 h).
fn short_lived_node(name: &str) -> Daemon {
    Daemon::builder(env!("CARGO_BIN_EXE_swarmd"))
        .node_addr(unique_loopback())
        .executor(Executor::Process)
        .hostname(name)
        .env("SWARMD_MIN_CERT_EXPIRY_SECS", "1")
        .start()
        .expect("swarmd starts")
}

fn cert_of(d: &Daemon) -> String {
    std::fs::read_to_string(d.data_root().join("swarm/certs/node.crt")).unwrap_or_default()
}

#[test]
fn certificates_renew_before_expiry_and_renewed_ones_reconnect() {
    // Docker's minimum holds by default.
    let plain = process_node("plain");
    let refused = plain
        .docker(&["swarm", "init", "--cert-expiry", "10s"])
        .fail();
    assert!(
        refused
            .stderr
            .contains("minimum certificate expiry time is 1h0m0s"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        plain
            .docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"])
            .ok()
            .stdout_trimmed(),
        "inactive"
    );

    let m = short_lived_node(&unique_name("cm"));
    m.docker(&[
        "swarm",
        "init",
        "--cert-expiry",
        "10s",
        "--dispatcher-heartbeat",
        "1s",
    ])
    .ok();
    let _lm = Leave(&m);
    let mut w = short_lived_node(&unique_name("cw"));
    let token = m
        .docker(&["swarm", "join-token", "-q", "worker"])
        .ok()
        .stdout_trimmed()
        .to_string();
    w.docker(&[
        "swarm",
        "join",
        "--token",
        &token,
        &format!("{}:2377", m.node_addr()),
    ])
    .ok();

    // Each node goes through at least three certificates: by the third, the first (10 s)
    // has expired.
    let (mut seen_m, mut seen_w) = (BTreeSet::new(), BTreeSet::new());
    wait_until(T, POLL, "three certificates on each node", || {
        seen_m.insert(cert_of(&m));
        seen_w.insert(cert_of(&w));
        seen_m.len() >= 3 && seen_w.len() >= 3
    });
    let ready = |m: &Daemon| ready_nodes(m) == 2;
    assert!(ready(&m), "both nodes stayed ready through the renewals");

    // A restarted worker opens new connections with its renewed certificate.
    w.restart().unwrap();
    let svc = unique_name("renewed");
    m.docker(&[
        "service",
        "create",
        "-d",
        "--name",
        &svc,
        "--replicas",
        "2",
        "busybox",
        "sleep",
        "300",
    ])
    .ok();
    wait_until(T, POLL, "2/2 running with renewed certificates", || {
        ready(&m) && replicas(&m, &svc) == "2/2"
    });
    let _ = w.docker(&["swarm", "leave", "--force"]);
}
