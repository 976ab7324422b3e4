//! The orchestrator as a reconciler: [`super::reconcile_scope`]'s changes as store writes.

use std::collections::HashMap;
use std::sync::Mutex;

use swarmd_store::{Event, ReadTx, Tables, WriteTx};
use swarmd_types::models::TaskState;
use swarmd_types::timefmt;
use tokio::time::Instant;

use super::Change;
use crate::allocator;
use crate::reconcile::{Plan, ReconcileError, Reconciler, Scope, Touch};

/// The orchestrator reconciler: the services in its scope, and when to wake for restart
/// delays. It lives as long as this manager leads, and watches the stop-first replacements
/// waiting for their old task on the monotonic clock (see [`super::Watched`]).
///
/// A plan larger than one Raft entry (100,000 new tasks for a `service create`) is
/// committed in entries of [`swarmd_store::MAX_ACTIONS_PER_ENTRY`]; the service and task
/// updates go before creations, so a slot never holds a new task while the shutdown of its
/// old one waits in a later entry.
#[derive(Default)]
pub struct Orchestrator {
    /// Waiting replacement → when this leader first saw it wait.
    watching: Mutex<HashMap<String, Instant>>,
}

impl Reconciler for Orchestrator {
    type Then = ();
    const NAME: &'static str = "orchestrator";

    fn touch(e: &Event) -> Touch<'_> {
        super::touch(e)
    }

    fn plan(&self, t: &ReadTx<'_>, scope: &Scope) -> Result<Plan, ReconcileError> {
        let now = timefmt::parse(&timefmt::now()).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let mut watching = self.watching.lock().unwrap_or_else(|e| e.into_inner());
        watching.retain(|id, _| {
            t.tasks
                .get(id)
                .is_some_and(|k| k.desired_state == TaskState::READY)
        });
        let mono = Instant::now();
        let watched: super::Watched = watching
            .iter()
            .map(|(id, since)| (id.clone(), mono - *since))
            .collect();
        let plan = super::reconcile_scope(t, scope, now, &watched);
        for id in plan.waiting {
            watching.entry(id).or_insert(mono);
        }
        let mut writes = WriteTx::default();
        write_changes(t, plan.changes, &mut writes);
        Ok(Plan {
            writes,
            wake: plan.wake_after,
            then: (),
        })
    }
}

