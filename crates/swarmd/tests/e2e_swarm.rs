//! End to end: a real swarmd driven by the real docker CLI, process executor.
//! Swarm lifecycle, nodes, services, self-healing, persistence and bad input.

mod common;

use common::*;
use swarmd_testkit::{Daemon, Executor, unique_loopback, unique_name, wait_for, wait_until};

fn node() -> Daemon {
    process_node("node")
}

fn init(n: &Daemon) {
    n.docker(&["swarm", "init"]).ok();
}

/// Leaves the swarm (stopping its task processes) when the test ends, even on panic.

#[test]
fn swarm_init_join_token_and_leave() {
    let n = node();
    // Before init: info works and says inactive; swarm calls say "not a manager".
    let info = n
        .docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"])
        .ok();
    assert_eq!(info.stdout_trimmed(), "inactive");
    n.docker(&["version"]).ok();
    let err = n.docker(&["node", "ls"]).fail();
    assert!(
        err.stderr.contains("This node is not a swarm manager"),
        "{}",
        err.stderr
    );

    init(&n);
    let _leave = Leave(&n);
    let again = n.docker(&["swarm", "init"]).fail();
    assert!(
        again
            .stderr
            .contains("This node is already part of a swarm"),
        "{}",
        again.stderr
    );
    let info = n
        .docker(&[
            "info",
            "--format",
            "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}} {{.Swarm.Nodes}} {{.Swarm.Managers}}",
        ])
        .ok();
    assert_eq!(info.stdout_trimmed(), "active true 1 1");

    // The node is ready, active and the leader.
    let nodes = n
        .docker(&[
            "node",
            "ls",
            "--format",
            "{{.Hostname}} {{.Status}} {{.Availability}} {{.ManagerStatus}} {{.Self}}",
        ])
        .ok();
    wait_until(T, POLL, "node ready", || {
        n.docker(&["node", "ls", "--format", "{{.Status}}"])
            .ok()
            .stdout_trimmed()
            == "Ready"
    });
    assert!(
        nodes.stdout_trimmed().ends_with("Active Leader true"),
        "{}",
        nodes.stdout
    );

    // Join tokens carry the CA digest; rotation replaces them.
    let worker = n.docker(&["swarm", "join-token", "-q", "worker"]).ok();
    let token = worker.stdout_trimmed().to_string();
    assert!(token.starts_with("SWMTKN-1-"), "{token}");
    let manager = n.docker(&["swarm", "join-token", "-q", "manager"]).ok();
    assert_ne!(manager.stdout_trimmed(), token);
    n.docker(&["swarm", "join-token", "--rotate", "worker"])
        .ok();
    let rotated = n.docker(&["swarm", "join-token", "-q", "worker"]).ok();
    assert_ne!(rotated.stdout_trimmed(), token);
    // Same CA: the digest part is unchanged.
    assert_eq!(rotated.stdout_trimmed()[..60], token[..60]);

    // swarm update changes the spec.
    n.docker(&["swarm", "update", "--task-history-limit", "3"])
        .ok();
    let limit = n
        .docker(&[
            "info",
            "--format",
            "{{.Swarm.Cluster.Spec.Orchestration.TaskHistoryRetentionLimit}}",
        ])
        .ok();
    assert_eq!(limit.stdout_trimmed(), "3");

    n.docker(&["swarm", "leave", "--force"]).ok();
    let info = n
        .docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"])
        .ok();
    assert_eq!(info.stdout_trimmed(), "inactive");
}

