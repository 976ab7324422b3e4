//! Raft log storage over one redb database, `<dir>/raft.redb`.
//!
//! Tables (every value sealed with the manager's data key, XChaCha20-Poly1305, and
//! authenticated on every read; see [`crate::codec`]):
//! - `raft_log`: log index -> entry (JSON of the openraft entry);
//! - `raft_meta`: `vote`, `committed`, `last_purged`;
//! - `raft_snapshot`: `meta`, `data` of the current snapshot (written by the state machine),
//!   and `old/<index>/meta`, `old/<index>/data` of the old ones kept (`KeepOldSnapshots`).
//!
//! Durability: every write that Raft relies on (append, vote, truncate, purge, snapshot) is a
//! redb transaction committed with `Durability::Immediate` and two-phase commit, so it is
//! fsynced before the call returns — `append` calls its flush callback only after that. The
//! `committed` pointer is the exception: it is a hint that lets a restart re-apply the log
//! without waiting for a new commit, so it is written without an fsync and becomes durable with
//! the next durable commit (see [`LogStore::save_committed`]).
//!
//! Two-phase commit costs a second fsync per write. Without it, redb's recovery falls back to
//! the previous commit when the newest one fails its checksum; for a Raft log that would be
//! a silent loss of acknowledged entries, so we pay for the error instead.
//!
//! redb is synchronous: every transaction runs on tokio's blocking pool
//! (`Db::run`), never on an async worker thread.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{OptionalSend, RaftTypeConfig};
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};

use swarmd_crypto::DataKey;

use crate::codec::{self, Slot};
use crate::types::{C, Entry, LogId, Vote};

pub(crate) const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");
pub(crate) const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_snapshot");

const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_PURGED: &str = "last_purged";
pub(crate) const KEY_SNAP_META: &str = "meta";
pub(crate) const KEY_SNAP_DATA: &str = "data";

/// redb's page cache. Its default (1 GiB) filled with log pages that are read back at most
/// once (the newest entries are read from [`Recent`]): 4.2 KB per task, 419 MB, on a leader
/// placing 100,000 tasks.
const DB_CACHE_BYTES: usize = 32 << 20;

/// File name of the Raft database inside the configured directory.
pub const DB_FILE: &str = "raft.redb";

