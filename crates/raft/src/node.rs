//! [`RaftNode`]: the manager's handle on Raft — open, initialize, propose, read barrier,
//! leadership, shutdown.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::ChangeMembers;
use openraft::Instant as _;
use openraft::async_runtime::WatchReceiver;
use openraft::errors::{ClientWriteError, ForwardToLeader, InitializeError, LinearizableReadError};
use openraft::{RaftMetrics, ReadPolicy, ServerState, SnapshotPolicy};
use swarmd_crypto::DataKey;
use swarmd_store::{Batch, MemoryStore, ProposeError, Proposer, ReadBarrier};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::log_policy::{LogPolicy, spawn_log_policy};
use crate::network::NetworkFactory;
use crate::state_machine::StateMachine;
use crate::storage::{self, DB_FILE, Db, LogStore};
use crate::transport::NetworkConfig;
use crate::types::{C, Member, NodeId, Request, TypeConfig};

/// The openraft instance behind a [`RaftNode`].
pub type Raft = openraft::Raft<TypeConfig, StateMachine>;

/// Snapshot every this many entries by default (swarmkit's `SnapshotInterval`).
pub const DEFAULT_SNAPSHOT_EVERY: u64 = 10_000;
/// Entries kept behind a snapshot by default, so a slightly lagging follower catches up from
/// the log rather than a full snapshot (swarmkit's `LogEntriesForSlowFollowers`).
pub const DEFAULT_KEEP_LOGS_AFTER_SNAPSHOT: u64 = 500;
/// How long a write (or read barrier) may take before the caller gets an answer anyway.
pub const DEFAULT_PROPOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most entries per AppendEntries RPC (see [`RaftConfig::to_openraft`]).
pub const MAX_PAYLOAD_ENTRIES: u64 = 8;
/// How long [`RaftNode::add_voter`] waits for a new manager to catch up by default.
pub const DEFAULT_CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);

/// How a [`RaftNode`] is opened.
#[derive(Debug, Clone)]
pub struct RaftConfig {
    /// Directory holding `raft.redb`; created if missing.
    pub dir: PathBuf,
    /// This manager's data encryption key: every record of `raft.redb` is sealed with it.
    /// Losing it loses the replica (the manager then has to rejoin).
    pub data_key: DataKey,
    /// This manager's Raft id; must be stable across restarts.
    pub node_id: NodeId,
    /// This manager's cluster address, recorded in the membership.
    pub addr: String,
    /// Take a snapshot (and purge the log behind it) every this many applied entries, until
    /// [`RaftNode::set_log_policy`] says otherwise.
    pub snapshot_every: u64,
    /// Entries kept in the log behind the latest snapshot (likewise).
    pub keep_logs_after_snapshot: u64,
    /// Leader heartbeat period.
    pub heartbeat_interval: Duration,
    /// A follower that hears no leader for a random time in `[min, max)` starts an election.
    pub election_timeout_min: Duration,
    pub election_timeout_max: Duration,
    /// Upper bound on a proposal or read barrier; past it the caller gets
    /// [`ProposeError::OutcomeUnknown`] (writes) or [`ProposeError::Unavailable`] (reads).
    pub propose_timeout: Duration,
    /// How to reach the other managers (gRPC over mTLS). `None`: one-manager mode, every
    /// peer is unreachable.
    pub network: Option<NetworkConfig>,
    /// Upper bound on a new manager's catch-up in [`RaftNode::add_voter`] (log replay or
    /// snapshot install) before it is made a voter.
    pub catch_up_timeout: Duration,
    /// Run openraft's tasks (core, log and state-machine workers, heartbeats, replication,
    /// the client side of the peer transport) on a runtime of their own, with
    /// [`RAFT_THREADS`] threads, instead of the caller's. A leader also runs the scheduler,
    /// the dispatcher's sessions and the API; on the caller's runtime their bursts delayed
    /// heartbeats past their deadline and the leader lost its lease while busy. Tests on a
    /// paused clock turn it off (their clock is the caller's runtime's).
    pub own_runtime: bool,
}

/// Threads of a node's own Raft runtime (see [`RaftConfig::own_runtime`]).
pub const RAFT_THREADS: usize = 2;

impl RaftConfig {
    /// Defaults for everything but where and who.
    ///
    /// Timeouts suit managers on one LAN: heartbeats every 200 ms, elections after 1–2 s of
    /// silence (swarmkit waits ~10 s; a faster failover is worth the extra heartbeats).
    ///
    /// Failover takes longer than the election timeout: followers refuse to vote while the
    /// old leader's lease (openraft: `election_timeout_max`) runs, counted from its last
    /// heartbeat, and only then does an election timeout start an election. So leader loss
    /// → first write is about `election_timeout_max` + `[election_timeout_min,
    /// election_timeout_max)`: 3–4 s with these defaults (measured in
    /// `tests/in_process.rs` at 1.5–1.9 s with 0.5–1 s elections).
    pub fn new(
        dir: impl Into<PathBuf>,
        data_key: DataKey,
        node_id: NodeId,
        addr: impl Into<String>,
    ) -> Self {
        RaftConfig {
            dir: dir.into(),
            data_key,
            node_id,
            addr: addr.into(),
            snapshot_every: DEFAULT_SNAPSHOT_EVERY,
            keep_logs_after_snapshot: DEFAULT_KEEP_LOGS_AFTER_SNAPSHOT,
            heartbeat_interval: Duration::from_millis(200),
            election_timeout_min: Duration::from_millis(1000),
            election_timeout_max: Duration::from_millis(2000),
            propose_timeout: DEFAULT_PROPOSE_TIMEOUT,
            network: None,
            catch_up_timeout: DEFAULT_CATCH_UP_TIMEOUT,
            own_runtime: true,
        }
    }

