//! End to end, process executor: rolling-update policy (parallelism, delay, order, failure
//! action pause/rollback, monitor) and rollbacks, as `service inspect` and `service ps` show.

mod common;

use common::*;

use swarmd_testkit::{Daemon, unique_name, wait_for, wait_until};

fn node() -> Daemon {
    let n = process_node("unode");
    n.docker(&["swarm", "init"]).ok();
    n
}

/// `UpdateStatus.State|Message` of a service ("|" while there is none).
fn update_status(n: &Daemon, name: &str) -> String {
    service_field(
        n,
        name,
        "{{if .UpdateStatus}}{{.UpdateStatus.State}}|{{.UpdateStatus.Message}}{{else}}|{{end}}",
    )
}

/// The args of each task that should be running, sorted.
fn running_args(n: &Daemon, name: &str) -> Vec<String> {
    let mut v: Vec<String> = running_tasks(n, name)
        .iter()
        .map(|t| task_field(n, t, "{{json .Spec.ContainerSpec.Args}}"))
        .collect();
    v.sort();
    v
}

#[test]
fn failing_update_rolls_back_automatically() {
    let n = node();
    let _l = Leave(&n);
    let name = unique_name("rb");
    n.docker(&[
        "service",
        "create",
        "-d",
        "--name",
        &name,
        "--replicas",
        "3",
        "--update-failure-action",
        "rollback",
        "--update-monitor",
        "3s",
        // The failing task reaches RUNNING before it fails: the delay keeps the next slot
        // from starting in between, so exactly one slot is reached.
        "--update-delay",
        "3s",
        "--rollback-monitor",
        "1s",
        "--restart-delay",
        "100ms",
        "busybox",
        "sleep",
        "300",
    ])
    .ok();
    wait_until(T, POLL, "3/3", || replicas(&n, &name) == "3/3");
    let originals = running_tasks(&n, &name);

    // The new version exits at once: the first replaced slot fails within the monitor.
    n.docker(&["service", "update", "-d", "--args", "false", &name])
        .ok();
    let started = wait_for(T, POLL, "rollback started", || {
        let s = update_status(&n, &name);
        if s.starts_with("rollback_started|") {
            Ok(s)
        } else {
            Err(s)
        }
    });
    assert!(
        started.contains("|update rolled back due to failure or early termination of task "),
        "{started}"
    );
    wait_for(T, POLL, "rollback completed", || {
        let s = update_status(&n, &name);
        if s == "rollback_completed|rollback completed" {
            Ok(())
        } else {
            Err(s)
        }
    });
    // The spec is the original again, with no previous spec left (as swarmkit).
    assert_eq!(
        service_field(&n, &name, "{{json .Spec.TaskTemplate.ContainerSpec.Args}}"),
        r#"["sleep","300"]"#
    );
    assert_eq!(service_field(&n, &name, "{{json .PreviousSpec}}"), "null");
    wait_until(T, POLL, "3/3 after rollback", || {
        replicas(&n, &name) == "3/3"
    });
    let args = running_args(&n, &name);
    assert_eq!(args, vec![r#"["sleep","300"]"#; 3]);
    // Only the slot the update reached was redeployed; the other two kept their tasks.
    let kept = running_tasks(&n, &name)
        .into_iter()
        .filter(|t| originals.contains(t))
        .count();
    assert_eq!(
        kept, 2,
        "tasks never updated stay untouched by the rollback"
    );
}

#[test]
fn failing_update_pauses_and_rollback_restores() {
    let n = node();
    let _l = Leave(&n);
    let name = unique_name("pause");
    n.docker(&[
        "service",
        "create",
        "-d",
        "--name",
        &name,
        "--replicas",
        "3",
        "--update-delay",
        "3s",
        "--restart-delay",
        "100ms",
        "busybox",
        "sleep",
        "300",
    ])
    .ok();
    wait_until(T, POLL, "3/3", || replicas(&n, &name) == "3/3");

    // Default failure action: pause. The CLI reports the pause and fails.
    let out = n.docker(&["service", "update", "--args", "false", &name]);
    let out = out.fail();
    assert!(
        out.stderr
            .contains("update paused due to failure or early termination of task"),
        "{}",
        out.report("update output")
    );
    let s = update_status(&n, &name);
    assert!(
        s.starts_with("paused|update paused due to failure or early termination of task "),
        "{s}"
    );
    // Paused: the two slots not reached yet still run the old spec.
    let old = running_args(&n, &name)
        .into_iter()
        .filter(|a| a == r#"["sleep","300"]"#)
        .count();
    assert_eq!(old, 2);

    // `service update --rollback` restores the previous spec.
    n.docker(&["service", "update", "-d", "--rollback", &name])
        .ok();
    wait_for(T, POLL, "rollback completed", || {
        let s = update_status(&n, &name);
        if s == "rollback_completed|rollback completed" {
            Ok(())
        } else {
            Err(s)
        }
    });
    wait_until(T, POLL, "3/3", || {
        replicas(&n, &name) == "3/3" && running_args(&n, &name) == vec![r#"["sleep","300"]"#; 3]
    });
}

#[test]
fn parallelism_and_delay_pace_the_update() {
    let n = node();
    let _l = Leave(&n);
    let name = unique_name("par");
    n.docker(&[
        "service",
        "create",
        "-d",
        "--name",
        &name,
        "--replicas",
        "4",
        "--update-parallelism",
        "2",
        "--update-delay",
        "3s",
        "--update-monitor",
        "1s",
        "busybox",
        "sleep",
        "300",
    ])
    .ok();
    wait_until(T, POLL, "4/4", || replicas(&n, &name) == "4/4");
    n.docker(&["service", "update", "-d", "--args", "sleep 301", &name])
        .ok();
    let new = r#"["sleep","301"]"#;
    let count_new = || {
        running_args(&n, &name)
            .into_iter()
            .filter(|a| a == new)
            .count()
    };
    wait_until(T, POLL, "first batch", || count_new() >= 1);
    // The first batch is two slots, and the delay holds the second batch back.
    assert_eq!(count_new(), 2);
    assert_eq!(update_status(&n, &name), "updating|update in progress");
    wait_for(T, POLL, "update completed", || {
        let s = update_status(&n, &name);
        if s == "completed|update completed" {
            Ok(())
        } else {
            Err(s)
        }
    });
    assert_eq!(count_new(), 4);
    let completed = service_field(&n, &name, "{{.UpdateStatus.CompletedAt}}");
    assert!(!completed.is_empty());
}

/// A forced update of a one-replica service with update order `order`, whose task runs
/// `command`: (old task's last status time, new task's running time) in nanoseconds, once
/// the update completed and the old task is shut down.
fn forced_update_times(order: &str, command: &[&str]) -> (i128, i128) {
    let n = node();
    let _l = Leave(&n);
    let name = unique_name("order");
    let mut create = vec![
        "service",
        "create",
        "-d",
        "--name",
        &name,
        "--update-order",
        order,
        "--update-monitor",
        "1s",
        "busybox",
    ];
    create.extend(command);
    n.docker(&create).ok();
    wait_until(T, POLL, "1/1", || replicas(&n, &name) == "1/1");
    let old = running_tasks(&n, &name);
    n.docker(&["service", "update", "--force", &name]).ok();
    wait_until(T, POLL, "update completed", || {
        update_status(&n, &name) == "completed|update completed"
    });
    let new = running_tasks(&n, &name);
    assert_eq!(new.len(), 1);
    assert_ne!(new, old);
    assert_eq!(task_field(&n, &new[0], "{{.Status.State}}"), "running");
    wait_until(T, POLL, "old task shut down", || {
        task_field(&n, &old[0], "{{.Status.State}}") == "shutdown"
    });
    // Each task's status timestamp: when the old one shut down, when the new one (still
    // running) reached RUNNING.
    let at = |task: &str| -> i128 {
        task_field(&n, task, "{{.Status.Timestamp.UnixNano}}")
            .parse()
            .unwrap()
    };
    (at(&old[0]), at(&new[0]))
}

#[test]
fn start_first_runs_the_new_task_before_stopping_the_old() {
    let (old_end, new_running) = forced_update_times("start-first", &["sleep", "300"]);
    assert!(
        old_end >= new_running,
        "old task ended after its replacement ran"
    );
}

/// Docker's stop-first: the replacement starts only once the old task has stopped
/// (swarmkit creates it with desired state READY and starts it when the old task's state is
/// past RUNNING or its node is down). The old task takes 3 s to stop on SIGTERM. (swarmd
/// once started the replacement at once; the chaos harness's task checker found it.)
#[test]
fn stop_first_starts_the_new_task_after_the_old_one_stopped() {
    let (old_end, new_running) = forced_update_times(
        "stop-first",
        &[
            "sh",
            "-c",
            "trap 'sleep 3; exit 0' TERM; while :; do sleep 1; done",
        ],
    );
    assert!(
        old_end <= new_running,
        "the new task ran {:.1} s before the old one stopped",
        (old_end - new_running) as f64 / 1e9
    );
}

#[test]
fn bad_policies_are_refused_with_docker_messages() {
    let n = node();
    let _l = Leave(&n);
    let name = unique_name("bad");
    let out = n
        .docker(&[
            "service",
            "create",
            "-d",
            "--name",
            &name,
            "--update-max-failure-ratio",
            "1.5",
            "busybox",
            "sleep",
            "300",
        ])
        .fail();
    assert!(
        out.stderr
            .contains("TaskSpec: update-maxfailureratio cannot be less than 0 or bigger than 1"),
        "{}",
        out.report("create")
    );
    let out = n
        .docker(&[
            "service",
            "create",
            "-d",
            "--name",
            &name,
            "--health-cmd",
            "true",
            "--health-interval",
            "10us",
            "busybox",
            "sleep",
            "300",
        ])
        .fail();
    assert!(
        out.stderr
            .contains("ContainerSpec: Interval in HealthConfig cannot be less than 1ms"),
        "{}",
        out.report("create")
    );
    // Nothing was created.
    n.docker(&["service", "inspect", &name]).fail();
}

#[test]
fn start_first_update_to_an_unhealthy_version_rolls_back_without_downtime() {
    let n = node();
    let _l = Leave(&n);
    let name = unique_name("hup");
    n.docker(&[
        "service",
        "create",
        "-d",
        "--name",
        &name,
        "--replicas",
        "2",
        "--health-cmd",
        "true",
        "--health-interval",
        "100ms",
        "--update-order",
        "start-first",
        "--update-failure-action",
        "rollback",
        "--update-monitor",
        "2s",
        "--rollback-monitor",
        "1s",
        "busybox",
        "sleep",
        "300",
    ])
    .ok();
    wait_until(T, POLL, "2/2", || replicas(&n, &name) == "2/2");
    let originals = running_tasks(&n, &name);

    // The new version never becomes healthy: its task stays starting, then fails; the
    // old tasks keep running all along (start-first), and the update rolls back.
    n.docker(&[
        "service",
        "update",
        "-d",
        "--health-cmd",
        "false",
        "--health-retries",
        "1",
        &name,
    ])
    .ok();
    wait_for(T, POLL, "rolled back", || {
        let r = replicas(&n, &name);
        assert!(r.starts_with("2/"), "no downtime during the update: {r}");
        let s = update_status(&n, &name);
        if s == "rollback_completed|rollback completed" {
            Ok(())
        } else {
            Err(s)
        }
    });
    assert_eq!(
        service_field(
            &n,
            &name,
            "{{json .Spec.TaskTemplate.ContainerSpec.Healthcheck.Test}}"
        ),
        r#"["CMD-SHELL","true"]"#
    );
    let mut now = running_tasks(&n, &name);
    let mut before = originals.clone();
    now.sort();
    before.sort();
    assert_eq!(now, before, "the healthy tasks were never replaced");
}

#[test]
fn failure_action_continue_updates_every_slot_anyway() {
    let n = node();
    let _l = Leave(&n);
    let name = unique_name("cont");
    n.docker(&[
        "service",
        "create",
        "-d",
        "--name",
        &name,
        "--replicas",
        "3",
        "--update-failure-action",
        "continue",
        "--update-monitor",
        "1s",
        "--restart-delay",
        "30s",
        "busybox",
        "sleep",
        "300",
    ])
    .ok();
    wait_until(T, POLL, "3/3", || replicas(&n, &name) == "3/3");
    n.docker(&["service", "update", "-d", "--args", "false", &name])
        .ok();
    wait_for(T, POLL, "update completed despite failures", || {
        let s = update_status(&n, &name);
        if s == "completed|update completed" {
            Ok(())
        } else {
            Err(s)
        }
    });
    // Every slot got a task of the new spec, and they all failed.
    let failed = n
        .docker(&[
            "service",
            "ps",
            "--format",
            "{{.Name}} {{.CurrentState}}",
            &name,
        ])
        .ok()
        .lines()
        .iter()
        .filter(|l| l.contains(" Failed"))
        .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
        .collect::<std::collections::BTreeSet<_>>();
    assert_eq!(failed.len(), 3, "{failed:?}");
}

#[test]
fn rollback_flags_drive_a_manual_rollback() {
    let n = node();
    let _l = Leave(&n);
    let name = unique_name("rbf");
    n.docker(&[
        "service",
        "create",
        "-d",
        "--name",
        &name,
        "--replicas",
        "3",
        "--update-parallelism",
        "1",
        "--update-delay",
        "2s",
        "--update-monitor",
        "1s",
        // The rollback replaces every slot at once and completes after 1 s of monitoring,
        // while an update goes one slot at a time, 2 s apart: the rollback config applies.
        "--rollback-parallelism",
        "0",
        "--rollback-monitor",
        "1s",
        "busybox",
        "sleep",
        "300",
    ])
    .ok();
    wait_until(T, POLL, "3/3", || replicas(&n, &name) == "3/3");
    n.docker(&["service", "update", "-d", "--args", "sleep 301", &name])
        .ok();
    wait_until(T, POLL, "update completed", || {
        update_status(&n, &name) == "completed|update completed"
    });
    n.docker(&["service", "rollback", "-d", &name]).ok();
    let old = r#"["sleep","300"]"#;
    let count_old = || {
        running_args(&n, &name)
            .into_iter()
            .filter(|a| a == old)
            .count()
    };
    wait_for(T, POLL, "rollback started", || {
        if count_old() >= 1 {
            Ok(())
        } else {
            Err(format!(
                "{:?} {} {}",
                running_args(&n, &name),
                update_status(&n, &name),
                service_field(&n, &name, "{{json .Spec.TaskTemplate.ContainerSpec.Args}}")
            ))
        }
    });
    assert_eq!(count_old(), 3, "all slots rolled back in one batch");
    wait_until(T, POLL, "rollback completed", || {
        update_status(&n, &name) == "rollback_completed|rollback completed"
    });
}
