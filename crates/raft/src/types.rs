//! The openraft type configuration of swarmd.

use std::fmt;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
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
/// crate; it serializes exactly as the `Batch`. Behind an `Arc` because openraft clones
/// entries (the log store's cache of recent entries, replication), and a batch can hold
/// thousands of objects.
///
/// A large batch's JSON is made once, on its first serialization, and shared by the clones:
/// the log store and the AppendEntries to every follower embed the same bytes (a leader of
/// three managers encoded each entry three times). Small batches are encoded each time:
/// keeping their JSON would cost memory for little.
#[derive(Clone)]
pub struct Request(pub Arc<Batch>, Arc<OnceLock<Box<RawValue>>>);

/// Batches whose JSON is at least this long keep it (see [`Request`]).
const KEEP_JSON_BYTES: usize = 64 * 1024;

impl Request {
    pub fn new(batch: Batch) -> Self {
        Request(Arc::new(batch), Arc::default())
    }
}

impl PartialEq for Request {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Request").field(&self.0).finish()
    }
}

impl Serialize for Request {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if let Some(raw) = self.1.get() {
            return raw.serialize(s);
        }
        let raw = serde_json::value::to_raw_value(&*self.0).map_err(serde::ser::Error::custom)?;
        if raw.get().len() < KEEP_JSON_BYTES {
            return raw.serialize(s);
        }
        raw.serialize(s).inspect(|_| {
            let _ = self.1.set(raw);
        })
    }
}

impl<'de> Deserialize<'de> for Request {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Batch::deserialize(d).map(Request::new)
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use swarmd_store::StoreAction;
    use swarmd_types::{Kind, Task};

    fn batch(tasks: usize) -> Batch {
        Batch {
            actions: (0..tasks)
                .map(|i| {
                    StoreAction::Create(
                        Task {
                            id: format!("task-{i:05}"),
                            service_name: "web".into(),
                            ..Default::default()
                        }
                        .into(),
                    )
                })
                .chain([StoreAction::Remove {
                    kind: Kind::Task,
                    id: "old".into(),
                }])
                .collect(),
            proposed_at: "2026-11-24T00:00:00Z".into(),
        }
    }

    /// On the wire and in the log a request is exactly its batch, whatever its size; a large
    /// one is encoded once and its clones (the log cache, each follower's replication)
    /// reuse those bytes.
    #[test]
    fn a_request_serializes_as_its_batch_and_a_large_one_once() {
        for n in [1, 500] {
            let b = batch(n);
            let r = Request::new(b.clone());
            let clone = r.clone();
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(json, serde_json::to_string(&b).unwrap());
            let large = json.len() >= KEEP_JSON_BYTES;
            assert_eq!(n == 500, large, "{} bytes", json.len());
            assert_eq!(clone.1.get().is_some(), large, "shared by the clones");
            assert_eq!(serde_json::to_string(&clone).unwrap(), json);
            let back: Request = serde_json::from_str(&json).unwrap();
            assert_eq!(back, r);
        }
    }
}
