//! The scheduler's loop body: decide on a snapshot, commit the decisions in one entry.

use swarmd_store::{ProposeError, Store};
use swarmd_types::models::TaskState;
use swarmd_types::timefmt;

use super::{Decision, schedule};

/// One pass. Returns how many tasks were assigned.
pub async fn run_scheduler(store: &Store) -> Result<usize, ProposeError> {
    let now = timefmt::now();
    store
        .update(|tables, tx| {
            let mut assigned = 0;
            for d in schedule(tables) {
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
                        // Write only when the explanation changes, so passes reach a fixpoint.
                        if t.status.err != reason {
                            let mut t = t.clone();
                            t.status.err = reason;
                            tx.update(t);
                        }
                    }
                }
            }
            Ok::<_, ProposeError>(assigned)
        })
        .await
}
