//! The Raft part of the swarm spec applied to this manager's Raft node while it runs:
//! `docker swarm update --snapshot-interval N` (`--max-snapshots`,
//! `LogEntriesForSlowFollowers`) change when every manager snapshots, how many old
//! snapshots it keeps and how much log, without a restart.
//!
//! The ticks are validated by control (`swarm_options.rs`): swarmd's Raft timing is fixed.

use std::sync::Arc;

use swarmd_raft::{LogPolicy, RaftNode};
use swarmd_store::Store;
use swarmd_types::models::SwarmSpec;
use tokio_util::sync::CancellationToken;

use crate::store_watch::on_every_change;

/// The log policy a spec asks for; swarmkit's defaults where it says nothing (a 0
/// interval is kept: never snapshot by count, as swarmkit).
pub fn log_policy_of(spec: &SwarmSpec) -> LogPolicy {
    let raft = spec.raft.as_ref();
    LogPolicy {
        interval: raft
            .and_then(|r| r.snapshot_interval)
            .unwrap_or(swarmd_raft::DEFAULT_SNAPSHOT_EVERY),
        keep_logs: raft
            .and_then(|r| r.log_entries_for_slow_followers)
            .unwrap_or(swarmd_raft::DEFAULT_KEEP_LOGS_AFTER_SNAPSHOT),
        keep_old_snapshots: raft.and_then(|r| r.keep_old_snapshots).unwrap_or(0),
    }
}

/// Level-triggered: sets the Raft node's log policy from the replicated cluster spec on
/// every store change until `cancel` (every manager runs it: each snapshots its own log).
pub async fn follow_raft_spec(store: Store, raft: Arc<RaftNode>, cancel: CancellationToken) {
    on_every_change(&store, &cancel, || async {
        if let Some(policy) = store.view(|t| t.cluster().map(|c| log_policy_of(&c.spec))) {
            raft.set_log_policy(policy);
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmd_types::models::SwarmSpecRaft;

    #[test]
    fn the_spec_sets_the_policy_with_swarmkits_defaults() {
        assert_eq!(
            log_policy_of(&SwarmSpec::default()),
            LogPolicy {
                interval: 10_000,
                keep_logs: 500,
                keep_old_snapshots: 0,
            }
        );
        let spec = SwarmSpec {
            raft: Some(SwarmSpecRaft {
                snapshot_interval: Some(5000),
                log_entries_for_slow_followers: Some(42),
                keep_old_snapshots: Some(2),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            log_policy_of(&spec),
            LogPolicy {
                interval: 5000,
                keep_logs: 42,
                keep_old_snapshots: 2,
            }
        );
    }
}
