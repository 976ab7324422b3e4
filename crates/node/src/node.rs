//! The node's swarm lifecycle: inactive until `swarm init`, then a manager with Raft, the
//! manager components and a local agent; back to inactive on `swarm leave`.
//!
//! On start, a node that was part of a swarm reopens its Raft log and state (everything
//! it acknowledged is back) and its agent re-adopts the running tasks.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use swarmd_agent::exec::docker::DockerExecutor;
use swarmd_agent::exec::process::ProcessExecutor;
use swarmd_agent::{Agent, AgentConfig, Executor};
use swarmd_crypto::UnlockKey;
use swarmd_manager::control::swarm_options::{InitOptions, InitRequestOptions};
use swarmd_manager::{Control, InitParams, Manager};
use swarmd_raft::{NetworkConfig, RaftConfig, RaftNode};
use swarmd_store::{Batch, MemoryStore, Store, StoreAction, Tables};
use swarmd_types::dispatcher::{DispatcherApi, SessionMessage};
use swarmd_types::{Role, RootCa, ids};
use tokio::sync::{Mutex, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::autolock::{SealState, desired_seal, keep_keys_sealed};
use crate::cluster::{self, NodeCerts};
use crate::config::{ExecChoice, NodeConfig, choose_executor};
use crate::follow::{FollowingDispatcher, LocalManager};
use crate::raft_glue::{LeaderProposer, Membership};

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

/// How a manager's Raft starts.
enum RaftStart {
    /// From what is on disk (a restart, or a joining manager waiting to be added).
    Existing,
    /// `swarm init`: a new swarm with this node as its one manager; its certificate is
    /// valid for `cert_expiry`. The swarm's root is `root` when the init spec gave one
    /// (`SigningCACert` and `SigningCAKey`), a new one otherwise; it answers the spec's
    /// `ForceRotate` value `force_rotate`. `options` are the request's pools, data path
    /// port and this node's availability.
    Init {
        cert_expiry: Duration,
        root: Option<Box<swarmd_pki::RootCaMaterial>>,
        force_rotate: u64,
        options: InitOptions,
    },
    /// `swarm init --force-new-cluster`: a one-manager Raft cluster holding this state.
    ForceNew(Box<Tables>),
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
}

/// How long a joining manager waits to be added to Raft and catch up before `swarm join`
/// reports that it goes on in the background (as Docker does).
const MANAGER_JOIN_WAIT: Duration = Duration::from_secs(60);

fn swarm_dir(root: &Path) -> PathBuf {
    root.join("swarm")
}

impl SwarmNode {
    /// Picks the executor and, if this node was in a swarm, rejoins it from disk.
    pub async fn start(config: NodeConfig) -> anyhow::Result<Arc<SwarmNode>> {
        std::fs::create_dir_all(&config.data_root)
            .with_context(|| format!("creating {}", config.data_root.display()))?;
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

    /// `swarm unlock`: opens the node's keys with `key` and starts the membership.
    pub async fn unlock(&self, key: &str) -> Result<(), UnlockError> {
        let _g = self.lifecycle.lock().await;
        let Some(state) = self.locked() else {
            return Err(UnlockError::NotLocked);
        };
        let key = UnlockKey::parse(key).map_err(|e| UnlockError::Invalid(e.to_string()))?;
        let dir = swarm_dir(&self.config.data_root);
        match cluster::NodeCerts::load(&dir, Some(&key)) {
            Ok(_) => {}
            Err(cluster::KeysError::WrongKey) => return Err(UnlockError::WrongKey),
            Err(e) => return Err(UnlockError::Other(e.to_string())),
        }
        self.seal.set(Some(key));
        let active = self
            .activate(state, RaftStart::Existing)
            .await
            .map_err(|e| UnlockError::Other(format!("{e:#}")))?;
        self.set_phase(NodePhase::Active(active));
        tracing::info!("swarm unlocked");
        Ok(())
    }

    /// Seals (or unseals) this node's keys as the swarm's autolock setting asks now. Called
    /// right after `swarm init`/`swarm update` so the answer reflects it; the
    /// [`keep_keys_sealed`] reconciler does the same for every other change.
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

    /// The node's executor and, with the docker executor, the engine client the overlay data
    /// plane uses.
    async fn make_executor(
        &self,
        node_id: &str,
    ) -> anyhow::Result<(Arc<dyn Executor>, Option<bollard::Docker>)> {
        Ok(match &self.exec {
            ExecChoice::Docker { socket } => {
                let exec = DockerExecutor::connect(socket, node_id).await?;
                let docker = exec.client().clone();
                (Arc::new(exec), Some(docker))
            }
            ExecChoice::Given(e) => (e.clone(), None),
            ExecChoice::Process => (
                self.process_exec
                    .clone()
                    .map(|e| e as Arc<dyn Executor>)
                    .context("process executor missing")?,
                None,
            ),
        })
    }

    /// Starts this node's part in the swarm: for a manager Raft, the manager and the
    /// cluster port; for every node the agent. `init` creates the cluster.
    async fn activate(&self, state: NodeState, start: RaftStart) -> anyhow::Result<Arc<Active>> {
        let dir = swarm_dir(&self.config.data_root);
        // A new swarm's CA and this manager's certificate come first: every TLS config
        // (Raft's transport among them) presents it.
        let new_ca = match &start {
            RaftStart::Init {
                cert_expiry,
                root,
                force_rotate,
                ..
            } => {
                self.seal.set(None);
                let (ca, cluster_id) =
                    first_manager_certs(&dir, &state, *cert_expiry, root.as_deref().cloned())?;
                Some((ca, cluster_id, *force_rotate))
            }
            _ => None,
        };
        let certs = self.seal.load(&dir)?;

        let (executor, docker) = self.make_executor(&state.node_id).await?;
        let mut cfg = AgentConfig::new(
            state.node_id.clone(),
            self.config.node_addr.to_string(),
            dir.join("agent"),
            certs.dek.clone(),
        );
        cfg.hostname = Some(self.hostname.clone());
        let agent = Agent::new(cfg, executor)?;
        let live = swarmd_pki::LiveCert::new(&certs.cert_pem, &certs.key_pem, &certs.root_pem)?;
        let tls = swarmd_pki::live_client_config(&live)?;

        let (mgr, local) = match state.role {
            Role::Manager => {
                let parts = self
                    .start_manager(&state, &agent, start, new_ca, &certs, &live, tls.clone())
                    .await?;
                let local = LocalManager {
                    dispatcher: parts.manager.dispatcher(),
                    raft: parts.raft.clone(),
                    addr: state.advertise_addr.clone(),
                    lease: RAFT_ELECTION.1,
                };
                (Some(Arc::new(parts)), Some(local))
            }
            Role::Worker => (None, None),
        };
        let follow = FollowingDispatcher::new(local, tls, state.manager_addrs.clone());

        let agent_cancel = CancellationToken::new();
        let agent_tracker = TaskTracker::new();
        let run = agent.clone();
        let c = agent_cancel.clone();
        let dispatcher: Arc<dyn DispatcherApi> = follow.clone();
        agent_tracker.spawn(async move {
            if let Err(e) = run.run(dispatcher, c).await {
                tracing::error!(error = %e, "agent stopped");
            }
        });
        agent_tracker.spawn(watch_role(
            self.me.clone(),
            follow.latest(),
            state.role,
            agent_cancel.clone(),
        ));
        // The routing mesh follows the ingress table the sessions bring (every node, tasks
        // or not); it keeps forwarding to the last known tasks while no session is open.
        // nftables forwards the ports whose tasks the kernel can reach (unless
        // --userland-mesh); the user-space listeners serve the rest.
        let mut mesh = swarmd_mesh::Mesh::new(self.config.node_addr, agent_cancel.clone());
        if !self.config.userland_mesh {
            mesh = mesh.with_kernel_path();
        }
        agent_tracker.spawn(mesh.run(follow.latest(), |m: &Option<SessionMessage>| {
            m.as_ref().and_then(|m| m.ingress.clone())
        }));
        // Overlay networks (DNS, VIPs, VXLAN) for the docker executor's containers.
        if let Some(docker) = docker {
            let plane = crate::dataplane::DataPlane::new(
                state.node_id.clone(),
                self.config.node_addr,
                docker,
                agent_cancel.clone(),
            );
            agent_tracker.spawn(plane.run(follow.latest()));
        }
        agent_tracker.spawn(renew_certificates(
            dir.clone(),
            self.seal.clone(),
            live,
            follow.clone(),
            state.clone(),
            agent_cancel.clone(),
        ));
        agent_tracker.spawn(keep_keys_sealed(
            dir.clone(),
            self.seal.clone(),
            mgr.as_ref().map(|m| m.store.clone()),
            agent_cancel.clone(),
        ));
        agent_tracker.close();
        Ok(Arc::new(Active {
            state,
            mgr,
            agent,
            follow,
            agent_cancel,
            agent_tracker,
        }))
    }

    #[allow(clippy::too_many_arguments)]
    async fn start_manager(
        &self,
        state: &NodeState,
        agent: &Agent,
        start: RaftStart,
        new_ca: Option<(swarmd_pki::RootCaMaterial, String, u64)>,
        certs: &NodeCerts,
        live: &swarmd_pki::LiveCert,
        tls: Arc<rustls::ClientConfig>,
    ) -> anyhow::Result<ManagerParts> {
        let init_options = match &start {
            RaftStart::Init { options, .. } => options.clone(),
            _ => InitOptions::default(),
        };
        let dir = swarm_dir(&self.config.data_root);
        let mem = Arc::new(MemoryStore::new());
        let raft = Arc::new(
            RaftNode::open(
                raft_config(&dir, state, certs).with_network(NetworkConfig::new(tls.clone())),
                mem.clone(),
            )
            .await?,
        );
        if !matches!(start, RaftStart::Existing) {
            raft.initialize_single().await?;
        }
        let store = Store::new(mem, Arc::new(LeaderProposer::new(raft.clone(), tls)));
        if let RaftStart::ForceNew(tables) = start {
            let restored = store.propose(restore_batch(&tables, state)).await;
            if let Err(e) = restored {
                raft.shutdown().await;
                return Err(anyhow::anyhow!("restoring the swarm's state: {e}"));
            }
        }
        let manager = Manager::new(store.clone(), Arc::new(Membership(raft.clone())));
        manager.start(raft.leader_watch());

        // The cluster port before anything waits on Raft: peers (and a leader adding this
        // manager) must reach it.
        let listen: std::net::SocketAddr = state
            .listen_addr
            .parse()
            .with_context(|| format!("invalid listen address {}", state.listen_addr))?;
        let rpc_cancel = CancellationToken::new();
        let served = cluster::serve_cluster_port(
            listen,
            certs,
            live,
            store.clone(),
            raft.clone(),
            manager.dispatcher(),
            rpc_cancel.clone(),
        )
        .await;
        let rpc_task = match served {
            Ok(t) => t,
            Err(e) => {
                manager.stop().await;
                raft.shutdown().await;
                return Err(e);
            }
        };
        // Snapshots follow the spec's interval from now on (and on every change).
        tokio::spawn(crate::raft_spec::follow_raft_spec(
            store.clone(),
            raft.clone(),
            rpc_cancel.clone(),
        ));
        let parts = ManagerParts {
            raft,
            store,
            manager,
            rpc_cancel,
            rpc_task: std::sync::Mutex::new(Some(rpc_task)),
        };

        if let Some((ca, cluster_id, force_rotate)) = new_ca {
            let description = agent.describe().await?;
            let created = parts
                .control()
                .init_cluster(InitParams {
                    node_id: state.node_id.clone(),
                    description,
                    node_addr: self.config.node_addr.to_string(),
                    // Peers and joining nodes reach the manager at its advertised address.
                    listen_addr: state.advertise_addr.clone(),
                    raft_id: state.raft_id,
                    cluster_id: Some(cluster_id),
                    root_ca: Some(RootCa {
                        cert_pem: ca.cert_pem.clone(),
                        key_pem: ca.key_pem.clone(),
                        digest: ca.digest.clone(),
                        last_forced_rotation: Some(force_rotate),
                        root_rotation: None,
                    }),
                    spec: Default::default(),
                    availability: init_options.availability,
                    default_addr_pool: init_options.default_addr_pool,
                    subnet_size: init_options.subnet_size,
                    data_path_port: init_options.data_path_port,
                })
                .await;
            if let Err(e) = created {
                stop_manager(&parts).await;
                return Err(anyhow::anyhow!("{e}"));
            }
        } else if parts.raft.members().len() == 1 {
            // The only manager restarting: it leads again after one election timeout;
            // waiting here keeps the first API calls from seeing "no leader".
            if let Err(e) = parts.raft.wait_for_leader(Duration::from_secs(30)).await {
                tracing::warn!(error = %e, "no raft leader yet");
            }
        }
        Ok(parts)
    }

    /// `swarm init`: a one-manager swarm with this node as leader.
    pub async fn init(
        &self,
        listen_addr: String,
        advertise_addr: String,
        spec: swarmd_types::models::SwarmSpec,
        options: InitRequestOptions,
    ) -> Result<String, InitError> {
        let _g = self.lifecycle.lock().await;
        // A locked member is still one: `init`/`join` would wipe its state.
        if !matches!(self.phase(), NodePhase::Inactive) {
            return Err(InitError::AlreadyInSwarm);
        }
        let options = options.check().map_err(InitError::Invalid)?;
        swarmd_manager::control::validate_swarm_spec(&spec)
            .map_err(|e| InitError::Invalid(e.to_string()))?;
        // Checked before anything is created, so a refused init leaves no swarm behind.
        let root = init_root(&spec).map_err(|e| InitError::Invalid(e.to_string()))?;
        let force_rotate = swarmd_manager::control::ca_config::force_rotate(&spec);
        let state = NodeState {
            node_id: ids::new_id(),
            listen_addr,
            advertise_addr: advertise_addr.clone(),
            role: Role::Manager,
            manager_addrs: vec![advertise_addr],
            raft_id: new_raft_id(),
        };
        let dir = swarm_dir(&self.config.data_root);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| InitError::Other(e.to_string()))?;
        let cert_expiry = spec
            .ca_config
            .as_ref()
            .and_then(|c| c.node_cert_expiry)
            .filter(|e| *e > 0)
            .map(|e| Duration::from_nanos(e as u64))
            .unwrap_or(swarmd_manager::ca::DEFAULT_CERT_EXPIRY);
        let active = match self
            .activate(
                state.clone(),
                RaftStart::Init {
                    cert_expiry,
                    root: root.map(Box::new),
                    force_rotate,
                    options,
                },
            )
            .await
        {
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
            let merged = swarmd_manager::control::swarm_spec::merge_swarm_spec(current, spec);
            if let Err(e) = m
                .control()
                .update_swarm(version, merged, false, false, false)
                .await
            {
                tracing::warn!(error = %e, "could not apply the init spec");
            }
        }
        // As Docker's init waits for its node to be ready: return once this node's own
        // session has registered it, so a `node update` right after init does not race the
        // dispatcher's first status write ("update out of sequence").
        if let Some(m) = active.mgr.as_ref() {
            wait_node_ready(&m.store, &state.node_id, INIT_READY_WAIT).await;
        }
        write_state(&dir, &state).map_err(|e| InitError::Other(e.to_string()))?;
        self.set_phase(NodePhase::Active(active));
        // `swarm init --autolock`: sealed before the CLI asks for the key.
        self.reconcile_seal();
        tracing::info!(node.id = %state.node_id, "swarm initialized");
        Ok(state.node_id)
    }

    /// `swarm init --force-new-cluster` on a manager: keeps everything the swarm stored
    /// (services, tasks, nodes, the CA and tokens) and starts a new Raft cluster with this
    /// manager alone, for a swarm that lost its quorum. The other managers are recorded as
    /// workers; they can be promoted again once they rejoin.
    pub async fn force_new_cluster(&self) -> Result<String, InitError> {
        let _g = self.lifecycle.lock().await;
        let Some(active) = self.active() else {
            return Err(InitError::NotInSwarm);
        };
        let Some(m) = &active.mgr else {
            return Err(InitError::Other(
                "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.".into(),
            ));
        };
        let tables = m.store.memory().snapshot().tables;
        if tables.cluster().is_none() {
            return Err(InitError::Other(
                "this manager holds no swarm state to keep".into(),
            ));
        }
        tracing::warn!("forcing a new one-manager cluster from this manager's state");
        self.stop_active(&active).await;
        let dir = swarm_dir(&self.config.data_root);
        let old_raft = dir.join("raft");
        let kept = dir.join("raft.before-force-new-cluster");
        let _ = std::fs::remove_dir_all(&kept);
        std::fs::rename(&old_raft, &kept).map_err(|e| InitError::Other(e.to_string()))?;
        let state = NodeState {
            raft_id: new_raft_id(),
            manager_addrs: vec![active.state.advertise_addr.clone()],
            ..active.state.clone()
        };
        match self
            .activate(state.clone(), RaftStart::ForceNew(Box::new(tables)))
            .await
        {
            Ok(a) => {
                write_state(&dir, &state).map_err(|e| InitError::Other(e.to_string()))?;
                let _ = std::fs::remove_dir_all(&kept);
                self.set_phase(NodePhase::Active(a));
                tracing::info!(raft_id = state.raft_id, "new cluster formed");
                Ok(state.node_id)
            }
            Err(e) => {
                // Put the old Raft data back: a restart finds the swarm as it was.
                let _ = std::fs::remove_dir_all(&old_raft);
                let _ = std::fs::rename(&kept, &old_raft);
                self.set_phase(NodePhase::Inactive);
                Err(InitError::Other(format!(
                    "{e:#}; restart swarmd to resume the old cluster"
                )))
            }
        }
    }

    /// `swarm join`: gets a certificate from the manager at `remote` (pinning its CA by
    /// the token) and starts the agent against it; a manager also starts Raft and waits
    /// until the leader has added it and it has caught up. Leaves the node as it was when
    /// the join is refused.
    pub async fn join(
        &self,
        token: &str,
        remote: &str,
        listen_addr: String,
        advertise_addr: String,
        availability: Option<String>,
    ) -> Result<(), JoinFailure> {
        let _g = self.lifecycle.lock().await;
        if !matches!(self.phase(), NodePhase::Inactive) {
            return Err(JoinFailure::AlreadyInSwarm);
        }
        // Checked here as moby's node runner does, before the manager is asked.
        swarmd_manager::control::swarm_options::availability(availability.as_deref())
            .map_err(JoinFailure::Invalid)?;
        let granted = cluster::request_certificate(token, remote, &advertise_addr, availability)
            .await
            .map_err(JoinFailure::Join)?;
        let dir = swarm_dir(&self.config.data_root);
        let _ = std::fs::remove_dir_all(&dir);
        let node_id = granted.node_id.clone();
        let state = NodeState {
            node_id: node_id.clone(),
            listen_addr,
            advertise_addr,
            role: granted.role,
            manager_addrs: vec![remote.to_string()],
            raft_id: granted.raft_id.unwrap_or(0),
        };
        let started = async {
            std::fs::create_dir_all(&dir)?;
            self.seal.set(None);
            self.seal.save(&dir, &granted.certs)?;
            let active = self.activate(state.clone(), RaftStart::Existing).await?;
            write_state(&dir, &state)?;
            anyhow::Ok(active)
        }
        .await;
        let active = match started {
            Ok(active) => active,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(JoinFailure::Other(format!("{e:#}")));
            }
        };
        self.set_phase(NodePhase::Active(active.clone()));
        tracing::info!(node.id = %node_id, manager = %remote, role = granted.role.as_str(), "joined the swarm");
        if let Some(m) = &active.mgr {
            wait_caught_up(m, &node_id, MANAGER_JOIN_WAIT)
                .await
                .map_err(JoinFailure::StillJoining)?;
        }
        Ok(())
    }

    /// Takes on the role the swarm now records for this node (`node promote/demote`):
    /// renews the certificate for it, restarts this node's components in the new role
    /// (the tasks keep running and are re-adopted) and, for a demoted manager, drops its
    /// Raft data.
    ///
    /// Boxed: it restarts the membership whose watcher calls it, a cycle an `async fn`
    /// cannot express.
    fn change_role(
        self: Arc<Self>,
        role: Role,
        managers: Vec<String>,
    ) -> futures::future::BoxFuture<'static, ()> {
        Box::pin(async move { self.change_role_now(role, managers).await })
    }

    async fn change_role_now(&self, role: Role, managers: Vec<String>) {
        let _g = self.lifecycle.lock().await;
        let Some(active) = self.active() else { return };
        if active.state.role == role {
            return;
        }
        tracing::info!(
            from = active.state.role.as_str(),
            to = role.as_str(),
            "the swarm changed this node's role"
        );
        let dir = swarm_dir(&self.config.data_root);
        let own = active.state.advertise_addr.clone();
        let others: Vec<String> = managers.iter().filter(|a| **a != own).cloned().collect();
        let granted = {
            let mut tries = 0;
            loop {
                tries += 1;
                let certs = match self.seal.load(&dir) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::error!(error = %e, "role change: no certificate");
                        return;
                    }
                };
                match cluster::renew_certificate(&certs, &others, &own).await {
                    // The manager answering may not have applied the change yet.
                    Ok(g) if g.role == role => break g,
                    Ok(_) => tracing::debug!("the CA does not see the new role yet"),
                    Err(e) => tracing::warn!(error = %e, "role change: renewing the certificate"),
                }
                if tries >= 60 {
                    tracing::error!("role change abandoned: no certificate for the new role");
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        };
        self.stop_active(&active).await;
        if role == Role::Worker {
            let _ = std::fs::remove_dir_all(dir.join("raft"));
        }
        let state = NodeState {
            role,
            raft_id: granted.raft_id.unwrap_or(0),
            manager_addrs: if managers.is_empty() {
                active.state.manager_addrs.clone()
            } else {
                managers
            },
            ..active.state.clone()
        };
        let restarted = async {
            self.seal.save(&dir, &granted.certs)?;
            write_state(&dir, &state)?;
            self.activate(state.clone(), RaftStart::Existing).await
        }
        .await;
        match restarted {
            Ok(a) => {
                self.set_phase(NodePhase::Active(a));
                tracing::info!(role = role.as_str(), "now running as {}", role.as_str());
            }
            Err(e) => {
                self.set_phase(NodePhase::Inactive);
                tracing::error!(error = %format!("{e:#}"), "could not restart in the new role; restart swarmd to retry");
            }
        }
    }

    /// `swarm leave`: stops the tasks, the agent, the manager and Raft, and forgets the
    /// swarm's state.
    pub async fn leave(&self, force: bool) -> Result<(), LeaveError> {
        let _g = self.lifecycle.lock().await;
        if self.locked().is_some() {
            if !force {
                return Err(LeaveError::Manager(
                    "Swarm is encrypted and locked. Please unlock it first or use `--force` to ignore this message.".into(),
                ));
            }
            self.set_phase(NodePhase::Inactive);
            self.seal.set(None);
            let _ = std::fs::remove_dir_all(swarm_dir(&self.config.data_root));
            tracing::info!("left the swarm (it was locked)");
            return Ok(());
        }
        let Some(active) = self.active() else {
            return Err(LeaveError::NotInSwarm);
        };
        if !force && let Some(m) = &active.mgr {
            let (reachable, unreachable) = m.store.view(|t| {
                let managers = t.nodes.values().filter(|n| n.role == Role::Manager);
                managers.fold((0, 0), |(r, u), n| {
                    if n.status.state == swarmd_types::NodeState::Ready {
                        (r + 1, u)
                    } else {
                        (r, u + 1)
                    }
                })
            });
            return Err(LeaveError::Manager(leave_refusal(reachable, unreachable)));
        }
        self.stop_active(&active).await;
        let executor = active.agent.executor().clone();
        remove_all_tasks(executor.as_ref()).await;
        self.set_phase(NodePhase::Inactive);
        self.seal.set(None);
        let _ = std::fs::remove_dir_all(swarm_dir(&self.config.data_root));
        tracing::info!("left the swarm");
        Ok(())
    }

    async fn stop_active(&self, active: &Active) {
        active.agent_cancel.cancel();
        active.agent_tracker.wait().await;
        active.agent.executor().close().await;
        if let Some(m) = &active.mgr {
            stop_manager(m).await;
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

async fn stop_manager(m: &ManagerParts) {
    m.rpc_cancel.cancel();
    let task = m.rpc_task.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(task) = task {
        let _ = task.await;
    }
    m.manager.stop().await;
    m.raft.shutdown().await;
}

/// Raft heartbeat period on the daemon's managers. openraft also uses it as the deadline of
/// every AppendEntries; `swarmd_raft`'s transport gives calls that carry entries a deadline
/// for their size instead, so only heartbeats and votes are held to it.
const RAFT_HEARTBEAT: Duration = Duration::from_millis(100);
/// Raft election timeout range: a follower that hears nothing from the leader for a random
/// time in it stands for election. A follower also refuses to vote while it heard from a
/// leader within the upper bound (openraft's leader lease), so a lost leader is replaced
/// after one to two bounds: under a second here (swarmkit takes ~10 s on its defaults;
/// BENCHMARKS.md "Failover").
const RAFT_ELECTION: (Duration, Duration) =
    (Duration::from_millis(300), Duration::from_millis(600));

fn raft_config(dir: &Path, state: &NodeState, certs: &NodeCerts) -> RaftConfig {
    let mut c = RaftConfig::new(
        dir.join("raft"),
        certs.dek.clone(),
        state.raft_id,
        state.advertise_addr.clone(),
    );
    c.heartbeat_interval = RAFT_HEARTBEAT;
    (c.election_timeout_min, c.election_timeout_max) = RAFT_ELECTION;
    c
}

/// A new swarm's root CA, its ID, and the first manager's key and certificate (saved).
fn first_manager_certs(
    dir: &Path,
    state: &NodeState,
    cert_expiry: Duration,
    root: Option<swarmd_pki::RootCaMaterial>,
) -> anyhow::Result<(swarmd_pki::RootCaMaterial, String)> {
    let ca = match root {
        Some(ca) => ca,
        None => swarmd_pki::generate_root_ca()?,
    };
    let cluster_id = ids::new_id();
    let key = swarmd_pki::generate_node_key_and_csr(None)?;
    let cert_pem = swarmd_pki::sign_node_csr(
        &ca,
        &key.csr_pem,
        &state.node_id,
        &cluster_id,
        swarmd_pki::Role::Manager,
        cert_expiry,
    )?;
    NodeCerts {
        key_pem: key.key_pem,
        cert_pem,
        root_pem: ca.cert_pem.clone(),
        dek: swarmd_crypto::DataKey::generate(),
    }
    .save(dir, None)?;
    Ok((ca, cluster_id))
}

/// Renews this node's certificate before it expires (at a random point between half and
/// four fifths of its lifetime, as swarmkit does), from any manager, and swaps it into
/// every TLS config in place. A renewal that comes back with another role is left to
/// [`watch_role`], which restarts the node in it.
async fn renew_certificates(
    dir: PathBuf,
    seal: SealState,
    live: swarmd_pki::LiveCert,
    follow: Arc<FollowingDispatcher>,
    state: NodeState,
    cancel: CancellationToken,
) {
    let mut retry = Duration::from_secs(1);
    let mut latest = follow.latest();
    // The roots a session asked for that this node last renewed for: asked again (a
    // session from a manager that has not caught up), it waits for the next change.
    let mut renewed_for: Option<String> = None;
    loop {
        let certs = match seal.load(&dir) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "certificate renewal: no certificate");
                return;
            }
        };
        let due = match swarmd_pki::parse_node_identity_pem(&certs.cert_pem) {
            Ok(id) => id.renewal_deadline(swarmd_pki::RenewalJitter::random()),
            Err(e) => {
                tracing::error!(error = %e, "certificate renewal: unreadable certificate");
                return;
            }
        };
        let wait = due
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default();
        tracing::debug!(?wait, "next certificate renewal");
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
            roots = other_roots(&mut latest, &certs.root_pem, renewed_for.as_deref()) => {
                tracing::info!("the swarm's root CA changed: renewing the certificate");
                renewed_for = Some(roots);
            }
        }
        let mut managers = follow.managers();
        if managers.is_empty() {
            managers = state.manager_addrs.clone();
        }
        match cluster::renew_certificate(&certs, &managers, &state.advertise_addr).await {
            Ok(g) if g.role == state.role => {
                let swapped = seal.save(&dir, &g.certs).and_then(|_| {
                    Ok(live.replace(&g.certs.cert_pem, &g.certs.key_pem, &g.certs.root_pem)?)
                });
                match swapped {
                    Ok(()) => {
                        retry = Duration::from_secs(1);
                        tracing::info!("node certificate renewed");
                        continue;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "could not install the renewed certificate")
                    }
                }
            }
            Ok(g) => {
                tracing::info!(
                    role = g.role.as_str(),
                    "the swarm records another role; waiting for the role change"
                );
            }
            Err(e) => tracing::warn!(error = %e, "certificate renewal failed; retrying"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(retry) => {}
        }
        retry = (retry * 2).min(Duration::from_secs(30));
    }
}

