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
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend};
use redb::{ReadableDatabase, ReadableTable};
use swarmd_store::MemoryStore;

use swarmd_crypto::DataKey;

use crate::codec::{self, Slot};
use crate::storage::{Db, KEY_SNAP_DATA, KEY_SNAP_META, SNAPSHOT, durable_write, redb_err};
use crate::types::{C, LogId, Snapshot, SnapshotData, SnapshotMeta, StoredMembership};

/// How many snapshots before the current one stay on disk (swarmkit's
/// `KeepOldSnapshots`, `swarm update --max-snapshots`); shared with
/// [`crate::RaftNode::set_log_policy`].
pub(crate) type KeepOld = Arc<AtomicU64>;

/// Applies entries to a [`MemoryStore`]; owned by openraft's state-machine worker.
pub struct StateMachine {
    store: Arc<MemoryStore>,
    db: Arc<Db>,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    keep_old: KeepOld,
}

impl StateMachine {
    pub(crate) fn new(store: Arc<MemoryStore>, db: Arc<Db>, keep_old: KeepOld) -> Self {
        StateMachine {
            store,
            db,
            last_applied: None,
            last_membership: StoredMembership::default(),
            keep_old,
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
    keep_old: u64,
}

fn index_of(log_id: &Option<LogId>) -> u64 {
    log_id.as_ref().map_or(0, |l| l.index)
}

/// The keys an old snapshot (at log `index`) is kept under in `raft_snapshot`: sortable,
/// and bound to the index by the record's associated data.
fn old_keys(index: u64) -> (String, String) {
    (
        format!("{OLD_PREFIX}{index:020}/{KEY_SNAP_META}"),
        format!("{OLD_PREFIX}{index:020}/{KEY_SNAP_DATA}"),
    )
}
const OLD_PREFIX: &str = "old/";

/// How many old snapshots `raft_snapshot` holds. Blocking.
pub(crate) fn count_old_snapshots(db: &redb::Database) -> io::Result<u64> {
    let txn = db.begin_read().map_err(redb_err)?;
    let t = txn.open_table(SNAPSHOT).map_err(redb_err)?;
    let mut n = 0;
    for item in t.iter().map_err(redb_err)? {
        let (k, _) = item.map_err(redb_err)?;
        n += u64::from(k.value().starts_with(OLD_PREFIX) && k.value().ends_with(KEY_SNAP_META));
    }
    Ok(n)
}

/// Writes `meta` + `data` as the current snapshot in one durable transaction, unless the
/// stored one is already at least as new (a restart re-installs the stored snapshot; there is
/// nothing to write then). The one it replaces is kept as an old snapshot when `keep_old`
/// is above 0, and only the newest `keep_old` old ones stay. Blocking.
fn persist_snapshot(
    db: &redb::Database,
    key: &DataKey,
    meta: &SnapshotMeta,
    data: &[u8],
    keep_old: u64,
) -> io::Result<bool> {
    let txn = durable_write(db)?;
    {
        let mut t = txn.open_table(SNAPSHOT).map_err(redb_err)?;
        let stored: Option<SnapshotMeta> = match t.get(KEY_SNAP_META).map_err(redb_err)? {
            Some(v) => Some(codec::decode(
                key,
                Slot::Snapshot(KEY_SNAP_META),
                v.value(),
            )?),
            None => None,
        };
        if let Some(stored) = stored {
            if stored.last_log_id >= meta.last_log_id {
                return Ok(false);
            }
            let old_data = match t.get(KEY_SNAP_DATA).map_err(redb_err)? {
                Some(v) if keep_old > 0 => {
                    Some(codec::open(key, Slot::Snapshot(KEY_SNAP_DATA), v.value())?)
                }
                _ => None,
            };
            if let Some(old_data) = old_data {
                let (mk, dk) = old_keys(index_of(&stored.last_log_id));
                let m = codec::encode(key, Slot::Snapshot(&mk), &stored)?;
                let d = codec::seal(key, Slot::Snapshot(&dk), &old_data);
                t.insert(mk.as_str(), m.as_slice()).map_err(redb_err)?;
                t.insert(dk.as_str(), d.as_slice()).map_err(redb_err)?;
            }
        }
        let mut old: Vec<String> = Vec::new();
        for item in t.iter().map_err(redb_err)? {
            let (k, _) = item.map_err(redb_err)?;
            if k.value().starts_with(OLD_PREFIX) {
                old.push(k.value().to_string());
            }
        }
        // Two keys per snapshot, sorted by index: drop all but the newest `keep_old`.
        old.sort();
        let drop = old.len().saturating_sub(2 * keep_old as usize);
        for k in &old[..drop] {
            t.remove(k.as_str()).map_err(redb_err)?;
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
        let keep_old = self.keep_old;
        let data = self
            .db
            .run(move |db| {
                let data = serde_json::to_vec(&snap).map_err(io::Error::other)?;
                persist_snapshot(db, &key, &meta2, &data, keep_old)?;
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
            keep_old: self.keep_old.load(Ordering::Relaxed),
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
        let keep_old = self.keep_old.load(Ordering::Relaxed);
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
                persist_snapshot(db, &key, &meta2, &snapshot, keep_old)?;
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
