//! Writing to the store: build actions against a view, propose them, retry on conflict.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use swarmd_types::error::SwarmError;
use swarmd_types::{Kind, Object, timefmt};

use crate::{Batch, MemoryStore, ReadTx, StoreAction, StoreError};

/// How many times `Store::update` re-runs its closure after a version conflict caused by
/// a concurrent writer.
const MAX_CONFLICT_RETRIES: usize = 8;

/// Most actions per Raft entry when a large change is split ([`Store::batch`],
/// [`Store::update_chunked`]). A task is about 1-2 KB of JSON, so an entry stays within a few
/// MB: it is written, replicated and applied well inside the proposal deadline, and a
/// follower's heartbeats never queue behind hundreds of MB.
pub const MAX_ACTIONS_PER_ENTRY: usize = 2000;

/// Entries of one split change proposed before the first of them has committed, so Raft
/// can append (and fsync) the next while the previous one is applied.
const CHUNKS_IN_FLIGHT: usize = 3;

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

/// How a failed write reads at the Docker API: swarmkit's answers for the same refusals.
impl From<ProposeError> for SwarmError {
    fn from(e: ProposeError) -> Self {
        match e {
            ProposeError::Store(StoreError::NameConflict { kind, name }) => {
                SwarmError::already_exists(format!(
                    "name conflicts with an existing object: {kind} {name} already exists"
                ))
            }
            ProposeError::Store(StoreError::VersionConflict { .. }) => {
                SwarmError::out_of_sequence()
            }
            ProposeError::Store(StoreError::NotFound { kind, id }) => {
                SwarmError::not_found(kind.as_str(), id)
            }
            ProposeError::Store(e) => SwarmError::internal(e),
            e @ (ProposeError::NotLeader { .. } | ProposeError::Unavailable(_)) => {
                // Whatever the cause (no leader elected, no quorum, shutting down), the
                // user's remedy is Docker's: get a majority of managers back.
                tracing::debug!(error = %e, "write refused: no leader");
                SwarmError::no_leader()
            }
            e @ ProposeError::OutcomeUnknown(_) => SwarmError::deadline_exceeded(e),
        }
    }
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
    pub async fn update<R, E, F>(&self, f: F) -> Result<R, E>
    where
        F: FnMut(&ReadTx<'_>, &mut WriteTx) -> Result<R, E>,
        E: From<ProposeError>,
    {
        self.update_with(f, false).await.map(|(r, _)| r)
    }

    /// Like [`Store::update`], for changes that may be too large for one entry: when the
    /// closure's actions fit in one entry ([`MAX_ACTIONS_PER_ENTRY`]) they commit
    /// atomically, re-running the closure on a conflict, exactly as `update`. Larger
    /// changes are split ([`Store::batch`]): each entry is atomic, the whole is not, and the
    /// second value returned counts the entries the store rejected (e.g. a concurrent
    /// writer changed one of their objects). Only for changes whose actions are independent
    /// of each other, made by level-triggered reconcilers that run again when some failed.
    pub async fn update_chunked<R, E, F>(&self, f: F) -> Result<(R, usize), E>
    where
        F: FnMut(&ReadTx<'_>, &mut WriteTx) -> Result<R, E>,
        E: From<ProposeError>,
    {
        self.update_with(f, true).await
    }

    /// The optimistic write loop of [`Store::update`] and [`Store::update_chunked`]
    /// (`chunked`: a change over one entry's size is split instead of proposed whole).
    async fn update_with<R, E, F>(&self, mut f: F, chunked: bool) -> Result<(R, usize), E>
    where
        F: FnMut(&ReadTx<'_>, &mut WriteTx) -> Result<R, E>,
        E: From<ProposeError>,
    {
        let mut attempt = 0;
        loop {
            let mut tx = WriteTx::default();
            let r = self.mem.view(|v| f(v, &mut tx))?;
            if tx.is_empty() {
                return Ok((r, 0));
            }
            if chunked && tx.len() > MAX_ACTIONS_PER_ENTRY {
                let failed = self.batch(tx.into_actions()).await?;
                return Ok((r, failed));
            }
            let batch = Batch {
                actions: tx.into_actions(),
                proposed_at: timefmt::now(),
            };
            match self.proposer.propose(batch).await {
                Ok(_) => return Ok((r, 0)),
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
    /// [`MAX_ACTIONS_PER_ENTRY`], a few in flight at once (in order). Each entry is atomic;
    /// the whole is not. Returns how many entries the store rejected.
    ///
    /// Errors: `NotLeader`/`Unavailable` stop at once (nothing more is proposed; entries
    /// already in flight finish); an entry whose outcome is unknown makes the whole
    /// `OutcomeUnknown` once the others are done, so the caller backs off instead of
    /// re-deciding against a state that may still change under it.
    pub async fn batch(&self, actions: Vec<StoreAction>) -> Result<usize, ProposeError> {
        use futures::StreamExt;
        // Each action is moved once (splitting off the rest again and again would copy
        // the remainder for every chunk).
        let mut chunks = Vec::with_capacity(actions.len().div_ceil(MAX_ACTIONS_PER_ENTRY));
        let mut rest = actions.into_iter();
        loop {
            let chunk: Vec<StoreAction> = rest.by_ref().take(MAX_ACTIONS_PER_ENTRY).collect();
            if chunk.is_empty() {
                break;
            }
            chunks.push(chunk);
        }
        let stop = std::sync::atomic::AtomicBool::new(false);
        let stop = &stop;
        let mut results = futures::stream::iter(chunks)
            .map(|chunk| async move {
                if stop.load(Ordering::SeqCst) {
                    return None;
                }
                let batch = Batch {
                    actions: chunk,
                    proposed_at: timefmt::now(),
                };
                let r = self.proposer.propose(batch).await;
                if matches!(
                    r,
                    Err(ProposeError::NotLeader { .. } | ProposeError::Unavailable(_))
                ) {
                    stop.store(true, Ordering::SeqCst);
                }
                Some(r)
            })
            .buffered(CHUNKS_IN_FLIGHT);
        let mut rejected = 0;
        let mut fatal = None;
        let mut unknown = None;
        while let Some(r) = results.next().await {
            match r {
                None | Some(Ok(_)) => {}
                Some(Err(ProposeError::Store(e))) => {
                    rejected += 1;
                    tracing::debug!(error = %e, "one entry of a split change was rejected");
                }
                Some(Err(e @ ProposeError::OutcomeUnknown(_))) => {
                    unknown.get_or_insert(e);
                }
                Some(Err(e)) => {
                    fatal.get_or_insert(e);
                }
            }
        }
        match fatal.or(unknown) {
            Some(e) => Err(e),
            None => Ok(rejected),
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

    fn waiting_task(id: &str, slot: u64, state: swarmd_types::models::TaskState) -> Task {
        let mut t = Task {
            id: id.into(),
            service_id: "a".into(),
            slot,
            ..Default::default()
        };
        t.status.state = state;
        t
    }

    #[tokio::test]
    async fn new_and_pending_indexes_follow_status_changes_and_restore() {
        use swarmd_types::models::TaskState;
        let s = store();
        s.update(|_, tx| {
            // Created in one entry: same creation time, so slot order decides.
            tx.create(waiting_task("t3", 1, TaskState::NEW));
            tx.create(waiting_task("t1", 3, TaskState::NEW));
            tx.create(waiting_task("t2", 2, TaskState::PENDING));
            tx.create(waiting_task("t4", 4, TaskState::RUNNING));
            Ok::<_, ProposeError>(())
        })
        .await
        .unwrap();
        let ids =
            |it: &mut dyn Iterator<Item = &Task>| it.map(|t| t.id.clone()).collect::<Vec<_>>();
        s.view(|t| {
            assert_eq!(ids(&mut t.new_tasks()), ["t3", "t1"]);
            assert_eq!(ids(&mut t.pending_tasks()), ["t2"]);
        });
        s.update(|t, tx| {
            let mut a = t.tasks["t3"].clone();
            a.status.state = TaskState::PENDING;
            tx.update(a);
            let mut b = t.tasks["t2"].clone();
            b.status.state = TaskState::ASSIGNED;
            tx.update(b);
            tx.remove(Kind::Task, "t1");
            Ok::<_, ProposeError>(())
        })
        .await
        .unwrap();
        s.view(|t| {
            assert_eq!(ids(&mut t.new_tasks()), Vec::<String>::new());
            assert_eq!(ids(&mut t.pending_tasks()), ["t3"]);
        });
        // An older task comes first whatever its slot.
        s.update(|_, tx| {
            tx.create(waiting_task("t0", 9, TaskState::PENDING));
            Ok::<_, ProposeError>(())
        })
        .await
        .unwrap();
        s.view(|t| assert_eq!(ids(&mut t.pending_tasks()), ["t3", "t0"]));
        let json = serde_json::to_vec(&s.memory().snapshot()).unwrap();
        let other = MemoryStore::new();
        other.restore(serde_json::from_slice(&json).unwrap());
        other.view(|t| assert_eq!(ids(&mut t.pending_tasks()), ["t3", "t0"]));
    }

    /// **Fake** proposer that records the size of every entry and rejects the ones holding
    /// a given task.
    struct CountingProposer {
        inner: LocalProposer,
        sizes: std::sync::Mutex<Vec<usize>>,
        reject: &'static str,
    }

    #[async_trait::async_trait]
    impl Proposer for CountingProposer {
        async fn propose(&self, batch: Batch) -> Result<u64, ProposeError> {
            self.sizes.lock().unwrap().push(batch.actions.len());
            if batch.actions.iter().any(|a| a.target().1 == self.reject) {
                return Err(ProposeError::Store(StoreError::VersionConflict {
                    kind: Kind::Task,
                    id: self.reject.into(),
                }));
            }
            self.inner.propose(batch).await
        }
    }

    #[tokio::test]
    async fn large_changes_commit_in_bounded_entries_and_count_rejected_ones() {
        let mem = Arc::new(MemoryStore::new());
        let p = Arc::new(CountingProposer {
            inner: LocalProposer::new(mem.clone()),
            sizes: Default::default(),
            reject: "t02500",
        });
        let s = Store::new(mem.clone(), p.clone());
        let n = 2 * MAX_ACTIONS_PER_ENTRY + 7;
        let (made, rejected) = s
            .update_chunked(|_, tx| {
                for i in 0..n {
                    tx.create(Task {
                        id: format!("t{i:05}"),
                        ..Default::default()
                    });
                }
                Ok::<_, ProposeError>(n)
            })
            .await
            .unwrap();
        assert_eq!(made, n);
        assert_eq!(rejected, 1, "only the entry holding t02500 is rejected");
        assert_eq!(
            *p.sizes.lock().unwrap(),
            [MAX_ACTIONS_PER_ENTRY, MAX_ACTIONS_PER_ENTRY, 7]
        );
        s.view(|t| {
            assert_eq!(t.tasks.len(), MAX_ACTIONS_PER_ENTRY + 7);
            assert!(t.tasks.contains_key("t00000") && !t.tasks.contains_key("t02500"));
        });

        // A change that fits one entry stays atomic.
        p.sizes.lock().unwrap().clear();
        let (_, rejected) = s
            .update_chunked(|_, tx| {
                tx.create(service("x", "x"));
                tx.create(service("y", "y"));
                Ok::<_, ProposeError>(())
            })
            .await
            .unwrap();
        assert_eq!((rejected, p.sizes.lock().unwrap().clone()), (0, vec![2]));
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

    /// Tasks of one service hold one copy of an equal spec (the leader's memory per task
    /// depends on it), a changed spec stays the task's own, and a restored snapshot shares
    /// again.
    #[tokio::test]
    async fn equal_task_specs_share_one_allocation() {
        use swarmd_types::models::{TaskSpec, TaskSpecContainerSpec};
        let spec = |image: &str| TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(image.into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let task = |id: &str, service: &str, image: &str| Task {
            id: id.into(),
            service_id: service.into(),
            spec: spec(image).into(),
            ..Default::default()
        };
        let s = store();
        s.update(|_, tx| {
            tx.create(task("t1", "s1", "a"));
            tx.create(task("t2", "s1", "a"));
            tx.create(task("u1", "s2", "a"));
            Ok::<_, ProposeError>(())
        })
        .await
        .unwrap();
        s.update(|_, tx| {
            tx.create(task("t3", "s1", "a"));
            Ok::<_, ProposeError>(())
        })
        .await
        .unwrap();
        let shared =
            |s: &Store, a: &str, b: &str| s.view(|t| t.tasks[a].spec.ptr_eq(&t.tasks[b].spec));
        assert!(shared(&s, "t1", "t2"), "same batch");
        assert!(shared(&s, "t1", "t3"), "later batch");
        assert!(!shared(&s, "t1", "u1"), "another service keeps its own");

        // A status change arrives with its own (equal) copy: it shares again.
        s.update(|t, tx| {
            let mut t2 = t.tasks["t2"].clone();
            t2.spec = spec("a").into();
            t2.status.message = "moved on".into();
            tx.update(t2);
            Ok::<_, ProposeError>(())
        })
        .await
        .unwrap();
        assert!(shared(&s, "t1", "t2"));

        // Changing one task's spec copies it: the others keep theirs.
        s.update(|t, tx| {
            let mut t3 = t.tasks["t3"].clone();
            t3.spec.container_spec.as_mut().unwrap().image = Some("b".into());
            tx.update(t3);
            Ok::<_, ProposeError>(())
        })
        .await
        .unwrap();
        s.view(|t| {
            assert_eq!(
                t.tasks["t3"]
                    .spec
                    .container_spec
                    .as_ref()
                    .unwrap()
                    .image
                    .as_deref(),
                Some("b")
            );
            for id in ["t1", "t2"] {
                assert_eq!(t.tasks[id].spec, spec("a"), "{id} unchanged");
            }
        });

        let json = serde_json::to_vec(&s.memory().snapshot()).unwrap();
        let other = MemoryStore::new();
        other.restore(serde_json::from_slice(&json).unwrap());
        other.view(|t| {
            assert!(
                t.tasks["t1"].spec.ptr_eq(&t.tasks["t2"].spec),
                "restored tasks share"
            );
            assert_eq!(t.tasks["t1"].spec, spec("a"));
            assert_eq!(t.tasks_of_service("s1").count(), 3, "indexes rebuilt");
        });
    }
}
