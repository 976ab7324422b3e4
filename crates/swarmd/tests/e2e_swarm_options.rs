//! End to end, real docker CLI, process executor: the options of `swarm init`/`join`
//! beyond the spec (address pools, subnet size, data path port, availability) and the Raft
//! and dispatcher parts of the spec are honoured and read back as Docker shows them.

mod common;

use common::*;
use swarmd_testkit::{Daemon, wait_until};

/// The CLI has no `swarm inspect`: `docker info` shows the cluster (`Swarm.Cluster`, the
/// same object as `GET /swarm` without the join tokens).
fn inspect(n: &Daemon, format: &str) -> String {
    let format = format!("{{{{with .Swarm.Cluster}}}}{format}{{{{end}}}}");
    n.docker(&["info", "--format", &format])
        .ok()
        .stdout_trimmed()
        .to_string()
}

/// The log without the colour codes tracing writes around field names.
fn plain(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ params final-byte
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn swarm_state(n: &Daemon) -> String {
    n.docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"])
        .ok()
        .stdout_trimmed()
        .to_string()
}

#[test]
fn init_options_are_honoured_and_shown() {
    let n = process_node("opts");
    n.docker(&[
        "swarm",
        "init",
        "--default-addr-pool",
        "10.20.0.0/16",
        "--default-addr-pool-mask-length",
        "26",
        "--data-path-port",
        "7789",
        "--availability",
        "pause",
        "--snapshot-interval",
        "5000",
        "--dispatcher-heartbeat",
        "3s",
    ])
    .ok();
    let _leave = Leave(&n);

    assert_eq!(
        inspect(
            &n,
            "{{json .DefaultAddrPool}} {{.SubnetSize}} {{.DataPathPort}} {{.Spec.Raft.SnapshotInterval}} {{.Spec.Dispatcher.HeartbeatPeriod}}"
        ),
        r#"["10.20.0.0/16"] 26 7789 5000 3s"#
    );
    let info = n.docker(&["info"]).ok();
    for line in [
        "Default Address Pool: 10.20.0.0/16",
        "SubnetSize: 26",
        "Data Path Port: 7789",
        "Snapshot Interval: 5000",
    ] {
        assert!(
            info.stdout.contains(line),
            "no {line:?} in:\n{}",
            info.stdout
        );
    }
    assert_eq!(
        n.docker(&[
            "node",
            "inspect",
            "self",
            "--format",
            "{{.Spec.Availability}}"
        ])
        .ok()
        .stdout_trimmed(),
        "pause"
    );

    // Overlays (and ingress before them) take /26s from the pool.
    let ingress = n
        .docker(&[
            "network",
            "inspect",
            "ingress",
            "--format",
            "{{(index .IPAM.Config 0).Subnet}}",
        ])
        .ok();
    assert_eq!(ingress.stdout_trimmed(), "10.20.0.0/26");
    n.docker(&["network", "create", "-d", "overlay", "optsnet"])
        .ok();
    let subnet = n
        .docker(&[
            "network",
            "inspect",
            "optsnet",
            "--format",
            "{{(index .IPAM.Config 0).Subnet}}",
        ])
        .ok();
    assert_eq!(subnet.stdout_trimmed(), "10.20.0.64/26");

    // `swarm update` reads back what it set, Raft and dispatcher parts included.
    n.docker(&[
        "swarm",
        "update",
        "--snapshot-interval",
        "2000",
        "--dispatcher-heartbeat",
        "7s",
    ])
    .ok();
    assert_eq!(
        inspect(
            &n,
            "{{.Spec.Raft.SnapshotInterval}} {{.Spec.Dispatcher.HeartbeatPeriod}}"
        ),
        "2000 7s"
    );
    // The running manager's Raft snapshots by the new interval, no restart.
    wait_until(T, POLL, "raft follows the new snapshot interval", || {
        plain(&n.log())
            .lines()
            .any(|l| l.contains("raft: log policy changed") && l.contains("snapshot_interval=2000"))
    });
    // Ticks swarmd cannot run with are refused, and nothing changes.
    let r = n.http("GET", "/swarm", None).unwrap();
    let mut swarm: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let version = swarm["Version"]["Index"].as_u64().unwrap();
    // `GET /swarm` carries the same options as Docker names them.
    assert_eq!(
        (
            &swarm["DefaultAddrPool"],
            &swarm["SubnetSize"],
            &swarm["DataPathPort"]
        ),
        (
            &serde_json::json!(["10.20.0.0/16"]),
            &26.into(),
            &7789.into()
        ),
        "{swarm}"
    );
    swarm["Spec"]["Raft"]["ElectionTick"] = 3.into();
    swarm["Spec"]["Raft"]["HeartbeatTick"] = 3.into();
    let body = serde_json::to_vec(&swarm["Spec"]).unwrap();
    let r = n
        .http(
            "POST",
            &format!("/swarm/update?version={version}"),
            Some(&body),
        )
        .unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text()
            .contains("election tick must be greater than heartbeat tick"),
        "{}",
        r.text()
    );
    assert_eq!(
        inspect(
            &n,
            "{{.Version.Index}} {{.Spec.Raft.ElectionTick}} {{.Spec.Raft.HeartbeatTick}}"
        ),
        format!("{version} 10 1")
    );
}

