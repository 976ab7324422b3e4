//! The scheduler's loop body: decide on a snapshot, commit the decisions.

use swarmd_store::{MAX_ACTIONS_PER_ENTRY, ProposeError, Store};
use swarmd_types::models::TaskState;
use swarmd_types::timefmt;

use super::{Decision, schedule_capped};

/// Most task writes one scheduler pass decides: a few Raft entries' worth, committed
/// several in flight. A pass holds the store's read lock while it decides, so capping it
/// keeps apply (agents' status reports, sessions) from waiting behind 100,000 placements;
/// the PENDING index makes the next pass start where this one stopped without a scan.
pub const MAX_WRITES_PER_PASS: usize = 4 * MAX_ACTIONS_PER_ENTRY;

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pass {
    /// Tasks assigned to a node.
    pub assigned: usize,
    /// More tasks are waiting (the pass was capped) or an entry was rejected: run again.
    pub again: bool,
}

/// One pass.
pub async fn run_scheduler(store: &Store) -> Result<Pass, ProposeError> {
    run_scheduler_capped(store, MAX_WRITES_PER_PASS).await
}

/// One pass deciding at most `max_writes` task writes.
pub async fn run_scheduler_capped(store: &Store, max_writes: usize) -> Result<Pass, ProposeError> {
    let now = timefmt::now();
    let ((assigned, capped), rejected) = store
        .update_chunked(|tables, tx| {
            let mut assigned = 0;
            // Write only when the explanation changes, so passes reach a fixpoint.
            let writes = |d: &Decision| match d {
                Decision::Assign { .. } => true,
                Decision::NoFit { task_id, reason } => tables
                    .tasks
                    .get(task_id)
                    .is_some_and(|t| t.status.err != *reason),
            };
            let (decisions, capped) = schedule_capped(tables, max_writes, writes);
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
                        tx.update(t);
                        assigned += 1;
                    }
                    Decision::NoFit { task_id, reason } => {
                        let Some(t) = tables.tasks.get(&task_id) else {
                            continue;
                        };
                        if t.status.err != reason {
                            let mut t = t.clone();
                            t.status.err = reason;
                            tx.update(t);
                        }
                    }
                }
            }
            Ok::<_, ProposeError>((assigned, capped))
        })
        .await?;
    Ok(Pass {
        assigned,
        again: capped || rejected > 0,
    })
}
