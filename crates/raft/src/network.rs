//! Node-to-node Raft transport: openraft's RPCs as bytes over [`swarmd_rpc::RaftClient`]
//! (gRPC over mutual TLS), and the receiving side, [`RaftRpcHandler`].
//!
//! Wire format (private to this crate; both ends are this file):
//! - **AppendEntries**: JSON of `AppendEntriesRequest` → JSON of `AppendEntriesResponse`.
//! - **Vote**: JSON of [`VoteEnvelope`] (`{"pre_vote": bool, "request": VoteRequest}`; the
//!   rpc crate has a single vote method, so pre-votes travel on it flagged) → JSON of
//!   `VoteResponse`.
//! - **TransferLeader**, also on the vote method: JSON of [`VoteEnvelope`] with
//!   `"transfer_leader": TransferLeaderRequest` and no `request` → JSON of
//!   `TransferLeaderResponse`. A leader that is removed from the membership uses it to hand
//!   over at once instead of leaving the others to wait out its lease and an election. A
//!   receiver from before this field rejects the message as undecodable, which the leader
//!   treats like an unreachable peer: the others then elect after the lease, as before.
//! - **InstallSnapshot** (whole snapshot in one call): a 4-byte big-endian length, the JSON
//!   of `{vote, meta}`, then the raw snapshot bytes (already JSON of the store; not
//!   re-encoded as a JSON array of numbers) → JSON of `SnapshotResponse`.
//!
//! A peer's openraft failure (stopped core) comes back as an `RpcError`, never inside the
//! payload. How client-side failures map onto openraft (so elections and replication retry
//! sensibly):
//! - deadline passed (client-side or `DeadlineExceeded` from the peer) → `Timeout`;
//! - anything else — connect/TLS failure, peer shutting down or stopped, refused by the
//!   peer's authorizer, undecodable payload — → `Unreachable`: openraft backs off
//!   (`Config::backoff`, capped at 1 s) before the next attempt instead of spinning on a
//!   dead or misconfigured peer;
//! - an undecodable *response* → `NetworkError` (the call went through; retry at once).
//!
//! Without a [`NetworkConfig`] (one-manager mode) every peer is unreachable.
//!
//! How the payloads travel is the node's [`RaftTransport`] (module [`crate::transport`]):
//! gRPC over mTLS in production; tests use an in-process router with fault injection
//! (feature `testing`): same payloads, same [`RaftRpcHandler`] on the receiving side, no
//! sockets.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use openraft::OptionalSend;
use openraft::errors::{
    NetworkError, RPCError, ReplicationClosed, StreamingError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};
use swarmd_rpc::{Bytes, PeerInfo, RaftService, RpcError};

use crate::node::Raft;
use crate::transport::{
    CallError, GrpcTransport, NetworkConfig, NoTransport, RaftLink, RaftTransport, RpcMethod,
};
use crate::types::{C, Member, NodeId, Snapshot, SnapshotData, SnapshotMeta, Vote};

/// Creates openraft's clients to peers through the node's [`RaftTransport`], chosen by
/// whoever builds the node: none ([`NetworkFactory::single`]), gRPC over mTLS
/// ([`NetworkFactory::grpc`]) or another implementation ([`NetworkFactory::with_transport`]).
#[derive(Clone)]
pub struct NetworkFactory {
    /// This node's id, for openraft's `Timeout` errors.
    me: NodeId,
    transport: Arc<dyn RaftTransport>,
}

impl Default for NetworkFactory {
    fn default() -> Self {
        NetworkFactory::single()
    }
}

impl NetworkFactory {
    /// One-manager mode: no transport, every peer unreachable.
    pub fn single() -> Self {
        NetworkFactory::with_transport(NodeId::default(), Arc::new(NoTransport))
    }

    /// Peers reached over gRPC/mTLS with `config`.
    pub fn grpc(me: NodeId, config: NetworkConfig) -> Self {
        NetworkFactory::with_transport(me, Arc::new(GrpcTransport::new(config)))
    }

    /// Peers reached through `transport`.
    pub fn with_transport(me: NodeId, transport: Arc<dyn RaftTransport>) -> Self {
        NetworkFactory { me, transport }
    }
}