    /// The same configuration, talking to peers over gRPC/mTLS with `network`.
    pub fn with_network(mut self, network: NetworkConfig) -> Self {
        self.network = Some(network);
        self
    }

    fn to_openraft(&self) -> Result<openraft::Config, RaftError> {
        if self.snapshot_every == 0 {
            return Err(RaftError::Config(
                "snapshot_every must be at least 1".into(),
            ));
        }
        if self.propose_timeout.is_zero() {
            return Err(RaftError::Config("propose_timeout must be positive".into()));
        }
        let ms = |d: Duration| d.as_millis().min(u64::MAX as u128) as u64;
        openraft::Config {
            cluster_name: "swarmd".into(),
            heartbeat_interval: ms(self.heartbeat_interval),
            election_timeout_min: ms(self.election_timeout_min),
            election_timeout_max: ms(self.election_timeout_max),
            // Snapshots and purges follow a policy that can change while running
            // (`log_policy.rs`); openraft's own are fixed at start, so they are off.
            snapshot_policy: SnapshotPolicy::Never,
            max_in_snapshot_log_to_keep: u64::MAX,
            // A follower further behind than the log we keep can only catch up by snapshot.
            replication_lag_threshold: self.snapshot_every + self.keep_logs_after_snapshot,
            // Whole-state snapshots of a big swarm take a while to ship and install.
            install_snapshot_timeout: 30_000,
            // An entry holds up to `swarmd_store::MAX_ACTIONS_PER_ENTRY` objects (a few MB);
            // openraft's default of 300 entries per AppendEntries would make one RPC hundreds
            // of MB, decoded by the follower in one go while its heartbeats wait.
            max_payload_entries: MAX_PAYLOAD_ENTRIES,
            // A restarted leader wins an election like anyone else. Restored as leader of
            // its old term, a leader whose last append never reached its disk (a full
            // disk, a crash before the fsync) while its followers committed it would serve
            // reads without that entry and could write a different one under the same log
            // id (found by scripts/chaos; `tests/in_process.rs` replays it).
            enable_leader_restore: Some(false),
            ..Default::default()
        }
        .validate()
        .map_err(|e| RaftError::Config(e.to_string()))
    }
}

/// Why opening or driving Raft failed (proposals use [`ProposeError`]).
#[derive(Debug, thiserror::Error)]
pub enum RaftError {
    #[error("invalid raft configuration: {0}")]
    Config(String),
    /// Raft rebuilds the store from its snapshot and log; it must start from nothing.
    #[error("the memory store must be empty when raft opens it (it has applied index {0})")]
    StoreNotEmpty(u64),
    #[error("raft storage {}: {source}", path.display())]
    Storage {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A record failed its checksum or could not be decoded: the data is not trusted.
    #[error("raft storage {} is corrupt: {source}", path.display())]
    Corrupt {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// openraft stopped (storage error, panic, or shutdown).
    #[error("raft stopped: {0}")]
    Fatal(#[from] openraft::errors::Fatal<TypeConfig>),
    #[error("initializing the raft cluster: {0}")]
    Initialize(String),
    /// A membership change was asked of a node that does not lead.
    #[error("not the raft leader (leader: {leader_id:?} at {leader_addr:?})")]
    NotLeader {
        leader_id: Option<NodeId>,
        leader_addr: Option<String>,
    },
    /// openraft refused a membership change (in progress, unknown learner, no quorum, ...).
    #[error("raft membership change failed: {0}")]
    Membership(String),
    #[error("timed out after {timeout:?} waiting for {what}")]
    Timeout {
        timeout: Duration,
        what: &'static str,
    },
}

impl RaftError {
    fn from_io(path: PathBuf, source: io::Error) -> Self {
        if source.kind() == io::ErrorKind::InvalidData {
            RaftError::Corrupt { path, source }
        } else {
            RaftError::Storage { path, source }
        }
    }
}

/// One manager's Raft replica of the store.
///
/// Every change to the [`MemoryStore`] goes through [`Proposer::propose`]: it is appended to
/// the redb log (fsynced), committed, and applied by the state machine, which answers with the
/// store's verdict.
pub struct RaftNode {
    raft: Raft,
    db: Arc<Db>,
    store: Arc<MemoryStore>,
    node_id: NodeId,
    addr: String,
    propose_timeout: Duration,
    catch_up_timeout: Duration,
    /// A leader that has heard from no quorum for this long refuses writes up front.
    quorum_lost_after: Duration,
    leader: watch::Receiver<bool>,
    /// The task feeding `leader`; taken and awaited on shutdown (no std lock across await).
    leader_task: Mutex<Option<JoinHandle<()>>>,
    /// When to snapshot and what log to keep; read by the log policy task.
    log_policy: watch::Sender<LogPolicy>,
    /// The task that snapshots and purges by `log_policy`; aborted on shutdown.
    log_policy_task: Mutex<Option<JoinHandle<()>>>,
    /// `log_policy.keep_old_snapshots`, where the state machine reads it.
    keep_old: crate::state_machine::KeepOld,
    closed: AtomicBool,
    /// The node's own runtime ([`RaftConfig::own_runtime`]); shut down after the core.
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
}

impl std::fmt::Debug for RaftNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftNode")
            .field("node_id", &self.node_id)
            .field("addr", &self.addr)
            .field("db", &self.db.path())
            .finish()
    }
}

impl RaftNode {
    /// Opens (or creates) `<dir>/raft.redb`, rebuilds `store` from the stored snapshot and
    /// log, and starts openraft.
    ///
    /// `store` must be fresh: it is the state machine, and Raft refills it. Every record is
    /// verified before Raft starts, so a corrupted file fails here with
    /// [`RaftError::Corrupt`]. When this node is the only voter, `open` also waits until
    /// everything in its log is applied, so the store is complete when `open` returns.
    ///
    /// A manager joining an existing cluster opens with an empty directory and does *not*
    /// initialize: it stays an uninitialized follower, serving [`crate::RaftRpcHandler`] on
    /// its cluster port, until the leader adds it ([`RaftNode::add_voter`]) and replicates
    /// the log (or a snapshot) to it.
    pub async fn open(config: RaftConfig, store: Arc<MemoryStore>) -> Result<RaftNode, RaftError> {
        let network = match &config.network {
            Some(net) => NetworkFactory::grpc(config.node_id, net.clone()),
            None => NetworkFactory::single(),
        };
        Self::open_with_network(config, store, network).await
    }

