//! Power loss: every write the log store acknowledged survives a crash at any point.
//!
//! A kill -9 keeps the kernel's page cache, so the end-to-end restart tests cannot see a
//! missing fsync. Here redb runs over [`Disk`], a storage backend that keeps what was synced
//! apart from what was only written. At a chosen crash point (the n-th write, resize or sync)
//! the device goes away: that call and every later one fails. The file a restart sees is
//! the synced bytes plus a random part of the unsynced writes, sector by sector, as a disk
//! that reorders its cache may leave it. Reopened, the store must open and authenticate,
//! hold every entry whose `append` returned (minus what an acknowledged purge or truncation
//! removed) and the last vote saved. The operation under way at the crash may or may not
//! have happened; either is correct.
//!
//! Turning the fsync off (`Durability::None` in `durable_write`) makes this test fail: the
//! acknowledged entries are then only in the unsynced part.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::sync::{Arc, Mutex};

use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, RaftLogReader, RaftLogStorage};
use openraft::vote::RaftLeaderId;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng};
use redb::StorageBackend;
use swarmd_crypto::DataKey;
use swarmd_store::Batch;

use super::{Db, LogStore};
use crate::types::{Entry, LogId, Request, Vote};

/// The unit a disk persists whole.
const SECTOR: usize = 512;

/// A write the device took but has not synced.
enum Unsynced {
    Write(u64, Vec<u8>),
    SetLen(u64),
}

/// The simulated device: synced bytes, the bytes as written, and what lies between.
struct Device {
    synced: Vec<u8>,
    written: Vec<u8>,
    unsynced: Vec<Unsynced>,
    ops: u64,
    /// The operation (1-based) at which power is lost; `u64::MAX`: never.
    crash_at: u64,
    crashed: bool,
}

impl Device {
    fn new(image: Vec<u8>, crash_at: u64) -> Self {
        Device {
            synced: image.clone(),
            written: image,
            unsynced: Vec::new(),
            ops: 0,
            crash_at,
            crashed: false,
        }
    }

    /// Counts a mutating operation; fails it (and all later ones) at the crash point.
    fn step(&mut self) -> io::Result<()> {
        if !self.crashed {
            self.ops += 1;
            self.crashed = self.ops >= self.crash_at;
        }
        if self.crashed {
            return Err(io::Error::other("power lost"));
        }
        Ok(())
    }

    /// What a restart finds: the synced bytes plus a random subset of the unsynced
    /// sectors and resizes, applied in the order they were issued.
    fn after_power_loss(&self, rng: &mut StdRng) -> Vec<u8> {
        let mut image = self.synced.clone();
        for u in &self.unsynced {
            match u {
                Unsynced::SetLen(len) => {
                    if rng.random_bool(0.5) {
                        image.resize(*len as usize, 0);
                    }
                }
                Unsynced::Write(offset, data) => {
                    for (i, sector) in data.chunks(SECTOR).enumerate() {
                        if rng.random_bool(0.5) {
                            continue;
                        }
                        let at = *offset as usize + i * SECTOR;
                        if image.len() < at + sector.len() {
                            image.resize(at + sector.len(), 0);
                        }
                        image[at..at + sector.len()].copy_from_slice(sector);
                    }
                }
            }
        }
        image
    }
}

#[derive(Clone)]
struct Disk(Arc<Mutex<Device>>);

impl Disk {
    fn device(&self) -> std::sync::MutexGuard<'_, Device> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl fmt::Debug for Disk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Disk")
    }
}

