//! End to end: health checks. A task with a check is RUNNING only once healthy; one that
//! turns unhealthy fails with Docker's error and is replaced. Process executor (the probe
//! runs on the host) and docker executor (the engine runs it).

mod common;

use std::path::PathBuf;

use common::*;

use swarmd_testkit::{
    Daemon, Executor, engine_docker, require_engine, unique_name, wait_for, wait_until,
};

/// `CurrentState|Error` of every task of the service, newest first.
fn states(n: &Daemon, name: &str) -> Vec<String> {
    n.docker(&[
        "service",
        "ps",
        "--no-trunc",
        "--format",
        "{{.DesiredState}}|{{.CurrentState}}|{{.Error}}",
        name,
    ])
    .ok()
    .lines()
    .into_iter()
    // The CLI quotes the error column.
    .map(|l| l.replace('"', ""))
    .collect()
}

fn scratch_dir() -> PathBuf {
    let d = std::env::temp_dir().join(unique_name("health"));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn process_task_runs_only_when_healthy_and_unhealthy_is_replaced() {
    let n = process_node("hnode");
    n.docker(&["swarm", "init"]).ok();
    let _l = Leave(&n);
    let dir = scratch_dir();
    let flag = dir.join("ok");
    let name = unique_name("h");
    n.docker(&[
        "service",
        "create",
        "-d",
        "--name",
        &name,
        "--health-cmd",
        &format!("test -f {}", flag.display()),
        "--health-interval",
        "200ms",
        "--health-retries",
        "2",
        "--health-start-period",
        "1m",
        "--restart-delay",
        "100ms",
        "busybox",
        "sleep",
        "300",
    ])
    .ok();
    // Failing probes in the start period: the task stays starting, not running.
    wait_until(T, POLL, "task starting", || {
        states(&n, &name)
            .first()
            .is_some_and(|s| s.starts_with("Running|Starting"))
    });
    assert_eq!(replicas(&n, &name), "0/1");
    let first = running_tasks(&n, &name);

    // Healthy: RUNNING.
    std::fs::write(&flag, b"").unwrap();
    wait_until(T, POLL, "healthy task running", || {
        replicas(&n, &name) == "1/1"
    });
    assert_eq!(running_tasks(&n, &name), first);

    // Unhealthy (two failures in a row after being healthy): failed with Docker's error,
    // and a replacement is started in the slot.
    std::fs::remove_file(&flag).unwrap();
    let failed = wait_for(T, POLL, "unhealthy task failed", || {
        let s = states(&n, &name);
        match s.iter().find(|l| l.contains("Failed")) {
            Some(l) => Ok(l.clone()),
            None => Err(s.join("\n")),
        }
    });
    assert!(
        failed.ends_with("dockerexec: unhealthy container")
            && failed.contains("task: non-zero exit ("),
        "{failed}"
    );
    wait_until(T, POLL, "replacement created", || {
        let now = running_tasks(&n, &name);
        now.len() == 1 && now != first
    });
    std::fs::write(&flag, b"").unwrap();
    wait_until(T, POLL, "replacement healthy", || {
        replicas(&n, &name) == "1/1"
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn process_task_never_healthy_fails_after_retries() {
    let n = process_node("hnode");
    n.docker(&["swarm", "init"]).ok();
    let _l = Leave(&n);
    let name = unique_name("never");
    n.docker(&[
        "service",
        "create",
        "-d",
        "--name",
        &name,
        "--health-cmd",
        "false",
        "--health-interval",
        "100ms",
        "--health-retries",
        "2",
        "--restart-condition",
        "none",
        "busybox",
        "sleep",
        "300",
    ])
    .ok();
    let failed = wait_for(T, POLL, "task failed as unhealthy", || {
        let s = states(&n, &name);
        match s.first() {
            Some(l) if l.contains("Failed") => Ok(l.clone()),
            _ => Err(s.join("\n")),
        }
    });
    assert!(
        failed.ends_with("|dockerexec: unhealthy container"),
        "{failed}"
    );
    assert_eq!(replicas(&n, &name), "0/1");
}

#[test]
#[ignore = "needs a Docker Engine: scripts/test runs it"]
fn docker_task_waits_for_health_and_unhealthy_is_replaced() {
    require_engine!();
    let n = daemon(Executor::Docker, &unique_name("hdnode"));
    n.docker(&["swarm", "init"]).ok();
    let _c = common::EngineCleanup::new(&n);
    let name = unique_name("dh");
    n.docker(&[
        "service",
        "create",
        "-d",
        "--name",
        &name,
        "--health-cmd",
        "test -f /tmp/ok",
        "--health-interval",
        "200ms",
        "--health-retries",
        "2",
        "--health-start-period",
        "1m",
        "--restart-delay",
        "100ms",
        "busybox:latest",
        "sleep",
        "300",
    ])
    .ok();
    wait_until(T, POLL, "task starting", || {
        states(&n, &name)
            .first()
            .is_some_and(|s| s.starts_with("Running|Starting"))
    });
    let container = wait_for(T, POLL, "task container", || {
        let out = engine_docker(&[
            "ps",
            "-q",
            "--filter",
            &format!("label=com.docker.swarm.service.name={name}"),
        ]);
        match out.lines().first() {
            Some(id) => Ok(id.to_string()),
            None => Err(out.stdout.clone()),
        }
    });
    // The engine got the check from the spec.
    let test = engine_docker(&[
        "inspect",
        "--format",
        "{{json .Config.Healthcheck.Test}}",
        &container,
    ]);
    assert_eq!(test.stdout_trimmed(), r#"["CMD-SHELL","test -f /tmp/ok"]"#);
    assert_eq!(replicas(&n, &name), "0/1");

    engine_docker(&["exec", &container, "touch", "/tmp/ok"]).ok();
    wait_until(T, POLL, "healthy task running", || {
        replicas(&n, &name) == "1/1"
    });

    engine_docker(&["exec", &container, "rm", "/tmp/ok"]).ok();
    let failed = wait_for(T, POLL, "unhealthy task failed", || {
        let s = states(&n, &name);
        match s.iter().find(|l| l.contains("Failed")) {
            Some(l) => Ok(l.clone()),
            None => Err(s.join("\n")),
        }
    });
    assert!(
        failed.ends_with("): dockerexec: unhealthy container")
            && failed.contains("task: non-zero exit ("),
        "{failed}"
    );
    // Replaced in its slot by a new task (starting again: no /tmp/ok in a new container).
    wait_until(T, POLL, "replacement starting", || {
        states(&n, &name)
            .first()
            .is_some_and(|s| s.starts_with("Running|Starting"))
    });
}

/// A local image whose HEALTHCHECK passes once `/tmp/ok` exists (long start period, so it
/// stays starting until then). Built from the local busybox image: no registry needed.
fn image_with_healthcheck() -> String {
    let tag = "swarmd-test-healthcheck:latest".to_string();
    let dockerfile = b"FROM busybox:latest\nHEALTHCHECK --interval=200ms --start-period=1m --retries=1 CMD test -f /tmp/ok\n";
    let out = swarmd_testkit::run_with(
        swarmd_testkit::engine_docker_command(&["build", "-q", "-t", &tag, "-"]),
        Some(dockerfile),
        std::time::Duration::from_secs(120),
    );
    out.ok();
    tag
}

#[test]
#[ignore = "needs a Docker Engine: scripts/test runs it"]
fn docker_image_healthcheck_gates_running_and_no_healthcheck_disables_it() {
    require_engine!();
    let image = image_with_healthcheck();
    let n = daemon(Executor::Docker, &unique_name("hinode"));
    n.docker(&["swarm", "init"]).ok();
    let _c = common::EngineCleanup::new(&n);

    // The image's check applies: starting until /tmp/ok exists.
    let checked = unique_name("img");
    n.docker(&[
        "service", "create", "-d", "--name", &checked, &image, "sleep", "300",
    ])
    .ok();
    // `--no-healthcheck` turns the image's check off: running at once.
    let unchecked = unique_name("nohc");
    n.docker(&[
        "service",
        "create",
        "-d",
        "--name",
        &unchecked,
        "--no-healthcheck",
        &image,
        "sleep",
        "300",
    ])
    .ok();
    wait_until(T, POLL, "unchecked task runs", || {
        replicas(&n, &unchecked) == "1/1"
    });
    wait_until(T, POLL, "checked task starting", || {
        states(&n, &checked)
            .first()
            .is_some_and(|s| s.starts_with("Running|Starting"))
    });
    assert_eq!(replicas(&n, &checked), "0/1");
    let container = wait_for(T, POLL, "task container", || {
        let out = engine_docker(&[
            "ps",
            "-q",
            "--filter",
            &format!("label=com.docker.swarm.service.name={checked}"),
        ]);
        match out.lines().first() {
            Some(id) => Ok(id.to_string()),
            None => Err(out.stdout.clone()),
        }
    });
    engine_docker(&["exec", &container, "touch", "/tmp/ok"]).ok();
    wait_until(T, POLL, "healthy task running", || {
        replicas(&n, &checked) == "1/1"
    });
}
