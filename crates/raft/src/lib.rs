//! Raft for swarmd's replicated store: openraft with a redb log and snapshots, applying
//! [`swarmd_store::Batch`]es to a [`swarmd_store::MemoryStore`].
//!
//! - [`RaftNode`] is the public face: open/initialize/shutdown, leadership watch, a
//!   linearizable read barrier, and `impl Proposer` so the store's writers go through Raft.
//! - Storage ([`storage`]): one redb file `<dir>/raft.redb` holding log, vote, committed
//!   pointer and the latest snapshot; every record checksummed, every acknowledged write
//!   fsynced first.
//! - State machine ([`state_machine`]): the in-memory store itself; rebuilt on open from the
//!   snapshot plus committed log.
//! - Network ([`network`]): openraft's RPCs as payloads to the peers' [`Member::addr`];
//!   [`RaftRpcHandler`] serves the receiving side.
//! - Transport ([`transport`]): how payloads travel, chosen by whoever builds the node:
//!   [`GrpcTransport`] (`swarmd_rpc`, gRPC over mTLS) from a [`NetworkConfig`], or none
//!   (the node runs alone, every peer unreachable).
//! - Testing (feature `testing`, dev only): `testing::Router`, an in-process transport with
//!   fault injection (drop, delay, partition, isolate) for cluster tests and simulations.

mod codec;
pub mod log_policy;
pub mod network;
mod node;
pub mod state_machine;
pub mod storage;
#[cfg(feature = "testing")]
pub mod testing;
pub mod transport;
mod types;

pub use log_policy::LogPolicy;
pub use network::{NetworkFactory, RaftRpcHandler};
pub use node::{
    DEFAULT_CATCH_UP_TIMEOUT, DEFAULT_KEEP_LOGS_AFTER_SNAPSHOT, DEFAULT_PROPOSE_TIMEOUT,
    DEFAULT_SNAPSHOT_EVERY, Raft, RaftConfig, RaftError, RaftNode,
};
pub use swarmd_crypto::DataKey;
pub use transport::{
    GrpcTransport, MANAGER_SERVER_NAME, NetworkConfig, NoTransport, RaftLink, RaftTransport,
};
pub use types::{Member, NodeId, Request, Response, SnapshotData, TypeConfig};
