//! Streams to any swarm node's Docker Engine, and to the leader's pool API, through the
//! nodes' agents over the cluster's mutual TLS (issue 17): no engine port is opened.
//!
//! The Raft leader keeps a hub of its agents' standing subscriptions (`service`); every
//! agent offers its engine there (`offer`); a manager opens a tunnel on the leader, in
//! process when it leads, else with the leader's `Engines.Open` ([`ManagerTunnels`]); the
//! node hands the lead a [`Dialer`] over that ([`EngineDialer`]).

mod offer;
mod service;

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use swarmd_engine_api::dial::{Dialer, EngineStream};
use swarmd_raft::RaftNode;
use swarmd_rpc::{EnginesClient, EnginesService, RpcChannel, TunnelError, Upstream};

use crate::SwarmNode;
use crate::raft_glue::manager_client_options;

pub(crate) use offer::{EngineOffers, engine_endpoint};
pub use service::PoolApiHandler;
pub(crate) use service::{LeaderEngines, PoolApiSlot};

/// How long an open looks for a leader (an election takes about a second).
const LEADER_WAIT: Duration = Duration::from_secs(3);
/// Pause between looks.
const LEADER_PAUSE: Duration = Duration::from_millis(100);

/// A manager's way to open tunnels: through its own hub while it leads, else through the
/// leader's, following the leader as forwarded proposals do.
pub struct ManagerTunnels {
    leader: Arc<LeaderEngines>,
    raft: Arc<RaftNode>,
    tls: Arc<rustls::ClientConfig>,
    remotes: Mutex<HashMap<String, EnginesClient>>,
}

impl ManagerTunnels {
    pub(crate) fn new(
        leader: Arc<LeaderEngines>,
        raft: Arc<RaftNode>,
        tls: Arc<rustls::ClientConfig>,
    ) -> Self {
        ManagerTunnels {
            leader,
            raft,
            tls,
            remotes: Mutex::new(HashMap::new()),
        }
    }

    /// This manager's Engines service (served on its cluster port, used by its agent).
    pub(crate) fn service(&self) -> Arc<LeaderEngines> {
        self.leader.clone()
    }

    fn remote(&self, addr: &str) -> Result<EnginesClient, TunnelError> {
        let mut remotes = self.remotes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = remotes.get(addr) {
            return Ok(c.clone());
        }
        let channel = RpcChannel::new(addr, self.tls.clone(), manager_client_options())
            .map_err(|e| TunnelError::Unavailable(format!("leader at {addr}: {e}")))?;
        let client = EnginesClient::new(channel);
        remotes.insert(addr.to_string(), client.clone());
        Ok(client)
    }

    /// A stream to `target` (`node://<ID>`, `pool://leader`). While the swarm has no
    /// leader, or leadership moves under the call, it keeps looking for up to
    /// [`LEADER_WAIT`]; any other failure is final.
    pub async fn open(&self, target: &str) -> Result<Upstream, TunnelError> {
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        loop {
            let me = self.raft.node_id();
            let leader = self.raft.leader().filter(|(id, _)| *id != me);
            let attempt = if self.raft.is_leader() {
                self.leader.open(target).await
            } else if let Some((_, addr)) = leader {
                let remote = self.remote(&addr)?;
                match remote.open(target).await {
                    Ok(tunnel) => {
                        let tunnel: Upstream = Box::new(tunnel);
                        Ok(tunnel)
                    }
                    Err(e) => Err(e),
                }
            } else {
                Err(TunnelError::NotLeader { leader_addr: None })
            };
            match attempt {
                Err(TunnelError::NotLeader { .. }) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(LEADER_PAUSE).await;
                }
                Err(TunnelError::NotLeader { .. }) => {
                    return Err(TunnelError::Unavailable(
                        "the swarm has no leader to open tunnels through".into(),
                    ));
                }
                r => return r,
            }
        }
    }
}

/// The [`Dialer`] of [`SwarmNode::engine_dialer`].
struct EngineDialer {
    node: Weak<SwarmNode>,
}

fn dial_error(upstream: &str, e: &TunnelError) -> io::Error {
    let kind = match e {
        TunnelError::Invalid(_) => io::ErrorKind::InvalidInput,
        TunnelError::Refused(_) => io::ErrorKind::PermissionDenied,
        TunnelError::NotLeader { .. } | TunnelError::Unavailable(_) => {
            io::ErrorKind::ConnectionRefused
        }
    };
    io::Error::new(kind, format!("{upstream}: {e}"))
}

#[async_trait]
impl Dialer for EngineDialer {
    async fn dial(&self, upstream: &str) -> io::Result<EngineStream> {
        let tunnels = self
            .node
            .upgrade()
            .and_then(|n| n.active())
            .and_then(|a| a.mgr.as_ref().map(|m| m.tunnels.clone()))
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotConnected,
                    format!("{upstream}: this node is not an active swarm manager"),
                )
            })?;
        let stream = tunnels
            .open(upstream)
            .await
            .map_err(|e| dial_error(upstream, &e))?;
        Ok(Box::new(stream))
    }
}

impl SwarmNode {
    /// Opens streams to `node://<node ID>` (that node's engine, through its agent) and
    /// `pool://leader` (the leader's pool API, see [`SwarmNode::set_pool_api`]) from this
    /// manager; fails while the node is not an active manager.
    pub fn engine_dialer(self: &Arc<Self>) -> Arc<dyn Dialer> {
        Arc::new(EngineDialer {
            node: Arc::downgrade(self),
        })
    }

    /// What serves the pool API on a stream: `pool://leader` streams opened on this node
    /// while it leads go to it. `None`: none (such opens fail, saying so).
    pub fn set_pool_api(&self, handler: Option<PoolApiHandler>) {
        self.pool_api.set(handler);
    }
}
