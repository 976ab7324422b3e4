//! The status reporter: batches task status updates into `update_task_status` calls.
//!
//! Updates are coalesced per task (the furthest state wins, so a quick
//! ACCEPTED..RUNNING sequence costs one entry), collected for a short window or up to a
//! batch size, and sent on the current session. Nothing is dropped on failure: pending
//! updates stay queued until a call succeeds, if need be on a later session.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use swarmd_types::TaskStatus;
use swarmd_types::dispatcher::{DispatchError, DispatcherApi, TaskStatusUpdate};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::runner::Backoff;

/// The session the reporter sends on.
#[derive(Clone)]
pub(crate) struct SessionCtx {
    pub id: String,
    pub dispatcher: Arc<dyn DispatcherApi>,
}

pub(crate) struct ReporterDeps {
    pub updates: mpsc::UnboundedReceiver<TaskStatusUpdate>,
    pub session: watch::Receiver<Option<SessionCtx>>,
    /// Tells the session loop that the dispatcher rejected its session.
    pub invalid: mpsc::UnboundedSender<String>,
    pub window: Duration,
    pub max_batch: usize,
    pub cancel: CancellationToken,
}

/// Queued updates, one per task.
#[derive(Default)]
struct Pending {
    by_task: HashMap<String, TaskStatus>,
}

impl Pending {
    fn merge(&mut self, u: TaskStatusUpdate) {
        match self.by_task.get(&u.task_id) {
            Some(s) if s.state > u.status.state => {}
            _ => {
                self.by_task.insert(u.task_id, u.status);
            }
        }
    }

    fn batch(&self, max: usize) -> Vec<TaskStatusUpdate> {
        self.by_task
            .iter()
            .take(max.max(1))
            .map(|(id, s)| TaskStatusUpdate {
                task_id: id.clone(),
                status: s.clone(),
            })
            .collect()
    }

    /// Drops the sent entries that were not superseded meanwhile.
    fn acked(&mut self, sent: &[TaskStatusUpdate]) {
        for u in sent {
            if self.by_task.get(&u.task_id) == Some(&u.status) {
                self.by_task.remove(&u.task_id);
            }
        }
    }
}

