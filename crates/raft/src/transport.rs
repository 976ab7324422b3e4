//! How Raft payloads reach a peer: the [`RaftTransport`] a node is built with. The
//! payloads and their meaning are [`crate::network`]'s; a transport only carries bytes
//! for one of three methods and reports how the call failed, the same way for all.
//!
//! Production nodes use [`GrpcTransport`] (gRPC over mTLS to the peer's cluster port) or,
//! alone, [`NoTransport`]. Tests use an in-process router with fault injection
//! (`crate::testing`, feature `testing`), a third implementation.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use swarmd_rpc::{Bytes, ClientOptions, RaftClient, RpcChannel, RpcError};

use crate::types::NodeId;

/// Which of the three Raft RPCs a payload is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RpcMethod {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

impl RpcMethod {
    pub fn name(self) -> &'static str {
        match self {
            RpcMethod::AppendEntries => "append_entries",
            RpcMethod::Vote => "vote",
            RpcMethod::InstallSnapshot => "install_snapshot",
        }
    }
}

/// Why a call failed, before it is turned into the error type of the openraft method
/// (module docs of [`crate::network`]: a timeout makes openraft retry, an unreachable peer
/// makes it back off).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The deadline passed without an answer.
    Timeout(Duration),
    /// The peer could not be reached or refused the call.
    Unreachable(String),
    /// The call went through but its answer is unusable.
    Network(String),
}

/// How this node reaches its peers. Chosen by whoever builds the node
/// ([`crate::NetworkFactory::with_transport`]).
pub trait RaftTransport: Send + Sync + 'static {
    /// A link from `me` to peer `target` at `addr`, or why it cannot be reached at all.
    fn link(&self, me: NodeId, target: NodeId, addr: &str) -> Result<Arc<dyn RaftLink>, String>;

    /// A short name for logs and `Debug`.
    fn kind(&self) -> &'static str;
}

/// One node's way to one peer.
#[async_trait::async_trait]
pub trait RaftLink: fmt::Debug + Send + Sync {
    /// Carries `payload` as `method` and returns the peer's answer, within `ttl`.
    async fn call(
        &self,
        method: RpcMethod,
        payload: Bytes,
        ttl: Duration,
    ) -> Result<Bytes, CallError>;
}

/// One-manager mode: every peer is unreachable.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoTransport;

impl RaftTransport for NoTransport {
    fn link(&self, _: NodeId, _: NodeId, _: &str) -> Result<Arc<dyn RaftLink>, String> {
        Err("multi-manager transport is not configured on this node".to_string())
    }

    fn kind(&self) -> &'static str {
        "none"
    }
}

/// The DNS name every manager's cluster-port certificate carries, checked by the client
/// instead of the peer's address (managers are reached by IP).
pub const MANAGER_SERVER_NAME: &str = "swarm-manager";

/// How this manager reaches its peers over the cluster port.
#[derive(Clone)]
pub struct NetworkConfig {
    /// The manager's client TLS config (its node certificate and the swarm's root CA).
    pub tls: Arc<rustls::ClientConfig>,
    /// Connect/keepalive settings; the per-call deadline comes from openraft per RPC.
    pub options: ClientOptions,
}

impl NetworkConfig {
    /// Default client options, a connect timeout suited to elections (1 s) and the server
    /// name [`MANAGER_SERVER_NAME`].
    pub fn new(tls: Arc<rustls::ClientConfig>) -> Self {
        let server_name =
            rustls::pki_types::ServerName::try_from(MANAGER_SERVER_NAME).expect("a valid DNS name");
        NetworkConfig {
            tls,
            options: ClientOptions {
                connect_timeout: Duration::from_secs(1),
                server_name: Some(server_name),
                ..ClientOptions::default()
            },
        }
    }
}

impl fmt::Debug for NetworkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetworkConfig")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// Peers over gRPC/mTLS ([`swarmd_rpc::RaftClient`]); one cached [`RpcChannel`] per
/// target (remade when its address changes), so every openraft replication stream to a
/// peer shares one HTTP/2 connection.
pub struct GrpcTransport {
    config: NetworkConfig,
    channels: Mutex<HashMap<NodeId, RpcChannel>>,
}

