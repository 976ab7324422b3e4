//! The in-memory replica and its deterministic apply.

use std::collections::HashSet;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use serde::{Deserialize, Serialize};
use swarmd_types::{Kind, Object};
use tokio::sync::{broadcast, watch};

use crate::{Batch, Event, EventAction, EventBatch, StoreAction, StoreError, Tables};

/// Capacity of the event channel; a watcher that falls further behind gets `Lagged` and
/// must resync from a fresh view.
const EVENT_CAPACITY: usize = 4096;

/// A full copy of the store at a log index: what Raft snapshots hold.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Snapshot {
    pub index: u64,
    pub tables: Tables,
}

struct Inner {
    tables: Tables,
    /// Index of the last applied entry.
    applied: u64,
}

/// One manager's replica of the store.
pub struct MemoryStore {
    inner: RwLock<Inner>,
    events: broadcast::Sender<Arc<EventBatch>>,
    /// The applied index, for waiters: entries that change nothing (a new leader's blank
    /// entry, a membership change) advance it without any event.
    applied: watch::Sender<u64>,
}

/// A consistent read view. Hold it briefly: it blocks apply.
pub struct ReadTx<'a> {
    guard: RwLockReadGuard<'a, Inner>,
}

impl ReadTx<'_> {
    pub fn tables(&self) -> &Tables {
        &self.guard.tables
    }
    pub fn applied_index(&self) -> u64 {
        self.guard.applied
    }
}

