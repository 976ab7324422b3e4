//! The Control service: followers forward store proposals to the Raft leader.
//!
//! Forwarding at the store's [`Proposer`] level (rather than forwarding API requests)
//! keeps the API handlers identical on every manager: a follower's `Store` is simply built
//! with a [`RemoteProposer`] pointing at the leader, and the leader serves its own Raft
//! proposer through [`ProposeServer`].

use std::sync::Arc;

use swarmd_store::{Batch, ProposeError, Proposer, ReadBarrier};
use tonic::{Request, Response, Status};

use crate::auth::{Authorizer, RpcKind};
use crate::client::RpcChannel;
use crate::error::{propose_error_from_status, propose_status};
use crate::pb;
use crate::pb::control_client::ControlClient;
use crate::server::{authorize, decode_json};

/// Serves a [`Proposer`] as `Control.Propose` and a [`ReadBarrier`] as `Control.ReadIndex`.
pub struct ProposeServer {
    proposer: Arc<dyn Proposer>,
    read_barrier: Option<Arc<dyn ReadBarrier>>,
    authorizer: Arc<dyn Authorizer>,
}

impl ProposeServer {
    pub fn new(
        proposer: Arc<dyn Proposer>,
        read_barrier: Option<Arc<dyn ReadBarrier>>,
        authorizer: Arc<dyn Authorizer>,
    ) -> Self {
        ProposeServer {
            proposer,
            read_barrier,
            authorizer,
        }
    }
}

#[tonic::async_trait]
impl pb::control_server::Control for ProposeServer {
    async fn propose(
        &self,
        req: Request<pb::ProposeRequest>,
    ) -> Result<Response<pb::ProposeResponse>, Status> {
        authorize(&*self.authorizer, RpcKind::ControlPropose, &req)?;
        let batch: Batch = decode_json(&req.get_ref().json, "batch")?;
        let index = self
            .proposer
            .propose(batch)
            .await
            .map_err(|e| propose_status(&e))?;
        Ok(Response::new(pb::ProposeResponse { index }))
    }

    async fn read_index(
        &self,
        req: Request<pb::ReadIndexRequest>,
    ) -> Result<Response<pb::ReadIndexResponse>, Status> {
        authorize(&*self.authorizer, RpcKind::ControlReadIndex, &req)?;
        let Some(barrier) = &self.read_barrier else {
            return Err(Status::unimplemented("no read barrier on this manager"));
        };
        let index = barrier.read_index().await.map_err(|e| propose_status(&e))?;
        Ok(Response::new(pb::ReadIndexResponse { index }))
    }
}

/// A [`Proposer`] that forwards to the leader's `Control.Propose`.
///
/// Errors keep the store's distinction between "certainly not applied" and "outcome
/// unknown": the leader's verdict comes back as its exact [`ProposeError`]; a failure to
/// connect or a refusal before the proposal reached Raft is `Unavailable`; a timeout or a
/// connection lost mid-call is `OutcomeUnknown`.
#[derive(Debug, Clone)]
pub struct RemoteProposer {
    channel: RpcChannel,
}

impl RemoteProposer {
    pub fn new(channel: RpcChannel) -> Self {
        RemoteProposer { channel }
    }

    /// The leader's address this proposer forwards to.
    pub fn addr(&self) -> &str {
        self.channel.addr()
    }
}

#[async_trait::async_trait]
impl Proposer for RemoteProposer {
    async fn propose(&self, batch: Batch) -> Result<u64, ProposeError> {
        let json = serde_json::to_vec(&batch)
            .map_err(|e| ProposeError::Unavailable(format!("encoding the batch: {e}")))?;
        let max = self.channel.options.max_message_bytes;
        let mut client = ControlClient::new(self.channel.channel.clone())
            .max_decoding_message_size(max)
            .max_encoding_message_size(max);
        let req = self
            .channel
            .request(pb::ProposeRequest { json: json.into() });
        let resp = client
            .propose(req)
            .await
            .map_err(|s| propose_error_from_status(&s))?;
        Ok(resp.get_ref().index)
    }
}

/// The leader's `Control.ReadIndex`: the index a linearizable read must see applied.
/// Errors as [`RemoteProposer::propose`]'s (a lost connection is harmless here: a read
/// changes nothing).
#[async_trait::async_trait]
impl ReadBarrier for RemoteProposer {
    async fn read_index(&self) -> Result<u64, ProposeError> {
        let mut client = ControlClient::new(self.channel.channel.clone());
        let req = self.channel.request(pb::ReadIndexRequest {});
        let resp = client
            .read_index(req)
            .await
            .map_err(|s| propose_error_from_status(&s))?;
        Ok(resp.get_ref().index)
    }
}