impl GrpcTransport {
    pub fn new(config: NetworkConfig) -> Self {
        GrpcTransport {
            config,
            channels: Mutex::new(HashMap::new()),
        }
    }

    fn channel(&self, target: NodeId, addr: &str) -> Result<RpcChannel, String> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ch) = channels.get(&target)
            && ch.addr() == addr
        {
            return Ok(ch.clone());
        }
        let ch = RpcChannel::new(addr, self.config.tls.clone(), self.config.options.clone())
            .map_err(|e| e.to_string())?;
        channels.insert(target, ch.clone());
        Ok(ch)
    }
}

impl RaftTransport for GrpcTransport {
    fn link(&self, _me: NodeId, target: NodeId, addr: &str) -> Result<Arc<dyn RaftLink>, String> {
        let client = RaftClient::new(self.channel(target, addr)?);
        Ok(Arc::new(GrpcLink {
            client,
            target,
            addr: addr.to_string(),
        }))
    }

    fn kind(&self) -> &'static str {
        "grpc"
    }
}

/// A gRPC client to one peer.
#[derive(Debug)]
struct GrpcLink {
    client: RaftClient,
    target: NodeId,
    addr: String,
}

#[async_trait::async_trait]
impl RaftLink for GrpcLink {
    /// Bounded by `ttl` twice: tonic's own deadline, and a hard stop just after it.
    async fn call(
        &self,
        method: RpcMethod,
        payload: Bytes,
        ttl: Duration,
    ) -> Result<Bytes, CallError> {
        let client = self.client.with_timeout(ttl);
        let call = async move {
            match method {
                RpcMethod::AppendEntries => client.append_entries(payload).await,
                RpcMethod::Vote => client.vote(payload).await,
                RpcMethod::InstallSnapshot => client.install_snapshot(payload).await,
            }
        };
        let res = tokio::time::timeout(ttl + Duration::from_millis(100), call).await;
        map_call_result(res.map_err(|_| ()), ttl, || {
            format!(
                "raft {} to peer {} at {}",
                method.name(),
                self.target,
                self.addr
            )
        })
    }
}

/// Maps the outcome of one call (`Err(())`: the hard deadline passed) onto [`CallError`], the
/// same way for every transport.
pub fn map_call_result(
    res: Result<Result<Bytes, RpcError>, ()>,
    ttl: Duration,
    context: impl FnOnce() -> String,
) -> Result<Bytes, CallError> {
    match res {
        Err(()) | Ok(Err(RpcError::DeadlineExceeded(_))) => Err(CallError::Timeout(ttl)),
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => Err(CallError::Unreachable(format!("{}: {e}", context()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_millis(300);

    fn mapped(res: Result<Result<Bytes, RpcError>, ()>) -> Result<Bytes, CallError> {
        map_call_result(res, TTL, || "raft vote to peer 2".to_string())
    }

    #[test]
    fn deadlines_are_timeouts_and_other_failures_unreachable() {
        assert_eq!(mapped(Err(())), Err(CallError::Timeout(TTL)));
        let late = RpcError::DeadlineExceeded("late".into());
        assert_eq!(mapped(Ok(Err(late))), Err(CallError::Timeout(TTL)));
        let refused = RpcError::Unavailable("shutting down".into());
        assert_eq!(
            mapped(Ok(Err(refused))),
            Err(CallError::Unreachable(
                "raft vote to peer 2: unavailable: shutting down".into()
            ))
        );
        let answer = Bytes::from_static(b"{}");
        assert_eq!(mapped(Ok(Ok(answer.clone()))), Ok(answer));
    }

    #[test]
    fn without_a_transport_every_peer_is_unreachable() {
        let err = NoTransport.link(1, 2, "10.0.0.2:2377").unwrap_err();
        assert!(err.contains("not configured"), "{err}");
    }
}
