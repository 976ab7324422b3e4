//! The scheduler's reconciler: decide on a read view, write the decisions.

use std::time::Duration;

use swarmd_store::{Event, MAX_ACTIONS_PER_ENTRY, ReadTx};
use swarmd_types::models::TaskState;
use swarmd_types::{Object, timefmt};

use super::{Decision, schedule_capped};
use crate::reconcile::{Plan, ReconcileError, Reconciler, Scope, Touch};

/// Most task writes one scheduler pass decides: a few Raft entries' worth, committed
/// several in flight. A pass holds the store's read lock while it decides, so capping it
/// keeps apply (agents' status reports, sessions) from waiting behind 100,000 placements;
/// the PENDING index makes the next pass start where this one stopped without a scan.
pub const MAX_WRITES_PER_PASS: usize = 4 * MAX_ACTIONS_PER_ENTRY;

/// The scheduler reconciler, deciding at most [`MAX_WRITES_PER_PASS`] task writes a pass.
pub struct Scheduler;

impl Reconciler for Scheduler {
    type Then = ();
    const NAME: &'static str = "scheduler";

    fn touch(e: &Event) -> Touch<'_> {
        Touch::all_if(matches!(e.object, Object::Task(_) | Object::Node(_)))
    }

    /// Runs again at once when the pass was capped with tasks still waiting.
    fn plan(&self, tables: &ReadTx<'_>, _: &Scope) -> Result<Plan, ReconcileError> {
        let now = timefmt::now();
        // Write only when the explanation changes, so passes reach a fixpoint.
        let writes = |d: &Decision| match d {
            Decision::Assign { .. } => true,
            Decision::NoFit { task_id, reason } => tables
                .tasks
                .get(task_id)
                .is_some_and(|t| t.status.err != *reason),
        };
        let (decisions, capped) = schedule_capped(tables, MAX_WRITES_PER_PASS, writes);
        let mut plan = Plan::idle();
        if capped {
            plan.wake = Some(Duration::ZERO);
        }
        for d in decisions {
            match d {
                Decision::Assign { task_id, node_id } => {
                    let Some(t) = tables.tasks.get(&task_id) else {
                        continue;
                    };
                    let mut t = t.clone();
                    t.node_id = node_id;
                    t.status.state = TaskState::ASSIGNED;
                    t.status.message = "scheduler assigned task to node".into();
                    t.status.err.clear();
                    t.status.timestamp = now.clone();
                    plan.writes.update(t);
                }
                Decision::NoFit { task_id, reason } => {
                    let Some(t) = tables.tasks.get(&task_id) else {
                        continue;
                    };
                    if t.status.err != reason {
                        let mut t = t.clone();
                        t.status.err = reason;
                        plan.writes.update(t);
                    }
                }
            }
        }
        Ok(plan)
    }
}
