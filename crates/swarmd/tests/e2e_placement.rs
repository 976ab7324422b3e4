//! End to end, process executor: placement (constraints, global mode, drain), task
//! listings and filters, forced redeploys and rollback, followed logs, API versions.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
mod common;

use common::*;

use swarmd_testkit::{Daemon, unique_name, wait_for, wait_until};

fn node() -> Daemon {
    let n = process_node("pnode");
    n.docker(&["swarm", "init"]).ok();
    n
}

#[test]
fn constraints_hold_tasks_pending_until_a_node_matches() {
    let n = node();
    let _l = Leave(&n);
    let name = unique_name("c");
    n.docker(&[
        "service",
        "create",
        "-d",
        "--name",
        &name,
        "--replicas",
        "2",
        "--constraint",
        "node.labels.tier==db",
        "busybox",
        "sleep",
        "300",
    ])
    .ok();
    let err = wait_for(T, POLL, "scheduler explanation", || {
        let out = n.docker(&[
            "service",
            "ps",
            "--no-trunc",
            "--format",
            "{{.CurrentState}}|{{.Error}}",
            &name,
        ]);
        let first = out
            .lines()
            .first()
            .map(|s| s.to_string())
            .unwrap_or_default();
        if first.contains("no suitable node") {
            Ok(first)
        } else {
            Err(first)
        }
    });
    assert!(err.starts_with("Pending"), "{err}");
    assert!(
        err.contains("no suitable node (scheduling constraints not satisfied on 1 node)"),
        "{err}"
    );
    assert_eq!(replicas(&n, &name), "0/2");

    n.docker(&["node", "update", "--label-add", "tier=db", "self"])
        .ok();
    wait_until(T, POLL, "tasks placed once the label exists", || {
        replicas(&n, &name) == "2/2"
    });
    let on_node = n
        .docker(&["node", "ps", "--format", "{{.Name}}", "self"])
        .ok();
    assert_eq!(on_node.lines().len(), 2, "{}", on_node.stdout);
}

#[test]
fn drain_shuts_tasks_down_and_leaves_them_pending() {
    let n = node();
    let _l = Leave(&n);
    let rep = unique_name("r");
    let glob = unique_name("g");
    n.docker(&[
        "service",
        "create",
        "-d",
        "--name",
        &rep,
        "--replicas",
        "2",
        "busybox",
        "sleep",
        "300",
    ])
    .ok();
    n.docker(&[
        "service", "create", "-d", "--name", &glob, "--mode", "global", "busybox", "sleep", "300",
    ])
    .ok();
    wait_until(T, POLL, "both services running", || {
        replicas(&n, &rep) == "2/2" && replicas(&n, &glob) == "1/1"
    });

    n.docker(&["node", "update", "--availability", "drain", "self"])
        .ok();
    wait_until(T, POLL, "replicated 0/2 and global 0/0 after drain", || {
        replicas(&n, &rep) == "0/2" && replicas(&n, &glob) == "0/0"
    });
    let pending = n
        .docker(&[
            "service",
            "ps",
            "--filter",
            "desired-state=running",
            "--format",
            "{{.CurrentState}}|{{.Error}}",
            "--no-trunc",
            &rep,
        ])
        .ok();
    for line in pending.lines() {
        assert!(line.starts_with("Pending"), "{line}");
        assert!(
            line.contains("1 node not available for new tasks"),
            "{line}"
        );
    }
    let shut = n
        .docker(&[
            "service",
            "ps",
            "--filter",
            "desired-state=shutdown",
            "-q",
            &rep,
        ])
        .ok();
    assert_eq!(shut.lines().len(), 2);

    n.docker(&["node", "update", "--availability", "active", "self"])
        .ok();
    wait_until(T, POLL, "back to 2/2 and 1/1", || {
        replicas(&n, &rep) == "2/2" && replicas(&n, &glob) == "1/1"
    });
}