#[test]
fn bad_init_options_get_dockers_errors_and_leave_the_node_out() {
    let n = process_node("badopts");
    for (args, want) in [
        (
            vec![
                "--default-addr-pool",
                "10.20.0.0/16",
                "--default-addr-pool-mask-length",
                "30",
            ],
            "subnet size is out of range: 30",
        ),
        (
            vec![
                "--default-addr-pool",
                "10.20.0.0/16",
                "--default-addr-pool-mask-length",
                "12",
            ],
            "invalid CIDR: \"10.20.0.0/16\". Subnet size is too small for pool: 12",
        ),
        (
            vec!["--data-path-port", "80"],
            "Datapath port number is not in valid range (1024-49151) : 80",
        ),
    ] {
        let mut cmd = vec!["swarm", "init"];
        cmd.extend(args);
        let out = n.docker(&cmd).fail();
        assert!(out.stderr.contains(want), "{cmd:?}: {}", out.stderr);
        assert_eq!(
            swarm_state(&n),
            "inactive",
            "{cmd:?} left the node in a swarm"
        );
    }
    // The CLI checks --availability itself; the API answers an unknown one with moby's error.
    let r = n
        .http(
            "POST",
            "/swarm/init",
            Some(br#"{"ListenAddr":"0.0.0.0:2377","Availability":"asleep"}"#),
        )
        .unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text().contains(r#"invalid Availability: \"asleep\""#),
        "{}",
        r.text()
    );
    assert_eq!(swarm_state(&n), "inactive");
}

#[test]
fn a_node_joins_with_the_availability_it_asks_for() {
    let m = process_node("availmgr");
    m.docker(&["swarm", "init"]).ok();
    let _lm = Leave(&m);
    let addr = format!("{}:2377", m.node_addr());
    let token = m
        .docker(&["swarm", "join-token", "-q", "worker"])
        .ok()
        .stdout_trimmed()
        .to_string();
    let w = process_node("availwrk");
    // An unknown availability is refused with moby's error before the manager is asked.
    let nodes_before = m
        .docker(&["node", "ls", "-q"])
        .ok()
        .stdout_trimmed()
        .to_string();
    let body = serde_json::json!({
        "ListenAddr": "0.0.0.0:2377",
        "RemoteAddrs": [addr],
        "JoinToken": token,
        "Availability": "asleep",
    });
    let r = w
        .http("POST", "/swarm/join", Some(body.to_string().as_bytes()))
        .unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text().contains(r#"invalid Availability: \"asleep\""#),
        "{}",
        r.text()
    );
    assert_eq!(swarm_state(&w), "inactive");
    assert_eq!(
        m.docker(&["node", "ls", "-q"]).ok().stdout_trimmed(),
        nodes_before,
        "a refused join adds no node"
    );
    w.docker(&[
        "swarm",
        "join",
        "--token",
        &token,
        "--availability",
        "drain",
        &addr,
    ])
    .ok();
    let _lw = Leave(&w);
    let id = w
        .docker(&["info", "--format", "{{.Swarm.NodeID}}"])
        .ok()
        .stdout_trimmed()
        .to_string();
    wait_until(T, POLL, "the worker is listed", || {
        m.docker(&["node", "inspect", &id, "--format", "{{.Spec.Availability}}"])
            .success()
    });
    assert_eq!(
        m.docker(&["node", "inspect", &id, "--format", "{{.Spec.Availability}}"])
            .ok()
            .stdout_trimmed(),
        "drain"
    );
}