impl StorageBackend for Disk {
    fn len(&self) -> Result<u64, io::Error> {
        Ok(self.device().written.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        let d = self.device();
        let at = offset as usize;
        let bytes = d
            .written
            .get(at..at + out.len())
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end"))?;
        out.copy_from_slice(bytes);
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        let mut d = self.device();
        d.step()?;
        d.written.resize(len as usize, 0);
        d.unsynced.push(Unsynced::SetLen(len));
        Ok(())
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        let mut d = self.device();
        d.step()?;
        d.synced = d.written.clone();
        d.unsynced.clear();
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        let mut d = self.device();
        d.step()?;
        let at = offset as usize;
        if d.written.len() < at + data.len() {
            d.written.resize(at + data.len(), 0);
        }
        d.written[at..at + data.len()].copy_from_slice(data);
        d.unsynced.push(Unsynced::Write(offset, data.to_vec()));
        Ok(())
    }
}

fn key() -> DataKey {
    DataKey::from_bytes([9; 32])
}

fn log_id(term: u64, index: u64) -> LogId {
    openraft::LogId::new(
        openraft::alias::LeaderIdOf::<crate::types::C>::new(term, 1).to_committed(),
        index,
    )
}

/// An entry whose payload is `size` bytes, so entries span pages now and then.
fn entry(term: u64, index: u64, size: usize) -> Entry {
    let batch = Batch {
        actions: Vec::new(),
        proposed_at: "x".repeat(size),
    };
    Entry::new_normal(log_id(term, index), Request::new(batch))
}

/// What the store acknowledged, and the operation in flight when power went.
#[derive(Default)]
struct Acked {
    /// Every acknowledged entry still meant to be in the log, by index.
    entries: BTreeMap<u64, LogId>,
    vote: Option<Vote>,
    purged: Option<u64>,
    /// Indexes the operation in flight may have removed (a purge or truncation).
    maybe_removed: Option<std::ops::RangeInclusive<u64>>,
    /// A vote the operation in flight may have saved.
    maybe_vote: Option<Vote>,
}

/// Runs a seeded workload of appends, votes, commits, truncations and purges until it ends
/// or the device loses power. Returns what was acknowledged.
async fn workload(store: &mut LogStore, rng: &mut StdRng) -> Acked {
    let mut acked = Acked::default();
    let mut next = 1u64;
    let mut term = 1u64;
    for _ in 0..60 {
        let res = match rng.random_range(0..12) {
            0 => {
                term += 1;
                let vote = Vote::new(term, 1 + rng.random_range(0..3));
                acked.maybe_vote = Some(vote);
                let r = store.save_vote(&vote).await;
                if r.is_ok() {
                    acked.vote = Some(vote);
                }
                r
            }
            1 if next > 3 => {
                // Truncate the last one or two entries (a new leader overwrites them).
                let keep = next - 1 - rng.random_range(0..2).min(next - 2);
                acked.maybe_removed = Some(keep + 1..=next);
                let r = store.truncate_after(Some(log_id(term, keep))).await;
                if r.is_ok() {
                    acked.entries.retain(|i, _| *i <= keep);
                    next = keep + 1;
                }
                r
            }
            2 if next > 10 => {
                let upto = acked.purged.unwrap_or(0) + 1 + rng.random_range(0..4);
                let upto = upto.min(next - 2);
                acked.maybe_removed = Some(0..=upto);
                let r = store.purge(acked.entries[&upto]).await;
                if r.is_ok() {
                    acked.entries.retain(|i, _| *i > upto);
                    acked.purged = Some(upto);
                }
                r
            }
            3 if next > 1 => store.save_committed(Some(log_id(term, next - 1))).await,
            _ => {
                let n = 1 + rng.random_range(0..3);
                let entries: Vec<Entry> = (next..next + n)
                    .map(|i| entry(term, i, 10 + rng.random_range(0..6000) as usize))
                    .collect();
                let r = store.append(entries, IOFlushed::noop()).await;
                if r.is_ok() {
                    for i in next..next + n {
                        acked.entries.insert(i, log_id(term, i));
                    }
                    next += n;
                }
                r
            }
        };
        if res.is_err() {
            return acked;
        }
        acked.maybe_removed = None;
        acked.maybe_vote = None;
    }
    acked
}

/// One run: a fresh device losing power at `crash_at`, then a restart from what it kept.
async fn crash_and_restart(seed: u64, crash_at: u64) -> Result<u64, String> {
    let disk = Disk(Arc::new(Mutex::new(Device::new(Vec::new(), crash_at))));
    let mut rng = StdRng::seed_from_u64(seed);
    let acked = match Db::open_on(disk.clone(), key()) {
        Ok(db) => {
            let db = Arc::new(db);
            let acked = workload(&mut LogStore::new(db.clone()), &mut rng).await;
            db.close();
            acked
        }
        // Power went while the empty database was being made: nothing was acknowledged.
        Err(_) => Acked::default(),
    };
    let (image, ops) = {
        let d = disk.device();
        (d.after_power_loss(&mut rng), d.ops)
    };
    let ctx = |what: &str| format!("seed {seed}, crash at op {crash_at}: {what}");

    let db = Db::open_on(
        Disk(Arc::new(Mutex::new(Device::new(image, u64::MAX)))),
        key(),
    )
    .map_err(|e| ctx(&format!("the store does not open after the crash: {e}")))?;
    db.verify()
        .map_err(|e| ctx(&format!("the store fails authentication: {e}")))?;
    let mut store = LogStore::new(Arc::new(db));
    let held: BTreeMap<u64, LogId> = store
        .try_get_log_entries(..)
        .await
        .map_err(|e| ctx(&format!("reading the log: {e}")))?
        .iter()
        .map(|e| (e.log_id.index, e.log_id))
        .collect();
    for (index, id) in &acked.entries {
        if acked
            .maybe_removed
            .as_ref()
            .is_some_and(|r| r.contains(index))
        {
            continue;
        }
        if held.get(index) != Some(id) {
            return Err(ctx(&format!(
                "acknowledged entry {id} is lost; the log holds {:?}",
                held.keys().collect::<Vec<_>>()
            )));
        }
    }
    let vote = store
        .read_vote()
        .await
        .map_err(|e| ctx(&format!("reading the vote: {e}")))?;
    if vote != acked.vote && (acked.maybe_vote.is_none() || vote != acked.maybe_vote) {
        return Err(ctx(&format!(
            "the vote is {vote:?}, acknowledged {:?}",
            acked.vote
        )));
    }
    Ok(ops)
}

#[tokio::test]
async fn acknowledged_writes_survive_power_loss_at_every_crash_point() {
    // How many device operations a whole run takes, to spread crash points over it.
    let seeds = [1u64, 0xdead_beef];
    let mut runs = 0;
    for seed in seeds {
        let total = crash_and_restart(seed, u64::MAX).await.unwrap();
        assert!(
            total > 100,
            "the workload is too small to test: {total} ops"
        );
        let step = (total / 60).max(1);
        let mut at = 1;
        while at <= total {
            if let Err(e) = crash_and_restart(seed ^ at, at).await {
                panic!("{e}");
            }
            runs += 1;
            at += step;
        }
    }
    assert!(runs >= 100, "{runs} crash points");
}
