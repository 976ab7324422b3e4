//! The openraft type configuration of swarmd.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use swarmd_store::{Batch, StoreError};

/// A Raft node id. Stable for the life of a manager (persisted by the caller next to its data).
pub type NodeId = u64;

/// What the Raft membership records about a manager: where its peers reach it.
///
/// Our own struct rather than `openraft::BasicNode` so fields can be added later with
/// `#[serde(default)]` without breaking logs and snapshots already on disk.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Cluster (gRPC) address, e.g. `127.0.0.2:2377`.
    pub addr: String,
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.addr)
    }
}

/// The payload of a normal Raft entry: one store [`Batch`].
///
/// A newtype because openraft wants `Display` on its payload and `Batch` lives in another
/// crate; `serde(transparent)` keeps the stored form exactly that of `Batch`. Behind an `Arc`
/// because openraft clones entries (the log store's cache of recent entries, replication),
/// and a batch can hold thousands of objects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Request(pub Arc<Batch>);

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "batch({} actions)", self.0.actions.len())
    }
}

/// The verdict of applying an entry: deterministic, so every replica reaches the same one.
pub type Response = Result<(), StoreError>;

openraft::declare_raft_types!(
    /// swarmd's openraft type configuration: u64 ids, [`Member`] nodes, [`Request`] payloads,
    /// tokio runtime.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = Member,
);

pub(crate) type C = TypeConfig;
pub(crate) type LogId = openraft::alias::LogIdOf<C>;
pub(crate) type Vote = openraft::alias::VoteOf<C>;
pub(crate) type Entry = openraft::alias::EntryOf<C>;
pub(crate) type StoredMembership = openraft::alias::StoredMembershipOf<C>;
pub(crate) type SnapshotMeta = openraft::alias::SnapshotMetaOf<C>;
/// A snapshot as openraft hands it around: metadata plus the serialized store.
pub(crate) type Snapshot = openraft::alias::SnapshotOf<C, SnapshotData>;

/// Snapshot payload: the JSON of a [`swarmd_store::Snapshot`]. Plain bytes so the future
/// network layer can ship it without knowing the store's types.
pub type SnapshotData = Vec<u8>;
