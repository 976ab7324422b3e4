//! The loop shared by every leader-only reconciler.
//!
//! Level-triggered: events only mark the reconciler dirty; each pass reconciles the whole
//! current state. It also runs on a periodic resync, when a step asks to be woken (restart
//! delays), and after a lagged watch. A failed pass is retried after a short backoff.

use std::future::Future;
use std::time::Duration;

use swarmd_store::{Event, EventBatch, Store};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often a reconciler runs even without events.
pub const RESYNC_PERIOD: Duration = Duration::from_secs(30);
const RETRY_BACKOFF: Duration = Duration::from_millis(500);

/// Result of one pass: when to run again at the latest, or an error to retry on.
pub type StepResult = Result<Option<Duration>, String>;

/// Runs `step` whenever a relevant event arrives, when it asked to be woken, or on resync.
pub async fn run_loop<F, Fut>(
    name: &'static str,
    store: Store,
    cancel: CancellationToken,
    relevant: fn(&Event) -> bool,
    mut step: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = StepResult>,
{
    let mut rx = store.memory().watch();
    let mut dirty = true;
    let mut wake_at = Instant::now() + RESYNC_PERIOD;
    loop {
        if dirty {
            dirty = false;
            let next = match step().await {
                Ok(w) => w.unwrap_or(RESYNC_PERIOD).min(RESYNC_PERIOD),
                Err(e) => {
                    tracing::warn!(reconciler = name, error = %e, "reconcile pass failed; retrying");
                    RETRY_BACKOFF
                }
            };
            wake_at = Instant::now() + next;
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep_until(wake_at) => dirty = true,
            ev = rx.recv() => {
                match ev {
                    Ok(batch) => dirty |= is_relevant(&batch, relevant),
                    Err(RecvError::Lagged(_)) => dirty = true,
                    Err(RecvError::Closed) => return,
                }
                // Coalesce whatever else is already queued.
                loop {
                    match rx.try_recv() {
                        Ok(batch) => dirty |= is_relevant(&batch, relevant),
                        Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => dirty = true,
                        Err(_) => break,
                    }
                }
            }
        }
    }
}

fn is_relevant(batch: &EventBatch, relevant: fn(&Event) -> bool) -> bool {
    match batch {
        EventBatch::Reset { .. } => true,
        EventBatch::Commit { events, .. } => events.iter().any(relevant),
    }
}
