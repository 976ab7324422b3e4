//! Writing to the store: build actions against a view, propose them, retry on conflict.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use swarmd_types::{Kind, Object, timefmt};

use crate::{Batch, MemoryStore, ReadTx, StoreAction, StoreError};

/// How many times `Store::update` re-runs its closure after a version conflict caused by
/// a concurrent writer.
const MAX_CONFLICT_RETRIES: usize = 8;

/// Most actions per Raft entry when a large change is split (`Store::batch`).
pub const MAX_ACTIONS_PER_ENTRY: usize = 500;

/// Why a proposal failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProposeError {
    /// Rejected by apply; certainly not applied.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// This manager is not the leader; certainly not applied here.
    #[error("this node is not the raft leader")]
    NotLeader { leader_addr: Option<String> },
    /// No quorum or shutting down; certainly not applied.
    #[error("the swarm does not have a leader: {0}")]
    Unavailable(String),
    /// Sent, but whether it committed is unknown (timeout or leadership lost mid-flight).
    #[error("outcome of the change is unknown: {0}")]
    OutcomeUnknown(String),
}

/// Commits a batch to every replica (Raft in production) and returns once it is applied
/// locally, with its log index.
#[async_trait::async_trait]
pub trait Proposer: Send + Sync + 'static {
    async fn propose(&self, batch: Batch) -> Result<u64, ProposeError>;
}

/// A proposer that applies straight to one local replica, without consensus.
/// **Fake for unit tests** of the components above the store; production uses Raft.
pub struct LocalProposer {
    store: Arc<MemoryStore>,
    next: AtomicU64,
}

impl LocalProposer {
    pub fn new(store: Arc<MemoryStore>) -> Self {
        let next = AtomicU64::new(store.applied_index() + 1);
        LocalProposer { store, next }
    }
}

#[async_trait::async_trait]
impl Proposer for LocalProposer {
    async fn propose(&self, batch: Batch) -> Result<u64, ProposeError> {
        let index = self.next.fetch_add(1, Ordering::SeqCst);
        self.store.apply(index, &batch)?;
        Ok(index)
    }
}

/// Actions collected by an update closure.
#[derive(Debug, Default)]
pub struct WriteTx {
    actions: Vec<StoreAction>,
}

impl WriteTx {
    pub fn create(&mut self, obj: impl Into<Object>) {
        self.actions.push(StoreAction::Create(obj.into()));
    }
    /// `obj.meta.version` must be the version read.
    pub fn update(&mut self, obj: impl Into<Object>) {
        self.actions.push(StoreAction::Update(obj.into()));
    }
    pub fn remove(&mut self, kind: Kind, id: impl Into<String>) {
        self.actions.push(StoreAction::Remove {
            kind,
            id: id.into(),
        });
    }
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }
    pub fn len(&self) -> usize {
        self.actions.len()
    }
    pub fn into_actions(self) -> Vec<StoreAction> {
        self.actions
    }
}

/// The store as components use it: local reads, writes through the proposer.
#[derive(Clone)]
pub struct Store {
    mem: Arc<MemoryStore>,
    proposer: Arc<dyn Proposer>,
}

impl Store {
    pub fn new(mem: Arc<MemoryStore>, proposer: Arc<dyn Proposer>) -> Self {
        Store { mem, proposer }
    }

    pub fn memory(&self) -> &Arc<MemoryStore> {
        &self.mem
    }