impl fmt::Debug for NetworkFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetworkFactory")
            .field("transport", &self.transport.kind())
            .finish()
    }
}

impl RaftNetworkFactory<C> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> Self::Network {
        let client = self.transport.link(self.me, target, &node.addr);
        if let Err(e) = &client {
            tracing::debug!(target, addr = %node.addr, error = %e, "raft: peer has no client");
        }
        PeerClient {
            me: self.me,
            target,
            addr: node.addr.clone(),
            client,
        }
    }
}

/// openraft's connection to one peer.
#[derive(Debug, Clone)]
pub struct PeerClient {
    me: NodeId,
    target: NodeId,
    addr: String,
    /// `Err`: why this peer cannot be reached at all (no transport, bad address).
    client: Result<Arc<dyn RaftLink>, String>,
}

/// A vote or pre-vote request, or a leadership transfer, as sent on the single Vote RPC.
#[derive(Debug, Serialize, Deserialize)]
struct VoteEnvelope {
    #[serde(default)]
    pre_vote: bool,
    /// Absent only in a leadership transfer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    request: Option<VoteRequest<C>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    transfer_leader: Option<TransferLeaderRequest<C>>,
}

/// The JSON head of an InstallSnapshot payload.
#[derive(Debug, Serialize, Deserialize)]
struct SnapshotHead {
    vote: Vote,
    meta: SnapshotMeta,
}

impl CallError {
    fn into_rpc(self, p: &PeerClient, action: RPCTypes) -> RPCError<C> {
        match self {
            CallError::Timeout(timeout) => RPCError::Timeout(Timeout {
                action,
                id: p.me,
                target: p.target,
                timeout,
            }),
            CallError::Unreachable(m) => RPCError::Unreachable(Unreachable::from_string(m)),
            CallError::Network(m) => RPCError::Network(NetworkError::from_string(m)),
        }
    }
}

impl PeerClient {
    /// Sends `payload` as `method` through the peer's link, bounded by `ttl`.
    async fn call(
        &self,
        method: RpcMethod,
        ttl: Duration,
        payload: Bytes,
    ) -> Result<Bytes, CallError> {
        match &self.client {
            Ok(link) => link.call(method, payload, ttl).await,
            Err(e) => Err(CallError::Unreachable(format!(
                "raft peer {} at {}: {e}",
                self.target, self.addr
            ))),
        }
    }

    fn decode<T: for<'de> Deserialize<'de>>(&self, what: &str, b: &[u8]) -> Result<T, CallError> {
        serde_json::from_slice(b).map_err(|e| {
            CallError::Network(format!(
                "undecodable raft {what} response from peer {} at {}: {e}",
                self.target, self.addr
            ))
        })
    }

    async fn send_vote(
        &self,
        pre_vote: bool,
        request: VoteRequest<C>,
        option: RPCOption,
    ) -> Result<VoteResponse<C>, RPCError<C>> {
        let payload = encode(&VoteEnvelope {
            pre_vote,
            request: Some(request),
            transfer_leader: None,
        })
        .map_err(|e| CallError::Network(e).into_rpc(self, RPCTypes::Vote))?;
        let bytes = self
            .call(RpcMethod::Vote, option.hard_ttl(), payload)
            .await
            .map_err(|e| e.into_rpc(self, RPCTypes::Vote))?;
        self.decode("vote", &bytes)
            .map_err(|e| e.into_rpc(self, RPCTypes::Vote))
    }
}

/// Floor of the deadline of an AppendEntries that carries entries.
const APPEND_DEADLINE_FLOOR: Duration = Duration::from_secs(2);
/// Bytes of entries a peer is given a second for, on top of the floor: decoding, the
/// fsync'd append and the answer, on a loaded machine.
const APPEND_BYTES_PER_SEC: usize = 4 << 20;

