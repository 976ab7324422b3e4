//! The replicated store: in-memory tables that every manager holds in full.
//!
//! Changes are [`Batch`]es of [`StoreAction`]s. A batch is proposed through a [`Proposer`]
//! (Raft in production), and once committed every replica calls [`MemoryStore::apply`]
//! with the entry's log index. Apply is deterministic: IDs and timestamps come inside the
//! batch; the version is the log index. Apply is all-or-nothing per batch and optimistic:
//! an update must carry the version it read, so concurrent writers conflict instead of
//! overwriting each other.

mod memory;
mod proposer;
mod read_barrier;
mod tables;

pub use memory::{MemoryStore, ReadTx, Snapshot};
pub use proposer::{LocalProposer, MAX_ACTIONS_PER_ENTRY, ProposeError, Proposer, Store, WriteTx};
pub use read_barrier::{Coalesced, ReadBarrier};
pub use tables::{NodeLoad, Tables, holds_resources, reservations};

use serde::{Deserialize, Serialize};
use swarmd_types::{Kind, Object};

/// One change to the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StoreAction {
    /// Insert a new object; its ID (and unique name) must be free.
    Create(Object),
    /// Replace an object; `meta.version` must equal the stored version.
    Update(Object),
    /// Delete an object.
    Remove { kind: Kind, id: String },
}

impl StoreAction {
    pub fn target(&self) -> (Kind, &str) {
        match self {
            StoreAction::Create(o) | StoreAction::Update(o) => (o.kind(), o.id()),
            StoreAction::Remove { kind, id } => (*kind, id.as_str()),
        }
    }
}

/// The payload of one Raft entry: actions applied atomically, plus the proposer's clock.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    pub actions: Vec<StoreAction>,
    /// RFC 3339 time at proposal; becomes `created_at`/`updated_at`.
    pub proposed_at: String,
}

/// Why a batch was rejected. Deterministic: every replica reaches the same verdict.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum StoreError {
    #[error("{kind} {id} already exists")]
    Exists { kind: Kind, id: String },
    #[error("{kind} with name {name} already exists")]
    NameConflict { kind: Kind, name: String },
    #[error("{kind} {id} not found")]
    NotFound { kind: Kind, id: String },
    #[error("update out of sequence")]
    VersionConflict { kind: Kind, id: String },
    #[error("a batch may touch {kind} {id} only once")]
    DuplicateInBatch { kind: Kind, id: String },
}

/// What happened to an object in an applied entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventAction {
    Created,
    Updated,
    Removed,
}

/// One object change. For `Removed`, `object` is the last stored value.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub action: EventAction,
    pub object: Object,
}

/// Events of one applied entry (a commit), or a reset after a snapshot restore.
#[derive(Debug, Clone, PartialEq)]
pub enum EventBatch {
    Commit {
        index: u64,
        events: Vec<Event>,
    },
    /// The whole state was replaced: watchers must resync everything.
    Reset {
        index: u64,
    },
}