#[test]
fn force_update_redeploys_and_rollback_restores() {
    let n = node();
    let _l = Leave(&n);
    let name = unique_name("u");
    n.docker(&[
        "service", "create", "-d", "--name", &name, "--env", "V=1", "busybox", "sleep", "300",
    ])
    .ok();
    wait_until(T, POLL, "1/1", || replicas(&n, &name) == "1/1");
    let first = n
        .docker(&[
            "service",
            "ps",
            "-q",
            "--filter",
            "desired-state=running",
            &name,
        ])
        .ok();

    n.docker(&["service", "update", "--force", &name]).ok();
    let second = n
        .docker(&[
            "service",
            "ps",
            "-q",
            "--filter",
            "desired-state=running",
            &name,
        ])
        .ok();
    assert_ne!(
        first.stdout_trimmed(),
        second.stdout_trimmed(),
        "--force replaced the task"
    );

    n.docker(&["service", "update", "--env-add", "V=2", &name])
        .ok();
    n.docker(&["service", "rollback", &name]).ok();
    let env = service_field(&n, &name, "{{json .Spec.TaskTemplate.ContainerSpec.Env}}");
    assert_eq!(env, r#"["V=1"]"#);
    wait_until(T, POLL, "rolled back task running", || {
        replicas(&n, &name) == "1/1"
    });
    // Task history keeps the replaced tasks, with their slot.
    let names = n
        .docker(&["service", "ps", "--format", "{{.Name}}", &name])
        .ok();
    assert!(names.lines().len() >= 3, "{}", names.stdout);
}

#[test]
fn logs_follow_streams_new_lines() {
    let n = node();
    let _l = Leave(&n);
    let name = unique_name("f");
    n.docker(&[
        "service",
        "create",
        "-d",
        "--name",
        &name,
        "busybox",
        "sh",
        "-c",
        "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done",
    ])
    .ok();
    wait_until(T, POLL, "running", || replicas(&n, &name) == "1/1");
    let mut child = n
        .docker_command(&["service", "logs", "-f", "--raw", &name])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Lines keep arriving while the command stays open.
    let mut seen = Vec::new();
    while seen.len() < 10 {
        match rx.recv_timeout(T) {
            Ok(l) => seen.push(l),
            Err(e) => panic!("follow stopped after {seen:?}: {e}"),
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen.iter().all(|l| l.starts_with("tick ")), "{seen:?}");
}

#[test]
fn api_versions_and_process_containers() {
    let n = node();
    let _l = Leave(&n);
    for path in ["/v1.24/version", "/v1.41/info", "/version"] {
        let r = n.http("GET", path, None).unwrap();
        assert_eq!(r.status, 200, "{path}");
    }
    let r = n.http("GET", "/v1.51/version", None).unwrap();
    assert_eq!(r.status, 400);
    assert!(String::from_utf8_lossy(&r.body).contains("is too new"));
    let ping = n.http("GET", "/_ping", None).unwrap();
    assert_eq!(ping.header("swarm"), Some("active/manager"));

    let name = unique_name("ps");
    n.docker(&[
        "service", "create", "-d", "--name", &name, "busybox", "sleep", "300",
    ])
    .ok();
    wait_until(T, POLL, "docker ps lists the task", || {
        n.docker(&["ps", "--format", "{{.Names}}"])
            .stdout
            .contains(&format!("{name}.1."))
    });
}

#[test]
fn completed_task_with_restart_none_stays_complete() {
    let n = node();
    let _l = Leave(&n);
    let name = unique_name("once");
    n.docker(&[
        "service",
        "create",
        "-d",
        "--name",
        &name,
        "--restart-condition",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo done",
    ])
    .ok();
    wait_until(T, POLL, "task complete", || {
        n.docker(&[
            "service",
            "ps",
            "--format",
            "{{.DesiredState}} {{.CurrentState}}",
            &name,
        ])
        .stdout_trimmed()
        .starts_with("Shutdown Complete")
    });
    // Not restarted: still exactly one task, and the service shows 0/1.
    assert_eq!(
        n.docker(&["service", "ps", "-q", &name]).ok().lines().len(),
        1
    );
    assert_eq!(replicas(&n, &name), "0/1");
}
