//! End to end with the docker executor against the real Docker Engine: services become
//! containers with Docker's names and labels, the container endpoints are proxied to the
//! engine, exits are reported, and `service rm` leaves no container behind.

mod common;

use std::time::Duration;

use common::daemon;
use swarmd_testkit::{
    Daemon, Executor, engine_docker, require_engine, unique_name, wait_for, wait_until,
};

const T: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(250);

fn node() -> Daemon {
    daemon(Executor::Docker, &unique_name("dnode"))
}

#[test]
#[ignore = "needs a Docker Engine: scripts/test runs it"]
fn service_runs_as_engine_containers() {
    require_engine!();
    let n = node();
    n.docker(&["swarm", "init"]).ok();
    let c = common::EngineCleanup::new(&n);
    let node_id = c.node_id.clone();
    let name = unique_name("dweb");
    n.docker(&[
        "service",
        "create",
        "--name",
        &name,
        "--replicas",
        "2",
        "-p",
        "8080",
        "busybox:latest",
        "sh",
        "-c",
        "echo started; exec httpd -f -p 8080",
    ])
    .ok();

    // The engine has two containers named <service>.<slot>.<task id> with swarm labels.
    let names = wait_for(T, POLL, "two task containers", || {
        let out = engine_docker(&[
            "ps",
            "--filter",
            &format!("label=com.docker.swarm.service.name={name}"),
            "--format",
            "{{.Names}}",
        ]);
        let lines: Vec<String> = out.lines().iter().map(|s| s.to_string()).collect();
        if lines.len() == 2 {
            Ok(lines)
        } else {
            Err(format!("{lines:?}"))
        }
    });
    for c in &names {
        assert!(c.starts_with(&format!("{name}.")), "{c}");
        let labels = engine_docker(&["inspect", "--format", "{{json .Config.Labels}}", c]).ok();
        assert!(
            labels
                .stdout
                .contains(&format!("\"com.docker.swarm.node.id\":\"{node_id}\""))
        );
        assert!(labels.stdout.contains("com.docker.swarm.task.id"));
    }
    // docker ps against swarmd shows the same containers (proxied to the engine).
    let ps = n.docker(&["ps", "--format", "{{.Names}}"]).ok();
    for c in &names {
        assert!(ps.stdout.contains(c.as_str()), "{}", ps.stdout);
    }
    // ... and docker info counts the engine's containers (at least these two running).
    let running: i64 = n
        .docker(&["info", "--format", "{{.ContainersRunning}}"])
        .ok()
        .stdout_trimmed()
        .parse()
        .expect("a number");
    assert!(running >= 2, "ContainersRunning = {running}");
    let images: i64 = n
        .docker(&["info", "--format", "{{.Images}}"])
        .ok()
        .stdout_trimmed()
        .parse()
        .expect("a number");
    assert!(images >= 1, "Images = {images}");
    // The published target port is bound to an ephemeral host port on the node address.
    let task = n
        .docker(&[
            "service",
            "ps",
            "-q",
            "--filter",
            "desired-state=running",
            &name,
        ])
        .ok()
        .lines()[0]
        .to_string();
    let ports = n
        .docker(&[
            "inspect",
            "--type",
            "task",
            "--format",
            "{{json .Status.PortStatus}}",
            &task,
        ])
        .ok();
    assert!(
        ports.stdout.contains("\"TargetPort\":8080"),
        "{}",
        ports.stdout
    );

    wait_until(T, POLL, "logs from both tasks", || {
        n.docker(&["service", "logs", &name])
            .stdout
            .matches("started")
            .count()
            == 2
    });

    n.docker(&["service", "rm", &name]).ok();
    wait_until(T, POLL, "containers removed", || {
        engine_docker(&[
            "ps",
            "-a",
            "-q",
            "--filter",
            &format!("label=com.docker.swarm.service.name={name}"),
        ])
        .lines()
        .is_empty()
    });
}

#[test]
#[ignore = "needs a Docker Engine: scripts/test runs it"]
fn exit_code_is_reported_and_task_restarted() {
    require_engine!();
    let n = node();
    n.docker(&["swarm", "init"]).ok();
    let _c = common::EngineCleanup::new(&n);
    let name = unique_name("dfail");
    n.docker(&[
        "service",
        "create",
        "-d",
        "--name",
        &name,
        "--restart-delay",
        "200ms",
        "--restart-max-attempts",
        "1",
        "busybox:latest",
        "sh",
        "-c",
        "exit 3",
    ])
    .ok();
    // The exit code is reported, and the slot gets a new task (restart policy).
    wait_until(
        T,
        POLL,
        "failure reported and a replacement task made",
        || {
            let out = n.docker(&[
                "service",
                "ps",
                "--format",
                "{{.Name}} {{.Error}}",
                "--no-trunc",
                &name,
            ]);
            out.stdout.contains("task: non-zero exit (3)") && out.lines().len() >= 2
        },
    );
    let slots = n
        .docker(&["service", "ps", "--format", "{{.Name}}", &name])
        .ok();
    assert!(
        slots
            .lines()
            .iter()
            .all(|l| l.trim_start_matches(" \\_ ").ends_with(".1")),
        "every attempt is in slot 1: {}",
        slots.stdout
    );
}
