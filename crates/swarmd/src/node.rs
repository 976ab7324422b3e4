//! The node's swarm lifecycle: inactive until `swarm init`, then a manager with Raft, the
//! manager components and a local agent; back to inactive on `swarm leave`.
//!
//! On start, a node that was part of a swarm reopens its Raft log and state (everything
//! it acknowledged is back) and its agent re-adopts the running tasks.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use swarmd_agent::exec::docker::DockerExecutor;
use swarmd_agent::exec::process::ProcessExecutor;
use swarmd_agent::{Agent, AgentConfig, Executor};
use swarmd_manager::{Control, InitParams, Manager};
use swarmd_raft::{RaftConfig, RaftNode};
use swarmd_store::{MemoryStore, Store};
use swarmd_types::dispatcher::DispatcherApi;
use swarmd_types::{Role, ids};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cli::{Args, ExecutorKind};
use crate::cluster::{self, NodeCerts};

/// What is persisted about this node's membership (`<data-root>/swarm/state.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeState {
    pub node_id: String,
    pub listen_addr: String,
    pub advertise_addr: String,
    /// Managers run Raft and the manager components; workers only the agent.
    #[serde(default = "manager_role")]
    pub role: Role,
    /// Cluster addresses of the managers this node talks to (workers).
    #[serde(default)]
    pub manager_addrs: Vec<String>,
}

fn manager_role() -> Role {
    Role::Manager
}

/// The manager side of a membership: Raft, the store, the reconcilers, the cluster port.
pub struct ManagerParts {
    pub raft: Arc<RaftNode>,
    pub store: Store,
    pub manager: Manager,
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
    pub mgr: Option<ManagerParts>,
    pub agent: Agent,
    agent_cancel: CancellationToken,
    agent_tracker: TaskTracker,
}

/// Which executor this node uses, decided once at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecChoice {
    Docker { socket: String },
    Process,
}

/// The node: its flags, its executor choice and its (optional) swarm membership.
pub struct SwarmNode {
    pub args: Args,
    pub exec: ExecChoice,
    pub engine_version: Option<String>,
    pub hostname: String,
    /// The process executor for `docker ps` before and after init (process mode only).
    pub process_exec: Option<Arc<ProcessExecutor>>,
    active: RwLock<Option<Arc<Active>>>,
    /// Serializes init/leave/start.
    lifecycle: Mutex<()>,
}

fn swarm_dir(root: &Path) -> PathBuf {
    root.join("swarm")
}

impl SwarmNode {
    /// Picks the executor and, if this node was in a swarm, rejoins it from disk.
    pub async fn start(args: Args) -> anyhow::Result<Arc<SwarmNode>> {
        std::fs::create_dir_all(&args.data_root)
            .with_context(|| format!("creating {}", args.data_root.display()))?;
        let (exec, engine_version) = choose_executor(&args).await?;
        let process_exec = match exec {
            ExecChoice::Process => Some(Arc::new(ProcessExecutor::new(&args.data_root))),
            ExecChoice::Docker { .. } => None,
        };
        let hostname = args
            .hostname
            .clone()
            .unwrap_or_else(crate::sysinfo::hostname);
        let node = Arc::new(SwarmNode {
            args,
            exec,
            engine_version,
            hostname,
            process_exec,
            active: RwLock::new(None),
            lifecycle: Mutex::new(()),
        });
        let state_file = swarm_dir(&node.args.data_root).join("state.json");
        if state_file.exists() {
            let state: NodeState = serde_json::from_slice(&std::fs::read(&state_file)?)
                .with_context(|| format!("reading {}", state_file.display()))?;
            let _g = node.lifecycle.lock().await;
            let active = node.activate(state, false).await?;
            *node.active.write().unwrap_or_else(|e| e.into_inner()) = Some(active);
            tracing::info!("rejoined the swarm from local state");
        }
        Ok(node)
    }