/// The deadline of one AppendEntries. openraft passes its heartbeat period for every call;
/// that is right for a heartbeat (an empty call: a late answer is as good as none, and the
/// next heartbeat follows), but a call carrying megabytes of entries can take longer on a
/// busy follower, and timing it out only makes the leader resend the same entries forever
/// (three managers placing 100,000 tasks never caught up at a 100 ms heartbeat). So calls
/// with entries get a deadline that grows with their size. Failure detection does not wait
/// on it: heartbeats and votes keep openraft's short deadline, and a dead peer refuses the
/// connection at once.
fn append_deadline(openraft_ttl: Duration, entries: usize, payload_bytes: usize) -> Duration {
    if entries == 0 {
        return openraft_ttl;
    }
    let for_size = Duration::from_secs_f64(payload_bytes as f64 / APPEND_BYTES_PER_SEC as f64);
    openraft_ttl.max(APPEND_DEADLINE_FLOOR + for_size)
}

/// Runs CPU-heavy (de)serialization of entries on tokio's blocking pool. Entries can be
/// megabytes; done on an async worker, they held it for long enough on 2 busy cores that
/// heartbeats and votes waiting behind them missed their deadlines and the leader lost its
/// lease (three managers placing 100,000 tasks).
/// `Err` only when the blocking task itself failed (panicked or was cancelled).
async fn off_runtime<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("raft (de)serialization task failed: {e}"))
}

/// Payloads above this are decoded off the async workers (see [`off_runtime`]).
const DECODE_INLINE_MAX: usize = 64 << 10;

fn encode<T: Serialize>(v: &T) -> Result<Bytes, String> {
    serde_json::to_vec(v)
        .map(Bytes::from)
        .map_err(|e| format!("encoding a raft message: {e}"))
}

impl RaftNetworkV2<C> for PeerClient {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<C>, RPCError<C>> {
        let a = RPCTypes::AppendEntries;
        let entries = rpc.entries.len();
        let payload = if entries == 0 {
            encode(&rpc)
        } else {
            off_runtime(move || encode(&rpc)).await.and_then(|r| r)
        }
        .map_err(|e| CallError::Network(e).into_rpc(self, a))?;
        let ttl = append_deadline(option.hard_ttl(), entries, payload.len());
        let bytes = self
            .call(RpcMethod::AppendEntries, ttl, payload)
            .await
            .map_err(|e| e.into_rpc(self, a))?;
        self.decode("append_entries", &bytes)
            .map_err(|e| e.into_rpc(self, a))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<C>,
        option: RPCOption,
    ) -> Result<VoteResponse<C>, RPCError<C>> {
        self.send_vote(false, rpc, option).await
    }

    /// Hands leadership over (see the module docs); rides on the vote method.
    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<C>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<C>, RPCError<C>> {
        let a = RPCTypes::TransferLeader;
        let payload = encode(&VoteEnvelope {
            pre_vote: false,
            request: None,
            transfer_leader: Some(req),
        })
        .map_err(|e| CallError::Network(e).into_rpc(self, a))?;
        let bytes = self
            .call(RpcMethod::Vote, option.hard_ttl(), payload)
            .await
            .map_err(|e| e.into_rpc(self, a))?;
        self.decode("transfer_leader", &bytes)
            .map_err(|e| e.into_rpc(self, a))
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<C>,
        option: RPCOption,
    ) -> Result<VoteResponse<C>, RPCError<C>> {
        self.send_vote(true, rpc, option).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<C>, StreamingError<C>> {
        let a = RPCTypes::InstallSnapshot;
        let to_streaming = |e: CallError, p: &PeerClient| StreamingError::from(e.into_rpc(p, a));
        let head = SnapshotHead {
            vote,
            meta: snapshot.meta,
        };
        let head = serde_json::to_vec(&head)
            .map_err(|e| to_streaming(CallError::Network(e.to_string()), self))?;
        let mut payload = Vec::with_capacity(4 + head.len() + snapshot.snapshot.len());
        payload.extend_from_slice(&(head.len() as u32).to_be_bytes());
        payload.extend_from_slice(&head);
        payload.extend_from_slice(&snapshot.snapshot);
        let payload = Bytes::from(payload);
        let send = self.call(RpcMethod::InstallSnapshot, option.hard_ttl(), payload);
        let bytes = tokio::select! {
            closed = cancel => return Err(StreamingError::Closed(closed)),
            r = send => r.map_err(|e| to_streaming(e, self))?,
        };
        self.decode("install_snapshot", &bytes)
            .map_err(|e| to_streaming(e, self))
    }
}

/// The receiving side of Raft: decodes what [`PeerClient`] sends and hands it to the local
/// openraft instance. Serve it as `Services::raft` on the cluster port.
#[derive(Clone)]
pub struct RaftRpcHandler {
    raft: Raft,
}

impl RaftRpcHandler {
    pub fn new(raft: Raft) -> Self {
        RaftRpcHandler { raft }
    }
}

impl fmt::Debug for RaftRpcHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RaftRpcHandler").finish_non_exhaustive()
    }
}

