//! The Raft state machine: applies committed entries to the in-memory store and keeps the
//! latest snapshot in redb.
//!
//! Recovery design (the simplest correct one): the state machine itself is *transient*. It
//! is the [`MemoryStore`], which starts empty on every open. What is durable is the log, the
//! `committed` pointer ([`crate::storage::LogStore`]) and the latest snapshot (here). On
//! start, openraft installs the stored snapshot ([`RaftStateMachine::install_snapshot`]) and
//! re-applies the committed log entries after it; so last-applied and last-membership need no
//! persistence of their own — they are rebuilt by the same path that rebuilds the data.

use std::io;
use std::sync::Arc;

use futures::StreamExt;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend};
use redb::{ReadableDatabase, ReadableTable};
use swarmd_store::MemoryStore;

use swarmd_crypto::DataKey;

use crate::codec::{self, Slot};
use crate::storage::{Db, KEY_SNAP_DATA, KEY_SNAP_META, SNAPSHOT, durable_write, redb_err};
use crate::types::{C, LogId, Snapshot, SnapshotData, SnapshotMeta, StoredMembership};

/// Applies entries to a [`MemoryStore`]; owned by openraft's state-machine worker.
pub struct StateMachine {
    store: Arc<MemoryStore>,
    db: Arc<Db>,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
}

impl StateMachine {
    pub(crate) fn new(store: Arc<MemoryStore>, db: Arc<Db>) -> Self {
        StateMachine {
            store,
            db,
            last_applied: None,
            last_membership: StoredMembership::default(),
        }
    }
}

/// Builds a snapshot from a copy of the store taken when the builder was made, so applying
/// may go on while it serializes and writes.
pub struct SnapshotBuilder {
    db: Arc<Db>,
    snapshot: swarmd_store::Snapshot,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
}

fn index_of(log_id: &Option<LogId>) -> u64 {
    log_id.as_ref().map_or(0, |l| l.index)
}

/// Writes `meta` + `data` as the current snapshot in one durable transaction, unless the
/// stored one is already at least as new (a restart re-installs the stored snapshot; there is
/// nothing to write then). Blocking.
fn persist_snapshot(
    db: &redb::Database,
    key: &DataKey,
    meta: &SnapshotMeta,
    data: &[u8],
) -> io::Result<bool> {
    let txn = durable_write(db)?;
    {
        let mut t = txn.open_table(SNAPSHOT).map_err(redb_err)?;
        if let Some(v) = t.get(KEY_SNAP_META).map_err(redb_err)? {
            let stored: SnapshotMeta =
                codec::decode(key, Slot::Snapshot(KEY_SNAP_META), v.value())?;
            if stored.last_log_id >= meta.last_log_id {
                return Ok(false);
            }
        }
        let meta_rec = codec::encode(key, Slot::Snapshot(KEY_SNAP_META), meta)?;
        let data_rec = codec::seal(key, Slot::Snapshot(KEY_SNAP_DATA), data);
        t.insert(KEY_SNAP_META, meta_rec.as_slice())
            .map_err(redb_err)?;
        t.insert(KEY_SNAP_DATA, data_rec.as_slice())
            .map_err(redb_err)?;
    }
    txn.commit().map_err(redb_err)?;
    Ok(true)
}

impl RaftSnapshotBuilder<C> for SnapshotBuilder {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let meta = SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.last_membership.clone(),
        };
        let snap = std::mem::take(&mut self.snapshot);
        let index = snap.index;
        let meta2 = meta.clone();
        let key = self.db.key.clone();
        let data = self
            .db
            .run(move |db| {
                let data = serde_json::to_vec(&snap).map_err(io::Error::other)?;
                persist_snapshot(db, &key, &meta2, &data)?;
                Ok(data)
            })
            .await?;
        tracing::info!(
            index,
            bytes = data.len(),
            "raft: snapshot built and persisted"
        );
        Ok(Snapshot {
            meta,
            snapshot: data,
        })
    }
}

impl RaftStateMachine<C> for StateMachine {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        Ok((self.last_applied, self.last_membership.clone()))
    }

    /// Applies each entry with its log index as the store version and answers the proposer
    /// with the store's verdict. A rejected batch is a normal, deterministic outcome (every
    /// replica rejects it), not a state-machine failure.
    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: futures::Stream<Item = Result<EntryResponder<C>, io::Error>> + Unpin + OptionalSend,
    {
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let index = entry.log_id.index;
            let response = match &entry.payload {
                EntryPayload::Normal(req) => {
                    let res = self.store.apply(index, &req.0);
                    if let Err(e) = &res {
                        tracing::debug!(index, error = %e, "raft: batch rejected by the store");
                    }
                    res
                }
                EntryPayload::Blank => {
                    self.store.advance(index);
                    Ok(())
                }
                EntryPayload::Membership(m) => {
                    self.store.advance(index);
                    self.last_membership = StoredMembership::new(Some(entry.log_id), m.clone());
                    tracing::info!(index, membership = %m, "raft: membership applied");
                    Ok(())
                }
            };
            self.last_applied = Some(entry.log_id);
            if let Some(responder) = responder {
                responder.send(response);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        let snapshot = self.store.snapshot();
        if snapshot.index != index_of(&self.last_applied) {
            // Only this state machine applies to the store, so the two must agree.
            tracing::error!(
                store = snapshot.index,
                raft = index_of(&self.last_applied),
                "raft: store applied index differs from raft's"
            );
        }
        SnapshotBuilder {
            db: self.db.clone(),
            snapshot,
            last_applied: self.last_applied,
            last_membership: self.last_membership.clone(),
        }
    }

    /// Replaces the store with the snapshot (from the leader, or the stored one on restart)
    /// and makes it the current snapshot on disk.
    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotData,
    ) -> Result<(), io::Error> {
        let want = index_of(&meta.last_log_id);
        let store = self.store.clone();
        let meta2 = meta.clone();
        let key = self.db.key.clone();
        self.db
            .run(move |db| {
                let snap: swarmd_store::Snapshot = serde_json::from_slice(&snapshot)
                    .map_err(|e| codec::corrupt(format!("snapshot at {want}: undecodable: {e}")))?;
                if snap.index != want {
                    return Err(codec::corrupt(format!(
                        "snapshot claims index {} but its metadata says {want}",
                        snap.index
                    )));
                }
                persist_snapshot(db, &key, &meta2, &snapshot)?;
                store.restore(snap);
                Ok(())
            })
            .await?;
        self.last_applied = meta.last_log_id;
        self.last_membership = meta.last_membership.clone();
        tracing::info!(index = want, "raft: snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let key = self.db.key.clone();
        self.db
            .run(move |db| {
                let txn = db.begin_read().map_err(redb_err)?;
                let t = txn.open_table(SNAPSHOT).map_err(redb_err)?;
                let meta = match t.get(KEY_SNAP_META).map_err(redb_err)? {
                    Some(v) => codec::decode::<SnapshotMeta>(
                        &key,
                        Slot::Snapshot(KEY_SNAP_META),
                        v.value(),
                    )?,
                    None => return Ok(None),
                };
                let data = match t.get(KEY_SNAP_DATA).map_err(redb_err)? {
                    Some(v) => codec::open(&key, Slot::Snapshot(KEY_SNAP_DATA), v.value())?,
                    None => return Err(codec::corrupt("snapshot data is missing".into())),
                };
                Ok(Some(Snapshot {
                    meta,
                    snapshot: data,
                }))
            })
            .await
    }
}
