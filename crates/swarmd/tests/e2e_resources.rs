//! End to end, process executor: placement preferences spread tasks over label values
//! across nodes, `--replicas-max-per-node` caps a node, and reservations never over-commit
//! a node: tasks that fit nowhere stay pending with Docker's explanation and are placed as
//! soon as room appears.

mod common;

use common::*;

use swarmd_testkit::{Daemon, Executor, unique_name, wait_for, wait_until};

/// `CurrentState|Error` of the first task pending with the scheduler's explanation.
fn pending_reason(n: &Daemon, name: &str) -> Result<String, String> {
    let out = n.docker(&[
        "service",
        "ps",
        "--no-trunc",
        "--filter",
        "desired-state=running",
        "--format",
        "{{.CurrentState}}|{{.Error}}",
        name,
    ]);
    match out
        .lines()
        .into_iter()
        .find(|l| l.starts_with("Pending") && l.contains("no suitable node"))
    {
        Some(l) => Ok(l.replace('"', "")),
        None => Err(out.stdout.clone()),
    }
}

#[test]
fn max_replicas_per_node_and_reservations_hold_tasks_pending_until_room() {
    let n = process_node("rnode");
    n.docker(&["swarm", "init"]).ok();
    let _l = Leave(&n);

    // Two replicas, at most one per node, one node: one runs, one waits.
    let capped = unique_name("cap");
    n.docker(&[
        "service",
        "create",
        "-d",
        "--name",
        &capped,
        "--replicas",
        "2",
        "--replicas-max-per-node",
        "1",
        "busybox",
        "sleep",
        "300",
    ])
    .ok();
    let why = wait_for(T, POLL, "max per node explanation", || {
        pending_reason(&n, &capped)
    });
    assert!(
        why.ends_with("|no suitable node (max replicas per node limit exceed)"),
        "{why}"
    );
    wait_until(T, POLL, "1/2 (max 1 per node)", || {
        replicas(&n, &capped) == "1/2 (max 1 per node)"
    });

    // Reservations: the node's whole CPU capacity for one task; a second service's task
    // cannot fit until the first is removed.
    let cpus: f64 = n
        .docker(&[
            "node",
            "inspect",
            "--format",
            "{{.Description.Resources.NanoCPUs}}",
            "self",
        ])
        .ok()
        .stdout_trimmed()
        .parse::<f64>()
        .unwrap()
        / 1e9;
    let all = format!("{cpus}");
    let big = unique_name("big");
    n.docker(&[
        "service",
        "create",
        "-d",
        "--name",
        &big,
        "--reserve-cpu",
        &all,
        "busybox",
        "sleep",
        "300",
    ])
    .ok();
    wait_until(T, POLL, "big runs", || replicas(&n, &big) == "1/1");
    let late = unique_name("late");
    n.docker(&[
        "service",
        "create",
        "-d",
        "--name",
        &late,
        "--reserve-cpu",
        "0.5",
        "busybox",
        "sleep",
        "300",
    ])
    .ok();
    let why = wait_for(T, POLL, "insufficient resources", || {
        pending_reason(&n, &late)
    });
    assert!(
        why.ends_with("|no suitable node (insufficient resources on 1 node)"),
        "{why}"
    );
    assert_eq!(replicas(&n, &late), "0/1");
    n.docker(&["service", "rm", &big]).ok();
    wait_until(T, POLL, "placed once room appears", || {
        replicas(&n, &late) == "1/1"
    });
}

#[test]
fn placement_preference_spreads_over_zones() {
    let m = daemon(Executor::Process, &unique_name("pm"));
    m.docker(&["swarm", "init"]).ok();
    let _lm = Leave(&m);
    let token = m
        .docker(&["swarm", "join-token", "-q", "worker"])
        .ok()
        .stdout_trimmed()
        .to_string();
    let addr = format!("{}:2377", m.node_addr());
    let w1 = daemon(Executor::Process, &unique_name("pw"));
    w1.docker(&["swarm", "join", "--token", &token, &addr]).ok();
    let _l1 = Leave(&w1);
    let w2 = daemon(Executor::Process, &unique_name("pw"));
    w2.docker(&["swarm", "join", "--token", &token, &addr]).ok();
    let _l2 = Leave(&w2);
    wait_ready_nodes(&m, 3);
    // Zone a: the manager and w1; zone b: w2 alone.
    let id = |d: &Daemon| {
        d.docker(&["info", "--format", "{{.Swarm.NodeID}}"])
            .ok()
            .stdout_trimmed()
            .to_string()
    };
    let (mid, w1id, w2id) = (id(&m), id(&w1), id(&w2));
    for (node, zone) in [(&mid, "a"), (&w1id, "a"), (&w2id, "b")] {
        m.docker(&[
            "node",
            "update",
            "--label-add",
            &format!("zone={zone}"),
            node,
        ])
        .ok();
    }
    let name = unique_name("spread");
    m.docker(&[
        "service",
        "create",
        "-d",
        "--name",
        &name,
        "--replicas",
        "6",
        "--placement-pref",
        "spread=node.labels.zone",
        "busybox",
        "sleep",
        "300",
    ])
    .ok();
    wait_until(T, POLL, "6/6", || replicas(&m, &name) == "6/6");
    let on = |node: &str| {
        m.docker(&[
            "service",
            "ps",
            "-q",
            "--filter",
            "desired-state=running",
            "--filter",
            &format!("node={node}"),
            &name,
        ])
        .ok()
        .lines()
        .len()
    };
    // Half the tasks per zone: zone b's single node takes three (plain spread over the
    // nodes would give each node two).
    assert_eq!(on(&w2id), 3);
    assert_eq!(on(&mid) + on(&w1id), 3);
    assert_eq!(
        service_field(
            &m,
            &name,
            "{{json .Spec.TaskTemplate.Placement.Preferences}}"
        ),
        r#"[{"Spread":{"SpreadDescriptor":"node.labels.zone"}}]"#
    );
}

#[test]
fn a_label_change_that_breaks_a_constraint_moves_the_task() {
    let n = process_node("cnode");
    n.docker(&["swarm", "init"]).ok();
    let _l = Leave(&n);
    n.docker(&["node", "update", "--label-add", "tier=db", "self"])
        .ok();
    let name = unique_name("ce");
    n.docker(&[
        "service",
        "create",
        "-d",
        "--name",
        &name,
        "--constraint",
        "node.labels.tier==db",
        "busybox",
        "sleep",
        "300",
    ])
    .ok();
    wait_until(T, POLL, "1/1", || replicas(&n, &name) == "1/1");
    let first = running_tasks(&n, &name);
    n.docker(&["node", "update", "--label-rm", "tier", "self"])
        .ok();
    let why = wait_for(T, POLL, "task moved off and pending", || {
        pending_reason(&n, &name)
    });
    assert!(
        why.ends_with("|no suitable node (scheduling constraints not satisfied on 1 node)"),
        "{why}"
    );
    assert_eq!(
        task_field(&n, &first[0], "{{.DesiredState}}"),
        "shutdown",
        "the task on the node that lost the label is shut down"
    );
}
