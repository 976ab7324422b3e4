//! A manager whose Raft stopped on a storage error comes back by itself.
//!
//! openraft ends its core on any storage failure (a full disk, an I/O error): the manager
//! then neither votes nor replicates nor serves reads, and nothing in openraft brings it
//! back. Found by `scripts/chaos` (a disk filled for a few seconds took a manager out for
//! good). The watcher below sees the core stop and restarts this node's membership from
//! its data root, as a restart of swarmd would, retrying with backoff while the storage
//! still fails (the disk still full). The tasks keep running and are re-adopted.

use std::sync::{Arc, Weak};
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use openraft::errors::Fatal;
use swarmd_raft::RaftNode;
use tokio_util::sync::CancellationToken;

use super::assembly::RaftStart;
use super::{NodePhase, SwarmNode};

/// First wait before a new attempt; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Whether a stopped Raft core is one to restart (not a shutdown we asked for).
fn needs_restart<C: openraft::RaftTypeConfig>(state: &Result<(), Fatal<C>>) -> bool {
    matches!(state, Err(Fatal::StorageError(_) | Fatal::Panicked))
}

/// Watches this membership's Raft core; when it stops on its own, restarts the membership.
/// Ends with the membership.
pub(super) async fn watch_raft(
    node: Weak<SwarmNode>,
    raft: Arc<RaftNode>,
    cancel: CancellationToken,
) {
    let mut metrics = raft.raft().metrics();
    loop {
        let stopped = needs_restart(&metrics.borrow_watched().running_state);
        if stopped {
            let Some(node) = node.upgrade() else { return };
            tracing::error!("raft stopped on a storage error; restarting this manager");
            // Detached: the restart stops this membership, and with it this watcher.
            tokio::spawn(async move { node.recover().await });
            return;
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = metrics.changed() => if r.is_err() { return },
        }
    }
}

impl SwarmNode {
    /// Boxed: it restarts the membership whose watcher calls it, a cycle an `async fn`
    /// cannot express.
    fn recover(self: Arc<Self>) -> futures::future::BoxFuture<'static, ()> {
        Box::pin(async move { self.recover_now().await })
    }

    async fn recover_now(&self) {
        let mut backoff = FIRST_BACKOFF;
        let mut stopped = None;
        loop {
            {
                let _g = self.lifecycle.lock().await;
                let Some(active) = self.active() else { return };
                // Only the membership whose Raft stopped (a leave or role change since
                // ends the recovery).
                if stopped.is_none() {
                    self.stop_active(&active).await;
                    stopped = Some(active.clone());
                } else if !stopped.as_ref().is_some_and(|s| Arc::ptr_eq(s, &active)) {
                    return;
                }
                match self
                    .activate(active.state.clone(), RaftStart::Existing)
                    .await
                {
                    Ok(a) => {
                        self.set_phase(NodePhase::Active(a));
                        tracing::info!("manager restarted after its raft stopped");
                        return;
                    }
                    Err(e) => tracing::warn!(
                        error = %format!("{e:#}"),
                        retry_in = ?backoff,
                        "manager restart failed"
                    ),
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmd_raft::TypeConfig;

    #[test]
    fn only_a_core_that_stopped_by_itself_is_restarted() {
        let storage: Result<(), Fatal<TypeConfig>> =
            Err(Fatal::StorageError(openraft::StorageError::from_io_error(
                openraft::ErrorSubject::Logs,
                openraft::ErrorVerb::Write,
                std::io::Error::other("No space left on device"),
            )));
        assert!(needs_restart(&storage));
        assert!(needs_restart::<TypeConfig>(&Err(Fatal::Panicked)));
        assert!(
            !needs_restart::<TypeConfig>(&Err(Fatal::Stopped)),
            "our own shutdown"
        );
        assert!(!needs_restart::<TypeConfig>(&Ok(())));
    }
}
