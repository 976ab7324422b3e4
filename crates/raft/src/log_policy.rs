//! When to snapshot and how much log to keep, following the swarm spec while the node runs
//! (swarmkit's `SnapshotInterval`, `LogEntriesForSlowFollowers`).
//!
//! openraft reads its snapshot policy and log retention from a `Config` fixed when Raft
//! starts, but `docker swarm update --snapshot-interval` changes them on a running swarm.
//! So openraft is told never to snapshot or purge by itself, and [`spawn_log_policy`]
//! drives both from the metrics: a snapshot once `interval` entries were applied since the
//! last one, then a purge of the log up to `keep_logs` entries behind it (swarmkit keeps
//! that many so a slightly lagging follower catches up from the log, not a snapshot).

use openraft::async_runtime::WatchReceiver;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::node::Raft;

/// The spec's log settings. `interval` 0 means never snapshot by count (swarmkit's
/// `SnapshotInterval > 0 &&` guard).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogPolicy {
    /// Snapshot after this many entries applied since the last snapshot.
    pub interval: u64,
    /// Entries kept in the log behind the latest snapshot.
    pub keep_logs: u64,
    /// Snapshots kept on disk before the current one (swarmkit's `KeepOldSnapshots`).
    pub keep_old_snapshots: u64,
}

/// What to do now, given the applied index, the latest snapshot's index and the purged
/// index (each 0 when none), and what is already asked of openraft.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Step {
    pub snapshot: bool,
    /// Purge the log up to and including this index.
    pub purge_upto: Option<u64>,
}

/// Pure decision: a snapshot when `interval` entries were applied since the last one (and
/// none is being built, `requested` being the snapshot index seen when one was asked for);
/// a purge up to `keep_logs` behind the snapshot when the log reaches further back and no
/// purge that far is pending (`purge_requested`).
pub fn plan(
    p: LogPolicy,
    applied: u64,
    snapshot: u64,
    purged: u64,
    requested: Option<u64>,
    purge_requested: u64,
) -> Step {
    let snapshot_due = p.interval > 0
        && applied.saturating_sub(snapshot) >= p.interval
        && requested != Some(snapshot);
    let upto = snapshot.saturating_sub(p.keep_logs);
    let purge_upto = (upto > purged && upto > purge_requested).then_some(upto);
    Step {
        snapshot: snapshot_due,
        purge_upto,
    }
}

/// Runs [`plan`] on every metrics or policy change until openraft's metrics close.
pub(crate) fn spawn_log_policy(
    raft: &Raft,
    node_id: u64,
    mut policy: watch::Receiver<LogPolicy>,
) -> JoinHandle<()> {
    let raft = raft.clone();
    let mut metrics = raft.metrics();
    tokio::spawn(async move {
        let mut requested: Option<u64> = None;
        let mut purge_requested = 0u64;
        loop {
            let (applied, snapshot, purged) = {
                let m = metrics.borrow_watched();
                let idx = |l: Option<&crate::types::LogId>| l.map_or(0, |l| l.index);
                (
                    idx(m.last_applied.as_ref()),
                    idx(m.snapshot.as_ref()),
                    idx(m.purged.as_ref()),
                )
            };
            let p = *policy.borrow();
            let step = plan(p, applied, snapshot, purged, requested, purge_requested);
            if step.snapshot {
                tracing::debug!(
                    node_id,
                    applied,
                    snapshot,
                    interval = p.interval,
                    "raft: snapshot due"
                );
                if raft.trigger().snapshot().await.is_err() {
                    break;
                }
                requested = Some(snapshot);
            }
            if let Some(upto) = step.purge_upto {
                if raft.trigger().purge_log(upto).await.is_err() {
                    break;
                }
                purge_requested = upto;
            }
            tokio::select! {
                r = metrics.changed() => if r.is_err() { break },
                r = policy.changed() => if r.is_err() {
                    // The node dropped its sender: keep the last policy.
                    if metrics.changed().await.is_err() { break }
                },
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: LogPolicy = LogPolicy {
        interval: 100,
        keep_logs: 10,
        keep_old_snapshots: 0,
    };

    #[test]
    fn snapshots_follow_the_interval() {
        assert!(!plan(P, 99, 0, 0, None, 0).snapshot);
        assert!(plan(P, 100, 0, 0, None, 0).snapshot);
        // Asked already, not built yet: not again.
        assert!(!plan(P, 150, 0, 0, Some(0), 0).snapshot);
        // Built at 100: the next at 200.
        assert!(!plan(P, 199, 100, 0, Some(0), 0).snapshot);
        assert!(plan(P, 200, 100, 0, Some(0), 0).snapshot);
        // A smaller interval takes effect at once.
        let small = LogPolicy { interval: 5, ..P };
        assert!(plan(small, 105, 100, 0, Some(0), 0).snapshot);
        // 0: never by count.
        let never = LogPolicy { interval: 0, ..P };
        assert!(!plan(never, 1_000_000, 0, 0, None, 0).snapshot);
    }

    #[test]
    fn the_log_keeps_entries_for_slow_followers() {
        assert_eq!(plan(P, 100, 100, 0, None, 0).purge_upto, Some(90));
        assert_eq!(plan(P, 100, 100, 90, None, 90).purge_upto, None);
        assert_eq!(plan(P, 100, 100, 0, None, 90).purge_upto, None, "pending");
        assert_eq!(
            plan(P, 5, 5, 0, None, 0).purge_upto,
            None,
            "nothing to purge"
        );
        let keep_more = LogPolicy { keep_logs: 50, ..P };
        assert_eq!(
            plan(keep_more, 200, 200, 90, None, 90).purge_upto,
            Some(150)
        );
    }
}
