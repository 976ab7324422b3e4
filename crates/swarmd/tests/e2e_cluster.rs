//! End to end, two nodes on one machine (process executor): a worker joins with a token
//! over mutual TLS, runs its share of a service, is marked down when it dies (its tasks
//! move to the manager) and has its stale tasks shut down when it comes back.

mod common;

use common::*;
use swarmd_testkit::{Daemon, Executor, unique_name, wait_for, wait_until};

fn node(name: &str) -> Daemon {
    daemon(Executor::Process, name)
}

fn node_states(m: &Daemon) -> String {
    let mut lines: Vec<String> = m
        .docker(&["node", "ls", "--format", "{{.Hostname}} {{.Status}}"])
        .ok()
        .lines()
        .iter()
        .map(|s| s.to_string())
        .collect();
    lines.sort();
    lines.join(",")
}

fn running_on(m: &Daemon, node: &str) -> usize {
    m.docker(&[
        "node",
        "ps",
        "-q",
        "--filter",
        "desired-state=running",
        node,
    ])
    .ok()
    .lines()
    .len()
}

#[test]
fn worker_joins_runs_tasks_fails_over_and_comes_back() {
    let mgr_name = unique_name("mgr");
    let wrk_name = unique_name("wrk");
    let m = node(&mgr_name);
    m.docker(&["swarm", "init", "--dispatcher-heartbeat", "1s"])
        .ok();
    let _lm = Leave(&m);
    let addr = format!("{}:2377", m.node_addr());
    let token = m
        .docker(&["swarm", "join-token", "-q", "worker"])
        .ok()
        .stdout_trimmed()
        .to_string();

    let mut w = node(&wrk_name);
    // A garbled token, a wrong secret and a wrong CA digest are refused; the node is unchanged.
    let bad = w
        .docker(&["swarm", "join", "--token", "SWMTKN-1-garbage", &addr])
        .fail();
    assert!(bad.stderr.contains("invalid join token"), "{}", bad.stderr);
    let mut wrong_secret = token.clone();
    wrong_secret.pop();
    wrong_secret.push(if token.ends_with('a') { 'b' } else { 'a' });
    let bad = w
        .docker(&["swarm", "join", "--token", &wrong_secret, &addr])
        .fail();
    assert!(
        bad.stderr
            .contains("A valid join token is necessary to join this cluster"),
        "{}",
        bad.stderr
    );
    let other_ca = format!("SWMTKN-1-{}-{}", "1".repeat(50), &token[token.len() - 25..]);
    let bad = w
        .docker(&["swarm", "join", "--token", &other_ca, &addr])
        .fail();
    assert!(
        bad.stderr.contains("remote CA does not match fingerprint"),
        "{}",
        bad.stderr
    );
    // Nothing listens there: a clear error, and the node stays out.
    let nowhere = format!("{}:2377", swarmd_testkit::unique_loopback());
    let bad = w
        .docker(&["swarm", "join", "--token", &token, &nowhere])
        .fail();
    assert!(
        bad.stderr
            .contains(&format!("could not reach the manager at {nowhere}")),
        "{}",
        bad.stderr
    );
    let info = w
        .docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"])
        .ok();
    assert_eq!(info.stdout_trimmed(), "inactive");
    assert_eq!(
        m.docker(&["node", "ls", "-q"]).ok().lines().len(),
        1,
        "refused joins made no node"
    );

    // A rotated-away token no longer admits anyone.
    m.docker(&["swarm", "join-token", "--rotate", "-q", "worker"])
        .ok();
    let bad = w
        .docker(&["swarm", "join", "--token", &token, &addr])
        .fail();
    assert!(
        bad.stderr
            .contains("A valid join token is necessary to join this cluster"),
        "{}",
        bad.stderr
    );
    let token = m
        .docker(&["swarm", "join-token", "-q", "worker"])
        .ok()
        .stdout_trimmed()
        .to_string();

    // The current token works.
    let joined = w.docker(&["swarm", "join", "--token", &token, &addr]).ok();
    assert!(
        joined
            .stdout
            .contains("This node joined a swarm as a worker"),
        "{}",
        joined.stdout
    );

    wait_until(T, POLL, "both nodes ready", || {
        node_states(&m) == {
            let mut v = [format!("{mgr_name} Ready"), format!("{wrk_name} Ready")];
            v.sort();
            v.join(",")
        }
    });
    // A worker can't manage the swarm.
    let refused = w.docker(&["node", "ls"]).fail();
    assert!(
        refused.stderr.contains("not a swarm manager"),
        "{}",
        refused.stderr
    );
    let info = w
        .docker(&[
            "info",
            "--format",
            "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}",
        ])
        .ok();
    assert_eq!(info.stdout_trimmed(), "active false");

    // Tasks spread over both nodes.
    let svc = unique_name("spread");
    m.docker(&[
        "service",
        "create",
        "-d",
        "--name",
        &svc,
        "--replicas",
        "4",
        "busybox",
        "sh",
        "-c",
        "echo hello; exec sleep 300",
    ])
    .ok();
    wait_until(T, POLL, "4/4 running", || {
        m.docker(&["service", "ls", "--format", "{{.Replicas}}"])
            .stdout_trimmed()
            == "4/4"
    });
    assert_eq!(running_on(&m, &wrk_name), 2);
    assert_eq!(running_on(&m, &mgr_name), 2);
    // The manager shows the output of the worker's tasks too (log broker over mTLS).
    wait_for(T, POLL, "logs from tasks on both nodes", || {
        let logs = m.docker(&["service", "logs", &svc]);
        if logs.stdout.matches("hello").count() == 4
            && logs.stdout.contains(&format!("@{wrk_name}"))
            && logs.stdout.contains(&format!("@{mgr_name}"))
        {
            Ok(())
        } else {
            Err(format!("{}{}", logs.stdout, logs.stderr))
        }
    });
    let worker_pids: Vec<i32> = m
        .docker(&[
            "node",
            "ps",
            "-q",
            "--filter",
            "desired-state=running",
            &wrk_name,
        ])
        .ok()
        .lines()
        .iter()
        .map(|t| {
            m.docker(&[
                "inspect",
                "--type",
                "task",
                "--format",
                "{{.Status.ContainerStatus.PID}}",
                t,
            ])
            .ok()
            .stdout_trimmed()
            .parse()
            .unwrap_or(0)
        })
        .collect();
    assert!(worker_pids.iter().all(|p| *p > 0), "{worker_pids:?}");

    // The worker dies: it is marked down and its tasks are replaced on the manager.
    w.kill9();
    wait_until(T, POLL, "worker down", || {
        node_states(&m).contains(&format!("{wrk_name} Down"))
    });
    wait_until(T, POLL, "all 4 tasks on the manager", || {
        running_on(&m, &mgr_name) == 4
    });

    // It comes back: ready again, and its stale tasks are shut down, not duplicated.
    w.restart().unwrap();
    wait_until(T, POLL, "worker ready again", || {
        node_states(&m).contains(&format!("{wrk_name} Ready"))
    });
    wait_for(T, POLL, "stale worker processes stopped", || {
        let alive: Vec<&i32> = worker_pids
            .iter()
            .filter(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
            .collect();
        if alive.is_empty() {
            Ok(())
        } else {
            Err(format!("{alive:?}"))
        }
    });
    assert_eq!(running_on(&m, &wrk_name), 0);
    assert_eq!(running_on(&m, &mgr_name), 4);

    m.docker(&["service", "rm", &svc]).ok();

    // A live node can't be removed; once it has left (and is down) it can.
    let busy = m.docker(&["node", "rm", &wrk_name]).fail();
    assert!(
        busy.stderr.contains("is not down and can't be removed"),
        "{}",
        busy.stderr
    );
    w.docker(&["swarm", "leave"]).ok();
    let info = w
        .docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"])
        .ok();
    assert_eq!(info.stdout_trimmed(), "inactive");
    wait_until(T, POLL, "left worker down", || {
        node_states(&m).contains(&format!("{wrk_name} Down"))
    });
    m.docker(&["node", "rm", &wrk_name]).ok();
    assert_eq!(node_states(&m), format!("{mgr_name} Ready"));
}

#[test]
fn global_covers_late_joiners_constraints_pick_nodes_and_drain_moves_tasks() {
    let mgr_name = unique_name("gm");
    let wrk_name = unique_name("gw");
    let m = node(&mgr_name);
    m.docker(&["swarm", "init", "--dispatcher-heartbeat", "1s"])
        .ok();
    let _lm = Leave(&m);
    let glob = unique_name("glob");
    m.docker(&[
        "service", "create", "-d", "--name", &glob, "--mode", "global", "busybox", "sleep", "300",
    ])
    .ok();
    wait_until(T, POLL, "global 1/1", || replicas(&m, &glob) == "1/1");

    // A node joining later gets its global task.
    let w = node(&wrk_name);
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
    let _lw = Leave(&w);
    wait_until(T, POLL, "global 2/2 with the new node", || {
        replicas(&m, &glob) == "2/2" && running_on(&m, &wrk_name) == 1
    });

    // Constraints on role, hostname and labels choose the node.
    m.docker(&["node", "update", "--label-add", "zone=a", &wrk_name])
        .ok();
    let by_label = unique_name("label");
    let by_role = unique_name("role");
    let by_host = unique_name("host");
    for (svc, constraint) in [
        (&by_label, "node.labels.zone==a".to_string()),
        (&by_role, "node.role==manager".to_string()),
        (&by_host, format!("node.hostname!={mgr_name}")),
    ] {
        m.docker(&[
            "service",
            "create",
            "-d",
            "--name",
            svc,
            "--replicas",
            "2",
            "--constraint",
            &constraint,
            "busybox",
            "sleep",
            "300",
        ])
        .ok();
    }
    wait_until(T, POLL, "constrained services 2/2", || {
        [&by_label, &by_role, &by_host]
            .iter()
            .all(|s| replicas(&m, s) == "2/2")
    });
    let on = |svc: &str| -> Vec<String> {
        m.docker(&[
            "service",
            "ps",
            "--filter",
            "desired-state=running",
            "--format",
            "{{.Node}}",
            svc,
        ])
        .ok()
        .lines()
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    assert!(
        on(&by_label).iter().all(|n| *n == wrk_name),
        "{:?}",
        on(&by_label)
    );
    assert!(
        on(&by_role).iter().all(|n| *n == mgr_name),
        "{:?}",
        on(&by_role)
    );
    assert!(
        on(&by_host).iter().all(|n| *n == wrk_name),
        "{:?}",
        on(&by_host)
    );

    // Draining the worker: its global task stops, constrained tasks wait (pending), an
    // unconstrained service's tasks move to the manager.
    let free = unique_name("free");
    m.docker(&[
        "service",
        "create",
        "-d",
        "--name",
        &free,
        "--replicas",
        "2",
        "busybox",
        "sleep",
        "300",
    ])
    .ok();
    wait_until(T, POLL, "free 2/2", || replicas(&m, &free) == "2/2");
    let free_on = |host: &str| on(&free).iter().filter(|n| *n == host).count();
    assert_eq!(free_on(&wrk_name), 1, "spread: one on each node");

    // Paused: the worker keeps what it runs but gets nothing new.
    m.docker(&["node", "update", "--availability", "pause", &wrk_name])
        .ok();
    m.docker(&["service", "scale", "-d", &format!("{free}=4")])
        .ok();
    wait_until(T, POLL, "free 4/4", || replicas(&m, &free) == "4/4");
    assert_eq!(free_on(&wrk_name), 1, "nothing new on a paused node");
    assert_eq!(free_on(&mgr_name), 3);

    m.docker(&["node", "update", "--availability", "drain", &wrk_name])
        .ok();
    wait_for(T, POLL, "tasks off the drained node", || {
        let g = replicas(&m, &glob);
        let f = replicas(&m, &free);
        let l = replicas(&m, &by_label);
        if g == "1/1" && f == "4/4" && l == "0/2" && running_on(&m, &wrk_name) == 0 {
            Ok(())
        } else {
            Err(format!("global {g}, free {f}, label {l}"))
        }
    });
    assert!(on(&free).iter().all(|n| *n == mgr_name));
}