impl std::ops::Deref for ReadTx<'_> {
    type Target = Tables;
    fn deref(&self) -> &Tables {
        &self.guard.tables
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        MemoryStore {
            inner: RwLock::new(Inner {
                tables: Tables::default(),
                applied: 0,
            }),
            events,
            applied: watch::Sender::new(0),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` against a consistent view.
    pub fn view<R>(&self, f: impl FnOnce(&ReadTx<'_>) -> R) -> R {
        let tx = ReadTx { guard: self.read() };
        f(&tx)
    }

    /// A consistent view plus a receiver of every event after it (no gap, no overlap).
    pub fn view_and_watch<R>(
        &self,
        f: impl FnOnce(&ReadTx<'_>) -> R,
    ) -> (R, broadcast::Receiver<Arc<EventBatch>>) {
        let tx = ReadTx { guard: self.read() };
        let rx = self.events.subscribe();
        (f(&tx), rx)
    }

    /// Events from now on.
    pub fn watch(&self) -> broadcast::Receiver<Arc<EventBatch>> {
        self.events.subscribe()
    }

    /// The applied index as it moves, whether or not an entry produced events.
    pub fn applied_watch(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    pub fn applied_index(&self) -> u64 {
        self.read().applied
    }

    /// Applies a committed entry. Deterministic: same state + same entry = same result on
    /// every replica. All actions take effect or none does. Entries at or below the
    /// applied index are ignored (replays after restart).
    pub fn apply(&self, index: u64, batch: &Batch) -> Result<(), StoreError> {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if index <= inner.applied && index != 0 {
            return Ok(());
        }
        let result = validate(&inner.tables, batch);
        inner.applied = index;
        self.applied.send_replace(index);
        result?;
        let mut events = Vec::with_capacity(batch.actions.len());
        for action in &batch.actions {
            match action {
                StoreAction::Create(obj) => {
                    let mut obj = obj.clone();
                    let meta = obj.meta_mut();
                    meta.version = index;
                    meta.created_at = batch.proposed_at.clone();
                    meta.updated_at = batch.proposed_at.clone();
                    // Validated: no object with this ID exists.
                    let object = inner.tables.insert_new(obj);
                    events.push(Event {
                        action: EventAction::Created,
                        object,
                    });
                }
                StoreAction::Update(obj) => {
                    let mut obj = obj.clone();
                    let meta = obj.meta_mut();
                    meta.version = index;
                    meta.updated_at = batch.proposed_at.clone();
                    // Validated: the object exists at the version the update read.
                    let object = inner.tables.update(obj);
                    events.push(Event {
                        action: EventAction::Updated,
                        object,
                    });
                }
                StoreAction::Remove { kind, id } => {
                    if let Some(old) = inner.tables.remove(*kind, id) {
                        events.push(Event {
                            action: EventAction::Removed,
                            object: old,
                        });
                    }
                }
            }
        }
        // Sent under the write lock so `view_and_watch` sees each commit exactly once.
        let _ = self
            .events
            .send(Arc::new(EventBatch::Commit { index, events }));
        Ok(())
    }

    /// Marks an entry that carried no store change (Raft blank/membership entries) applied.
    pub fn advance(&self, index: u64) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if index > inner.applied {
            inner.applied = index;
            self.applied.send_replace(index);
        }
    }

    /// A full copy for a Raft snapshot.
    pub fn snapshot(&self) -> Snapshot {
        let inner = self.read();
        Snapshot {
            index: inner.applied,
            tables: inner.tables.clone(),
        }
    }

    /// Replaces the whole state (installing a snapshot) and tells watchers to resync.
    pub fn restore(&self, snapshot: Snapshot) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let mut tables = snapshot.tables;
        tables.reindex();
        inner.tables = tables;
        inner.applied = snapshot.index;
        self.applied.send_replace(snapshot.index);
        let _ = self.events.send(Arc::new(EventBatch::Reset {
            index: snapshot.index,
        }));
    }
}

fn validate(tables: &Tables, batch: &Batch) -> Result<(), StoreError> {
    let mut touched: HashSet<(Kind, &str)> = HashSet::new();
    // Names claimed or released earlier in this batch.
    let mut claimed: HashSet<(Kind, String)> = HashSet::new();
    let mut released: HashSet<(Kind, String)> = HashSet::new();
    for action in &batch.actions {
        let (kind, id) = action.target();
        if !touched.insert((kind, id)) {
            return Err(StoreError::DuplicateInBatch {
                kind,
                id: id.to_string(),
            });
        }
        match action {
            StoreAction::Create(obj) => {
                if tables.version_of(kind, id).is_some() {
                    return Err(StoreError::Exists {
                        kind,
                        id: id.to_string(),
                    });
                }
                check_name(tables, obj, &mut claimed, &released)?;
            }
            StoreAction::Update(obj) => {
                let Some(current) = tables.version_of(kind, id) else {
                    return Err(StoreError::NotFound {
                        kind,
                        id: id.to_string(),
                    });
                };
                if current != obj.meta().version {
                    return Err(StoreError::VersionConflict {
                        kind,
                        id: id.to_string(),
                    });
                }
                // Kinds without names (tasks above all) need no second lookup.
                let old_name = match kind {
                    Kind::Task | Kind::Node | Kind::Cluster => None,
                    _ => tables.unique_name_of(kind, id).flatten(),
                };
                if old_name != obj.unique_name() {
                    if let Some(old) = old_name {
                        released.insert((kind, old.to_string()));
                    }
                    check_name(tables, obj, &mut claimed, &released)?;
                }
            }
            StoreAction::Remove { .. } => {
                let Some(old_name) = tables.unique_name_of(kind, id) else {
                    return Err(StoreError::NotFound {
                        kind,
                        id: id.to_string(),
                    });
                };
                if let Some(name) = old_name {
                    released.insert((kind, name.to_string()));
                }
            }
        }
    }
    Ok(())
}

fn check_name(
    tables: &Tables,
    obj: &Object,
    claimed: &mut HashSet<(Kind, String)>,
    released: &HashSet<(Kind, String)>,
) -> Result<(), StoreError> {
    let Some(name) = obj.unique_name() else {
        return Ok(());
    };
    let key = (obj.kind(), name.to_string());
    let taken = tables
        .id_by_name(obj.kind(), name)
        .is_some_and(|owner| owner != obj.id() && !released.contains(&key));
    if taken || !claimed.insert(key) {
        return Err(StoreError::NameConflict {
            kind: obj.kind(),
            name: name.to_string(),
        });
    }
    Ok(())
}
