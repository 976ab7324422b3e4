//! The leader's side of the tunnels: the Engines service over this manager's hub, served on
//! the cluster port and called in process by this node's own agent and dialer.

use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use swarmd_engine_api::dial::{EngineStream, LEADER_POOL, NODE_SCHEME};
use swarmd_manager::tunnels::{ACCEPT_WITHIN, TunnelHub};
use swarmd_raft::RaftNode;
use swarmd_rpc::{EnginesService, TunnelError, Upstream};

/// What serves the pool API on a stream (the classic API app), as the lead registers it.
pub type PoolApiHandler = Arc<dyn Fn(EngineStream) + Send + Sync>;

/// Buffer of the in-process pipe between a pool API stream and its handler.
const POOL_PIPE_BYTES: usize = 64 * 1024;

/// The node's registered pool API handler, shared with its managers' services.
#[derive(Clone, Default)]
pub(crate) struct PoolApiSlot(Arc<RwLock<Option<PoolApiHandler>>>);

impl PoolApiSlot {
    pub(crate) fn set(&self, handler: Option<PoolApiHandler>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = handler;
    }

    fn get(&self) -> Option<PoolApiHandler> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A tunnel's target, as a caller names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target<'a> {
    /// That node's engine.
    Node(&'a str),
    /// The leader's pool API.
    PoolApi,
}

/// Reads `node://<ID>` or `pool://leader`. Pure.
pub(crate) fn parse_target(target: &str) -> Result<Target<'_>, TunnelError> {
    match target.strip_prefix(NODE_SCHEME) {
        Some(id) if !id.is_empty() && !id.contains('/') => Ok(Target::Node(id)),
        None if target == LEADER_POOL => Ok(Target::PoolApi),
        _ => Err(TunnelError::Invalid(format!(
            "unknown tunnel target {target:?}: expected {NODE_SCHEME}<node ID> or {LEADER_POOL}"
        ))),
    }
}

/// The Engines service of one manager: it answers while this manager leads.
pub(crate) struct LeaderEngines {
    hub: TunnelHub<Upstream>,
    raft: Arc<RaftNode>,
    pool: PoolApiSlot,
}

impl LeaderEngines {
    pub(crate) fn new(raft: Arc<RaftNode>, pool: PoolApiSlot) -> Self {
        LeaderEngines {
            hub: TunnelHub::new(),
            raft,
            pool,
        }
    }

    /// Refuses with where the leader is, as forwarded proposals are.
    fn check_leading(&self) -> Result<(), TunnelError> {
        if self.raft.is_leader() {
            return Ok(());
        }
        let leader_addr = self
            .raft
            .leader()
            .filter(|(id, _)| *id != self.raft.node_id())
            .map(|(_, addr)| addr);
        Err(TunnelError::NotLeader { leader_addr })
    }
}

#[async_trait]
impl EnginesService for LeaderEngines {
    /// Ends when this manager stops leading, so agents move to the new leader.
    async fn offers(&self, node_id: &str) -> Result<BoxStream<'static, String>, TunnelError> {
        self.check_leading()?;
        let mut leading = self.raft.leader_watch();
        let lost = async move {
            let _ = leading.wait_for(|l| !*l).await;
        };
        Ok(self.hub.subscribe(node_id).take_until(lost).boxed())
    }

    async fn accept(
        &self,
        node_id: &str,
        tunnel_id: &str,
        engine: Result<Upstream, String>,
    ) -> Result<(), TunnelError> {
        self.hub
            .accept(node_id, tunnel_id, engine)
            .map_err(|e| TunnelError::Refused(e.to_string()))
    }

    async fn open(&self, target: &str) -> Result<Upstream, TunnelError> {
        let target = parse_target(target)?;
        self.check_leading()?;
        match target {
            Target::Node(id) => self
                .hub
                .open(id, ACCEPT_WITHIN)
                .await
                .map_err(|e| TunnelError::Unavailable(e.to_string())),
            Target::PoolApi => {
                let handler = self.pool.get().ok_or_else(|| {
                    TunnelError::Unavailable(
                        "the swarm's leader serves no pool API (it runs without --pool-host)"
                            .into(),
                    )
                })?;
                let (near, far) = tokio::io::duplex(POOL_PIPE_BYTES);
                handler(Box::new(far));
                Ok(Box::new(near))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_a_node_or_the_pool_api() {
        assert_eq!(parse_target("node://abc"), Ok(Target::Node("abc")));
        assert_eq!(parse_target("pool://leader"), Ok(Target::PoolApi));
        for bad in [
            "node://",
            "node://a/b",
            "pool://other",
            "tcp://1.2.3.4:2375",
            "",
        ] {
            assert!(
                matches!(parse_target(bad), Err(TunnelError::Invalid(_))),
                "{bad}"
            );
        }
    }
}
