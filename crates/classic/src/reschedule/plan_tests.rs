use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::scheduler::extract::{CONSTRAINTS_LABEL, RESCHEDULE_LABEL};
use crate::scheduler::model::SWARM_ID_LABEL;

fn addr(port: u16) -> EngineAddr {
    EngineAddr::Tcp {
        host: "10.0.0.1".into(),
        port,
    }
}

fn engine(port: u16, state: EngineState, containers: Vec<Container>) -> EngineView {
    EngineView {
        addr: addr(port),
        state,
        node: Node {
            name: format!("node-{port}"),
            containers,
            ..Node::default()
        },
    }
}

/// A listed container with Swarm ID `sid`, the policy when `policy`, created at `created`.
fn c(id: &str, sid: &str, policy: bool, created: &str) -> Container {
    let mut labels = std::collections::HashMap::new();
    labels.insert(SWARM_ID_LABEL.to_owned(), sid.to_owned());
    if policy {
        labels.insert(
            RESCHEDULE_LABEL.to_owned(),
            r#"["on-node-failure"]"#.to_owned(),
        );
    }
    Container {
        id: id.into(),
        names: vec![format!("/{id}")],
        labels,
        state: "running".into(),
        inspect: Some(Arc::new(json!({ "Id": id, "Created": created }))),
        ..Default::default()
    }
}

/// T2 is later, though a plain string comparison says otherwise.
const T1: &str = "2026-12-07T10:00:00.5Z";
const T2: &str = "2026-12-07T10:00:00.51234Z";

fn ids(m: &[Move]) -> Vec<&str> {
    m.iter().map(|m| m.container.id.as_str()).collect()
}

#[test]
fn resched_moves_policy_containers_off_an_unhealthy_engine() {
    let mut pinned = c("pinned", "s3", true, T1);
    pinned
        .labels
        .insert(CONSTRAINTS_LABEL.into(), r#"["node==node-1"]"#.into());
    let mut soft = c("soft", "s4", true, T1);
    soft.labels
        .insert(CONSTRAINTS_LABEL.into(), r#"["node==~node-1"]"#.into());
    let lost = engine(
        1,
        EngineState::Unhealthy,
        vec![
            c("web", "s1", true, T1),
            c("plain", "s2", false, T1),
            pinned,
            soft,
        ],
    );
    let got = moves(&[lost, engine(2, EngineState::Healthy, vec![])]);
    assert_eq!(ids(&got), ["web", "soft"]);
    assert_eq!(got[0].from, addr(1));
    assert_eq!(got[0].from_name, "node-1");
}

#[test]
fn resched_healthy_and_pending_engines_keep_their_containers() {
    let engines = [
        engine(1, EngineState::Healthy, vec![c("a", "s1", true, T1)]),
        engine(2, EngineState::Pending, vec![c("b", "s2", true, T1)]),
    ];
    assert!(moves(&engines).is_empty());
}

#[test]
fn resched_a_container_already_living_elsewhere_does_not_move_again() {
    let mut pending = c("", "s1", true, T1);
    pending.inspect = None;
    let engines = [
        engine(1, EngineState::Unhealthy, vec![c("old", "s1", true, T1)]),
        engine(2, EngineState::Healthy, vec![pending]),
        engine(3, EngineState::Unhealthy, vec![c("x", "s2", true, T1)]),
        engine(4, EngineState::Unhealthy, vec![c("y", "s2", true, T1)]),
    ];
    // s1 is being created on engine 2; s2 is lost twice over and moves once.
    assert_eq!(ids(&moves(&engines)), ["x"]);
}

#[test]
fn resched_containers_without_swarm_id_stay() {
    let mut bare = c("bare", "", true, T1);
    bare.labels.remove(SWARM_ID_LABEL);
    assert!(moves(&[engine(1, EngineState::Unhealthy, vec![bare])]).is_empty());
}

#[test]
fn resched_the_older_copy_on_a_returning_engine_is_stale() {
    let engines = [
        engine(1, EngineState::Healthy, vec![c("old", "s1", true, T1)]),
        engine(2, EngineState::Healthy, vec![c("new", "s1", true, T2)]),
    ];
    assert_eq!(
        stale_copies(&engines),
        [Stale {
            on: addr(1),
            id: "old".into(),
            swarm_id: "s1".into(),
            kept_on: "node-2".into(),
        }]
    );
}

#[test]
fn resched_copies_on_lost_engines_or_without_policy_are_never_stale() {
    let engines = [
        engine(1, EngineState::Healthy, vec![c("old", "s1", true, T1)]),
        engine(2, EngineState::Unhealthy, vec![c("new", "s1", true, T2)]),
        engine(3, EngineState::Healthy, vec![c("p1", "s2", false, T1)]),
        engine(4, EngineState::Healthy, vec![c("p2", "s2", false, T2)]),
    ];
    assert!(stale_copies(&engines).is_empty());
}

/// A drained engine's policy containers move (not a pinned one, not one whose copy already
/// lives on an engine taking work); once the copy lives, the drained original is stale.
#[test]
fn resched_moves_policy_containers_off_a_drained_engine() {
    let mut pinned = c("pinned", "s3", true, T1);
    pinned
        .labels
        .insert(CONSTRAINTS_LABEL.into(), r#"["node==node-1"]"#.into());
    let mut drained = engine(
        1,
        EngineState::Healthy,
        vec![
            c("web", "s1", true, T1),
            c("plain", "s2", false, T1),
            pinned,
        ],
    );
    drained.node.drained = true;
    let active = engine(2, EngineState::Healthy, vec![]);
    let got = moves(&[drained.clone(), active.clone()]);
    assert_eq!(ids(&got), ["web"]);
    assert!(stale_copies(&[drained.clone(), active]).is_empty());

    // The copy runs on engine 2: nothing moves again, the original goes.
    let moved = engine(2, EngineState::Healthy, vec![c("web2", "s1", true, T2)]);
    assert!(moves(&[drained.clone(), moved.clone()]).is_empty());
    let stale = stale_copies(&[drained.clone(), moved]);
    assert_eq!(stale.len(), 1);
    assert_eq!(
        (stale[0].id.as_str(), stale[0].on.clone()),
        ("web", addr(1))
    );

    // Not drained: nothing moves.
    drained.node.drained = false;
    assert!(moves(&[drained, engine(2, EngineState::Healthy, vec![])]).is_empty());
}
