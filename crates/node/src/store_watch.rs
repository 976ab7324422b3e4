//! The loop of the node's own followers of the replicated state (its key sealing, its Raft
//! log policy): unlike the manager's reconcilers they run on every manager, not only the
//! leader, and have nothing to retry or resync.

use std::future::Future;

use swarmd_store::Store;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

/// Runs `pass` now and again after every change to `store` (a lagged watch counts as
/// one), until `cancel` or the store closes. Level-triggered: a pass reads the current
/// state, never the event.
pub(crate) async fn on_every_change<F, Fut>(store: &Store, cancel: &CancellationToken, mut pass: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut events = store.memory().watch();
    loop {
        pass().await;
        tokio::select! {
            _ = cancel.cancelled() => return,
            ev = events.recv() => match ev {
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            },
        }
    }
}