/// Writes `changes` in the order a split commit needs (services, then task updates, then
/// creations), one action per object: the last decision wins. A new task gets its log
/// driver and, when its service needs nothing allocated, PENDING at once.
fn write_changes(t: &Tables, changes: Vec<Change>, tx: &mut WriteTx) {
    // Indexed by position (no copy of the changes: a pass can hold 100,000 of them).
    let n = changes.len();
    let mut keep = vec![false; n];
    {
        let mut last: HashMap<(bool, &str), usize> = HashMap::with_capacity(n);
        for (i, c) in changes.iter().enumerate() {
            let key = match c {
                Change::Create(t) | Change::Update(t) => (false, t.id.as_str()),
                Change::UpdateService(s) => (true, s.id.as_str()),
            };
            last.insert(key, i);
        }
        for &i in last.values() {
            keep[i] = true;
        }
    }
    let class = |c: &Change| match c {
        Change::UpdateService(_) => 0u8,
        Change::Update(_) => 1,
        Change::Create(_) => 2,
    };
    let mut order: Vec<(u8, usize)> = (0..n)
        .filter(|&i| keep[i])
        .map(|i| (class(&changes[i]), i))
        .collect();
    order.sort_unstable();
    let mut changes: Vec<Option<Change>> = changes.into_iter().map(Some).collect();
    // Per service: whether its new tasks wait for the allocator.
    let mut allocating: HashMap<String, bool> = HashMap::new();
    for (_, i) in order {
        match changes[i].take() {
            Some(Change::Create(mut task)) => {
                let needs = match allocating.get(&task.service_id) {
                    Some(n) => *n,
                    None => {
                        let n = allocator::needs_allocation(t, &task.service_id);
                        allocating.insert(task.service_id.clone(), n);
                        n
                    }
                };
                allocator::pending_at_creation(&mut task, needs);
                task.log_driver = super::log_driver(&task, t);
                tx.create(task)
            }
            Some(Change::Update(t)) => tx.update(t),
            Some(Change::UpdateService(s)) => tx.update(s),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::testing;
    use swarmd_store::{MemoryStore, Snapshot, StoreAction};
    use swarmd_types::models::ServiceSpecUpdateConfigOrderEnum;
    use swarmd_types::{Node, NodeState, Object, Service, Task};

    fn task(id: &str, node: &str) -> Task {
        Task {
            id: id.into(),
            service_id: "plain".into(),
            node_id: node.into(),
            ..Default::default()
        }
    }

    /// Services first, then task updates, then creations; of two decisions about one
    /// object the later wins; a task of a service needing no address is PENDING at once.
    #[test]
    fn changes_are_written_once_per_object_services_first_creations_last() {
        let mut tables = Tables::default();
        let service = Service {
            id: "plain".into(),
            ..Default::default()
        };
        tables.services.insert("plain".into(), service.clone());
        let changes = vec![
            Change::Create(task("new", "first")),
            Change::Update(task("old", "n")),
            Change::Create(task("new", "second")),
            Change::UpdateService(Box::new(service)),
        ];
        let mut tx = WriteTx::default();
        write_changes(&tables, changes, &mut tx);
        let summary: Vec<String> = tx
            .into_actions()
            .iter()
            .map(|a| match a {
                StoreAction::Create(Object::Task(t)) => {
                    format!("create {} on {} {:?}", t.id, t.node_id, t.status.state)
                }
                StoreAction::Update(Object::Task(t)) => format!("update {}", t.id),
                StoreAction::Update(Object::Service(s)) => format!("service {}", s.id),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            summary,
            [
                "service plain",
                "update old",
                "create new on second PENDING"
            ]
        );
    }

    /// A stop-first replacement made long ago by the wall clock (another manager's, or one
    /// stepped since) still waits a minute of this leader's watch for the old task, and a
    /// new leader watches it a minute again.
    #[tokio::test(start_paused = true)]
    async fn a_stop_first_replacement_waits_a_minute_of_this_leaders_watch() {
        let svc = testing::forced_update(ServiceSpecUpdateConfigOrderEnum::STOP_FIRST);
        let mut old = testing::slot_task(
            ("old", "svc", "n1"),
            1,
            TaskState::RUNNING,
            TaskState::SHUTDOWN,
            "",
        );
        old.meta.created_at = "2026-01-01T00:00:00Z".into();
        let mut new = testing::slot_task(
            ("new", "svc", "n1"),
            1,
            TaskState::READY,
            TaskState::READY,
            "",
        );
        new.spec = svc.spec.task_template.clone().unwrap().into();
        new.spec_version = 2;
        new.meta.created_at = "2026-01-01T00:00:30Z".into();
        let mut node = Node {
            id: "n1".into(),
            ..Default::default()
        };
        node.status.state = NodeState::Ready;
        let mut tables = Tables::default();
        tables.nodes.insert("n1".into(), node);
        tables.services.insert("svc".into(), svc);
        for t in [old, new] {
            tables.tasks.insert(t.id.clone(), t);
        }
        let store = MemoryStore::new();
        store.restore(Snapshot { index: 1, tables });
        let starts = |o: &Orchestrator| {
            let plan = store.view(|t| o.plan(t, &Scope::All)).unwrap();
            plan.writes.into_actions().iter().any(|a| {
                matches!(a, StoreAction::Update(Object::Task(t))
                    if t.id == "new" && t.desired_state == TaskState::RUNNING)
            })
        };

        let leader = Orchestrator::default();
        assert!(!starts(&leader), "waits although made months ago");
        tokio::time::advance(std::time::Duration::from_secs(59)).await;
        assert!(!starts(&leader), "59 s watched");
        assert!(!starts(&Orchestrator::default()), "a new leader waits too");
        tokio::time::advance(std::time::Duration::from_secs(2)).await;
        assert!(starts(&leader), "61 s watched: the old task is given up on");
    }
}
