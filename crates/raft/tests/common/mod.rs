//! In-process cluster harness: N managers, each a real [`RaftNode`] over its own redb file
//! in its own tempdir with its own [`MemoryStore`], talking through the test
//! [`Router`] (drop, delay, partition, crash) instead of gRPC.
//!
//! Meant for tokio's paused clock (`start_paused = true`): timers jump ahead whenever
//! every task waits, so elections and timeouts cost no wall time, while redb's fsyncs run
//! on the blocking pool (tokio does not advance the paused clock while one is in flight).
//! Every wait is on a condition with an upper bound ([`DEADLINE`]); sleeps only let
//! virtual time pass in a scenario, they never decide an assertion.

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::ServerState;
use openraft::async_runtime::WatchReceiver;
use swarmd_raft::testing::Router;
use swarmd_raft::{DataKey, NetworkFactory, NodeId, RaftConfig, RaftNode};
use swarmd_store::{Batch, MemoryStore, ProposeError, Proposer, StoreAction, StoreError};
use swarmd_types::models::ServiceSpec;
use swarmd_types::{Service, Task};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Upper bound for anything a test waits for (virtual time); reached only when broken.
pub const DEADLINE: Duration = Duration::from_secs(60);
/// Proposals give up after this.
pub const PROPOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// A call that takes longer than this has hung (the node's own bound plus slack).
pub const CALL_BOUND: Duration = Duration::from_secs(4);
pub const HEARTBEAT: Duration = Duration::from_millis(100);
pub const ELECTION_MIN: Duration = Duration::from_millis(500);
pub const ELECTION_MAX: Duration = Duration::from_millis(1000);

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Terms in which each node was seen leading (from every node's metrics, as they change).
pub type LeadersByTerm = Arc<Mutex<BTreeMap<u64, BTreeSet<NodeId>>>>;

struct Slot {
    dir: tempfile::TempDir,
    node: Option<Arc<RaftNode>>,
    store: Arc<MemoryStore>,
    monitor: Option<JoinHandle<()>>,
}

/// Tunables of a [`Cluster`].
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub snapshot_every: u64,
    pub keep_logs_after_snapshot: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            snapshot_every: 10_000,
            keep_logs_after_snapshot: 500,
        }
    }
}

pub struct Cluster {
    pub router: Router,
    opts: Options,
    slots: BTreeMap<NodeId, Slot>,
    leaders: LeadersByTerm,
}

pub fn addr(id: NodeId) -> String {
    format!("in-process-{id}")
}

/// A batch creating service `id` (the unit of an acknowledged write in these tests).
pub fn create(id: &str) -> Batch {
    Batch {
        actions: vec![StoreAction::Create(
            Service {
                id: id.into(),
                spec: ServiceSpec {
                    name: Some(format!("svc-{id}")),
                    ..Default::default()
                },
                ..Default::default()
            }
            .into(),
        )],
        proposed_at: "2026-01-01T00:00:00Z".into(),
    }
}

pub fn create_task(task: Task) -> Batch {
    Batch {
        actions: vec![StoreAction::Create(task.into())],
        proposed_at: "2026-01-01T00:00:00Z".into(),
    }
}

pub fn update_task(task: Task) -> Batch {
    Batch {
        actions: vec![StoreAction::Update(task.into())],
        proposed_at: "2026-01-01T00:00:00Z".into(),
    }
}

impl Cluster {
    /// Opens `n` managers (ids 1..=n); node 1 initializes and adds the others as voters.
    pub async fn new(n: u64) -> Cluster {
        Cluster::with_options(n, Options::default(), Router::new()).await
    }

    pub async fn with_options(n: u64, opts: Options, router: Router) -> Cluster {
        let mut c = Cluster {
            router,
            opts,
            slots: BTreeMap::new(),
            leaders: LeadersByTerm::default(),
        };
        for id in 1..=n {
            c.slots.insert(
                id,
                Slot {
                    dir: tempfile::tempdir().unwrap(),
                    node: None,
                    store: Arc::new(MemoryStore::new()),
                    monitor: None,
                },
            );
            c.start(id).await;
        }
        let first = c.node(1);
        first.initialize_single().await.expect("initialize node 1");
        for id in 2..=n {
            first.add_voter(id, addr(id)).await.expect("add voter");
        }
        c
    }

