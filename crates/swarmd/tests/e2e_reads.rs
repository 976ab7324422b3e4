//! Linearizable reads: a manager answers a read only once its replica holds every write
//! acknowledged before the read began, on any manager (a read-index through the leader).
//! Docker reads each manager's local memory, so a manager cut off from the leader answers
//! with stale data; swarmd refuses with a 503 instead.
//!
//! Three managers, each in its own network namespace on one bridge (the fault harness's
//! lab, crates/chaos), so one of them can be cut off with nftables.

use std::time::Duration;

use serde_json::{Value, json};
use swarmd_chaos::lab::Lab;
use swarmd_testkit::wait_for;

const T: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(200);

/// The status, the JSON body and the body's text (for assertion messages).
fn call(
    lab: &Lab,
    i: usize,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value, String) {
    let (status, v) = lab.ask(i, method, path, body);
    let text = v.to_string();
    (status, v, text)
}

fn label(v: &Value) -> Option<&str> {
    v["Spec"]["Labels"]["v"].as_str()
}

#[test]
#[ignore = "needs root, network namespaces, nftables and faketime: scripts/test runs it"]
fn a_manager_cut_off_from_the_leader_refuses_reads_rather_than_answer_stale() {
    swarmd_testkit::require("root", swarmd_testkit::is_root());
    swarmd_testkit::require("nft", swarmd_testkit::command_works("nft", &["--version"]));
    let lab = Lab::start(env!("CARGO_BIN_EXE_swarmd").as_ref(), 3, 0).unwrap();
    let (status, created, text) = call(
        &lab,
        0,
        "POST",
        "/configs/create",
        Some(json!({ "Name": "reg", "Labels": { "v": "0" }, "Data": "AA==" })),
    );
    assert_eq!(status, 201, "{text}");
    let id = created["ID"].as_str().unwrap().to_string();
    // Every manager reads it (the barrier makes the first read on each see it already).
    for i in 0..3 {
        let (status, v, text) = call(&lab, i, "GET", "/configs/reg", None);
        assert_eq!((status, label(&v)), (200, Some("0")), "n{}: {text}", i + 1);
    }

    // n3 loses the others; n1 and n2 keep a quorum and take a write.
    let leader = swarmd_chaos::nemesis::leader(&lab).unwrap();
    let cut = (0..3).find(|i| *i != leader).unwrap();
    let others: Vec<usize> = (0..3).filter(|i| *i != cut).collect();
    lab.net
        .cut(
            cut + 1,
            &others.iter().map(|i| i + 1).collect::<Vec<_>>(),
            true,
            true,
        )
        .unwrap();
    for o in &others {
        lab.net.cut(o + 1, &[cut + 1], true, true).unwrap();
    }
    let (_, v, _) = call(&lab, leader, "GET", "/configs/reg", None);
    let version = v["Version"]["Index"].as_u64().unwrap();
    let (status, _, text) = call(
        &lab,
        leader,
        "POST",
        &format!("/configs/{id}/update?version={version}"),
        Some(json!({ "Name": "reg", "Labels": { "v": "1" } })),
    );
    assert_eq!(status, 200, "the majority takes the write: {text}");

    // The other connected manager sees the write at once; the cut-off one refuses to
    // answer rather than show the old value.
    let peer = others.iter().copied().find(|i| *i != leader).unwrap();
    let (status, v, text) = call(&lab, peer, "GET", "/configs/reg", None);
    assert_eq!(
        (status, label(&v)),
        (200, Some("1")),
        "read after the write: {text}"
    );
    let (status, v, text) = call(&lab, cut, "GET", "/configs/reg", None);
    assert_ne!(
        label(&v),
        Some("0"),
        "a stale read from the cut-off manager: {text}"
    );
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("The swarm does not have a leader"), "{text}");

    // Healed, it catches up and answers with the new value.
    for i in 1..=3 {
        lab.net.heal(i).unwrap();
    }
    wait_for(
        T,
        POLL,
        "the healed manager reads the write",
        || match call(&lab, cut, "GET", "/configs/reg", None) {
            (200, v, _) if label(&v) == Some("1") => Ok(()),
            (s, _, t) => Err(format!("{s} {t}")),
        },
    );
}