    /// [`RaftNode::open`] with the peer transport given explicitly instead of derived from
    /// `config.network` (which is then ignored). Tests use it with
    /// `NetworkFactory::in_process` (feature `testing`) to run a cluster in one process.
    pub async fn open_with_network(
        config: RaftConfig,
        store: Arc<MemoryStore>,
        network: NetworkFactory,
    ) -> Result<RaftNode, RaftError> {
        let raft_config = Arc::new(config.to_openraft()?);
        let applied = store.applied_index();
        if applied != 0 {
            return Err(RaftError::StoreNotEmpty(applied));
        }
        let dir = config.dir.clone();
        let path = dir.join(DB_FILE);
        let opened = {
            let path = path.clone();
            let key = config.data_key.clone();
            tokio::task::spawn_blocking(move || {
                std::fs::create_dir_all(&dir)?;
                let db = Db::open(&path, key)?;
                if let Err(e) = db.verify() {
                    db.close();
                    return Err(e);
                }
                Ok(db)
            })
            .await
            .map_err(|e| io::Error::other(format!("opening raft storage: {e}")))
            .and_then(|r| r)
        };
        let db = Arc::new(opened.map_err(|e| RaftError::from_io(path.clone(), e))?);

        let runtime = match config.own_runtime {
            true => match own_runtime() {
                Ok(rt) => Some(rt),
                Err(e) => {
                    close_db(&db).await;
                    return Err(RaftError::from_io(path.clone(), e));
                }
            },
            false => None,
        };
        let keep_old = crate::state_machine::KeepOld::default();
        let start = Raft::new(
            config.node_id,
            raft_config,
            network,
            LogStore::new(db.clone()),
            StateMachine::new(store.clone(), db.clone(), keep_old.clone()),
        );
        // openraft spawns its tasks on the runtime it is started on.
        let started = match &runtime {
            Some(rt) => rt
                .spawn(start)
                .await
                .unwrap_or(Err(openraft::errors::Fatal::Panicked)),
            None => start.await,
        };
        let raft = match started {
            Ok(raft) => raft,
            Err(e) => {
                close_db(&db).await;
                if let Some(rt) = runtime {
                    rt.shutdown_background();
                }
                return Err(e.into());
            }
        };
        let (log_policy, policy_rx) = watch::channel(LogPolicy {
            interval: config.snapshot_every,
            keep_logs: config.keep_logs_after_snapshot,
            keep_old_snapshots: 0,
        });
        let (leader, leader_task, log_policy_task) = {
            let _on_own = runtime.as_ref().map(|rt| rt.enter());
            let (leader, leader_task) =
                spawn_leader_watch(&raft, config.node_id, config.election_timeout_max);
            let policy_task = spawn_log_policy(&raft, config.node_id, policy_rx);
            (leader, leader_task, policy_task)
        };
        let node = RaftNode {
            raft,
            db,
            store,
            node_id: config.node_id,
            addr: config.addr.clone(),
            propose_timeout: config.propose_timeout,
            catch_up_timeout: config.catch_up_timeout,
            quorum_lost_after: config.election_timeout_max * 2,
            leader,
            leader_task: Mutex::new(Some(leader_task)),
            log_policy,
            log_policy_task: Mutex::new(Some(log_policy_task)),
            keep_old,
            closed: AtomicBool::new(false),
            runtime: Mutex::new(runtime),
        };
        if node.is_sole_voter().await?
            && let Err(e) = node
                .raft
                .wait_for_recovery(Some(node.propose_timeout))
                .await
        {
            tracing::error!(error = %e, "raft: log not applied after restart");
            node.shutdown().await;
            return Err(RaftError::Timeout {
                timeout: config.propose_timeout,
                what: "the stored raft log to be applied",
            });
        }
        let m = node.raft.metrics().borrow_watched().clone();
        tracing::info!(
            node_id = node.node_id,
            addr = %node.addr,
            path = %node.db.path().display(),
            last_log = ?m.last_log_index,
            applied = ?m.last_applied.as_ref().map(|l| l.index),
            snapshot = ?m.snapshot.as_ref().map(|l| l.index),
            "raft: opened"
        );
        Ok(node)
    }

