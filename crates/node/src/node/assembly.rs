//! Assembling a membership: the executor, the agent and what runs beside it (routing
//! mesh, overlay data plane, certificate renewal, key sealing, the role watcher) and, on a
//! manager, Raft, the manager components and the cluster port; and taking them down.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use swarmd_agent::exec::docker::DockerExecutor;
use swarmd_agent::{Agent, AgentConfig, Executor};
use swarmd_manager::control::swarm_options::InitOptions;
use swarmd_manager::{InitParams, Manager};
use swarmd_raft::{NetworkConfig, RaftConfig, RaftNode};
use swarmd_store::{Batch, MemoryStore, Store, StoreAction, Tables};
use swarmd_types::dispatcher::{DispatcherApi, SessionMessage};
use swarmd_types::{Role, RootCa, ids};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::autolock::keep_keys_sealed;
use crate::cluster::{self, NodeCerts};
use crate::config::ExecChoice;
use crate::engines::{EngineOffers, LeaderEngines, ManagerTunnels, engine_endpoint};
use crate::follow::{FollowingDispatcher, LocalManager};
use crate::raft_glue::{LeaderProposer, Membership};

use super::renewal::renew_certificates;
use super::role::watch_role;
use super::{Active, ManagerParts, NodeState, SwarmNode, swarm_dir};

/// How a manager's Raft starts.
pub(super) enum RaftStart {
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

impl SwarmNode {
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
    pub(super) async fn activate(
        &self,
        state: NodeState,
        start: RaftStart,
    ) -> anyhow::Result<Arc<Active>> {
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
        let follow = FollowingDispatcher::new(local, tls.clone(), state.manager_addrs.clone());

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
        if let Some(m) = &mgr {
            agent_tracker.spawn(super::recovery::watch_raft(
                self.me.clone(),
                m.raft.clone(),
                agent_cancel.clone(),
            ));
        }
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
        // This node's engine, offered for tunnels on the leader its session is with.
        let offers = EngineOffers {
            node_id: state.node_id.clone(),
            own_addr: mgr.as_ref().map(|_| state.advertise_addr.clone()),
            local: mgr.as_ref().map(|m| m.tunnels.service()),
            tls,
            engine: engine_endpoint(&self.exec, self.config.engine_socket.as_deref()),
            session_with: follow.session_with(),
            tracker: agent_tracker.clone(),
        };
        agent_tracker.spawn(offers.run(agent_cancel.clone()));
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
        let proposer = Arc::new(LeaderProposer::new(raft.clone(), tls.clone()));
        let reads = swarmd_store::Coalesced::new(proposer.clone());
        let store = Store::new(mem, proposer);
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
        let engines = Arc::new(LeaderEngines::new(raft.clone(), self.pool_api.clone()));
        let tunnels = Arc::new(ManagerTunnels::new(engines.clone(), raft.clone(), tls));
        let rpc_cancel = CancellationToken::new();
        let served = cluster::serve_cluster_port(
            listen,
            certs,
            live,
            store.clone(),
            raft.clone(),
            manager.dispatcher(),
            engines,
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
            reads,
            tunnels,
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
    pub(super) async fn stop_active(&self, active: &Active) {
        active.agent_cancel.cancel();
        active.agent_tracker.wait().await;
        active.agent.executor().close().await;
        if let Some(m) = &active.mgr {
            stop_manager(m).await;
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
