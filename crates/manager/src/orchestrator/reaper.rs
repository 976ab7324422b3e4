//! The task reaper: deletes task objects nobody needs any more.
//!
//! Two rules, as swarmkit's taskreaper: a task with desired state REMOVE is deleted once
//! its node has shut it down (or it never reached a node, or its node is gone); and each
//! slot keeps at most `TaskHistoryRetentionLimit` tasks, the oldest finished ones going
//! first.

use std::collections::{BTreeMap, HashSet};

use std::time::Duration;

use swarmd_store::{Event, EventAction, ReadTx, Tables};
use swarmd_types::models::TaskState;
use swarmd_types::{Kind, NodeState, Object, Task};

use crate::reconcile::{Plan, ReconcileError, Reconciler, Scope, Touch};

/// Docker's default task history retention limit.
pub const DEFAULT_HISTORY_LIMIT: i64 = 5;

/// What a store event means to the reaper (see [`crate::reconcile::Touch`]): a task that is
/// to stop or has ended may be deletable now, and a new task can push its slot over the
/// history limit; a task advancing towards RUNNING changes neither rule, nor does a removal.
/// A node (down or gone) or the cluster (the limit) can change any task's fate.
pub fn touch(e: &Event) -> Touch<'_> {
    match &e.object {
        Object::Task(_) if e.action == EventAction::Removed => Touch::None,
        Object::Task(t)
            if e.action == EventAction::Created
                || t.desired_state > TaskState::RUNNING
                || t.status.state > TaskState::RUNNING =>
        {
            Touch::Service(&t.service_id)
        }
        Object::Node(_) | Object::Cluster(_) => Touch::All,
        _ => Touch::None,
    }
}

/// The task reaper as a reconciler: deletes what [`reap_scope`] finds.
pub struct Reaper;

impl Reconciler for Reaper {
    type Then = ();
    const NAME: &'static str = "task-reaper";
    /// Deleting history is not urgent, and a pass over a service of 100,000 tasks takes a
    /// while: while `service create` commits its tasks in 50 entries, a pass per entry
    /// was the top of the leader's profile.
    const PACE: Duration = Duration::from_secs(1);

    fn touch(e: &Event) -> Touch<'_> {
        touch(e)
    }

    fn plan(&self, tables: &ReadTx<'_>, scope: &Scope) -> Result<Plan, ReconcileError> {
        let mut plan = Plan::idle();
        for id in reap_scope(tables, scope) {
            plan.writes.remove(Kind::Task, id);
        }
        Ok(plan)
    }
}

/// IDs of tasks to delete.
pub fn reap(tables: &Tables) -> Vec<String> {
    reap_scope(tables, &Scope::All)
}

/// IDs of tasks to delete among the tasks of the services in `scope`.
///
/// Two passes: the first finds the tasks to remove and the slots holding a finished task
/// (only those can be over the history limit, as only finished tasks are deleted); the
/// second groups just those slots' tasks. A service of a million running tasks then costs
/// one walk over them and no grouping: the grouping of every slot in an ordered map was
/// most of a busy leader's CPU while such a service was being created.
pub fn reap_scope(tables: &Tables, scope: &Scope) -> Vec<String> {
    let limit = tables
        .cluster()
        .and_then(|c| c.spec.orchestration.as_ref())
        .and_then(|o| o.task_history_retention_limit)
        .unwrap_or(DEFAULT_HISTORY_LIMIT);
    let tasks = || -> Box<dyn Iterator<Item = &Task>> {
        match scope {
            Scope::All => Box::new(tables.tasks.values()),
            Scope::Services(ids) => Box::new(ids.keys().flat_map(|id| tables.tasks_of_service(id))),
        }
    };
    let finished =
        |t: &Task| t.desired_state > TaskState::RUNNING && t.status.state > TaskState::RUNNING;
    fn slot_key(t: &Task) -> (&str, u64, &str) {
        let node_key = if t.slot == 0 { t.node_id.as_str() } else { "" };
        (t.service_id.as_str(), t.slot, node_key)
    }
    let mut out = Vec::new();
    let mut candidates: HashSet<(&str, u64, &str)> = HashSet::new();
    for t in tasks() {
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
        } else if limit >= 0 && finished(t) {
            candidates.insert(slot_key(t));
        }
    }
    if candidates.is_empty() {
        return out;
    }
    let mut slots: BTreeMap<(&str, u64, &str), Vec<&Task>> = BTreeMap::new();
    for t in tasks() {
        if t.desired_state >= TaskState::REMOVE {
            continue;
        }
        let key = slot_key(t);
        if candidates.contains(&key) {
            slots.entry(key).or_default().push(t);
        }
    }
    let limit = limit.max(1) as usize;
    for tasks in slots.values_mut() {
        if tasks.len() <= limit {
            continue;
        }
        let mut finished: Vec<&Task> = tasks.iter().copied().filter(|t| finished(t)).collect();
        finished.sort_by(|a, b| {
            (&a.status.timestamp, &a.meta.created_at)
                .cmp(&(&b.status.timestamp, &b.meta.created_at))
        });
        let excess = tasks.len() - limit;
        out.extend(finished.into_iter().take(excess).map(|t| t.id.clone()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmd_types::Node;

    fn task(id: &str, slot: u64, state: TaskState, desired: TaskState, at: &str) -> Task {
        crate::orchestrator::testing::slot_task((id, "s", "n"), slot, state, desired, at)
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
        t.reindex();
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
    fn only_stopping_ended_or_new_tasks_touch_the_reaper() {
        use EventAction::*;
        let ev = |action, t: Task| Event {
            action,
            object: t.into(),
        };
        let running = task("a", 1, TaskState::RUNNING, TaskState::RUNNING, "");
        assert_eq!(touch(&ev(Updated, running.clone())), Touch::None);
        assert_eq!(touch(&ev(Removed, running.clone())), Touch::None);
        assert_eq!(touch(&ev(Created, running)), Touch::Service("s"));
        let stopping = task("a", 1, TaskState::RUNNING, TaskState::SHUTDOWN, "");
        assert_eq!(touch(&ev(Updated, stopping)), Touch::Service("s"));
        let failed = task("a", 1, TaskState::FAILED, TaskState::RUNNING, "");
        assert_eq!(touch(&ev(Updated, failed)), Touch::Service("s"));
        let node = Event {
            action: Updated,
            object: Node::default().into(),
        };
        assert_eq!(touch(&node), Touch::All);
    }

    #[test]
    fn a_scoped_pass_reaps_only_the_services_in_scope() {
        let mut other = task("o", 9, TaskState::SHUTDOWN, TaskState::REMOVE, "");
        other.service_id = "other".into();
        let t = tables(vec![
            task("b", 3, TaskState::SHUTDOWN, TaskState::REMOVE, ""),
            other,
        ]);
        let scope = Scope::Services([("s".to_string(), crate::reconcile::Depth::Full)].into());
        assert_eq!(reap_scope(&t, &scope), vec!["b"]);
        let mut all = reap(&t);
        all.sort();
        assert_eq!(all, vec!["b", "o"]);
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