fn decode_req<T: for<'de> Deserialize<'de>>(what: &str, b: &[u8]) -> Result<T, RpcError> {
    serde_json::from_slice(b)
        .map_err(|e| RpcError::InvalidArgument(format!("undecodable raft {what}: {e}")))
}

fn encode_resp<T: Serialize>(v: &T) -> Result<Bytes, RpcError> {
    encode(v).map_err(RpcError::Internal)
}

/// The local core stopped (or is stopping): the caller should treat us as unreachable.
fn stopped(e: impl fmt::Display) -> RpcError {
    RpcError::Unavailable(format!("raft is not running here: {e}"))
}

/// Splits an InstallSnapshot payload into its head and snapshot bytes.
fn split_snapshot(b: &[u8]) -> Result<(SnapshotHead, SnapshotData), RpcError> {
    let bad = |m: String| RpcError::InvalidArgument(format!("undecodable raft snapshot: {m}"));
    let len = b
        .get(..4)
        .map(|l| u32::from_be_bytes(l.try_into().expect("4 bytes")) as usize)
        .ok_or_else(|| bad("shorter than its length prefix".into()))?;
    let head = b
        .get(4..4 + len)
        .ok_or_else(|| bad("shorter than its head".into()))?;
    let head: SnapshotHead = serde_json::from_slice(head).map_err(|e| bad(e.to_string()))?;
    Ok((head, b[4 + len..].to_vec()))
}

#[async_trait::async_trait]
impl RaftService for RaftRpcHandler {
    async fn append_entries(&self, _peer: PeerInfo, payload: Bytes) -> Result<Bytes, RpcError> {
        let req: AppendEntriesRequest<C> = if payload.len() <= DECODE_INLINE_MAX {
            decode_req("append_entries", &payload)?
        } else {
            off_runtime(move || decode_req("append_entries", &payload))
                .await
                .map_err(RpcError::Internal)??
        };
        let resp = self.raft.append_entries(req).await.map_err(stopped)?;
        encode_resp(&resp)
    }

    async fn vote(&self, _peer: PeerInfo, payload: Bytes) -> Result<Bytes, RpcError> {
        let env: VoteEnvelope = decode_req("vote", &payload)?;
        if let Some(req) = env.transfer_leader {
            let resp = self
                .raft
                .handle_transfer_leader(req)
                .await
                .map_err(stopped)?;
            return encode_resp(&resp);
        }
        let request = env
            .request
            .ok_or_else(|| RpcError::InvalidArgument("undecodable raft vote: no request".into()))?;
        let resp = if env.pre_vote {
            self.raft.pre_vote(request).await
        } else {
            self.raft.vote(request).await
        }
        .map_err(stopped)?;
        encode_resp(&resp)
    }

    async fn install_snapshot(&self, _peer: PeerInfo, payload: Bytes) -> Result<Bytes, RpcError> {
        let (head, data) = split_snapshot(&payload)?;
        let snapshot = Snapshot {
            meta: head.meta,
            snapshot: data,
        };
        let resp = self
            .raft
            .install_full_snapshot(head.vote, snapshot)
            .await
            .map_err(stopped)?;
        encode_resp(&resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeats_keep_openraft_deadline_and_entries_get_time_for_their_size() {
        let hb = Duration::from_millis(100);
        assert_eq!(append_deadline(hb, 0, 300), hb);
        assert_eq!(append_deadline(hb, 1, 0), APPEND_DEADLINE_FLOOR);
        let big = append_deadline(hb, 8, 40 << 20);
        assert_eq!(big, APPEND_DEADLINE_FLOOR + Duration::from_secs(10));
        // A longer openraft deadline is never shortened.
        let long = Duration::from_secs(30);
        assert_eq!(append_deadline(long, 1, 10), long);
    }
}