#[test]
fn node_update_labels_and_availability() {
    let n = node();
    init(&n);
    let _leave = Leave(&n);
    n.docker(&[
        "node",
        "update",
        "--label-add",
        "zone=east",
        "--label-add",
        "disk=ssd",
        "self",
    ])
    .ok();
    n.docker(&["node", "update", "--label-rm", "disk", "self"])
        .ok();
    let labels = n
        .docker(&[
            "node",
            "inspect",
            "--format",
            "{{json .Spec.Labels}}",
            "self",
        ])
        .ok();
    assert_eq!(labels.stdout_trimmed(), r#"{"zone":"east"}"#);
    n.docker(&["node", "update", "--availability", "pause", "self"])
        .ok();
    let avail = n
        .docker(&[
            "node",
            "inspect",
            "--format",
            "{{.Spec.Availability}}",
            "self",
        ])
        .ok();
    assert_eq!(avail.stdout_trimmed(), "pause");
    let pretty = n.docker(&["node", "inspect", "--pretty", "self"]).ok();
    assert!(pretty.stdout.contains("zone=east"), "{}", pretty.stdout);
    let missing = n.docker(&["node", "inspect", "nosuchnode"]).fail();
    assert!(missing.stderr.contains("nosuchnode"), "{}", missing.stderr);
}

#[test]
fn service_create_scale_update_logs_rm() {
    let n = node();
    init(&n);
    let _leave = Leave(&n);
    let name = unique_name("web");
    // Default progress display (no -d) must converge.
    let out = n
        .docker(&[
            "service",
            "create",
            "--name",
            &name,
            "--replicas",
            "3",
            "--env",
            "GREETING=hello",
            "busybox",
            "sh",
            "-c",
            "echo $GREETING from $HOSTNAME; exec sleep 300",
        ])
        .ok();
    assert!(
        out.stdout.contains("verify: Service") || out.stderr.contains("verify: Service"),
        "stdout: {}\nstderr: {}",
        out.stdout,
        out.stderr
    );

    let ls = n
        .docker(&[
            "service",
            "ls",
            "--format",
            "{{.Name}} {{.Mode}} {{.Replicas}}",
        ])
        .ok();
    assert_eq!(ls.stdout_trimmed(), format!("{name} replicated 3/3"));
    assert_eq!(running_tasks(&n, &name).len(), 3);

    // Logs come from the tasks' real output.
    wait_until(T, POLL, "three greetings in the logs", || {
        n.docker(&["service", "logs", &name])
            .stdout
            .matches("hello from")
            .count()
            == 3
    });
    let tail = n
        .docker(&["service", "logs", "--tail", "1", "--timestamps", &name])
        .ok();
    assert_eq!(tail.lines().len(), 3, "one line per task: {}", tail.stdout);

    // Scale down to 1 and up to 2.
    n.docker(&["service", "scale", &format!("{name}=1")]).ok();
    wait_until(T, POLL, "one task left", || {
        running_tasks(&n, &name).len() == 1
    });
    n.docker(&["service", "scale", "-d", &format!("{name}=2")])
        .ok();
    wait_until(T, POLL, "two tasks", || {
        n.docker(&[
            "service",
            "ls",
            "--format",
            "{{.Replicas}}",
            "--filter",
            &format!("name={name}"),
        ])
        .stdout_trimmed()
            == "2/2"
    });

    // An update replaces the tasks; the old ones stay in history as shutdown.
    let before: Vec<String> = running_tasks(&n, &name);
    n.docker(&["service", "update", "--env-add", "GREETING=bye", &name])
        .ok();
    let after = running_tasks(&n, &name);
    assert_eq!(after.len(), 2);
    assert!(
        after.iter().all(|t| !before.contains(t)),
        "tasks were replaced"
    );
    let history = n
        .docker(&["service", "ps", "--format", "{{.DesiredState}}", &name])
        .ok();
    assert!(history.lines().iter().filter(|l| **l == "Shutdown").count() >= 2);
    let env = service_field(&n, &name, "{{json .Spec.TaskTemplate.ContainerSpec.Env}}");
    assert!(env.contains("GREETING=bye"), "{env}");

    // A stale version is refused.
    let raw = n.http("GET", &format!("/services/{name}"), None).unwrap();
    let svc: serde_json::Value = serde_json::from_slice(&raw.body).unwrap();
    let spec = serde_json::to_vec(&svc["Spec"]).unwrap();
    let stale = n
        .http(
            "POST",
            &format!("/services/{name}/update?version=1"),
            Some(&spec),
        )
        .unwrap();
    assert_eq!(
        stale.status,
        409,
        "{}",
        String::from_utf8_lossy(&stale.body)
    );
    assert!(String::from_utf8_lossy(&stale.body).contains("update out of sequence"));

    // rm stops the processes and the tasks disappear.
    let pids: Vec<i32> = running_tasks(&n, &name)
        .iter()
        .map(|t| {
            task_field(&n, t, "{{.Status.ContainerStatus.PID}}")
                .parse()
                .unwrap_or(0)
        })
        .collect();
    assert!(pids.iter().all(|p| pid_alive(*p)), "{pids:?}");
    n.docker(&["service", "rm", &name]).ok();
    wait_until(T, POLL, "task processes gone", || {
        pids.iter().all(|p| !pid_alive(*p))
    });
    wait_until(T, POLL, "tasks reaped", || {
        n.docker(&["service", "ps", &name])
            .fail()
            .stderr
            .contains("no such service")
    });
}

#[test]
fn killed_task_is_replaced_in_its_slot() {
    let n = node();
    init(&n);
    let _leave = Leave(&n);
    let name = unique_name("heal");
    n.docker(&[
        "service",
        "create",
        "-d",
        "--name",
        &name,
        "--restart-delay",
        "100ms",
        "busybox",
        "sleep",
        "300",
    ])
    .ok();
    let first = wait_for(T, POLL, "a running task", || {
        let ts = running_tasks(&n, &name);
        match ts.first() {
            Some(t) if task_field(&n, t, "{{.Status.State}}") == "running" => Ok(t.clone()),
            _ => Err("not running yet"),
        }
    });
    let pid: i32 = task_field(&n, &first, "{{.Status.ContainerStatus.PID}}")
        .parse()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();

    let second = wait_for(T, POLL, "a replacement task running", || {
        let ts = running_tasks(&n, &name);
        match ts.first() {
            Some(t) if *t != first && task_field(&n, t, "{{.Status.State}}") == "running" => {
                Ok(t.clone())
            }
            _ => Err("no replacement yet"),
        }
    });
    assert_eq!(task_field(&n, &second, "{{.Slot}}"), "1");
    let old = task_field(
        &n,
        &first,
        "{{.Status.State}} {{.DesiredState}} {{.Status.Err}}",
    );
    assert!(
        old.starts_with("failed shutdown task: non-zero exit"),
        "{old}"
    );
    n.docker(&["service", "rm", &name]).ok();
}

#[test]
fn state_survives_sigterm_and_kill9_and_tasks_are_adopted() {
    let mut n = node();
    init(&n);
    let name = unique_name("keep");
    n.docker(&[
        "service",
        "create",
        "-d",
        "--name",
        &name,
        "--replicas",
        "2",
        "busybox",
        "sleep",
        "300",
    ])
    .ok();
    wait_until(T, POLL, "2/2", || {
        n.docker(&["service", "ls", "--format", "{{.Replicas}}"])
            .stdout_trimmed()
            == "2/2"
    });
    let tasks = running_tasks(&n, &name);
    let pids: Vec<String> = tasks
        .iter()
        .map(|t| task_field(&n, t, "{{.Status.ContainerStatus.PID}}"))
        .collect();

    n.sigterm().unwrap();
    n.restart().unwrap();
    let info = n
        .docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"])
        .ok();
    assert_eq!(info.stdout_trimmed(), "active");
    wait_until(T, POLL, "same tasks running after restart", || {
        let mut now = running_tasks(&n, &name);
        now.sort();
        let mut was = tasks.clone();
        was.sort();
        now == was
    });

    n.kill9();
    n.restart().unwrap();
    wait_until(T, POLL, "service back after kill -9", || {
        n.docker(&["service", "ls", "--format", "{{.Name}} {{.Replicas}}"])
            .stdout_trimmed()
            == format!("{name} 2/2")
    });
    let pids_after: Vec<String> = running_tasks(&n, &name)
        .iter()
        .map(|t| task_field(&n, t, "{{.Status.ContainerStatus.PID}}"))
        .collect();
    let mut a = pids.clone();
    a.sort();
    let mut b = pids_after.clone();
    b.sort();
    assert_eq!(a, b, "tasks were adopted, not restarted");
    n.docker(&["swarm", "leave", "--force"]).ok();
}

#[test]
fn bad_input_gets_docker_errors_and_changes_nothing() {
    let n = node();
    init(&n);
    let _leave = Leave(&n);
    let r = n
        .http("POST", "/services/create", Some(b"{not json"))
        .unwrap();
    assert_eq!(r.status, 400);
    let r = n
        .http(
            "POST",
            "/services/create",
            Some(br#"{"Name":"x","TaskTemplate":{"ContainerSpec":{}}}"#),
        )
        .unwrap();
    assert_eq!(r.status, 400);
    assert!(String::from_utf8_lossy(&r.body).contains("image reference must be provided"));
    let r = n
        .http(
            "POST",
            "/services/create",
            Some(br#"{"Name":"x","Mode":{"Replicated":{"Replicas":-1}},"TaskTemplate":{"ContainerSpec":{"Image":"busybox"}}}"#),
        )
        .unwrap();
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    let bad = n
        .docker(&[
            "service",
            "create",
            "--constraint",
            "node.role=manager",
            "busybox",
            "sleep",
            "1",
        ])
        .fail();
    assert!(
        bad.stderr.contains("constraint expected one operator"),
        "{}",
        bad.stderr
    );
    let name = unique_name("dup");
    n.docker(&[
        "service", "create", "-d", "--name", &name, "busybox", "sleep", "300",
    ])
    .ok();
    let dup = n
        .docker(&[
            "service", "create", "-d", "--name", &name, "busybox", "sleep", "300",
        ])
        .fail();
    assert!(dup.stderr.contains("already exists"), "{}", dup.stderr);
    let ls = n.docker(&["service", "ls", "-q"]).ok();
    assert_eq!(
        ls.lines().len(),
        1,
        "nothing but the first service was created"
    );
    let missing = n.docker(&["service", "inspect", "nosuchservice"]).fail();
    assert!(
        missing.stderr.contains("nosuchservice"),
        "{}",
        missing.stderr
    );
    n.docker(&["service", "rm", &name]).ok();
}

/// Issue 18 item 7: `since=1e300` (or any bound past `SystemTime`'s range) used to panic the
/// connection task. Docker's daemon takes `seconds[.nanoseconds]` with `i64` seconds and
/// refuses anything else with a 400; a valid far-future bound is simply "nothing yet".
#[test]
fn log_time_bounds_are_checked_and_never_panic() {
    let n = node();
    init(&n);
    let _leave = Leave(&n);
    let name = unique_name("logt");
    n.docker(&[
        "service",
        "create",
        "-d",
        "--name",
        &name,
        "busybox",
        "sh",
        "-c",
        "echo marker-line; exec sleep 300",
    ])
    .ok();
    wait_until(T, POLL, "the task's output in the logs", || {
        n.docker(&["service", "logs", &name])
            .stdout
            .contains("marker-line")
    });
    let logs = |q: &str| {
        n.http("GET", &format!("/services/{name}/logs?stdout=1&{q}"), None)
            .unwrap()
    };
    for (q, want) in [
        (
            "since=1e300",
            r#"invalid value for \"since\": invalid timestamp \"1e300\": invalid seconds \"1e300\": invalid syntax"#,
        ),
        ("since=1e19", r#"invalid seconds \"1e19\": invalid syntax"#),
        (
            "since=10000000000000000000",
            r#"invalid seconds \"10000000000000000000\": value out of range"#,
        ),
        ("since=NaN", "invalid syntax"),
        ("since=-inf", "invalid syntax"),
        (
            "until=1.5e3",
            r#"invalid value for \"until\": invalid timestamp \"1.5e3\": invalid nanoseconds: invalid character 'e' at position 1"#,
        ),
    ] {
        let r = logs(q);
        let body = r.text();
        assert_eq!(r.status, 400, "{q}: {body}");
        assert!(body.contains(want), "{q}: {body}");
    }
    // In range for Docker, past `SystemTime`/`Duration` for a naive conversion: no lines.
    for q in [
        "since=9223372036854775807",
        "since=9223372036854775807.999999999",
        "since=-9223372036854775808",
        "until=9223372036854775807",
    ] {
        let r = logs(q);
        assert_eq!(r.status, 200, "{q}: {}", r.text());
        let has_marker = String::from_utf8_lossy(&r.body).contains("marker-line");
        assert_eq!(has_marker, !q.starts_with("since=9"), "{q}: {}", r.text());
    }
    // `until` is honoured: a bound before the task ran leaves nothing.
    let r = logs("until=1");
    assert_eq!(r.status, 200);
    assert!(!r.text().contains("marker-line"), "{}", r.text());
    n.ping().unwrap();
    let log = n.log();
    assert!(!log.contains("panicked"), "{log}");
    n.docker(&["service", "rm", &name]).ok();
}

#[test]
fn init_flag_starts_a_ready_single_node_swarm() {
    let n = Daemon::builder(env!("CARGO_BIN_EXE_swarmd"))
        .node_addr(unique_loopback())
        .executor(Executor::Process)
        .hostname(unique_name("ready"))
        .arg("--init")
        .start()
        .expect("swarmd starts");
    let _leave = Leave(&n);
    let info = n
        .docker(&[
            "info",
            "--format",
            "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}",
        ])
        .ok();
    assert_eq!(info.stdout_trimmed(), "active true");
}