/// Waits until a session asks this node to trust roots other than `mine` (a root rotation
/// started or ended) and returns them; `skip` is a request already answered. Pends forever
/// once sessions end.
async fn other_roots(
    latest: &mut watch::Receiver<Option<SessionMessage>>,
    mine: &str,
    skip: Option<&str>,
) -> String {
    loop {
        let wanted = latest
            .borrow_and_update()
            .as_ref()
            .and_then(|m| m.trust_roots.clone());
        if let Some(roots) = wanted
            && roots != mine
            && Some(roots.as_str()) != skip
        {
            return roots;
        }
        if latest.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// One entry that recreates every object of `tables` in a new Raft log, with this
/// manager the only one: the others become workers (their Raft IDs are gone).
fn restore_batch(tables: &Tables, me: &NodeState) -> Batch {
    let mut actions = Vec::new();
    let mut push = |o: swarmd_types::Object| actions.push(StoreAction::Create(o));
    tables
        .clusters
        .values()
        .for_each(|c| push(c.clone().into()));
    for n in tables.nodes.values() {
        let mut n = n.clone();
        if n.id == me.node_id {
            n.role = Role::Manager;
            n.manager = Some(swarmd_types::ManagerInfo {
                raft_id: me.raft_id,
                addr: me.advertise_addr.clone(),
            });
        } else if n.role == Role::Manager {
            n.role = Role::Worker;
            n.manager = None;
            n.spec.role = Some(swarmd_types::models::NodeSpecRoleEnum::WORKER);
        }
        push(n.into());
    }
    tables
        .services
        .values()
        .for_each(|o| push(o.clone().into()));
    tables.tasks.values().for_each(|o| push(o.clone().into()));
    tables
        .networks
        .values()
        .for_each(|o| push(o.clone().into()));
    tables.secrets.values().for_each(|o| push(o.clone().into()));
    tables.configs.values().for_each(|o| push(o.clone().into()));
    Batch {
        actions,
        proposed_at: swarmd_types::timefmt::now(),
    }
}

/// Docker's refusal of `swarm leave` on a manager, with its quorum arithmetic.
fn leave_refusal(reachable: usize, unreachable: usize) -> String {
    let mut msg = String::from(
        "You are attempting to leave the swarm on a node that is participating as a manager. ",
    );
    if reachable.saturating_sub(2) <= unreachable {
        if reachable == 1 && unreachable == 0 {
            msg.push_str("Removing the last manager erases all current state of the swarm. Use `--force` to ignore this message. ");
            return msg;
        }
        msg.push_str(&format!(
            "Removing this node leaves {} managers out of {}. Without a Raft quorum your swarm will be inaccessible. ",
            reachable.saturating_sub(1),
            reachable + unreachable
        ));
    }
    msg.push_str("The only way to restore a swarm that has lost consensus is to reinitialize it with `--force-new-cluster`. Use `--force` to suppress this message.");
    msg
}

/// A fresh Raft member ID for the first manager (the CA picks them for the others).
fn new_raft_id() -> u64 {
    loop {
        let id: u64 = rand::random();
        if id != 0 {
            return id;
        }
    }
}

/// Waits until this new manager is a Raft voter and its replica holds the swarm and
/// itself.
async fn wait_caught_up(m: &ManagerParts, node_id: &str, limit: Duration) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + limit;
    let me = m.raft.node_id();
    loop {
        let voter = m.raft.members().iter().any(|(id, _, v)| *id == me && *v);
        let has_state = m
            .store
            .view(|t| t.cluster().is_some() && t.nodes.contains_key(node_id));
        if voter && has_state {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "not yet added to the managers' raft cluster after {limit:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Watches the node as the managers record it and switches this node's role when it
/// differs from the one it runs (`node promote/demote`). Ends with the membership.
async fn watch_role(
    node: Weak<SwarmNode>,
    mut latest: watch::Receiver<Option<SessionMessage>>,
    running: Role,
    cancel: CancellationToken,
) {
    loop {
        let wanted = latest
            .borrow_and_update()
            .as_ref()
            .map(|m| (m.node.role, m.managers.clone()));
        if let Some((role, managers)) = wanted
            && role != running
        {
            let Some(node) = node.upgrade() else { return };
            // Detached: the change stops this membership, and with it this watcher.
            tokio::spawn(async move { node.change_role(role, managers).await });
            return;
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = latest.changed() => if r.is_err() { return },
        }
    }
}

/// Shuts down and removes every task the executor holds (after leaving a swarm).
/// Stops and removes every task of the executor, all at once: each stop may wait out a
/// grace period, and a node leaving with many tasks should wait for one, not their sum.
async fn remove_all_tasks(executor: &dyn Executor) {
    let ids = executor.list_tasks().await.unwrap_or_default();
    futures::future::join_all(ids.iter().map(|id| async move {
        let rt = swarmd_agent::TaskRuntime::for_existing(id, "127.0.0.1");
        let c = executor.controller(&rt);
        if let Err(e) = c.shutdown(Duration::from_secs(10)).await {
            tracing::warn!(task = %id, error = %e, "stopping task on leave");
        }
        if let Err(e) = c.remove().await {
            tracing::warn!(task = %id, error = %e, "removing task on leave");
        }
    }))
    .await;
}

fn write_state(dir: &Path, state: &NodeState) -> std::io::Result<()> {
    let tmp = dir.join("state.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(state)?)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, dir.join("state.json"))
}

/// The root CA an init spec gives (`SigningCACert` and `SigningCAKey`), checked as a
/// rotation to it would be: a new swarm takes it as its root at once. `None` when the spec
/// gives none; external CAs and a certificate without its key are refused.
fn init_root(
    spec: &swarmd_types::models::SwarmSpec,
) -> Result<Option<swarmd_pki::RootCaMaterial>, swarmd_manager::control::ControlError> {
    use swarmd_manager::control::ca_config::{CaRequest, plan_ca_change};
    // Against an empty root: any certificate given is a new one.
    let none = RootCa::default();
    let last_forced = swarmd_manager::control::ca_config::force_rotate(spec);
    match plan_ca_change(&none, last_forced, spec.ca_config.as_ref())? {
        CaRequest::NewRoot(root) => Ok(root),
        CaRequest::Keep => Ok(None),
    }
}

/// Why `swarm init` failed.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("already part of a swarm")]
    AlreadyInSwarm,
    #[error("not part of a swarm")]
    NotInSwarm,
    #[error("{0}")]
    Invalid(String),
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
    /// Joined, but Raft has not taken this manager in yet; it goes on in the background.
    #[error("{0}")]
    StillJoining(String),
    /// A request field Docker refuses (its message).
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Other(String),
}

/// Why `swarm unlock` failed.
#[derive(Debug, thiserror::Error)]
pub enum UnlockError {
    #[error("swarm is not locked")]
    NotLocked,
    /// The key does not parse (Docker: "invalid key string").
    #[error("{0}")]
    Invalid(String),
    /// Docker's 401.
    #[error("swarm could not be unlocked: invalid key provided")]
    WrongKey,
    #[error("{0}")]
    Other(String),
}

/// Why `swarm leave` failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaveError {
    #[error("not part of a swarm")]
    NotInSwarm,
    /// A manager leaves only with `--force`; Docker's explanation.
    #[error("{0}")]
    Manager(String),
}

/// How long `swarm init` waits for the node's own session to register it.
const INIT_READY_WAIT: Duration = Duration::from_secs(10);

/// Waits until node `id` is READY in the store, or `limit` passes (then init answers anyway:
/// the node is in the swarm, only its first status write is late).
async fn wait_node_ready(store: &swarmd_store::Store, id: &str, limit: Duration) {
    let ready = |t: &swarmd_store::ReadTx<'_>| {
        t.nodes
            .get(id)
            .is_some_and(|n| n.status.state == swarmd_types::NodeState::Ready)
    };
    let (done, mut events) = store.memory().view_and_watch(ready);
    if done {
        return;
    }
    let wait = async {
        // Every commit (or a lag) is a chance the node became ready: look again.
        while !matches!(
            events.recv().await,
            Err(tokio::sync::broadcast::error::RecvError::Closed)
        ) {
            if store.view(ready) {
                return;
            }
        }
    };
    if tokio::time::timeout(limit, wait).await.is_err() {
        tracing::warn!(node.id = %id, "node not ready {limit:?} after init");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leave_refusals_match_docker() {
        assert!(leave_refusal(1, 0).ends_with(
            "Removing the last manager erases all current state of the swarm. Use `--force` to ignore this message. "
        ));
        // 3 of 3 up: leaving keeps a quorum, only the general warning.
        let m = leave_refusal(3, 0);
        assert!(!m.contains("leaves"), "{m}");
        assert!(m.ends_with("Use `--force` to suppress this message."));
        // 2 of 3 up: leaving one leaves 1 of 3.
        assert!(leave_refusal(2, 1).contains(
            "Removing this node leaves 1 managers out of 3. Without a Raft quorum your swarm will be inaccessible. "
        ));
    }
}