    /// The running membership, if any.
    pub fn active(&self) -> Option<Arc<Active>> {
        self.active
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    async fn make_executor(&self, node_id: &str) -> anyhow::Result<Arc<dyn Executor>> {
        Ok(match &self.exec {
            ExecChoice::Docker { socket } => {
                Arc::new(DockerExecutor::connect(socket, node_id).await?)
            }
            ExecChoice::Process => self
                .process_exec
                .clone()
                .map(|e| e as Arc<dyn Executor>)
                .context("process executor missing")?,
        })
    }

    /// Starts this node's part in the swarm: for a manager Raft, the manager and the
    /// cluster port; for every node the agent. `init` creates the cluster.
    async fn activate(&self, state: NodeState, init: bool) -> anyhow::Result<Arc<Active>> {
        let dir = swarm_dir(&self.args.data_root);
        let executor = self.make_executor(&state.node_id).await?;
        let mut cfg = AgentConfig::new(
            state.node_id.clone(),
            self.args.node_addr.to_string(),
            dir.join("agent"),
        );
        cfg.hostname = Some(self.hostname.clone());
        let agent = Agent::new(cfg, executor)?;

        let (mgr, dispatcher): (Option<ManagerParts>, Arc<dyn DispatcherApi>) = match state.role {
            Role::Manager => {
                let parts = self.start_manager(&state, &agent, init).await?;
                let d = parts.manager.dispatcher();
                (Some(parts), d)
            }
            Role::Worker => {
                let certs = NodeCerts::load(&dir)?;
                let remote = state
                    .manager_addrs
                    .first()
                    .context("no manager address recorded for this worker")?;
                (None, cluster::remote_dispatcher(&certs, remote)?)
            }
        };

        let agent_cancel = CancellationToken::new();
        let agent_tracker = TaskTracker::new();
        let run = agent.clone();
        let c = agent_cancel.clone();
        agent_tracker.spawn(async move {
            if let Err(e) = run.run(dispatcher, c).await {
                tracing::error!(error = %e, "agent stopped");
            }
        });
        agent_tracker.close();
        Ok(Arc::new(Active {
            state,
            mgr,
            agent,
            agent_cancel,
            agent_tracker,
        }))
    }

    async fn start_manager(
        &self,
        state: &NodeState,
        agent: &Agent,
        init: bool,
    ) -> anyhow::Result<ManagerParts> {
        let dir = swarm_dir(&self.args.data_root);
        let mem = Arc::new(MemoryStore::new());
        let raft = Arc::new(
            RaftNode::open(
                RaftConfig::new(dir.join("raft"), 1, state.advertise_addr.clone()),
                mem.clone(),
            )
            .await?,
        );
        if init {
            raft.initialize_single().await?;
        }
        raft.wait_for_leader(Duration::from_secs(30)).await?;
        let store = Store::new(mem, raft.clone());
        let manager = Manager::new(store.clone(), vec![state.advertise_addr.clone()]);
        manager.start(raft.leader_watch());

        if init {
            let description = agent.describe().await?;
            manager
                .control()
                .init_cluster(InitParams {
                    node_id: state.node_id.clone(),
                    description,
                    node_addr: self.args.node_addr.to_string(),
                    // Peers and joining nodes reach the manager at its advertised address.
                    listen_addr: state.advertise_addr.clone(),
                    spec: Default::default(),
                    availability: None,
                    default_addr_pool: vec![],
                    subnet_size: 0,
                    data_path_port: 0,
                })
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            // The manager's own certificate, from its own CA.
            let key = swarmd_pki::generate_node_key_and_csr(None)?;
            let issued =
                swarmd_manager::ca::issue_for_member(&store, &state.node_id, &key.csr_pem)?;
            NodeCerts {
                key_pem: key.key_pem,
                cert_pem: issued.cert_pem,
                root_pem: issued.root_ca_pem,
            }
            .save(&dir)?;
        }
        let certs = NodeCerts::load(&dir)?;
        let cluster_id = store
            .view(|t| t.cluster().map(|c| c.id.clone()))
            .context("the store has no cluster")?;
        let listen: std::net::SocketAddr = state
            .listen_addr
            .parse()
            .with_context(|| format!("invalid listen address {}", state.listen_addr))?;
        let rpc_cancel = CancellationToken::new();
        let rpc_task = cluster::serve_cluster_port(
            listen,
            &certs,
            cluster_id,
            store.clone(),
            manager.dispatcher(),
            rpc_cancel.clone(),
        )
        .await;
        let rpc_task = match rpc_task {
            Ok(t) => t,
            Err(e) => {
                manager.stop().await;
                raft.shutdown().await;
                return Err(e);
            }
        };
        Ok(ManagerParts {
            raft,
            store,
            manager,
            rpc_cancel,
            rpc_task: std::sync::Mutex::new(Some(rpc_task)),
        })
    }

    /// `swarm init`: a one-manager swarm with this node as leader.
    pub async fn init(
        &self,
        listen_addr: String,
        advertise_addr: String,
        spec: swarmd_types::models::SwarmSpec,
    ) -> Result<String, InitError> {
        let _g = self.lifecycle.lock().await;
        if self.active().is_some() {
            return Err(InitError::AlreadyInSwarm);
        }
        let state = NodeState {
            node_id: ids::new_id(),
            listen_addr,
            advertise_addr,
            role: Role::Manager,
            manager_addrs: vec![],
        };
        let dir = swarm_dir(&self.args.data_root);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| InitError::Other(e.to_string()))?;
        let active = match self.activate(state.clone(), true).await {
            Ok(a) => a,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(InitError::Other(format!("{e:#}")));
            }
        };
        // Apply the requested spec over the defaults set at init.
        if let (true, Some(m)) = (spec != Default::default(), active.mgr.as_ref()) {
            let (version, current) = m.store.view(|t| {
                t.cluster()
                    .map(|c| (c.meta.version, c.spec.clone()))
                    .unwrap_or_default()
            });
            let merged = merge_spec(current, spec);
            if let Err(e) = m
                .control()
                .update_swarm(version, merged, false, false)
                .await
            {
                tracing::warn!(error = %e, "could not apply the init spec");
            }
        }
        write_state(&dir, &state).map_err(|e| InitError::Other(e.to_string()))?;
        *self.active.write().unwrap_or_else(|e| e.into_inner()) = Some(active);
        tracing::info!(node.id = %state.node_id, "swarm initialized");
        Ok(state.node_id)
    }

    /// `swarm join`: gets a certificate from the manager at `remote` (pinning its CA by
    /// the token) and starts the agent against it. Leaves the node as it was on failure.
    pub async fn join(
        &self,
        token: &str,
        remote: &str,
        listen_addr: String,
        advertise_addr: String,
    ) -> Result<(), JoinFailure> {
        let _g = self.lifecycle.lock().await;
        if self.active().is_some() {
            return Err(JoinFailure::AlreadyInSwarm);
        }
        let (certs, node_id, role) = cluster::request_certificate(token, remote)
            .await
            .map_err(JoinFailure::Join)?;
        if role != Role::Worker {
            return Err(JoinFailure::Other(
                "joining as a manager is not supported yet".into(),
            ));
        }
        let dir = swarm_dir(&self.args.data_root);
        let _ = std::fs::remove_dir_all(&dir);
        let state = NodeState {
            node_id: node_id.clone(),
            listen_addr,
            advertise_addr,
            role,
            manager_addrs: vec![remote.to_string()],
        };
        let started = async {
            std::fs::create_dir_all(&dir)?;
            certs.save(&dir)?;
            let active = self.activate(state.clone(), false).await?;
            write_state(&dir, &state)?;
            anyhow::Ok(active)
        }
        .await;
        match started {
            Ok(active) => {
                *self.active.write().unwrap_or_else(|e| e.into_inner()) = Some(active);
                tracing::info!(node.id = %node_id, manager = %remote, "joined the swarm as a worker");
                Ok(())
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(JoinFailure::Other(format!("{e:#}")))
            }
        }
    }

    /// `swarm leave`: stops the tasks, the agent, the manager and Raft, and forgets the
    /// swarm's state.
    pub async fn leave(&self, force: bool) -> Result<(), LeaveError> {
        let _g = self.lifecycle.lock().await;
        let Some(active) = self.active() else {
            return Err(LeaveError::NotInSwarm);
        };
        if !force && active.state.role == Role::Manager {
            return Err(LeaveError::LastManager);
        }
        self.stop_active(&active).await;
        let executor = active.agent.executor().clone();
        remove_all_tasks(executor.as_ref()).await;
        *self.active.write().unwrap_or_else(|e| e.into_inner()) = None;
        let _ = std::fs::remove_dir_all(swarm_dir(&self.args.data_root));
        tracing::info!("left the swarm");
        Ok(())
    }

    async fn stop_active(&self, active: &Active) {
        active.agent_cancel.cancel();
        active.agent_tracker.wait().await;
        active.agent.executor().close().await;
        if let Some(m) = &active.mgr {
            m.rpc_cancel.cancel();
            let task = m.rpc_task.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(task) = task {
                let _ = task.await;
            }
            m.manager.stop().await;
            m.raft.shutdown().await;
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

/// Shuts down and removes every task the executor holds (after leaving a swarm).
async fn remove_all_tasks(executor: &dyn Executor) {
    let ids = executor.list_tasks().await.unwrap_or_default();
    for id in ids {
        let rt = swarmd_agent::TaskRuntime::for_existing(&id, "127.0.0.1");
        let c = executor.controller(&rt);
        if let Err(e) = c.shutdown(Duration::from_secs(10)).await {
            tracing::warn!(task = %id, error = %e, "stopping task on leave");
        }
        if let Err(e) = c.remove().await {
            tracing::warn!(task = %id, error = %e, "removing task on leave");
        }
    }
}

fn write_state(dir: &Path, state: &NodeState) -> std::io::Result<()> {
    let tmp = dir.join("state.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(state)?)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, dir.join("state.json"))
}

/// Overlays the fields a request set onto a full spec.
fn merge_spec(
    mut base: swarmd_types::models::SwarmSpec,
    req: swarmd_types::models::SwarmSpec,
) -> swarmd_types::models::SwarmSpec {
    if let Some(o) = req.orchestration
        && o.task_history_retention_limit.is_some()
    {
        base.orchestration
            .get_or_insert_with(Default::default)
            .task_history_retention_limit = o.task_history_retention_limit;
    }
    if let Some(d) = req.dispatcher
        && d.heartbeat_period.is_some()
    {
        base.dispatcher
            .get_or_insert_with(Default::default)
            .heartbeat_period = d.heartbeat_period;
    }
    if let Some(c) = req.ca_config
        && c.node_cert_expiry.is_some()
    {
        base.ca_config
            .get_or_insert_with(Default::default)
            .node_cert_expiry = c.node_cert_expiry;
    }
    if let Some(e) = req.encryption_config {
        base.encryption_config = Some(e);
    }
    if req.labels.is_some() {
        base.labels = req.labels;
    }
    if req.name.as_deref().is_some_and(|n| !n.is_empty()) {
        base.name = req.name;
    }
    base
}

/// Why `swarm init` failed.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("already part of a swarm")]
    AlreadyInSwarm,
    #[error("{0}")]
    Other(String),
}

/// Why `swarm join` failed.
#[derive(Debug, thiserror::Error)]
pub enum JoinFailure {
    #[error("already part of a swarm")]
    AlreadyInSwarm,
    #[error(transparent)]
    Join(cluster::JoinError),
    #[error("{0}")]
    Other(String),
}

/// Why `swarm leave` failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaveError {
    #[error("not part of a swarm")]
    NotInSwarm,
    #[error("last manager")]
    LastManager,
}

/// Decides the executor: docker when asked or (auto) when the engine answers.
async fn choose_executor(args: &Args) -> anyhow::Result<(ExecChoice, Option<String>)> {
    let socket = args.engine_socket();
    let probe = |socket: String| async move {
        let exec = tokio::time::timeout(
            Duration::from_secs(5),
            DockerExecutor::connect(&socket, "probe"),
        )
        .await
        .ok()?
        .ok()?;
        let d = exec.describe().await.ok()?;
        Some(d.engine_version)
    };
    match args.executor {
        ExecutorKind::Process => Ok((ExecChoice::Process, None)),
        ExecutorKind::Docker => {
            let socket =
                socket.context("--engine-host must be unix://PATH for the docker executor")?;
            let version = probe(socket.clone())
                .await
                .with_context(|| format!("no Docker Engine answers on unix://{socket}"))?;
            Ok((ExecChoice::Docker { socket }, Some(version)))
        }
        ExecutorKind::Auto => match socket {
            Some(socket) => match probe(socket.clone()).await {
                Some(v) => Ok((ExecChoice::Docker { socket }, Some(v))),
                None => Ok((ExecChoice::Process, None)),
            },
            None => Ok((ExecChoice::Process, None)),
        },
    }
}