    /// Forms a one-member cluster of this node on first `swarm init`, then waits until it
    /// leads. Idempotent: an already initialized node (restart, or a second call) returns
    /// `Ok` at once.
    pub async fn initialize_single(&self) -> Result<(), RaftError> {
        if self.is_initialized().await? {
            return Ok(());
        }
        let members = BTreeMap::from([(
            self.node_id,
            Member {
                addr: self.addr.clone(),
            },
        )]);
        match self.raft.initialize(members).await {
            Ok(()) => {}
            // Initialized concurrently: the goal is reached either way.
            Err(openraft::errors::RaftError::APIError(InitializeError::NotAllowed(_))) => {}
            Err(openraft::errors::RaftError::APIError(e)) => {
                return Err(RaftError::Initialize(e.to_string()));
            }
            Err(openraft::errors::RaftError::Fatal(f)) => return Err(f.into()),
        }
        tracing::info!(node_id = self.node_id, addr = %self.addr, "raft: initialized single-member cluster");
        self.wait_for_leader(self.propose_timeout).await
    }

    /// Whether this node belongs to an initialized cluster (has a membership in its log).
    pub async fn is_initialized(&self) -> Result<bool, RaftError> {
        Ok(self.raft.is_initialized().await?)
    }

    /// Whether this node currently leads, has applied every entry committed before its
    /// term and holds its leader lease (a quorum acknowledged it within the last
    /// `election_timeout_max`) — i.e. leader-only components may act on the store. Same value
    /// as [`RaftNode::leader_watch`].
    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    /// "Am I the leader" as a watch, for starting and stopping leader-only components.
    /// Turns `true` once this node leads and its store is caught up (its own term's first
    /// entry is applied), `false` on losing leadership, on losing its quorum (a leader cut
    /// off in a minority steps down here before the majority can elect another) and on
    /// shutdown.
    pub fn leader_watch(&self) -> watch::Receiver<bool> {
        self.leader.clone()
    }

    /// Waits until [`RaftNode::is_leader`] is true.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<(), RaftError> {
        let mut rx = self.leader.clone();
        match tokio::time::timeout(timeout, rx.wait_for(|l| *l)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(RaftError::Fatal(openraft::errors::Fatal::Stopped)),
            Err(_) => Err(RaftError::Timeout {
                timeout,
                what: "this node to become raft leader",
            }),
        }
    }

