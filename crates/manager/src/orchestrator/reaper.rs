//! The task reaper: deletes task objects nobody needs any more.
//!
//! Two rules, as swarmkit's taskreaper: a task with desired state REMOVE is deleted once
//! its node has shut it down (or it never reached a node, or its node is gone); and each
//! slot keeps at most `TaskHistoryRetentionLimit` tasks, the oldest finished ones going
//! first.

use std::collections::BTreeMap;

use swarmd_store::Tables;
use swarmd_types::models::TaskState;
use swarmd_types::{NodeState, Task};

/// Docker's default task history retention limit.
pub const DEFAULT_HISTORY_LIMIT: i64 = 5;

/// IDs of tasks to delete.
pub fn reap(tables: &Tables) -> Vec<String> {
    let limit = tables
        .cluster()
        .and_then(|c| c.spec.orchestration.as_ref())
        .and_then(|o| o.task_history_retention_limit)
        .unwrap_or(DEFAULT_HISTORY_LIMIT);
    let mut out = Vec::new();
    let mut slots: BTreeMap<(&str, u64, &str), Vec<&Task>> = BTreeMap::new();
    for t in tables.tasks.values() {
        if t.desired_state >= TaskState::REMOVE {
            let node_gone = t.node_id.is_empty()
                || tables
                    .nodes
                    .get(&t.node_id)
                    .is_none_or(|n| n.status.state == NodeState::Down);
            if t.status.state > TaskState::RUNNING
                || t.status.state < TaskState::ASSIGNED
                || node_gone
            {
                out.push(t.id.clone());
            }
            continue;
        }
        let node_key = if t.slot == 0 { t.node_id.as_str() } else { "" };
        slots
            .entry((t.service_id.as_str(), t.slot, node_key))
            .or_default()
            .push(t);
    }
    if limit >= 0 {
        for tasks in slots.values_mut() {
            let limit = limit.max(1) as usize;
            if tasks.len() <= limit {
                continue;
            }
            let mut finished: Vec<&Task> = tasks
                .iter()
                .copied()
                .filter(|t| {
                    t.desired_state > TaskState::RUNNING && t.status.state > TaskState::RUNNING
                })
                .collect();
            finished.sort_by(|a, b| {
                (&a.status.timestamp, &a.meta.created_at)
                    .cmp(&(&b.status.timestamp, &b.meta.created_at))
            });
            let excess = tasks.len() - limit;
            out.extend(finished.into_iter().take(excess).map(|t| t.id.clone()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmd_types::{Node, TaskStatus};

    fn task(id: &str, slot: u64, state: TaskState, desired: TaskState, at: &str) -> Task {
        Task {
            id: id.into(),
            service_id: "s".into(),
            slot,
            node_id: "n".into(),
            desired_state: desired,
            status: TaskStatus {
                state,
                timestamp: at.into(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn tables(tasks: Vec<Task>) -> Tables {
        let mut t = Tables::default();
        let mut n = Node {
            id: "n".into(),
            ..Default::default()
        };
        n.status.state = NodeState::Ready;
        t.nodes.insert("n".into(), n);
        for k in tasks {
            t.tasks.insert(k.id.clone(), k);
        }
        t
    }

    #[test]
    fn keeps_five_per_slot_deleting_oldest_finished() {
        let mut tasks: Vec<Task> = (0..7)
            .map(|i| {
                task(
                    &format!("old{i}"),
                    1,
                    TaskState::FAILED,
                    TaskState::SHUTDOWN,
                    &format!("2026-01-01T00:00:0{i}Z"),
                )
            })
            .collect();
        tasks.push(task(
            "live",
            1,
            TaskState::RUNNING,
            TaskState::RUNNING,
            "2026-01-01T00:00:09Z",
        ));
        let mut got = reap(&tables(tasks));
        got.sort();
        assert_eq!(got, vec!["old0", "old1", "old2"]);
    }

    #[test]
    fn removes_tasks_marked_remove_once_shut_down() {
        let t = tables(vec![
            task("a", 2, TaskState::RUNNING, TaskState::REMOVE, ""),
            task("b", 3, TaskState::SHUTDOWN, TaskState::REMOVE, ""),
            task("c", 4, TaskState::PENDING, TaskState::REMOVE, ""),
            task("d", 5, TaskState::COMPLETE, TaskState::REMOVE, ""),
        ]);
        let mut got = reap(&t);
        got.sort();
        assert_eq!(got, vec!["b", "c", "d"]);
    }
}
