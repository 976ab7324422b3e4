//! The allocator: moves new tasks to PENDING once their service's resources are
//! allocated. Published ports are allocated with the service spec by the control API
//! (so conflicts are refused at create time, as Docker does); the task gets a copy.

use swarmd_store::{ProposeError, Store};
use swarmd_types::models::TaskState;
use swarmd_types::timefmt;

/// One pass: every NEW task that is still wanted becomes PENDING.
pub async fn allocate(store: &Store) -> Result<usize, ProposeError> {
    let now = timefmt::now();
    store
        .update(|tables, tx| {
            let mut n = 0;
            for t in tables.tasks.values() {
                // Job tasks are desired COMPLETE; anything past that is being stopped.
                if t.status.state != TaskState::NEW || t.desired_state > TaskState::COMPLETE {
                    continue;
                }
                let Some(service) = tables.services.get(&t.service_id) else {
                    continue;
                };
                let mut t = t.clone();
                t.endpoint_ports = service.endpoint.ports.clone();
                t.status.state = TaskState::PENDING;
                t.status.message = "pending task scheduling".into();
                t.status.timestamp = now.clone();
                tx.update(t);
                n += 1;
            }
            Ok::<_, ProposeError>(n)
        })
        .await
}