    /// The current leader's id and cluster address, when one is known.
    pub fn leader(&self) -> Option<(NodeId, String)> {
        let m = self.raft.metrics().borrow_watched().clone();
        let id = m.current_leader?;
        let addr = m
            .membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.addr.clone())
            .unwrap_or_default();
        Some((id, addr))
    }

    /// On the leader: the members whose last acknowledged heartbeat or replication is older
    /// than `stale`, or who never acknowledged one. `None` on other nodes: a follower only
    /// hears from the leader, so it cannot tell whether its peers are reachable.
    ///
    /// This is what `node ls` shows as a manager's reachability (swarmkit's member status
    /// comes from its Raft transport too, not from the node's agent heartbeat).
    pub fn unreachable_peers(&self, stale: std::time::Duration) -> Option<BTreeSet<NodeId>> {
        let m = self.raft.metrics().borrow_watched().clone();
        let heartbeat = m.heartbeat.as_ref()?;
        Some(
            heartbeat
                .iter()
                .filter(|(id, _)| **id != self.node_id)
                .filter(|(_, acked)| acked.as_ref().is_none_or(|t| t.elapsed() > stale))
                .map(|(id, _)| *id)
                .collect(),
        )
    }

    /// This node's Raft id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The replica this node applies to.
    pub fn store(&self) -> &Arc<MemoryStore> {
        &self.store
    }

    /// Raft metrics (term, leader, log, applied and snapshot positions, membership).
    pub fn metrics(&self) -> RaftMetrics<C> {
        self.raft.metrics().borrow_watched().clone()
    }

    /// The openraft handle, for what this type does not wrap.
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The receiving side of the peer transport, to serve as `Services::raft` on the
    /// cluster port.
    pub fn rpc_handler(&self) -> crate::RaftRpcHandler {
        crate::RaftRpcHandler::new(self.raft.clone())
    }

    /// Linearizable read barrier (read-index): returns once this node has confirmed with a
    /// quorum that it still leads and its store has applied everything committed before the
    /// call. Reads from [`RaftNode::store`] after it are not stale. Returns the applied
    /// index the read is linearized at.
    pub async fn ensure_linearizable(&self) -> Result<u64, ProposeError> {
        self.check_running()?;
        let fut = self.raft.ensure_linearizable(ReadPolicy::ReadIndex);
        match tokio::time::timeout(self.propose_timeout, fut).await {
            Err(_) => Err(ProposeError::Unavailable(format!(
                "could not confirm raft leadership within {:?}",
                self.propose_timeout
            ))),
            Ok(Ok(read_log_id)) => Ok(read_log_id.index().max(self.store.applied_index())),
            Ok(Err(openraft::errors::RaftError::APIError(e))) => Err(match e {
                LinearizableReadError::ForwardToLeader(f) => self.not_leader(f),
                LinearizableReadError::QuorumNotEnough(q) => {
                    ProposeError::Unavailable(q.to_string())
                }
            }),
            Ok(Err(openraft::errors::RaftError::Fatal(f))) => {
                Err(ProposeError::Unavailable(f.to_string()))
            }
        }
    }

    /// Adds manager `node_id`, reachable at `addr`, as a voter. On the leader only.
    ///
    /// First adds it as a learner and waits (up to `catch_up_timeout`) until it has caught
    /// up with the log, so the cluster never waits on a voter that is far behind; then
    /// changes the membership (joint consensus) to make it a voter. Idempotent: an existing
    /// voter is left as it is. On a catch-up timeout the node stays a learner (it does not
    /// count for quorum) and the call may be repeated.
    pub async fn add_voter(&self, node_id: NodeId, addr: String) -> Result<(), RaftError> {
        if self.voter_ids().contains(&node_id) {
            return Ok(());
        }
        self.ensure_not_leaving().await?;
        let add = self
            .raft
            .add_learner(node_id, Member { addr: addr.clone() }, true);
        match tokio::time::timeout(self.catch_up_timeout, add).await {
            Err(_) => {
                return Err(RaftError::Timeout {
                    timeout: self.catch_up_timeout,
                    what: "the new manager to catch up with the raft log",
                });
            }
            Ok(r) => self.membership_result(r)?,
        }
        tracing::info!(node_id, %addr, "raft: learner caught up; promoting to voter");
        self.change_membership(ChangeMembers::AddVoterIds([node_id].into()))
            .await?;
        tracing::info!(node_id, %addr, "raft: voter added");
        Ok(())
    }

    /// Removes manager `node_id` from the membership (voter or learner). On the leader only.
    /// Removing the leader itself is allowed: it steps down once the change commits.
    pub async fn remove_voter(&self, node_id: NodeId) -> Result<(), RaftError> {
        let m = self.metrics();
        let membership = m.membership_config.membership();
        if membership.get_node(&node_id).is_none() {
            return Ok(());
        }
        self.ensure_not_leaving().await?;
        if membership.voter_ids().any(|v| v == node_id) {
            self.change_membership(ChangeMembers::RemoveVoters([node_id].into()))
                .await?;
        }
        // Drop what is left of it (a learner, or the voter just demoted).
        let m = self.metrics();
        if m.membership_config
            .membership()
            .get_node(&node_id)
            .is_some()
        {
            self.change_membership(ChangeMembers::RemoveNodes([node_id].into()))
                .await?;
        }
        tracing::info!(node_id, "raft: manager removed from membership");
        Ok(())
    }

    /// Every manager in the (effective) membership: id, address, and whether it votes.
    pub fn members(&self) -> Vec<(NodeId, String, bool)> {
        let m = self.metrics();
        let membership = m.membership_config.membership();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, n)| (*id, n.addr.clone(), voters.contains(id)))
            .collect()
    }

    fn voter_ids(&self) -> Vec<NodeId> {
        self.metrics().membership_config.voter_ids().collect()
    }

    /// Refuses a membership change on a node that is not a voter of the membership it is
    /// heading to (the last configuration of the effective membership).
    ///
    /// That happens to a leader whose own removal was cut short after its joint step: it
    /// may lead again from the old half of the joint membership. A change started there
    /// would bridge to a configuration without it, and openraft's next membership append
    /// on a leader that is no longer a voter trips an assertion that stops the Raft core
    /// (a panic in debug builds, an unchecked state in release). Such a leader completes
    /// its own removal instead (it then hands leadership over) and the caller retries on
    /// the next leader. A follower gets `NotLeader` pointing at the leader.
    async fn ensure_not_leaving(&self) -> Result<(), RaftError> {
        let m = self.metrics();
        let membership = m.membership_config.membership();
        let leaving = membership
            .get_joint_config()
            .last()
            .is_some_and(|last| !last.contains(&self.node_id));
        if !leaving {
            return Ok(());
        }
        if m.current_leader != Some(self.node_id) {
            return Err(RaftError::NotLeader {
                leader_id: m.current_leader,
                leader_addr: m
                    .current_leader
                    .and_then(|id| membership.get_node(&id).map(|n| n.addr.clone())),
            });
        }
        if membership.get_joint_config().len() > 1 {
            tracing::warn!(
                node_id = self.node_id,
                "raft: this leader's removal was interrupted; completing it"
            );
            // Bridging to the joint membership's own target makes it uniform.
            self.change_membership(ChangeMembers::AddVoterIds(Default::default()))
                .await?;
        }
        Err(RaftError::Membership(
            "this manager is leaving the raft membership; retry on the next leader".into(),
        ))
    }

    async fn change_membership(
        &self,
        change: ChangeMembers<NodeId, Member>,
    ) -> Result<(), RaftError> {
        let fut = self.raft.change_membership(change, false);
        match tokio::time::timeout(self.propose_timeout, fut).await {
            Err(_) => Err(RaftError::Timeout {
                timeout: self.propose_timeout,
                what: "the raft membership change to commit",
            }),
            Ok(r) => self.membership_result(r),
        }
    }

    fn membership_result<T>(
        &self,
        r: Result<T, openraft::errors::RaftError<C, ClientWriteError<C>>>,
    ) -> Result<(), RaftError> {
        match r {
            Ok(_) => Ok(()),
            Err(openraft::errors::RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(RaftError::NotLeader {
                    leader_id: f.leader_id,
                    leader_addr: f.leader_node.map(|n| n.addr),
                })
            }
            Err(openraft::errors::RaftError::APIError(e)) => {
                Err(RaftError::Membership(e.to_string()))
            }
            Err(openraft::errors::RaftError::Fatal(f)) => Err(f.into()),
        }
    }

    /// Changes when this node snapshots and how much log it keeps behind a snapshot (the
    /// swarm spec's `SnapshotInterval` and `LogEntriesForSlowFollowers`); takes effect at
    /// once, no restart.
    pub fn set_log_policy(&self, policy: LogPolicy) {
        self.keep_old
            .store(policy.keep_old_snapshots, Ordering::Relaxed);
        let changed = self.log_policy.send_if_modified(|cur| {
            let changed = *cur != policy;
            *cur = policy;
            changed
        });
        if changed {
            tracing::info!(
                node_id = self.node_id,
                snapshot_interval = policy.interval,
                keep_logs = policy.keep_logs,
                keep_old_snapshots = policy.keep_old_snapshots,
                "raft: log policy changed"
            );
        }
    }

    /// The policy in force (see [`RaftNode::set_log_policy`]).
    pub fn log_policy(&self) -> LogPolicy {
        *self.log_policy.borrow()
    }

    /// Number of old snapshots kept on disk besides the current one (diagnostics and tests).
    pub async fn old_snapshots_on_disk(&self) -> Result<u64, RaftError> {
        self.db
            .run(crate::state_machine::count_old_snapshots)
            .await
            .map_err(|e| RaftError::from_io(self.db.path().to_path_buf(), e))
    }

    /// Number of log entries currently on disk (diagnostics and tests).
    pub async fn log_entries_on_disk(&self) -> Result<u64, RaftError> {
        self.db
            .run(storage::count_entries)
            .await
            .map_err(|e| RaftError::from_io(self.db.path().to_path_buf(), e))
    }

    /// Stops Raft, the leadership watch and closes the database file; afterwards proposals
    /// fail with [`ProposeError::Unavailable`]. Idempotent.
    pub async fn shutdown(&self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Some(task) = self
            .log_policy_task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            task.abort();
        }
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft: core task ended abnormally");
        }
        let task = self
            .leader_task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(mut task) = task {
            // The watch task ends by itself once the metrics channel closes with the core;
            // bounded anyway, so shutdown can never hang on it.
            match tokio::time::timeout(Duration::from_secs(5), &mut task).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "raft: leader watch task failed"),
                Err(_) => {
                    tracing::warn!("raft: leader watch task did not end; aborting it");
                    task.abort();
                }
            }
        }
        close_db(&self.db).await;
        self.stop_runtime();
        tracing::info!(node_id = self.node_id, "raft: shut down");
    }

    /// Stops the node's own runtime, if any, without waiting for its tasks (callable from
    /// async code and from `Drop`).
    fn stop_runtime(&self) {
        let rt = self
            .runtime
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(rt) = rt {
            rt.shutdown_background();
        }
    }

    fn check_running(&self) -> Result<(), ProposeError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(ProposeError::Unavailable("raft node is shut down".into()));
        }
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        if let Err(e) = &m.running_state {
            return Err(ProposeError::Unavailable(format!("raft stopped: {e}")));
        }
        let voters = m.membership_config.voter_ids().count();
        let since_ack = m.last_quorum_acked.as_ref().map(|t| t.elapsed());
        if m.state == ServerState::Leader && quorum_lost(voters, since_ack, self.quorum_lost_after)
        {
            return Err(ProposeError::Unavailable(format!(
                "no quorum: the leader has not heard from a majority of {voters} managers for {:?}",
                self.quorum_lost_after
            )));
        }
        Ok(())
    }

    fn not_leader(&self, f: ForwardToLeader<C>) -> ProposeError {
        if f.reason == openraft::errors::ForwardReason::LeaseExpired {
            return ProposeError::Unavailable(
                "no quorum: this leader has not heard from a majority of managers within its lease"
                    .into(),
            );
        }
        match (f.leader_id, f.leader_node) {
            (Some(id), node) if id != self.node_id => ProposeError::NotLeader {
                leader_addr: node.map(|n| n.addr),
            },
            _ => ProposeError::Unavailable("no raft leader is elected".into()),
        }
    }

    /// Asks the core (not the metrics, which may not be published yet right after start)
    /// whether this node is the only voter of its effective membership.
    async fn is_sole_voter(&self) -> Result<bool, RaftError> {
        let me = self.node_id;
        Ok(self
            .raft
            .with_raft_state(move |st| {
                let mut voters = st.membership_state.effective().voter_ids();
                voters.next() == Some(me) && voters.next().is_none()
            })
            .await?)
    }
}

