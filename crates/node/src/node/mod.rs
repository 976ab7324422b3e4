//! The node's swarm lifecycle: inactive until `swarm init`, then a manager with Raft, the
//! manager components and a local agent; back to inactive on `swarm leave`.
//!
//! On start, a node that was part of a swarm reopens its Raft log and state (everything
//! it acknowledged is back) and its agent re-adopts the running tasks.
//!
//! Here: the node, its phases and what it persists. The lifecycle operations are in
//! `lifecycle`, the assembly of a membership's parts in `assembly`, role changes in
//! `role`, certificate renewal in `renewal`.

mod assembly;
mod lifecycle;
mod recovery;
mod renewal;
mod role;

pub use lifecycle::{InitError, JoinFailure, LeaveError, UnlockError};

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, Weak};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use swarmd_agent::Agent;
use swarmd_agent::exec::process::ProcessExecutor;
use swarmd_manager::{Control, Manager};
use swarmd_raft::RaftNode;
use swarmd_store::Store;
use swarmd_types::Role;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::autolock::{SealState, desired_seal};
use crate::cluster;
use crate::config::{ExecChoice, NodeConfig, choose_executor};
use crate::follow::FollowingDispatcher;

use assembly::RaftStart;

/// What is persisted about this node's membership (`<data-root>/swarm/state.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeState {
    pub node_id: String,
    pub listen_addr: String,
    pub advertise_addr: String,
    /// Managers run Raft and the manager components; workers only the agent.
    #[serde(default = "manager_role")]
    pub role: Role,
    /// Cluster addresses of the managers this node knows of (where a restarted agent
    /// starts looking for the leader).
    #[serde(default)]
    pub manager_addrs: Vec<String>,
    /// This manager's Raft member ID (unused on workers).
    #[serde(default)]
    pub raft_id: u64,
}

fn manager_role() -> Role {
    Role::Manager
}

