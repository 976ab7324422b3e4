//! What joins a manager's Raft node to the rest of it: the membership view the manager's
//! reconciler drives ([`RaftMembership`]) and the store's proposer, which writes through
//! the local Raft node when it leads and forwards to the leader otherwise.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use openraft::Instant as _;
use openraft::async_runtime::WatchReceiver as _;
use swarmd_manager::{RaftMember, RaftMembership};
use swarmd_raft::RaftNode;
use swarmd_rpc::{ClientOptions, RemoteProposer, RpcChannel};
use swarmd_store::{Batch, MemoryStore, ProposeError, Proposer, ReadBarrier};

/// A member the leader has not heard from for this long counts as unreachable.
const REACHABLE_WITHIN: Duration = Duration::from_secs(5);
/// How long a write on a follower looks for a leader before it is refused.
const LEADER_WAIT: Duration = Duration::from_secs(2);
/// How long a forwarded write waits for the local replica to apply it (read your writes).
const LOCAL_APPLY_WAIT: Duration = Duration::from_secs(5);

use swarmd_manager::control::NO_LEADER;

/// [`RaftMembership`] over this manager's [`RaftNode`].
pub struct Membership(pub Arc<RaftNode>);

#[async_trait::async_trait]
impl RaftMembership for Membership {
    fn members(&self) -> Vec<RaftMember> {
        self.0
            .members()
            .into_iter()
            .map(|(raft_id, addr, voter)| RaftMember {
                raft_id,
                addr,
                voter,
            })
            .collect()
    }

    fn leader(&self) -> Option<(u64, String)> {
        self.0.leader()
    }

    fn reachable(&self) -> Option<HashSet<u64>> {
        let m = self.0.metrics();
        let heartbeat = m.heartbeat.as_ref()?;
        let mut up: HashSet<u64> = heartbeat
            .iter()
            .filter(|(_, at)| at.as_ref().is_some_and(|t| t.elapsed() < REACHABLE_WITHIN))
            .map(|(id, _)| *id)
            .collect();
        up.insert(self.0.node_id());
        Some(up)
    }

    async fn add_voter(&self, raft_id: u64, addr: String) -> Result<(), String> {
        self.0
            .add_voter(raft_id, addr)
            .await
            .map_err(|e| e.to_string())
    }

    async fn remove(&self, raft_id: u64) -> Result<(), String> {
        self.0
            .remove_voter(raft_id)
            .await
            .map_err(|e| e.to_string())
    }
}

/// The store's proposer on a manager: local Raft when this node leads, otherwise the
/// leader's `Control.Propose` over mutual TLS. Every API handler and reconciler is thus
/// the same on every manager. It is the manager's [`ReadBarrier`] too, the same way: the
/// leader's read-index, asked locally or over `Control.ReadIndex`.
pub struct LeaderProposer {
    raft: Arc<RaftNode>,
    tls: Arc<rustls::ClientConfig>,
    remotes: Mutex<HashMap<String, RemoteProposer>>,
}

/// Where [`LeaderProposer::at_leader`] runs a call.
enum Leader<'a> {
    Here(&'a RaftNode),
    There(RemoteProposer),
}

type Call<'a, T> = BoxFuture<'a, Result<T, ProposeError>>;

/// How many times one call follows a change of leader (see [`OnLeaderChange::Retry`]).
const MAX_LEADER_MOVES: u32 = 3;

/// The end of a forwarded call.
enum Forwarded<T> {
    Answer(Result<T, ProposeError>),
    /// Another leader was elected before the one asked answered (a retryable call).
    LeaderMoved,
}

/// What a call forwarded to a leader becomes when this node sees another leader elected
/// before it answered. A leader that stops answering without closing its connections (a
/// paused process, a cut link) would otherwise hold the call until its deadline, long after
/// the others moved on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnLeaderChange {
    /// Ask the new leader (a read changes nothing: safe to repeat).
    Retry,
    /// The old leader may have appended the write and a new one may still commit it: the
    /// outcome is unknown, never retried.
    Unknown,
}