/// Runs until cancelled or until the worker is gone.
pub(crate) async fn run(deps: ReporterDeps) {
    let ReporterDeps {
        mut updates,
        mut session,
        invalid,
        window,
        max_batch,
        cancel,
    } = deps;
    let mut pending = Pending::default();
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    // The session the dispatcher last rejected: wait for a new one before sending again.
    let mut rejected: Option<String> = None;
    loop {
        if pending.by_task.is_empty() {
            tokio::select! {
                _ = cancel.cancelled() => return,
                u = updates.recv() => match u {
                    Some(u) => pending.merge(u),
                    None => return,
                },
            }
            let deadline = tokio::time::Instant::now() + window;
            while pending.by_task.len() < max_batch {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    u = updates.recv() => match u {
                        Some(u) => pending.merge(u),
                        None => break,
                    },
                    _ = tokio::time::sleep_until(deadline) => break,
                }
            }
        }
        let current = session.borrow_and_update().clone();
        let ctx = match current {
            Some(ctx) if rejected.as_deref() != Some(ctx.id.as_str()) => ctx,
            _ => {
                // No usable session: keep collecting until there is one.
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    r = session.changed() => if r.is_err() { return },
                    u = updates.recv() => match u {
                        Some(u) => pending.merge(u),
                        None => return,
                    },
                }
                continue;
            }
        };
        let batch = pending.batch(max_batch);
        let res = tokio::select! {
            _ = cancel.cancelled() => return,
            r = ctx.dispatcher.update_task_status(&ctx.id, batch.clone()) => r,
        };
        match res {
            Ok(()) => {
                tracing::debug!(updates = batch.len(), "task status reported");
                pending.acked(&batch);
                backoff.reset();
            }
            Err(e @ (DispatchError::SessionInvalid | DispatchError::NodeRemoved(_))) => {
                tracing::warn!(error = %e, updates = batch.len(), "status report rejected; waiting for a new session");
                rejected = Some(ctx.id.clone());
                let _ = invalid.send(ctx.id);
            }
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, updates = batch.len(), ?delay, "status report failed; will retry");
                let deadline = tokio::time::Instant::now() + delay;
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep_until(deadline) => break,
                        u = updates.recv() => match u {
                            Some(u) => pending.merge(u),
                            None => return,
                        },
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard_stubs::models::TaskState;

    fn upd(id: &str, state: TaskState) -> TaskStatusUpdate {
        TaskStatusUpdate {
            task_id: id.into(),
            status: TaskStatus {
                state,
                ..Default::default()
            },
        }
    }

    #[test]
    fn coalesces_to_the_furthest_state() {
        let mut p = Pending::default();
        p.merge(upd("a", TaskState::RUNNING));
        p.merge(upd("a", TaskState::STARTING));
        p.merge(upd("b", TaskState::ACCEPTED));
        assert_eq!(p.by_task["a"].state, TaskState::RUNNING);
        let batch = p.batch(10);
        assert_eq!(batch.len(), 2);
        // An update that arrives while the batch is in flight survives the ack.
        p.merge(upd("b", TaskState::PREPARING));
        p.acked(&batch);
        assert_eq!(p.by_task.len(), 1);
        assert_eq!(p.by_task["b"].state, TaskState::PREPARING);
    }

    /// A dispatcher that rejects the first session and records what it accepts.
    #[derive(Default)]
    struct Flaky {
        accepted: std::sync::Mutex<Vec<TaskStatusUpdate>>,
    }

    #[async_trait::async_trait]
    impl DispatcherApi for Flaky {
        async fn session(
            &self,
            _req: swarmd_types::dispatcher::SessionRequest,
        ) -> Result<
            swarmd_types::dispatcher::DispatchStream<swarmd_types::dispatcher::SessionMessage>,
            DispatchError,
        > {
            Err(DispatchError::Unavailable("unused".into()))
        }
        async fn heartbeat(&self, _s: &str) -> Result<Duration, DispatchError> {
            Ok(Duration::from_secs(5))
        }
        async fn assignments(
            &self,
            _s: &str,
        ) -> Result<
            swarmd_types::dispatcher::DispatchStream<swarmd_types::dispatcher::AssignmentsMessage>,
            DispatchError,
        > {
            Err(DispatchError::Unavailable("unused".into()))
        }
        async fn update_task_status(
            &self,
            session_id: &str,
            updates: Vec<TaskStatusUpdate>,
        ) -> Result<(), DispatchError> {
            if session_id == "old" {
                return Err(DispatchError::SessionInvalid);
            }
            self.accepted.lock().unwrap().extend(updates);
            Ok(())
        }
    }

    #[tokio::test]
    async fn rejected_updates_are_resent_on_the_next_session() {
        let flaky = Arc::new(Flaky::default());
        let (tx, rx) = mpsc::unbounded_channel();
        let (session_tx, session_rx) = watch::channel(Some(SessionCtx {
            id: "old".into(),
            dispatcher: flaky.clone(),
        }));
        let (invalid_tx, mut invalid_rx) = mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run(ReporterDeps {
            updates: rx,
            session: session_rx,
            invalid: invalid_tx,
            window: Duration::from_millis(10),
            max_batch: 10,
            cancel: cancel.clone(),
        }));
        tx.send(upd("a", TaskState::RUNNING)).unwrap();
        // The session loop is told, and opens a new session.
        assert_eq!(invalid_rx.recv().await.as_deref(), Some("old"));
        tx.send(upd("b", TaskState::ACCEPTED)).unwrap();
        session_tx.send_replace(Some(SessionCtx {
            id: "new".into(),
            dispatcher: flaky.clone(),
        }));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let mut got: Vec<String> = flaky
                .accepted
                .lock()
                .unwrap()
                .iter()
                .map(|u| u.task_id.clone())
                .collect();
            got.sort();
            if got == ["a", "b"] {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "got {got:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        cancel.cancel();
        task.await.unwrap();
    }
}
