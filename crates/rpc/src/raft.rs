//! The Raft service: openraft's three RPCs as bytes in, bytes out.
//!
//! The raft crate owns the encoding (serde_json of openraft's request and response types)
//! and implements openraft's network on [`RaftClient`]; this crate only moves the bytes
//! over authenticated connections, so it needs no openraft dependency.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tonic::{Request, Response, Status};

use crate::auth::{Authorizer, PeerInfo, RpcKind};
use crate::client::RpcChannel;
use crate::error::RpcError;
use crate::pb;
use crate::pb::raft_client::RaftClient as PbRaftClient;
use crate::server::authorize;

/// The receiving side of Raft, implemented by the raft crate. `peer` is the calling
/// manager as its certificate names it (only managers get here under swarm's policy).
/// Report openraft's own errors inside the returned payload; return `Err` only when the
/// call cannot be served at all (shutting down, undecodable payload).
#[async_trait::async_trait]
pub trait RaftService: Send + Sync + 'static {
    async fn append_entries(&self, peer: PeerInfo, payload: Bytes) -> Result<Bytes, RpcError>;
    async fn vote(&self, peer: PeerInfo, payload: Bytes) -> Result<Bytes, RpcError>;
    async fn install_snapshot(&self, peer: PeerInfo, payload: Bytes) -> Result<Bytes, RpcError>;
}

/// Serves a [`RaftService`] as the `Raft` gRPC service.
pub struct RaftServer {
    raft: Arc<dyn RaftService>,
    authorizer: Arc<dyn Authorizer>,
}

impl RaftServer {
    pub fn new(raft: Arc<dyn RaftService>, authorizer: Arc<dyn Authorizer>) -> Self {
        RaftServer { raft, authorizer }
    }
}

fn reply(r: Result<Bytes, RpcError>) -> Result<Response<pb::RaftPayload>, Status> {
    r.map(|json| Response::new(pb::RaftPayload { json }))
        .map_err(Status::from)
}

#[tonic::async_trait]
impl pb::raft_server::Raft for RaftServer {
    async fn append_entries(
        &self,
        req: Request<pb::RaftPayload>,
    ) -> Result<Response<pb::RaftPayload>, Status> {
        let peer = authorize(&*self.authorizer, RpcKind::RaftAppendEntries, &req)?;
        reply(self.raft.append_entries(peer, req.into_inner().json).await)
    }

    async fn vote(
        &self,
        req: Request<pb::RaftPayload>,
    ) -> Result<Response<pb::RaftPayload>, Status> {
        let peer = authorize(&*self.authorizer, RpcKind::RaftVote, &req)?;
        reply(self.raft.vote(peer, req.into_inner().json).await)
    }

    async fn install_snapshot(
        &self,
        req: Request<pb::RaftPayload>,
    ) -> Result<Response<pb::RaftPayload>, Status> {
        let peer = authorize(&*self.authorizer, RpcKind::RaftInstallSnapshot, &req)?;
        reply(
            self.raft
                .install_snapshot(peer, req.into_inner().json)
                .await,
        )
    }
}

/// Calls another manager's `Raft` service.
#[derive(Debug, Clone)]
pub struct RaftClient {
    channel: RpcChannel,
    timeout: Duration,
}

impl RaftClient {
    pub fn new(channel: RpcChannel) -> Self {
        let timeout = channel.options.call_timeout;
        RaftClient { channel, timeout }
    }

    /// The same client with another per-call deadline (openraft gives one per RPC).
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        RaftClient {
            channel: self.channel.clone(),
            timeout,
        }
    }

    fn client(&self) -> PbRaftClient<tonic::transport::Channel> {
        let max = self.channel.options.max_message_bytes;
        PbRaftClient::new(self.channel.channel.clone())
            .max_decoding_message_size(max)
            .max_encoding_message_size(max)
    }

    fn request(&self, json: Bytes) -> Request<pb::RaftPayload> {
        let mut req = Request::new(pb::RaftPayload { json });
        req.set_timeout(self.timeout);
        req
    }

    pub async fn append_entries(&self, payload: Bytes) -> Result<Bytes, RpcError> {
        let resp = self.client().append_entries(self.request(payload)).await?;
        Ok(resp.into_inner().json)
    }

    pub async fn vote(&self, payload: Bytes) -> Result<Bytes, RpcError> {
        let resp = self.client().vote(self.request(payload)).await?;
        Ok(resp.into_inner().json)
    }

    pub async fn install_snapshot(&self, payload: Bytes) -> Result<Bytes, RpcError> {
        let resp = self
            .client()
            .install_snapshot(self.request(payload))
            .await?;
        Ok(resp.into_inner().json)
    }
}