/// A leader with other voters that has not had a quorum acknowledge it for longer than
/// `after` cannot commit: refusing up front gives a certain failure instead of a timeout.
fn quorum_lost(voters: usize, since_quorum_ack: Option<Duration>, after: Duration) -> bool {
    voters > 1 && since_quorum_ack.is_some_and(|d| d > after)
}

/// On the leader, the read-index round itself; elsewhere `NotLeader`, to forward.
#[async_trait::async_trait]
impl ReadBarrier for RaftNode {
    async fn read_index(&self) -> Result<u64, ProposeError> {
        self.ensure_linearizable().await
    }
}

#[async_trait::async_trait]
impl Proposer for RaftNode {
    /// Proposes `batch` as one entry and returns its log index once applied here.
    ///
    /// Errors: [`ProposeError::Store`] when apply rejected the batch (certainly not applied);
    /// [`ProposeError::NotLeader`] to forward; [`ProposeError::Unavailable`] when no leader,
    /// no quorum or shut down (not proposed); [`ProposeError::OutcomeUnknown`] when the
    /// entry may have been appended but no verdict came within the timeout (or leadership or
    /// the node was lost mid-flight).
    async fn propose(&self, batch: Batch) -> Result<u64, ProposeError> {
        self.check_running()?;
        let actions = batch.actions.len();
        let fut = self.raft.client_write(Request::new(batch));
        let res = match tokio::time::timeout(self.propose_timeout, fut).await {
            Err(_) => {
                tracing::warn!(actions, timeout = ?self.propose_timeout, "raft: proposal timed out");
                return Err(ProposeError::OutcomeUnknown(format!(
                    "no commit within {:?}",
                    self.propose_timeout
                )));
            }
            Ok(res) => res,
        };
        match res {
            Ok(resp) => {
                let index = resp.log_id.index;
                tracing::trace!(
                    index,
                    actions,
                    ok = resp.data.is_ok(),
                    "raft: proposal applied"
                );
                resp.data.map(|()| index).map_err(ProposeError::Store)
            }
            Err(openraft::errors::RaftError::APIError(e)) => Err(match e {
                ClientWriteError::ForwardToLeader(f) => self.not_leader(f),
                ClientWriteError::LogEntryDiscarded(f) => ProposeError::OutcomeUnknown(format!(
                    "leadership changed before the entry committed; leader now {:?}",
                    f.leader_id
                )),
                other => ProposeError::Unavailable(other.to_string()),
            }),
            // The core stopped while the entry may already be in the log.
            Err(openraft::errors::RaftError::Fatal(f)) => Err(ProposeError::OutcomeUnknown(
                format!("raft stopped during the proposal: {f}"),
            )),
        }
    }
}