/// The manager side of a membership: Raft, the store, the reconcilers, the cluster port.
pub struct ManagerParts {
    pub raft: Arc<RaftNode>,
    pub store: Store,
    pub manager: Manager,
    /// Passed before every API read, so none is stale (`swarmd_store::ReadBarrier`).
    pub reads: Arc<swarmd_store::Coalesced>,
    /// Tunnels to nodes' engines and the leader's pool API.
    pub tunnels: Arc<crate::engines::ManagerTunnels>,
    rpc_cancel: CancellationToken,
    rpc_task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl ManagerParts {
    pub fn control(&self) -> &Control {
        self.manager.control()
    }
}

/// A running swarm membership.
pub struct Active {
    pub state: NodeState,
    /// Present on managers.
    pub mgr: Option<Arc<ManagerParts>>,
    pub agent: Agent,
    /// The agent's way to the leader; knows the managers and this node's recorded role.
    pub follow: Arc<FollowingDispatcher>,
    agent_cancel: CancellationToken,
    agent_tracker: TaskTracker,
}

/// Where a node is in its lifecycle: one of these at a time, so a node can't be both
/// locked and running, or running without its state.
#[derive(Clone)]
pub enum NodePhase {
    /// In no swarm (before `swarm init`/`join`, after `swarm leave`).
    Inactive,
    /// A member whose keys are sealed by the unlock key and that has not been unlocked since
    /// it started (`docker info`: "locked"): its state, waiting for `swarm unlock`.
    Locked(NodeState),
    /// A running membership.
    Active(Arc<Active>),
}

/// The node: its configuration, its executor choice and its (optional) swarm membership.
pub struct SwarmNode {
    pub config: NodeConfig,
    pub exec: ExecChoice,
    pub engine_version: Option<String>,
    pub hostname: String,
    /// The process executor for `docker ps` before and after init (process mode only).
    pub process_exec: Option<Arc<ProcessExecutor>>,
    /// Where the node is in its lifecycle.
    phase: RwLock<NodePhase>,
    /// The unlock key `swarm/certs/node.keys` is sealed with right now (`None`: in the
    /// clear). Held while the file is rewritten, so renewals and re-sealing never race.
    seal: SealState,
    /// Serializes init/join/leave/start and role changes.
    lifecycle: Mutex<()>,
    /// Itself, for the tasks that change this node's role.
    me: Weak<SwarmNode>,
    /// What serves `pool://leader` streams while this node leads.
    pub(crate) pool_api: crate::engines::PoolApiSlot,
}

fn swarm_dir(root: &Path) -> PathBuf {
    root.join("swarm")
}

impl SwarmNode {
    /// Picks the executor and, if this node was in a swarm, rejoins it from disk.
    pub async fn start(config: NodeConfig) -> anyhow::Result<Arc<SwarmNode>> {
        std::fs::create_dir_all(&config.data_root)
            .with_context(|| format!("creating {}", config.data_root.display()))?;
        // Read the benchmark switch now, so its warning is in the log from the start.
        crate::backend::bench_local_reads();
        let (exec, engine_version) = choose_executor(&config).await?;
        let process_exec = match exec {
            ExecChoice::Process => Some(Arc::new(ProcessExecutor::new(&config.data_root))),
            ExecChoice::Docker { .. } | ExecChoice::Given(_) => None,
        };
        let hostname = config
            .hostname
            .clone()
            .unwrap_or_else(crate::sysinfo::hostname);
        let node = Arc::new_cyclic(|me| SwarmNode {
            config,
            exec,
            engine_version,
            hostname,
            process_exec,
            phase: RwLock::new(NodePhase::Inactive),
            seal: SealState::default(),
            lifecycle: Mutex::new(()),
            me: me.clone(),
            pool_api: Default::default(),
        });
        let state_file = swarm_dir(&node.config.data_root).join("state.json");
        if state_file.exists() {
            let state: NodeState = serde_json::from_slice(&std::fs::read(&state_file)?)
                .with_context(|| format!("reading {}", state_file.display()))?;
            let _g = node.lifecycle.lock().await;
            if cluster::keys_are_sealed(&swarm_dir(&node.config.data_root)) {
                tracing::warn!(
                    node.id = %state.node_id,
                    "swarm is locked: its keys are sealed by the unlock key; run \"docker swarm unlock\""
                );
                node.set_phase(NodePhase::Locked(state));
            } else {
                let active = node.activate(state, RaftStart::Existing).await?;
                node.set_phase(NodePhase::Active(active));
                tracing::info!("rejoined the swarm from local state");
            }
        }
        Ok(node)
    }

    /// Where the node is in its lifecycle now.
    pub fn phase(&self) -> NodePhase {
        self.phase.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_phase(&self, phase: NodePhase) {
        *self.phase.write().unwrap_or_else(|e| e.into_inner()) = phase;
    }

    /// The state of a member that waits for `swarm unlock`, if this node is locked.
    pub fn locked(&self) -> Option<NodeState> {
        match self.phase() {
            NodePhase::Locked(state) => Some(state),
            _ => None,
        }
    }

    /// Seals (or unseals) this node's keys as the swarm's autolock setting asks now. Called
    /// right after `swarm init`/`swarm update` so the answer reflects it; the
    /// `keep_keys_sealed` reconciler does the same for every other change.
    pub fn reconcile_seal(&self) {
        let Some(a) = self.active() else { return };
        let desired = a.mgr.as_ref().and_then(|m| desired_seal(&m.store));
        let dir = swarm_dir(&self.config.data_root);
        if let Err(e) = self.seal.apply(&dir, desired) {
            tracing::error!(error = %format!("{e:#}"), "could not re-seal the node's keys");
        }
    }

    /// The running membership, if any.
    pub fn active(&self) -> Option<Arc<Active>> {
        match self.phase() {
            NodePhase::Active(a) => Some(a),
            _ => None,
        }
    }

    /// Clean shutdown (SIGTERM): stops components but leaves tasks running for re-adoption.
    pub async fn shutdown(&self) {
        let _g = self.lifecycle.lock().await;
        if let Some(active) = self.active() {
            self.stop_active(&active).await;
        }
    }
}

fn write_state(dir: &Path, state: &NodeState) -> std::io::Result<()> {
    let tmp = dir.join("state.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(state)?)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, dir.join("state.json"))
}