impl LeaderProposer {
    pub fn new(raft: Arc<RaftNode>, tls: Arc<rustls::ClientConfig>) -> Self {
        LeaderProposer {
            raft,
            tls,
            remotes: Mutex::new(HashMap::new()),
        }
    }

    fn remote(&self, addr: &str) -> Result<RemoteProposer, ProposeError> {
        let mut remotes = self.remotes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = remotes.get(addr) {
            return Ok(r.clone());
        }
        let channel = RpcChannel::new(addr, self.tls.clone(), manager_client_options())
            .map_err(|e| ProposeError::Unavailable(format!("leader at {addr}: {e}")))?;
        let r = RemoteProposer::new(channel);
        remotes.insert(addr.to_string(), r.clone());
        Ok(r)
    }

    /// Runs `call` on the leader: this node's Raft when it leads, else the leader's
    /// Control service (following one redirect: leadership may have moved while the request
    /// was on its way). While there is no leader (an election is under way, ~1 s) it keeps
    /// looking for up to [`LEADER_WAIT`]; without a quorum it fails after that bound, never
    /// hangs. Only refusals that certainly did nothing are retried.
    async fn at_leader<T>(
        &self,
        on_change: OnLeaderChange,
        call: impl Fn(Leader<'_>) -> Call<'_, T>,
    ) -> Result<T, ProposeError> {
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        let mut moves = 0;
        loop {
            let attempt = match self.raft.leader() {
                Some((id, addr)) if id != self.raft.node_id() && !addr.is_empty() => {
                    match self.forward(Some(id), addr, on_change, &call).await {
                        Forwarded::Answer(r) => r,
                        // A new leader is known: ask it, deadline or not (bounded: a few
                        // changes of leader at most).
                        Forwarded::LeaderMoved if moves < MAX_LEADER_MOVES => {
                            moves += 1;
                            continue;
                        }
                        Forwarded::LeaderMoved => Err(ProposeError::Unavailable(NO_LEADER.into())),
                    }
                }
                // This node leads (or believes so): its own Raft decides.
                Some(_) => {
                    return match call(Leader::Here(&self.raft)).await {
                        Err(ProposeError::NotLeader { .. }) => {
                            Err(ProposeError::Unavailable(NO_LEADER.into()))
                        }
                        r => r,
                    };
                }
                None => Err(ProposeError::Unavailable(NO_LEADER.into())),
            };
            match attempt {
                Err(ProposeError::Unavailable(_) | ProposeError::NotLeader { .. })
                    if tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(ProposeError::NotLeader { .. }) => {
                    return Err(ProposeError::Unavailable(NO_LEADER.into()));
                }
                r => return r,
            }
        }
    }

    async fn forward<T>(
        &self,
        mut id: Option<u64>,
        mut addr: String,
        on_change: OnLeaderChange,
        call: &impl Fn(Leader<'_>) -> Call<'_, T>,
    ) -> Forwarded<T> {
        for _ in 0..2 {
            let remote = match self.remote(&addr) {
                Ok(r) => r,
                Err(e) => return Forwarded::Answer(Err(e)),
            };
            let answer = tokio::select! {
                r = call(Leader::There(remote)) => r,
                () = self.leader_moved_from(id) => match on_change {
                    OnLeaderChange::Retry => return Forwarded::LeaderMoved,
                    OnLeaderChange::Unknown => Err(ProposeError::OutcomeUnknown(format!(
                        "leadership moved away from {addr} while it had the change"
                    ))),
                },
            };
            match answer {
                Err(ProposeError::NotLeader {
                    leader_addr: Some(next),
                }) if next != addr && !next.is_empty() => {
                    id = self
                        .raft
                        .members()
                        .into_iter()
                        .find(|m| m.1 == next)
                        .map(|m| m.0);
                    addr = next;
                }
                Err(ProposeError::NotLeader { .. }) => {
                    return Forwarded::Answer(Err(ProposeError::Unavailable(NO_LEADER.into())));
                }
                r => return Forwarded::Answer(r),
            }
        }
        Forwarded::Answer(Err(ProposeError::Unavailable(NO_LEADER.into())))
    }

    /// Resolves once this node's Raft names a leader other than `from` (never for `None`:
    /// a redirect to a manager not in the membership).
    async fn leader_moved_from(&self, from: Option<u64>) {
        let Some(from) = from else {
            return std::future::pending().await;
        };
        let mut metrics = self.raft.raft().metrics();
        loop {
            if matches!(metrics.borrow_watched().current_leader, Some(l) if l != from) {
                return;
            }
            if metrics.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }
}

#[async_trait::async_trait]
impl Proposer for LeaderProposer {
    /// Writes through the leader ([`LeaderProposer::at_leader`]); a forwarded write is
    /// waited for in the local replica (bounded), so a read right after it sees it.
    async fn propose(&self, batch: Batch) -> Result<u64, ProposeError> {
        let index = self
            .at_leader(OnLeaderChange::Unknown, |leader| {
                let batch = batch.clone();
                Box::pin(async move {
                    match leader {
                        Leader::Here(raft) => raft.propose(batch).await,
                        Leader::There(remote) => remote.propose(batch).await,
                    }
                })
            })
            .await?;
        if wait_applied(self.raft.store(), index, LOCAL_APPLY_WAIT)
            .await
            .is_err()
        {
            tracing::debug!(index, "local replica has not applied a forwarded write yet");
        }
        Ok(index)
    }
}

#[async_trait::async_trait]
impl ReadBarrier for LeaderProposer {
    /// The leader's read-index, then the local replica caught up to it: a read after this
    /// is linearizable. A replica that cannot catch up in time (cut off from the leader's
    /// log) fails the read rather than answer stale.
    async fn read_index(&self) -> Result<u64, ProposeError> {
        let index = self
            .at_leader(OnLeaderChange::Retry, |leader| {
                Box::pin(async move {
                    match leader {
                        Leader::Here(raft) => raft.ensure_linearizable().await,
                        Leader::There(remote) => remote.read_index().await,
                    }
                })
            })
            .await?;
        wait_applied(self.raft.store(), index, LOCAL_APPLY_WAIT)
            .await
            .map_err(|()| ProposeError::Unavailable(NO_LEADER.into()))?;
        Ok(index)
    }
}

/// Waits (bounded by `limit`) until `store` has applied `index`; `Err` if it has not by
/// then (or the store is gone). On the applied index, not on store events: a new leader's
/// read index is often its blank entry, which changes nothing and sends no event (waiting
/// on events held a follower's read until some write came or the bound ran out).
async fn wait_applied(store: &MemoryStore, index: u64, limit: Duration) -> Result<(), ()> {
    let mut applied = store.applied_watch();
    match tokio::time::timeout(limit, applied.wait_for(|a| *a >= index)).await {
        Ok(Ok(_)) => Ok(()),
        Err(_) | Ok(Err(_)) => Err(()),
    }
}

/// Managers' certificates name `swarm-manager`, whatever address they are dialled at.
pub fn manager_client_options() -> ClientOptions {
    ClientOptions {
        server_name: Some(swarmd_pki::manager_server_name()),
        ..ClientOptions::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An entry that changes nothing (a new leader's blank entry: `advance`, no event)
    /// still ends the wait for its index; an index never applied fails at the bound.
    #[tokio::test]
    async fn an_entry_without_events_ends_the_wait_for_it() {
        let store = Arc::new(MemoryStore::new());
        let s = store.clone();
        let waiter =
            tokio::spawn(async move { wait_applied(&s, 3, Duration::from_secs(30)).await });
        tokio::task::yield_now().await;
        store.advance(3);
        let waited = tokio::time::timeout(Duration::from_secs(5), waiter).await;
        assert_eq!(waited.expect("woken by the applied index").unwrap(), Ok(()));
        assert_eq!(
            wait_applied(&store, 9, Duration::from_millis(50)).await,
            Err(())
        );
    }
}