impl Drop for RaftNode {
    /// Safety net for a node dropped without [`RaftNode::shutdown`]: releases the database
    /// file at once (so the directory can be reopened) and stops the openraft core, which
    /// would otherwise keep ticking. Closing waits for an in-flight transaction; prefer
    /// `shutdown().await`.
    fn drop(&mut self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        self.db.close();
        if self.runtime.lock().map(|r| r.is_some()).unwrap_or(true) {
            // The core and every openraft task end with the runtime.
            self.stop_runtime();
        } else if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let raft = self.raft.clone();
            // Detached on purpose: Drop cannot await, and the core must not run on.
            drop(rt.spawn(async move {
                let _ = raft.shutdown().await;
            }));
        }
        tracing::info!(
            node_id = self.node_id,
            "raft: dropped without shutdown; stopping"
        );
    }
}

/// A runtime for one node's Raft ([`RaftConfig::own_runtime`]).
fn own_runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(RAFT_THREADS)
        .thread_name("raft")
        .enable_all()
        .build()
}

async fn close_db(db: &Arc<Db>) {
    let db = db.clone();
    if let Err(e) = tokio::task::spawn_blocking(move || db.close()).await {
        tracing::warn!(error = %e, "raft: closing database failed");
    }
}

/// Feeds a `watch<bool>` from openraft's metrics: true while this node leads, has applied
/// its own term's first entry (so its store holds every earlier commit) and holds its leader
/// lease (a quorum acknowledged it within `lease`).
///
/// The lease matters when a partition leaves the leader in a minority: openraft keeps it in
/// the Leader state until it hears of a higher term, so without the lease the watch would
/// stay true and leader-only components (reconcilers, dispatcher) would go on running next
/// to the majority's new leader. Followers refuse to vote for another candidate while they
/// hold the same lease (openraft's `leader_lease` is `election_timeout_max` too), counted
/// from when they received what this leader sent; the leader counts from when it sent it.
/// So this watch turns false no later than any other manager could be elected. The metrics
/// do not change when acknowledgements stop, so a timer wakes the loop when the lease runs
/// out.
fn spawn_leader_watch(
    raft: &Raft,
    node_id: NodeId,
    lease: Duration,
) -> (watch::Receiver<bool>, JoinHandle<()>) {
    let mut metrics = raft.metrics();
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        loop {
            let (ready, term, lease_left) = {
                let m = metrics.borrow_watched();
                let ready = leader_ready(&m, lease);
                let left = if ready { lease_left(&m, lease) } else { None };
                (ready, m.current_term, left)
            };
            let changed = tx.send_if_modified(|cur| std::mem::replace(cur, ready) != ready);
            if changed {
                tracing::info!(node_id, term, leader = ready, "raft: leadership changed");
            }
            let closed = match lease_left {
                Some(left) => tokio::select! {
                    r = metrics.changed() => r.is_err(),
                    // Just past expiry, so the next look sees it expired.
                    () = tokio::time::sleep(left + Duration::from_millis(1)) => false,
                },
                None => metrics.changed().await.is_err(),
            };
            if closed {
                break;
            }
        }
        if tx.send_replace(false) {
            tracing::info!(
                node_id,
                leader = false,
                "raft: leadership ended with shutdown"
            );
        }
    });
    (rx, task)
}