/// Maps a redb error to `io::Error`, keeping corruption recognisable as `InvalidData`.
pub(crate) fn redb_err(e: impl Into<redb::Error>) -> io::Error {
    match e.into() {
        redb::Error::Corrupted(msg) => codec::corrupt(format!("redb: {msg}")),
        redb::Error::Io(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

/// The shared handle to the redb database.
///
/// The `Option` lets [`Db::close`] release the file deterministically even though the log
/// store, its readers and the state machine (owned by openraft tasks) still hold the `Arc`:
/// a reopen in the same process would otherwise fail with "database already open". Once
/// closed, every operation fails with an error instead of touching the file.
pub(crate) struct Db {
    path: PathBuf,
    /// The data encryption key every record is sealed with.
    pub(crate) key: DataKey,
    db: RwLock<Option<Database>>,
    recent: Mutex<Recent>,
}

/// Batch actions the cache of recent entries ([`Recent`]) holds at most.
const RECENT_MAX_ACTIONS: usize = 16_384;

/// The newest log entries, decoded: a suffix of the log on disk (or nothing).
///
/// openraft reads every entry back right after appending it, to apply it and (on a leader)
/// to replicate it to each follower; from disk each read is a decryption and a JSON decode
/// of up to thousands of objects, which took a fifth of a busy leader's CPU. Entries are
/// cheap to clone (the batch is behind an `Arc`). Bounded by [`RECENT_MAX_ACTIONS`]; a
/// reader further behind goes to disk.
#[derive(Default)]
struct Recent {
    entries: VecDeque<Entry>,
    actions: usize,
}

fn actions_of(e: &Entry) -> usize {
    match &e.payload {
        openraft::EntryPayload::Normal(r) => r.0.actions.len().max(1),
        _ => 1,
    }
}

impl Recent {
    /// Records entries just made durable; they follow the log's last entry.
    fn appended(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else { return };
        if self
            .entries
            .back()
            .is_some_and(|l| l.log_id.index + 1 != first.log_id.index)
        {
            self.clear();
        }
        for e in entries {
            self.actions += actions_of(e);
            self.entries.push_back(e.clone());
        }
        while self.actions > RECENT_MAX_ACTIONS && self.entries.len() > 1 {
            if let Some(e) = self.entries.pop_front() {
                self.actions -= actions_of(&e);
            }
        }
    }

    /// Drops entries from index `from` on (a truncation).
    fn truncate(&mut self, from: u64) {
        while self.entries.back().is_some_and(|e| e.log_id.index >= from) {
            let e = self.entries.pop_back().expect("checked");
            self.actions -= actions_of(&e);
        }
    }

    /// Drops entries up to index `upto` (a purge).
    fn purge(&mut self, upto: u64) {
        while self.entries.front().is_some_and(|e| e.log_id.index <= upto) {
            let e = self.entries.pop_front().expect("checked");
            self.actions -= actions_of(&e);
        }
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.actions = 0;
    }

    /// The entries of `range` if the cache holds its start (and its end, when bounded).
    fn get(&self, range: &(Bound<u64>, Bound<u64>)) -> Option<Vec<Entry>> {
        let first = self.entries.front()?.log_id.index;
        let last = self.entries.back()?.log_id.index;
        let start = match range.0 {
            Bound::Included(i) => i,
            Bound::Excluded(i) => i.checked_add(1)?,
            Bound::Unbounded => 0,
        };
        let end = match range.1 {
            Bound::Included(i) => Some(i),
            Bound::Excluded(i) => Some(i.checked_sub(1)?),
            Bound::Unbounded => None,
        };
        if start < first || start > last || end.is_some_and(|e| e > last) {
            return None;
        }
        let end = end.unwrap_or(last);
        let from = (start - first) as usize;
        let to = (end.saturating_sub(first) as usize + 1).max(from);
        Some(self.entries.range(from..to).cloned().collect())
    }
}

impl Db {
    /// Opens or creates the database and makes sure the tables exist. Blocking.
    ///
    /// The integrity check on open verifies every page checksum, so a file altered outside
    /// redb is an error here (a plain redb open trusts the file and may panic later).
    pub(crate) fn open(path: &Path, key: DataKey) -> io::Result<Db> {
        let db = Self::builder().create(path).map_err(redb_err)?;
        Self::ready(path.to_path_buf(), key, db)
    }

    /// [`Db::open`] over a simulated device (the power-loss tests).
    #[cfg(test)]
    fn open_on(backend: impl redb::StorageBackend, key: DataKey) -> io::Result<Db> {
        let db = Self::builder()
            .create_with_backend(backend)
            .map_err(redb_err)?;
        Self::ready(PathBuf::from("<simulated device>"), key, db)
    }

    fn builder() -> redb::Builder {
        let mut builder = Database::builder();
        builder
            .set_check_integrity_on_open(true)
            .set_cache_size(DB_CACHE_BYTES);
        builder
    }

    /// Makes sure the tables exist.
    fn ready(path: PathBuf, key: DataKey, db: Database) -> io::Result<Db> {
        let txn = durable_write(&db)?;
        {
            txn.open_table(LOG).map_err(redb_err)?;
            txn.open_table(META).map_err(redb_err)?;
            txn.open_table(SNAPSHOT).map_err(redb_err)?;
        }
        txn.commit().map_err(redb_err)?;
        Ok(Db {
            path,
            key,
            db: RwLock::new(Some(db)),
            recent: Mutex::new(Recent::default()),
        })
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Entries of `range`, from the cache of recent entries when it holds them.
    async fn read_entries(
        self: &Arc<Self>,
        range: (Bound<u64>, Bound<u64>),
    ) -> io::Result<Vec<Entry>> {
        if let Some(hit) = self.recent().get(&range) {
            return Ok(hit);
        }
        let key = self.key.clone();
        self.run(move |db| read_entries(&key, db, range)).await
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` against the open database on the calling thread. Blocking.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&Database) -> io::Result<R>) -> io::Result<R> {
        let guard = self.db.read().unwrap_or_else(|e| e.into_inner());
        match guard.as_ref() {
            Some(db) => f(db),
            None => Err(io::Error::new(
                io::ErrorKind::NotConnected,
                format!("raft database {} is closed", self.path.display()),
            )),
        }
    }

    /// Runs `f` on tokio's blocking pool: redb transactions (and their fsyncs) never run on
    /// an async worker.
    pub(crate) async fn run<R, F>(self: &Arc<Self>, f: F) -> io::Result<R>
    where
        F: FnOnce(&Database) -> io::Result<R> + Send + 'static,
        R: Send + 'static,
    {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.with(f))
            .await
            .map_err(|e| io::Error::other(format!("raft storage task failed: {e}")))?
    }

    /// Closes the database file (waiting for a transaction in flight). Blocking; idempotent.
    pub(crate) fn close(&self) {
        self.recent().clear();
        let db = self.db.write().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(db) = db
            && let Err(e) = db.close()
        {
            tracing::warn!(path = %self.path.display(), error = %e, "closing raft database");
        }
    }

    /// Authenticates every record (log entries, metadata, snapshot). Blocking.
    ///
    /// Run at open so that corruption anywhere in the file is reported before Raft starts,
    /// not when (or if) openraft happens to read the damaged record.
    pub(crate) fn verify(&self) -> io::Result<()> {
        self.with(|db| {
            let txn = db.begin_read().map_err(redb_err)?;
            let log = txn.open_table(LOG).map_err(redb_err)?;
            let mut prev: Option<u64> = None;
            // Authentication and key continuity only: decoding is left to the reads that need
            // the entries, so a long log of big batches does not make every start slow.
            for item in log.iter().map_err(redb_err)? {
                let (k, v) = item.map_err(redb_err)?;
                let index = k.value();
                codec::open(&self.key, Slot::Log(index), v.value())?;
                if let Some(p) = prev
                    && index != p + 1
                {
                    return Err(codec::corrupt(format!(
                        "raft log has a hole between {p} and {index}"
                    )));
                }
                prev = Some(index);
            }
            let meta = txn.open_table(META).map_err(redb_err)?;
            let _: Option<Vote> = read_meta(&self.key, &meta, KEY_VOTE)?;
            let _: Option<Option<LogId>> = read_meta(&self.key, &meta, KEY_COMMITTED)?;
            let _: Option<LogId> = read_meta(&self.key, &meta, KEY_PURGED)?;
            // The current snapshot and the old ones kept (`KeepOldSnapshots`).
            let snap = txn.open_table(SNAPSHOT).map_err(redb_err)?;
            for item in snap.iter().map_err(redb_err)? {
                let (k, v) = item.map_err(redb_err)?;
                codec::open(&self.key, Slot::Snapshot(k.value()), v.value())?;
            }
            Ok(())
        })
    }
}

/// A write transaction that is fsynced (two-phase) on commit.
pub(crate) fn durable_write(db: &Database) -> io::Result<WriteTransaction> {
    let mut txn = db.begin_write().map_err(redb_err)?;
    txn.set_durability(Durability::Immediate)
        .map_err(redb_err)?;
    txn.set_two_phase_commit(true);
    Ok(txn)
}

fn decode_entry(key: &DataKey, index: u64, record: &[u8]) -> io::Result<Entry> {
    let entry: Entry = codec::decode(key, Slot::Log(index), record)?;
    if entry.log_id.index != index {
        return Err(codec::corrupt(format!(
            "raft log entry stored at {index} claims index {}",
            entry.log_id.index
        )));
    }
    Ok(entry)
}

fn read_meta<T: serde::de::DeserializeOwned>(
    data_key: &DataKey,
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> io::Result<Option<T>> {
    match table.get(key).map_err(redb_err)? {
        Some(v) => codec::decode(data_key, Slot::Meta(key), v.value()).map(Some),
        None => Ok(None),
    }
}

fn read_meta_db<T: serde::de::DeserializeOwned>(
    data_key: &DataKey,
    db: &Database,
    key: &str,
) -> io::Result<Option<T>> {
    let txn = db.begin_read().map_err(redb_err)?;
    let table = txn.open_table(META).map_err(redb_err)?;
    read_meta(data_key, &table, key)
}

fn bounds(range: &impl RangeBounds<u64>) -> (Bound<u64>, Bound<u64>) {
    (range.start_bound().cloned(), range.end_bound().cloned())
}

/// Reads entries in `range`, verifying each record and that the result has no hole.
fn read_entries(
    key: &DataKey,
    db: &Database,
    range: (Bound<u64>, Bound<u64>),
) -> io::Result<Vec<Entry>> {
    let txn = db.begin_read().map_err(redb_err)?;
    let table = txn.open_table(LOG).map_err(redb_err)?;
    let mut out: Vec<Entry> = Vec::new();
    for item in table.range(range).map_err(redb_err)? {
        let (k, v) = item.map_err(redb_err)?;
        let entry = decode_entry(key, k.value(), v.value())?;
        if let Some(last) = out.last()
            && entry.log_id.index != last.log_id.index + 1
        {
            return Err(codec::corrupt(format!(
                "raft log has a hole between {} and {}",
                last.log_id.index, entry.log_id.index
            )));
        }
        out.push(entry);
    }
    Ok(out)
}

/// The openraft log store. Cheap to clone the handle it wraps; openraft owns this value.
pub struct LogStore {
    db: Arc<Db>,
}

impl LogStore {
    pub(crate) fn new(db: Arc<Db>) -> Self {
        LogStore { db }
    }
}

/// Reads the log for replication and apply; shares the database with [`LogStore`].
pub struct LogReader {
    db: Arc<Db>,
}

impl RaftLogReader<C> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        self.db.read_entries(bounds(&range)).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        let key = self.db.key.clone();
        self.db
            .run(move |db| read_meta_db(&key, db, KEY_VOTE))
            .await
    }
}

impl RaftLogReader<C> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        self.db.read_entries(bounds(&range)).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        let key = self.db.key.clone();
        self.db
            .run(move |db| read_meta_db(&key, db, KEY_VOTE))
            .await
    }
}

impl RaftLogStorage<C> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<C>, io::Error> {
        let key = self.db.key.clone();
        self.db
            .run(move |db| {
                let last_purged: Option<LogId> = read_meta_db(&key, db, KEY_PURGED)?;
                let txn = db.begin_read().map_err(redb_err)?;
                let table = txn.open_table(LOG).map_err(redb_err)?;
                let last = match table.last().map_err(redb_err)? {
                    Some((k, v)) => Some(decode_entry(&key, k.value(), v.value())?.log_id),
                    None => None,
                };
                Ok(LogState {
                    last_log_id: last.or(last_purged),
                    last_purged_log_id: last_purged,
                })
            })
            .await
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        LogReader {
            db: self.db.clone(),
        }
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let record = codec::encode(&self.db.key, Slot::Meta(KEY_VOTE), vote)?;
        tracing::debug!(%vote, "raft: saving vote");
        self.db
            .run(move |db| {
                let txn = durable_write(db)?;
                {
                    let mut t = txn.open_table(META).map_err(redb_err)?;
                    t.insert(KEY_VOTE, record.as_slice()).map_err(redb_err)?;
                }
                txn.commit().map_err(redb_err)
            })
            .await
    }

    /// Persists the committed pointer so a restart re-applies the log up to it at once.
    ///
    /// Written with `Durability::None`: it becomes durable with the next durable commit (the
    /// next append). Losing the latest value in a crash is safe — committed entries are in the
    /// durable log either way, and [`crate::RaftNode::open`] waits for recovery, in which
    /// the leader commits them again — and it saves an fsync on every write.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        let record = codec::encode(&self.db.key, Slot::Meta(KEY_COMMITTED), &committed)?;
        self.db
            .run(move |db| {
                let mut txn = db.begin_write().map_err(redb_err)?;
                txn.set_durability(Durability::None).map_err(redb_err)?;
                {
                    let mut t = txn.open_table(META).map_err(redb_err)?;
                    t.insert(KEY_COMMITTED, record.as_slice())
                        .map_err(redb_err)?;
                }
                txn.commit().map_err(redb_err)
            })
            .await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        let key = self.db.key.clone();
        self.db
            .run(move |db| Ok(read_meta_db::<Option<LogId>>(&key, db, KEY_COMMITTED)?.flatten()))
            .await
    }

    /// Writes the entries in one durable transaction and reports the flush only after its
    /// commit (fsync) returned: "nothing acknowledged is lost".
    ///
    /// Awaiting the commit here (rather than returning early and flushing in the background)
    /// keeps every write serialized in submission order, as openraft requires, and makes the
    /// entries readable the moment this returns. openraft batches concurrent proposals into
    /// one append, so one fsync covers many writes.
    async fn append<I>(&mut self, entries: I, callback: IOFlushed<C>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = <C as RaftTypeConfig>::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<_> = entries.into_iter().collect();
        let (first, last) = match (entries.first(), entries.last()) {
            (Some(f), Some(l)) => (f.log_id.index, l.log_id.index),
            _ => {
                callback.io_completed(Ok(()));
                return Ok(());
            }
        };
        let key = self.db.key.clone();
        let shared = self.db.clone();
        let res = self
            .db
            .run(move |db| {
                // Encoded (JSON, then sealed) here on the blocking pool with the write: the
                // entries can be megabytes, too much CPU for an async worker.
                let mut records = Vec::with_capacity(entries.len());
                for entry in &entries {
                    let index = entry.log_id.index;
                    records.push((index, codec::encode(&key, Slot::Log(index), entry)?));
                }
                let txn = durable_write(db)?;
                {
                    let mut t = txn.open_table(LOG).map_err(redb_err)?;
                    for (index, record) in &records {
                        t.insert(*index, record.as_slice()).map_err(redb_err)?;
                    }
                }
                txn.commit().map_err(redb_err)?;
                shared.recent().appended(&entries);
                Ok(())
            })
            .await;
        match res {
            Ok(()) => {
                tracing::trace!(first, last, "raft: appended and synced log entries");
                callback.io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                tracing::error!(first, last, error = %e, "raft: log append failed");
                Err(e)
            }
        }
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.as_ref().map_or(0, |l| l.index + 1);
        tracing::debug!(from, "raft: truncating log");
        self.db.recent().truncate(from);
        self.db
            .run(move |db| {
                let txn = durable_write(db)?;
                {
                    let mut t = txn.open_table(LOG).map_err(redb_err)?;
                    t.retain_in(from.., |_, _| false).map_err(redb_err)?;
                }
                txn.commit().map_err(redb_err)
            })
            .await
    }

    /// Deletes entries up to `log_id` and records it as the last purged id, atomically.
    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let upto = log_id.index;
        let record = codec::encode(&self.db.key, Slot::Meta(KEY_PURGED), &log_id)?;
        tracing::debug!(upto, "raft: purging log");
        self.db.recent().purge(upto);
        self.db
            .run(move |db| {
                let txn = durable_write(db)?;
                {
                    let mut meta = txn.open_table(META).map_err(redb_err)?;
                    meta.insert(KEY_PURGED, record.as_slice())
                        .map_err(redb_err)?;
                    let mut t = txn.open_table(LOG).map_err(redb_err)?;
                    t.retain_in(..=upto, |_, _| false).map_err(redb_err)?;
                }
                txn.commit().map_err(redb_err)
            })
            .await
    }
}

/// How many log entries are on disk (tests and diagnostics). Blocking.
pub(crate) fn count_entries(db: &Database) -> io::Result<u64> {
    use redb::ReadableTableMetadata;
    let txn = db.begin_read().map_err(redb_err)?;
    let table = txn.open_table(LOG).map_err(redb_err)?;
    table.len().map_err(redb_err)
}

#[cfg(test)]
#[path = "storage_power_loss.rs"]
mod power_loss;

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::entry::RaftEntry;
    use openraft::vote::RaftLeaderId;

    fn log_id(term: u64, index: u64) -> LogId {
        let leader = openraft::alias::LeaderIdOf::<C>::new(term, 1).to_committed();
        openraft::LogId::new(leader, index)
    }

    /// A fixed key: the tests reopen the same file.
    fn key() -> DataKey {
        DataKey::from_bytes([7; 32])
    }

    fn open(dir: &Path) -> (Arc<Db>, LogStore) {
        let db = Arc::new(Db::open(&dir.join(DB_FILE), key()).unwrap());
        (db.clone(), LogStore::new(db))
    }

    #[tokio::test]
    async fn append_read_truncate_purge_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (db, mut store) = open(dir.path());
        let entries: Vec<Entry> = (1..=5).map(|i| Entry::new_blank(log_id(1, i))).collect();
        store.append(entries, IOFlushed::noop()).await.unwrap();
        let got = store.try_get_log_entries(2..4).await.unwrap();
        assert_eq!(
            got.iter().map(|e| e.log_id.index).collect::<Vec<_>>(),
            [2, 3]
        );

        store.truncate_after(Some(log_id(1, 4))).await.unwrap();
        store.purge(log_id(1, 2)).await.unwrap();
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(1, 2)));
        assert_eq!(state.last_log_id, Some(log_id(1, 4)));

        let vote = Vote::new(3, 1);
        store.save_vote(&vote).await.unwrap();
        store.save_committed(Some(log_id(1, 3))).await.unwrap();
        db.close();
        assert!(
            store.read_vote().await.is_err(),
            "closed db must refuse reads"
        );

        let (db, mut store) = open(dir.path());
        db.verify().unwrap();
        assert_eq!(store.read_vote().await.unwrap(), Some(vote));
        assert_eq!(store.read_committed().await.unwrap(), Some(log_id(1, 3)));
        let all = store.try_get_log_entries(..).await.unwrap();
        assert_eq!(
            all.iter().map(|e| e.log_id.index).collect::<Vec<_>>(),
            [3, 4]
        );

        // Purging everything leaves the purged id as the last log id.
        store.purge(log_id(1, 4)).await.unwrap();
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id, Some(log_id(1, 4)));
    }

    #[tokio::test]
    async fn a_corrupted_entry_is_an_error_not_data() {
        let dir = tempfile::tempdir().unwrap();
        let (db, mut store) = open(dir.path());
        let entries: Vec<Entry> = (1..=3).map(|i| Entry::new_blank(log_id(1, i))).collect();
        store.append(entries, IOFlushed::noop()).await.unwrap();

        // Flip one payload byte of entry 2, keeping redb's own page checksums valid: only
        // the record's authentication tag can notice.
        db.with(|db| {
            let txn = durable_write(db)?;
            {
                let mut t = txn.open_table(LOG).map_err(redb_err)?;
                let mut rec = t.get(2).map_err(redb_err)?.unwrap().value().to_vec();
                let last = rec.len() - 2;
                rec[last] ^= 0x01;
                t.insert(2, rec.as_slice()).map_err(redb_err)?;
            }
            txn.commit().map_err(redb_err)
        })
        .unwrap();
        // As after a restart: nothing cached, so the reads below go to the file.
        db.recent().clear();

        let err = store.try_get_log_entries(1..=3).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        assert!(err.to_string().contains("authentication"), "{err}");
        // Entries around it are still readable one by one.
        assert_eq!(store.try_get_log_entries(3..4).await.unwrap().len(), 1);
        assert_eq!(db.verify().unwrap_err().kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn recent_entries_are_a_bounded_suffix_and_answer_only_ranges_they_hold() {
        use std::ops::Bound::{Excluded, Included, Unbounded};
        let blank = |i| Entry::new_blank(log_id(1, i));
        let idx =
            |v: Option<Vec<Entry>>| v.map(|v| v.iter().map(|e| e.log_id.index).collect::<Vec<_>>());
        let mut r = Recent::default();
        assert_eq!(idx(r.get(&(Included(1), Unbounded))), None);
        r.appended(&(3..=6).map(blank).collect::<Vec<_>>());
        assert_eq!(idx(r.get(&(Included(4), Excluded(6)))), Some(vec![4, 5]));
        assert_eq!(
            idx(r.get(&(Included(3), Unbounded))),
            Some(vec![3, 4, 5, 6])
        );
        assert_eq!(
            idx(r.get(&(Included(2), Included(4)))),
            None,
            "start not held"
        );
        assert_eq!(
            idx(r.get(&(Included(5), Included(7)))),
            None,
            "end not held"
        );
        assert_eq!(idx(r.get(&(Included(7), Unbounded))), None);
        r.truncate(5);
        assert_eq!(idx(r.get(&(Included(3), Unbounded))), Some(vec![3, 4]));
        r.purge(3);
        r.appended(&[blank(5)]);
        assert_eq!(idx(r.get(&(Included(4), Unbounded))), Some(vec![4, 5]));
        // Not following the newest entry (e.g. after a snapshot): starts over.
        r.appended(&[blank(9)]);
        assert_eq!(idx(r.get(&(Included(4), Unbounded))), None);
        assert_eq!(idx(r.get(&(Included(9), Unbounded))), Some(vec![9]));
        // Bounded: the oldest entries go first.
        r.appended(
            &(10..10 + RECENT_MAX_ACTIONS as u64)
                .map(blank)
                .collect::<Vec<_>>(),
        );
        assert_eq!(r.actions, RECENT_MAX_ACTIONS);
        assert_eq!(r.entries.front().map(|e| e.log_id.index), Some(10));
    }
}