    pub fn config(&self, id: NodeId) -> RaftConfig {
        let mut cfg = RaftConfig::new(
            self.slots[&id].dir.path(),
            DataKey::from_bytes([id as u8; 32]),
            id,
            addr(id),
        );
        cfg.heartbeat_interval = HEARTBEAT;
        cfg.election_timeout_min = ELECTION_MIN;
        cfg.election_timeout_max = ELECTION_MAX;
        cfg.propose_timeout = PROPOSE_TIMEOUT;
        cfg.catch_up_timeout = Duration::from_secs(20);
        cfg.snapshot_every = self.opts.snapshot_every;
        cfg.keep_logs_after_snapshot = self.opts.keep_logs_after_snapshot;
        // On the test's paused clock: a runtime of its own would keep real time.
        cfg.own_runtime = false;
        cfg
    }

    pub fn ids(&self) -> Vec<NodeId> {
        self.slots.keys().copied().collect()
    }

    /// Ids of the nodes currently running.
    pub fn running(&self) -> Vec<NodeId> {
        self.slots
            .iter()
            .filter(|(_, s)| s.node.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    pub fn is_running(&self, id: NodeId) -> bool {
        self.slots[&id].node.is_some()
    }

    pub fn node(&self, id: NodeId) -> Arc<RaftNode> {
        self.slots[&id]
            .node
            .clone()
            .unwrap_or_else(|| panic!("node {id} is not running"))
    }

    pub fn store(&self, id: NodeId) -> Arc<MemoryStore> {
        self.slots[&id].store.clone()
    }

    pub fn leaders_by_term(&self) -> BTreeMap<u64, BTreeSet<NodeId>> {
        self.leaders.lock().unwrap().clone()
    }

    /// Opens node `id` from its directory (empty or not) with a fresh store and puts it on
    /// the network.
    pub async fn start(&mut self, id: NodeId) {
        assert!(!self.is_running(id), "node {id} already runs");
        let cfg = self.config(id);
        let store = Arc::new(MemoryStore::new());
        let net = NetworkFactory::in_process(id, self.router.clone());
        let node = tokio::time::timeout(
            DEADLINE,
            RaftNode::open_with_network(cfg, store.clone(), net),
        )
        .await
        .expect("open does not hang")
        .unwrap_or_else(|e| panic!("open node {id}: {e}"));
        let node = Arc::new(node);
        self.router.register(id, node.rpc_handler());
        let monitor = spawn_leader_monitor(&node, self.leaders.clone());
        let slot = self.slots.get_mut(&id).unwrap();
        slot.store = store;
        slot.node = Some(node);
        slot.monitor = Some(monitor);
    }

    /// Takes node `id` off the network first (its peers see a dead process), then stops it.
    /// Everything it acknowledged is on disk: Raft fsyncs before acknowledging.
    pub async fn stop(&mut self, id: NodeId) {
        self.router.unregister(id);
        let slot = self.slots.get_mut(&id).unwrap();
        let node = slot
            .node
            .take()
            .unwrap_or_else(|| panic!("node {id} is not running"));
        tokio::time::timeout(DEADLINE, node.shutdown())
            .await
            .expect("shutdown does not hang");
        if let Some(m) = slot.monitor.take() {
            // Ends by itself when the metrics channel closes with the core.
            let _ = tokio::time::timeout(DEADLINE, m).await;
        }
    }

    /// Takes node `id` off the network and drops it without [`RaftNode::shutdown`]: the
    /// `Drop` safety net closes its database at once and stops the core in the background,
    /// as when a manager's process dies mid-flight (everything acknowledged was fsynced).
    pub fn crash(&mut self, id: NodeId) {
        self.router.unregister(id);
        let slot = self.slots.get_mut(&id).unwrap();
        let node = slot
            .node
            .take()
            .unwrap_or_else(|| panic!("node {id} is not running"));
        let node = Arc::try_unwrap(node)
            .unwrap_or_else(|_| panic!("node {id} is still borrowed by the test"));
        drop(node);
        if let Some(m) = slot.monitor.take() {
            m.abort();
        }
    }

    pub async fn restart(&mut self, id: NodeId) {
        self.stop(id).await;
        self.start(id).await;
    }

    /// A copy of node `id`'s directory as it is now (stop the node first for a
    /// consistent one); [`Cluster::set_disk`] puts it back.
    pub fn copy_disk(&self, id: NodeId) -> tempfile::TempDir {
        fn copy(from: &std::path::Path, to: &std::path::Path) {
            for e in std::fs::read_dir(from).unwrap() {
                let e = e.unwrap();
                let dest = to.join(e.file_name());
                if e.file_type().unwrap().is_dir() {
                    std::fs::create_dir(&dest).unwrap();
                    copy(&e.path(), &dest);
                } else {
                    std::fs::copy(e.path(), dest).unwrap();
                }
            }
        }
        let to = tempfile::tempdir().unwrap();
        copy(self.slots[&id].dir.path(), to.path());
        to
    }

    /// Gives the stopped node `id` the directory `disk` (e.g. an older [`Cluster::copy_disk`]:
    /// a disk that lost its latest writes).
    pub fn set_disk(&mut self, id: NodeId, disk: tempfile::TempDir) {
        assert!(!self.is_running(id), "node {id} still runs");
        self.slots.get_mut(&id).unwrap().dir = disk;
    }

    /// Stops node `id` and gives it a new, empty directory (a wiped disk).
    pub async fn wipe(&mut self, id: NodeId) {
        if self.is_running(id) {
            self.stop(id).await;
        }
        self.slots.get_mut(&id).unwrap().dir = tempfile::tempdir().unwrap();
    }

    /// Waits until one of `among` (running nodes) is leader and ready; returns it.
    pub async fn wait_leader_among(&self, among: &[NodeId]) -> NodeId {
        let start = Instant::now();
        loop {
            let changes = self.changes();
            let leaders: Vec<NodeId> = among
                .iter()
                .copied()
                .filter(|id| self.is_running(*id) && self.node(*id).is_leader())
                .collect();
            if let [one] = leaders[..] {
                return one;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "no single leader among {among:?} within {DEADLINE:?} (leaders: {leaders:?})"
            );
            changes.wait(DEADLINE.saturating_sub(start.elapsed())).await;
        }
    }

    pub async fn wait_leader(&self) -> NodeId {
        self.wait_leader_among(&self.running()).await
    }

    /// Proposes on node `id`, bounded: a proposal may fail, it must never hang.
    pub async fn propose(&self, id: NodeId, batch: Batch) -> Result<u64, ProposeError> {
        let node = self.node(id);
        tokio::time::timeout(CALL_BOUND, node.propose(batch))
            .await
            .unwrap_or_else(|_| panic!("a proposal on node {id} hung past {CALL_BOUND:?}"))
    }

    /// Proposes `create(key)` wherever the leader is, retrying through elections; returns
    /// the acknowledged index.
    pub async fn write(&self, key: &str) -> u64 {
        let start = Instant::now();
        let mut unknown = false;
        loop {
            let leader = self.wait_leader().await;
            match self.propose(leader, create(key)).await {
                Ok(index) => return index,
                // An earlier attempt whose outcome was unknown did commit: its index is the
                // version the object was created with.
                Err(ProposeError::Store(StoreError::Exists { .. })) if unknown => {
                    return self
                        .version_of(leader, key)
                        .expect("the store that refused the duplicate has it");
                }
                Err(e @ ProposeError::Store(_)) => panic!("write {key}: {e}"),
                Err(e) => {
                    unknown |= matches!(e, ProposeError::OutcomeUnknown(_));
                    assert!(start.elapsed() < DEADLINE, "write {key} kept failing: {e}");
                    // Try again once the cluster has moved (an election, a heartbeat).
                    self.changes()
                        .wait(DEADLINE.saturating_sub(start.elapsed()))
                        .await;
                }
            }
        }
    }

    /// Waits until node `id` has applied `index`.
    pub async fn wait_applied(&self, id: NodeId, index: u64) {
        self.wait_until(&format!("node {id} applies {index}"), || {
            self.store(id).applied_index() >= index
        })
        .await;
    }

    /// Waits (bounded by [`DEADLINE`]) until `cond` holds, looking again each time a
    /// running node's Raft metrics, leadership watch or store changes.
    pub async fn wait_until(&self, what: &str, mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        loop {
            // Subscribe before looking, so no change falls in between.
            let changes = self.changes();
            if cond() {
                return;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "{what}: not within {DEADLINE:?}"
            );
            changes.wait(DEADLINE.saturating_sub(start.elapsed())).await;
        }
    }

    /// A subscription to every running node's metrics, leadership watch and store events.
    pub fn changes(&self) -> Changes {
        let mut waits: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>> =
            Vec::new();
        for id in self.running() {
            let node = self.node(id);
            let mut metrics = node.raft().metrics();
            // A cloned receiver may not have seen the current value: mark it seen, or
            // `changed` returns at once and the wait spins without time passing.
            drop(metrics.borrow_and_update());
            waits.push(Box::pin(async move {
                if metrics.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }));
            let mut leader = node.leader_watch();
            leader.mark_unchanged();
            waits.push(Box::pin(async move {
                if leader.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }));
            let mut events = self.store(id).watch();
            waits.push(Box::pin(async move {
                let _ = events.recv().await;
            }));
        }
        Changes(waits)
    }

    /// Service `key` as stored on node `id`: its version (= the index that created it).
    pub fn version_of(&self, id: NodeId, key: &str) -> Option<u64> {
        self.store(id)
            .view(|t| t.services.get(key).map(|s| s.meta.version))
    }

    /// Every acknowledged write `(key, index)` is on every running node, created at exactly
    /// the index it was acknowledged with.
    pub async fn assert_all_present(&self, acked: &[(String, u64)]) {
        self.assert_present_on(&self.running(), acked).await;
    }

    /// [`Cluster::assert_all_present`] on the nodes `ids` only.
    pub async fn assert_present_on(&self, ids: &[NodeId], acked: &[(String, u64)]) {
        let last = acked.iter().map(|(_, i)| *i).max().unwrap_or(0);
        for &id in ids {
            self.wait_applied(id, last).await;
            for (key, index) in acked {
                assert_eq!(
                    self.version_of(id, key),
                    Some(*index),
                    "node {id}: acknowledged write {key} at {index}"
                );
            }
        }
    }

    /// At most one node was ever seen leading in each term.
    pub fn assert_one_leader_per_term(&self) {
        for (term, leaders) in self.leaders_by_term() {
            assert!(
                leaders.len() <= 1,
                "term {term} had several leaders: {leaders:?}"
            );
        }
    }

    /// Stops every running node (end of a test).
    pub async fn shutdown(&mut self) {
        for id in self.running() {
            self.stop(id).await;
        }
    }
}

/// Pending changes of a cluster, from [`Cluster::changes`].
pub struct Changes(Vec<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>);

impl Changes {
    /// Until the first change, or `limit` (virtual time) without any.
    pub async fn wait(self, limit: Duration) {
        if self.0.is_empty() {
            tokio::time::sleep(limit).await;
            return;
        }
        let _ = tokio::time::timeout(limit, futures::future::select_all(self.0)).await;
    }
}

/// Records, on every change of a node's metrics, the term it leads in (if it does).
fn spawn_leader_monitor(node: &RaftNode, leaders: LeadersByTerm) -> JoinHandle<()> {
    let id = node.node_id();
    let mut metrics = node.raft().metrics();
    tokio::spawn(async move {
        loop {
            let (state, term) = {
                let m = metrics.borrow_watched();
                (m.state, m.current_term)
            };
            if state == ServerState::Leader {
                leaders.lock().unwrap().entry(term).or_default().insert(id);
            }
            if metrics.changed().await.is_err() {
                break;
            }
        }
    })
}