fn leader_ready(m: &RaftMetrics<C>, lease: Duration) -> bool {
    m.running_state.is_ok()
        && m.state == ServerState::Leader
        && m.last_applied
            .as_ref()
            .is_some_and(|l| l.leader_id.term == m.current_term)
        && lease_left(m, lease).is_none_or(|left| !left.is_zero())
}

/// How long this leader's lease still runs; `None` when it needs none (it is the only
/// voter). Zero until a quorum has acknowledged this leader since it started: a manager
/// that restarts restores its own committed vote and comes back as leader of its old term
/// without asking anyone, though the others may have moved on long ago. (A freshly elected
/// leader is acknowledged by the time its first entry commits, which readiness needs too.)
fn lease_left(m: &RaftMetrics<C>, lease: Duration) -> Option<Duration> {
    let voters = m.membership_config.voter_ids().count();
    if voters <= 1 {
        return None;
    }
    let since = match m.last_quorum_acked.as_ref() {
        Some(acked) => acked.elapsed(),
        None => return Some(Duration::ZERO),
    };
    Some(lease.saturating_sub(since))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_loss_needs_peers_and_a_stale_ack() {
        let after = Duration::from_secs(4);
        let ms = Duration::from_millis;
        assert!(
            !quorum_lost(1, Some(ms(60_000)), after),
            "a sole voter is its own quorum"
        );
        assert!(!quorum_lost(3, None, after));
        assert!(!quorum_lost(3, Some(ms(4_000)), after));
        assert!(quorum_lost(3, Some(ms(4_001)), after));
    }

    /// A record altered with valid redb page checksums (so only the record's authentication
    /// tag can notice) makes `open` fail with `Corrupt` and leaves the store untouched; the
    /// service's ID is nowhere in the file in plaintext.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn open_rejects_an_entry_that_fails_authentication() {
        use crate::storage::{LOG, durable_write, redb_err};
        use redb::ReadableTable;
        use swarmd_store::StoreAction;

        let dir = tempfile::tempdir().unwrap();
        let cfg = RaftConfig::new(dir.path(), DataKey::generate(), 1, "127.0.0.1:2377");
        let node = RaftNode::open(cfg.clone(), Arc::new(MemoryStore::new()))
            .await
            .unwrap();
        node.initialize_single().await.unwrap();
        let svc = swarmd_types::Service {
            id: "plaintext-service-id-4f1c".into(),
            ..Default::default()
        };
        let index = node
            .propose(Batch {
                actions: vec![StoreAction::Create(svc.into())],
                proposed_at: "2024-01-01T00:00:00Z".into(),
            })
            .await
            .unwrap();
        node.shutdown().await;
        let file = std::fs::read(cfg.dir.join(DB_FILE)).unwrap();
        assert!(
            !file
                .windows(b"plaintext-service-id-4f1c".len())
                .any(|w| w == b"plaintext-service-id-4f1c"),
            "plaintext in raft.redb"
        );

        // With another key, the log is refused as a whole.
        let other = RaftConfig {
            data_key: DataKey::generate(),
            ..cfg.clone()
        };
        let err = RaftNode::open(other, Arc::new(MemoryStore::new()))
            .await
            .unwrap_err();
        assert!(matches!(&err, RaftError::Corrupt { .. }), "{err}");

        let db = Db::open(&cfg.dir.join(DB_FILE), cfg.data_key.clone()).unwrap();
        db.with(|db| {
            let txn = durable_write(db)?;
            {
                let mut t = txn.open_table(LOG).map_err(redb_err)?;
                let mut rec = t.get(index).map_err(redb_err)?.unwrap().value().to_vec();
                let mid = rec.len() / 2;
                rec[mid] ^= 0x01;
                t.insert(index, rec.as_slice()).map_err(redb_err)?;
            }
            txn.commit().map_err(redb_err)
        })
        .unwrap();
        db.close();

        let mem = Arc::new(MemoryStore::new());
        let err = RaftNode::open(cfg, mem.clone()).await.unwrap_err();
        assert!(
            matches!(&err, RaftError::Corrupt { .. }) && err.to_string().contains("authentication"),
            "{err}"
        );
        assert_eq!(mem.applied_index(), 0);
    }

    #[test]
    fn config_is_validated() {
        let mut c = RaftConfig::new("/tmp/x", DataKey::generate(), 1, "127.0.0.1:2377");
        assert!(c.to_openraft().is_ok());
        c.election_timeout_min = c.heartbeat_interval;
        assert!(matches!(c.to_openraft(), Err(RaftError::Config(_))));
        let mut c = RaftConfig::new("/tmp/x", DataKey::generate(), 1, "a");
        c.snapshot_every = 0;
        assert!(matches!(c.to_openraft(), Err(RaftError::Config(_))));
    }
}
