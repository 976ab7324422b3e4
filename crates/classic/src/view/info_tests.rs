use std::time::{Duration, SystemTime};

use super::*;
use crate::discovery::EngineState;
use crate::scheduler::filter::FilterKind;
use crate::scheduler::model::Node;
use crate::scheduler::strategy::Strategy;
use crate::view::status::*;
use crate::view::testutil::*;

fn at(secs: u64) -> Option<SystemTime> {
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// node-10 healthy with four containers, node-2 unhealthy, one pending engine.
fn pool() -> (Node, Node, Node) {
    let mut a = node("node-10", "10.0.0.10");
    a.storage_driver = "overlay2".into();
    a.os_type = "linux".into();
    a.labels = labels(&[("zone", "eu-1"), ("disk", "ssd")]);
    a.containers = vec![
        container("c1", "web", "running"),
        container("c2", "db", "paused"),
        container("c3", "old", "exited"),
        container("c4", "again", "restarting"),
    ];
    a.containers[0].cpu_shares = 1;
    a.containers[0].memory = 1 << 30;
    a.images = vec![
        image("sha256:a", &["busybox:latest"]),
        image("sha256:b", &[]),
    ];
    let mut b = node("node-2", "10.0.0.2");
    b.cpus = 4;
    b.memory = 8330768384;
    b.containers = vec![container("c5", "x", "exited")];
    b.images = vec![image("sha256:a", &["busybox:latest"])];
    let p = Node {
        addr: "10.0.0.3:2375".into(),
        ..Default::default()
    };
    (a, b, p)
}

fn snapshots<'a>(a: &'a Node, b: &'a Node, p: &'a Node) -> Vec<EngineSnapshot<'a>> {
    vec![
        EngineSnapshot {
            node: a,
            state: EngineState::Healthy,
            last_error: "",
            updated_at: at(1_796_650_000),
            server_version: "20.10.24+dfsg1",
        },
        EngineSnapshot {
            node: b,
            state: EngineState::Unhealthy,
            last_error: "cannot connect to engine 10.0.0.2:2375: connection refused",
            updated_at: at(1_796_650_060),
            server_version: "28.2.2",
        },
        EngineSnapshot {
            node: p,
            state: EngineState::Pending,
            last_error: "",
            updated_at: None,
            server_version: "",
        },
    ]
}

fn sched() -> Scheduler {
    Scheduler {
        strategy: Strategy::Binpack,
        filters: vec![FilterKind::Health, FilterKind::Constraint],
        overcommit_percent: 5,
    }
}

fn lines(status: &[[String; 2]]) -> Vec<String> {
    status.iter().map(|[k, v]| format!("{k}: {v}")).collect()
}

#[test]
fn system_status_lines_as_classic_wrote_them() {
    let (a, b, p) = pool();
    let status = system_status(&ManagerRole::Primary, &sched(), &snapshots(&a, &b, &p));
    assert_eq!(
        lines(&status),
        [
            "Role: primary",
            "Strategy: binpack",
            "Filters: health, constraint",
            "Nodes: 3",
            " (unknown): 10.0.0.3:2375",
            "  └ ID: ",
            "  └ Status: Pending",
            "  └ Containers: 0",
            "  └ Reserved CPUs: 0 / 0",
            "  └ Reserved Memory: 0 B / 0 B",
            "  └ Labels: ",
            "  └ UpdatedAt: 0001-01-01T00:00:00Z",
            "  └ ServerVersion: ",
            " node-2: 10.0.0.2:2375",
            "  └ ID: ID-node-2|10.0.0.2:2375",
            "  └ Status: Unhealthy",
            "  └ Containers: 1",
            "  └ Reserved CPUs: 0 / 4",
            "  └ Reserved Memory: 0 B / 8.147 GiB",
            "  └ Labels: ",
            "  └ Error: cannot connect to engine 10.0.0.2:2375: connection refused",
            "  └ UpdatedAt: 2026-12-07T13:27:40Z",
            "  └ ServerVersion: 28.2.2",
            " node-10: 10.0.0.10:2375",
            "  └ ID: ID-node-10|10.0.0.10:2375",
            "  └ Status: Healthy",
            "  └ Containers: 4 (2 Running, 1 Paused, 1 Stopped)",
            "  └ Reserved CPUs: 1 / 2",
            "  └ Reserved Memory: 1 GiB / 2.1 GiB",
            "  └ Labels: disk=ssd, ostype=linux, storagedriver=overlay2, zone=eu-1",
            "  └ UpdatedAt: 2026-12-07T13:26:40Z",
            "  └ ServerVersion: 20.10.24+dfsg1",
        ]
    );
}

#[test]
fn replica_names_its_primary_and_disconnected_engines_are_gone() {
    let (a, b, p) = pool();
    let mut engines = snapshots(&a, &b, &p);
    engines[2].state = EngineState::Disconnected;
    let role = ManagerRole::Replica {
        primary: "10.0.0.1:4000".into(),
    };
    let status = lines(&system_status(&role, &sched(), &engines));
    assert_eq!(
        status[..3],
        [
            "Role: replica",
            "Primary: 10.0.0.1:4000",
            "Strategy: binpack"
        ]
    );
    assert!(status.contains(&"Nodes: 2".to_string()));
    assert!(!status.iter().any(|l| l.contains("(unknown)")));
}

#[test]
fn totals_count_validated_engines_with_overcommit() {
    let (a, b, p) = pool();
    let host = ManagerHost {
        hostname: "manager-1".into(),
        version: "0.1.0".into(),
        ..Default::default()
    };
    let v = info(
        &host,
        &ManagerRole::Primary,
        &sched(),
        &snapshots(&a, &b, &p),
        2,
        "2026-12-07T14:45:35.123456789Z",
    );
    assert_eq!(v["Containers"], 5);
    assert_eq!(v["ContainersRunning"], 2);
    assert_eq!(v["ContainersPaused"], 1);
    assert_eq!(v["ContainersStopped"], 2);
    assert_eq!(v["Images"], 2, "dangling images are not counted");
    assert_eq!(v["NCPU"], 2 + 4, "5% of 2 and of 4 CPUs rounds down to 0");
    assert_eq!(
        v["MemTotal"],
        (2i64 << 30) + (2i64 << 30) * 5 / 100 + 8330768384 + 8330768384 * 5 / 100
    );
    assert_eq!(v["Name"], "manager-1");
    assert_eq!(v["ServerVersion"], "swarm/0.1.0");
    assert_eq!(v["NEventsListener"], 2);
    assert_eq!(v["SystemStatus"][0], json!(["Role", "primary"]));
}

#[test]
fn fields_the_docker_cli_reads_are_present() {
    let (a, b, p) = pool();
    let v = info(
        &ManagerHost::default(),
        &ManagerRole::Primary,
        &sched(),
        &snapshots(&a, &b, &p),
        0,
        "",
    );
    // With an empty state the CLI 28.2 prints swarm-mode details (NodeID, Is Manager...).
    assert_eq!(v["Swarm"]["LocalNodeState"], "inactive");
    for key in ["Plugins", "ContainerdCommit", "RuncCommit", "InitCommit"] {
        assert!(v[key].is_object(), "{key}");
    }
    assert_eq!(
        v["OSType"], "",
        "no init/runc lines the manager cannot fill"
    );
    let sys: bollard_stubs::models::SystemInfo = serde_json::from_value(v).unwrap();
    assert_eq!(sys.containers, Some(5));
}