    /// Reads from the local replica.
    pub fn view<R>(&self, f: impl FnOnce(&ReadTx<'_>) -> R) -> R {
        self.mem.view(f)
    }

    /// Builds a change against the current state and commits it as one entry. If a
    /// concurrent writer changed an object the closure read, the closure runs again on
    /// the new state. The closure must be free of side effects other than on `tx`.
    pub async fn update<R, E, F>(&self, mut f: F) -> Result<R, E>
    where
        F: FnMut(&ReadTx<'_>, &mut WriteTx) -> Result<R, E>,
        E: From<ProposeError>,
    {
        let mut attempt = 0;
        loop {
            let mut tx = WriteTx::default();
            let r = self.mem.view(|v| f(v, &mut tx))?;
            if tx.is_empty() {
                return Ok(r);
            }
            let batch = Batch {
                actions: tx.into_actions(),
                proposed_at: timefmt::now(),
            };
            match self.proposer.propose(batch).await {
                Ok(_) => return Ok(r),
                Err(ProposeError::Store(StoreError::VersionConflict { .. }))
                    if attempt + 1 < MAX_CONFLICT_RETRIES =>
                {
                    attempt += 1;
                    tracing::debug!(attempt, "store update conflicted; retrying");
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Commits many independent actions, split into entries of at most
    /// [`MAX_ACTIONS_PER_ENTRY`]. Each entry is atomic; the whole is not. Returns how many
    /// entries failed (the first error is returned if all failed).
    pub async fn batch(&self, actions: Vec<StoreAction>) -> Result<usize, ProposeError> {
        let mut failed = 0;
        let mut first_err = None;
        let chunks: Vec<Vec<StoreAction>> = actions
            .chunks(MAX_ACTIONS_PER_ENTRY)
            .map(<[StoreAction]>::to_vec)
            .collect();
        let n = chunks.len();
        for chunk in chunks {
            let batch = Batch {
                actions: chunk,
                proposed_at: timefmt::now(),
            };
            if let Err(e) = self.proposer.propose(batch).await {
                failed += 1;
                if matches!(
                    e,
                    ProposeError::NotLeader { .. } | ProposeError::Unavailable(_)
                ) {
                    return Err(e);
                }
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) if failed == n => Err(e),
            _ => Ok(failed),
        }
    }

    /// Proposes a prepared batch as is.
    pub async fn propose(&self, batch: Batch) -> Result<u64, ProposeError> {
        self.proposer.propose(batch).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EventAction, EventBatch};
    use swarmd_types::{Service, Task, models::ServiceSpec};

    fn service(id: &str, name: &str) -> Service {
        Service {
            id: id.into(),
            spec: ServiceSpec {
                name: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn store() -> Store {
        let mem = Arc::new(MemoryStore::new());
        Store::new(mem.clone(), Arc::new(LocalProposer::new(mem)))
    }

    #[tokio::test]
    async fn create_sets_version_and_rejects_duplicate_names() {
        let s = store();
        s.update(|_, tx| {
            tx.create(service("a", "web"));
            Ok::<_, ProposeError>(())
        })
        .await
        .unwrap();
        let v = s.view(|t| t.services["a"].meta.version);
        assert_eq!(v, 1);
        let err = s
            .update(|_, tx| {
                tx.create(service("b", "web"));
                Ok::<_, ProposeError>(())
            })
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            ProposeError::Store(StoreError::NameConflict { .. })
        ));
        assert!(s.view(|t| !t.services.contains_key("b")));
    }

    #[tokio::test]
    async fn stale_update_conflicts_and_batch_is_atomic() {
        let s = store();
        s.update(|_, tx| {
            tx.create(service("a", "web"));
            Ok::<_, ProposeError>(())
        })
        .await
        .unwrap();
        let stale = s.view(|t| t.services["a"].clone());
        s.update(|t, tx| {
            let mut svc = t.services["a"].clone();
            svc.spec_version += 1;
            tx.update(svc);
            Ok::<_, ProposeError>(())
        })
        .await
        .unwrap();
        // A batch with a stale update and a valid create applies neither.
        let batch = Batch {
            actions: vec![
                StoreAction::Create(service("c", "other").into()),
                StoreAction::Update(stale.into()),
            ],
            proposed_at: timefmt::now(),
        };
        let err = s.propose(batch).await.unwrap_err();
        assert!(matches!(
            err,
            ProposeError::Store(StoreError::VersionConflict { .. })
        ));
        assert!(s.view(|t| !t.services.contains_key("c")));
        assert_eq!(s.view(|t| t.services["a"].spec_version), 1);
    }

    #[tokio::test]
    async fn rename_frees_the_old_name_and_indexes_follow() {
        let s = store();
        s.update(|_, tx| {
            tx.create(service("a", "web"));
            tx.create(Task {
                id: "t1".into(),
                service_id: "a".into(),
                node_id: "n1".into(),
                ..Default::default()
            });
            Ok::<_, ProposeError>(())
        })
        .await
        .unwrap();
        s.update(|t, tx| {
            let mut svc = t.services["a"].clone();
            svc.spec.name = Some("api".into());
            tx.update(svc);
            tx.create(service("b", "web"));
            Ok::<_, ProposeError>(())
        })
        .await
        .unwrap();
        s.view(|t| {
            assert_eq!(t.id_by_name(Kind::Service, "web"), Some("b"));
            assert_eq!(t.id_by_name(Kind::Service, "api"), Some("a"));
            assert_eq!(t.tasks_of_service("a").count(), 1);
            assert_eq!(t.tasks_on_node("n1").count(), 1);
        });
        s.update(|_, tx| {
            tx.remove(Kind::Task, "t1");
            Ok::<_, ProposeError>(())
        })
        .await
        .unwrap();
        s.view(|t| assert_eq!(t.tasks_of_service("a").count(), 0));
    }

    #[tokio::test]
    async fn watch_sees_each_commit_once_and_restore_resets() {
        let s = store();
        let (_, mut rx) = s.memory().view_and_watch(|_| ());
        s.update(|_, tx| {
            tx.create(service("a", "web"));
            Ok::<_, ProposeError>(())
        })
        .await
        .unwrap();
        let ev = rx.recv().await.unwrap();
        match &*ev {
            EventBatch::Commit { index, events } => {
                assert_eq!(*index, 1);
                assert_eq!(events.len(), 1);
                assert_eq!(events[0].action, EventAction::Created);
            }
            other => panic!("unexpected {other:?}"),
        }
        let snap = s.memory().snapshot();
        let json = serde_json::to_vec(&snap).unwrap();
        let other = MemoryStore::new();
        let mut rx2 = other.watch();
        other.restore(serde_json::from_slice(&json).unwrap());
        assert!(matches!(
            &*rx2.recv().await.unwrap(),
            EventBatch::Reset { index: 1 }
        ));
        other.view(|t| assert_eq!(t.id_by_name(Kind::Service, "web"), Some("a")));
    }

    /// **Fake** proposer that lands a concurrent write before the first proposal.
    struct RacingProposer {
        inner: LocalProposer,
        raced: std::sync::atomic::AtomicBool,
    }

    #[async_trait::async_trait]
    impl Proposer for RacingProposer {
        async fn propose(&self, batch: Batch) -> Result<u64, ProposeError> {
            if !self.raced.swap(true, Ordering::SeqCst) {
                let mut other = self.inner.store.view(|t| t.services["a"].clone());
                other.spec_version += 1;
                self.inner
                    .propose(Batch {
                        actions: vec![StoreAction::Update(other.into())],
                        proposed_at: timefmt::now(),
                    })
                    .await?;
            }
            self.inner.propose(batch).await
        }
    }

    #[tokio::test]
    async fn concurrent_writer_conflict_reruns_the_closure() {
        let mem = Arc::new(MemoryStore::new());
        let setup = Store::new(mem.clone(), Arc::new(LocalProposer::new(mem.clone())));
        setup
            .update(|_, tx| {
                tx.create(service("a", "web"));
                Ok::<_, ProposeError>(())
            })
            .await
            .unwrap();
        let s = Store::new(
            mem.clone(),
            Arc::new(RacingProposer {
                inner: LocalProposer::new(mem.clone()),
                raced: Default::default(),
            }),
        );
        let mut runs = 0;
        s.update(|t, tx| {
            runs += 1;
            let mut svc = t.services["a"].clone();
            svc.spec_version += 10;
            tx.update(svc);
            Ok::<_, ProposeError>(())
        })
        .await
        .unwrap();
        assert_eq!(runs, 2);
        assert_eq!(s.view(|t| t.services["a"].spec_version), 11);
    }
}
