//! The orchestrator as a reconciler: [`super::reconcile_scope`]'s changes as store writes.

use std::collections::HashMap;

use swarmd_store::{Event, ReadTx, Tables, WriteTx};
use swarmd_types::timefmt;

use super::Change;
use crate::allocator;
use crate::reconcile::{Plan, ReconcileError, Reconciler, Scope, Touch};

/// The orchestrator reconciler: the services in its scope, and when to wake for restart
/// delays.
///
/// A plan larger than one Raft entry (100,000 new tasks for a `service create`) is
/// committed in entries of [`swarmd_store::MAX_ACTIONS_PER_ENTRY`]; the service and task
/// updates go before creations, so a slot never holds a new task while the shutdown of its
/// old one waits in a later entry.
pub struct Orchestrator;

impl Reconciler for Orchestrator {
    type Then = ();
    const NAME: &'static str = "orchestrator";

    fn touch(e: &Event) -> Touch<'_> {
        super::touch(e)
    }

    fn plan(&self, t: &ReadTx<'_>, scope: &Scope) -> Result<Plan, ReconcileError> {
        let now = timefmt::parse(&timefmt::now()).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let plan = super::reconcile_scope(t, scope, now);
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
    use swarmd_store::StoreAction;
    use swarmd_types::{Object, Service, Task};

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
}
