//! Node-to-node Raft transport.
//!
//! For now swarmd runs one-manager clusters only, so the factory hands out clients for which
//! every peer is unreachable. Everything openraft needs from the network goes through
//! [`NetworkFactory`], so the tonic/mTLS transport (DESIGN §10) replaces this file without
//! touching storage or the node: implement [`RaftNetworkV2`] over gRPC calls to the peer's
//! [`Member::addr`], and serve the receiving side by calling `Raft::append_entries`,
//! `Raft::vote` and `Raft::install_full_snapshot` (reachable via [`crate::RaftNode::raft`]).

use std::future::Future;

use openraft::OptionalSend;
use openraft::errors::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};

use crate::types::{C, Member, NodeId, Snapshot, SnapshotData, Vote};

/// Creates connections to peers. Single-member clusters only: no peer is ever reachable.
#[derive(Debug, Clone, Default)]
pub struct NetworkFactory {}

impl RaftNetworkFactory<C> for NetworkFactory {
    type Network = UnreachablePeer;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> Self::Network {
        tracing::debug!(target, addr = %node.addr, "raft: no transport to peers yet");
        UnreachablePeer {
            target,
            addr: node.addr.clone(),
        }
    }
}

/// A peer this build cannot talk to.
#[derive(Debug, Clone)]
pub struct UnreachablePeer {
    target: NodeId,
    addr: String,
}

impl UnreachablePeer {
    fn unreachable(&self) -> Unreachable<C> {
        Unreachable::from_string(format!(
            "raft peer {} at {} is unreachable: multi-manager transport is not implemented",
            self.target, self.addr
        ))
    }
}

impl RaftNetworkV2<C> for UnreachablePeer {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<C>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<C>, RPCError<C>> {
        Err(RPCError::Unreachable(self.unreachable()))
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<C>,
        _option: RPCOption,
    ) -> Result<VoteResponse<C>, RPCError<C>> {
        Err(RPCError::Unreachable(self.unreachable()))
    }

    async fn full_snapshot(
        &mut self,
        _vote: Vote,
        _snapshot: Snapshot,
        _cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<C>, StreamingError<C>> {
        Err(StreamingError::Unreachable(self.unreachable()))
    }
}
