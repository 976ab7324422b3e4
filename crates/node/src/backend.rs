//! The API's [`Backend`] over this node: swarm calls go to the manager's control
//! operations, reads to the local store replica, logs and containers to the local agent.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use futures::StreamExt;
use swarmd_engine_api::backend::{
    Backend, BackendError, BackendResult, DaemonInfo, InitRequest, JoinRequest, LocalEngine,
    LogLine, LogOptions, LogStream, LogStreamKind, ObjectSpec, RaftView, ServiceUpdateOptions,
    SwarmStatus, SwarmUpdateFlags,
};
use swarmd_manager::control::swarm_options::InitRequestOptions;
use swarmd_store::ProposeError;
use swarmd_types::dispatcher::DispatcherApi;
use swarmd_types::error::{Code, NO_LEADER, SwarmError};
use swarmd_types::models::{ContainerSummary, LocalNodeState, NodeSpec, ServiceSpec, SwarmSpec};
use swarmd_types::{Cluster, Config, Node, Role, Secret, Service, Task};

use crate::config::ExecChoice;
use crate::node::{
    Active, InitError, JoinFailure, LeaveError, ManagerParts, NodePhase, SwarmNode, UnlockError,
};

/// How long the leader may go without a manager's heartbeat acknowledgement before `node ls`
/// shows that manager unreachable (Raft heartbeats every 300 ms; elections after 1.2–2.4 s).
const MANAGER_UNREACHABLE_AFTER: Duration = Duration::from_secs(2);

/// Benchmark only (BENCHMARKS.md, "Reads"): with `SWARMD_BENCH_LOCAL_READS=1` API reads skip
/// the read-index barrier and read the local replica as Docker does, so a follower may answer
/// stale. It exists to measure what the barrier costs; never set it in a real swarm.
pub const BENCH_LOCAL_READS_ENV: &str = "SWARMD_BENCH_LOCAL_READS";

static BENCH_LOCAL_READS: LazyLock<bool> = LazyLock::new(|| {
    let on = std::env::var_os(BENCH_LOCAL_READS_ENV).is_some_and(|v| v == "1");
    if on {
        tracing::warn!(
            env = BENCH_LOCAL_READS_ENV,
            "benchmark switch: API reads skip the read barrier and may be stale"
        );
    }
    on
});

/// Whether [`BENCH_LOCAL_READS_ENV`] is set; read (and warned about) once, on first call.
pub fn bench_local_reads() -> bool {
    *BENCH_LOCAL_READS
}

/// The backend: a handle on the node.
pub struct NodeBackend {
    pub node: Arc<SwarmNode>,
    pub daemon_id: String,
}

/// Why a read could not be made linearizable: no leader to confirm it (or this replica
/// cannot catch up with it). Docker's words, with gRPC's Unavailable (503), since nothing
/// was attempted and the same read may succeed once a quorum is back.
fn read_refusal(e: ProposeError) -> BackendError {
    match e {
        ProposeError::Store(e) => SwarmError::internal(e).into(),
        _ => SwarmError::rpc(Code::Unavailable, NO_LEADER).into(),
    }
}

impl NodeBackend {
    /// The manager side, once its replica holds every write acknowledged before this call
    /// on any manager (a read-index through the leader): what an API read reads from.
    async fn manager_for_read(&self) -> BackendResult<Arc<ManagerParts>> {
        let m = self.manager()?;
        if !bench_local_reads() {
            m.reads.read_index().await.map_err(read_refusal)?;
        }
        Ok(m)
    }

    fn active(&self) -> BackendResult<Arc<Active>> {
        self.node.active().ok_or(BackendError::NotManager)
    }

    /// The manager side of this node's membership, or the "not a manager" error that
    /// inactive nodes and workers get.
    fn manager(&self) -> BackendResult<Arc<ManagerParts>> {
        self.active()?.mgr.clone().ok_or(BackendError::NotManager)
    }
}

#[async_trait::async_trait]
impl Backend for NodeBackend {
    fn daemon_info(&self) -> DaemonInfo {
        DaemonInfo {
            name: self.node.hostname.clone(),
            daemon_id: self.daemon_id.clone(),
            ncpu: crate::sysinfo::ncpu(),
            mem_total: crate::sysinfo::mem_total(),
            os: "linux".into(),
            arch: crate::sysinfo::arch().into(),
            kernel_version: crate::sysinfo::kernel_version(),
            data_root: self.node.config.data_root.display().to_string(),
            executor: self.node.exec.name().into(),
            engine_version: self.node.engine_version.clone(),
            labels: vec![],
            // Not counted yet: `docker info` shows 0 (the API's info call is synchronous;
            // counting needs the executor).
            containers_running: 0,
            containers_stopped: 0,
        }
    }

    fn swarm_status(&self) -> SwarmStatus {
        let addr = self.node.config.node_addr.to_string();
        match self.node.phase() {
            // Locked: nothing runs, nothing of the swarm can be read until `swarm unlock`.
            NodePhase::Locked(state) => SwarmStatus {
                local_node_state: LocalNodeState::LOCKED,
                node_id: state.node_id,
                node_addr: addr,
                control_available: false,
                error: String::new(),
                remote_managers: vec![],
                nodes: 0,
                managers: 0,
                cluster: None,
            },
            NodePhase::Inactive => SwarmStatus {
                local_node_state: LocalNodeState::INACTIVE,
                node_id: String::new(),
                node_addr: String::new(),
                control_available: false,
                error: String::new(),
                remote_managers: vec![],
                nodes: 0,
                managers: 0,
                cluster: None,
            },
            NodePhase::Active(a) => match &a.mgr {
                Some(m) => m.store.view(|t| {
                    let managers: Vec<&Node> = t
                        .nodes
                        .values()
                        .filter(|n| n.role == Role::Manager)
                        .collect();
                    SwarmStatus {
                        local_node_state: LocalNodeState::ACTIVE,
                        node_id: a.state.node_id.clone(),
                        node_addr: addr.clone(),
                        control_available: true,
                        error: String::new(),
                        remote_managers: managers
                            .iter()
                            .map(|n| {
                                (
                                    n.id.clone(),
                                    n.manager
                                        .as_ref()
                                        .map(|m| m.addr.clone())
                                        .unwrap_or_default(),
                                )
                            })
                            .collect(),
                        nodes: t.nodes.len() as u64,
                        managers: managers.len() as u64,
                        cluster: t.cluster().cloned(),
                    }
                }),
                // A worker knows only its managers' addresses.
                None => SwarmStatus {
                    local_node_state: LocalNodeState::ACTIVE,
                    node_id: a.state.node_id.clone(),
                    node_addr: addr,
                    control_available: false,
                    error: String::new(),
                    remote_managers: a
                        .follow
                        .managers()
                        .into_iter()
                        .map(|m| (String::new(), m))
                        .collect(),
                    nodes: 0,
                    managers: 0,
                    cluster: None,
                },
            },
        }
    }

    async fn swarm_init(&self, req: InitRequest) -> BackendResult<String> {
        let node_addr = self.node.config.node_addr.to_string();
        // The cluster port binds the node address: several nodes share one machine, and
        // the CLI sends 0.0.0.0:2377 when the user gave nothing.
        let requested = req.listen_addr.clone().unwrap_or_default();
        let port = requested
            .rsplit_once(':')
            .map(|(_, p)| p.to_string())
            .filter(|p| !p.is_empty())
            .unwrap_or("2377".into());
        let listen = match requested.rsplit_once(':').map(|(h, _)| h) {
            Some(h) if !h.is_empty() && h != "0.0.0.0" => requested.clone(),
            _ => format!("{node_addr}:{port}"),
        };
        let advertise = match req.advertise_addr.clone().filter(|a| !a.is_empty()) {
            Some(a) if a.contains(':') => a,
            Some(a) => format!("{a}:{port}"),
            None => format!("{node_addr}:{port}"),
        };
        let init_err = |e| match e {
            InitError::AlreadyInSwarm => BackendError::AlreadyInSwarm,
            InitError::NotInSwarm => BackendError::NotInSwarm,
            InitError::Invalid(m) => BackendError::from(SwarmError::invalid_parameter(m)),
            InitError::Other(m) => BackendError::from(SwarmError::internal(m)),
        };
        if req.force_new_cluster == Some(true) && self.node.active().is_some() {
            return self.node.force_new_cluster().await.map_err(init_err);
        }
        let mut spec = req.spec.clone().unwrap_or_default();
        // `--autolock` arrives as the request's AutoLockManagers (the CLI sets the spec's
        // too; an API client may set only this one).
        if req.auto_lock_managers == Some(true) {
            spec.encryption_config
                .get_or_insert_with(Default::default)
                .auto_lock_managers = Some(true);
        }
        let options = InitRequestOptions {
            default_addr_pool: req.default_addr_pool.clone(),
            subnet_size: req.subnet_size.unwrap_or(0),
            data_path_port: req.data_path_port.unwrap_or(0),
            availability: req.availability.clone(),
        };
        self.node
            .init(listen, advertise, spec, options)
            .await
            .map_err(init_err)
    }

    async fn swarm_join(&self, req: JoinRequest) -> BackendResult<()> {
        let token = req.join_token.clone().unwrap_or_default();
        let Some(remote) = req
            .remote_addrs
            .as_ref()
            .and_then(|r| r.first().cloned())
            .filter(|r| !r.is_empty())
        else {
            return Err(BackendError::from(SwarmError::invalid_parameter(
                "at least 1 RemoteAddr is required to join",
            )));
        };
        let remote = if remote.contains(':') {
            remote
        } else {
            format!("{remote}:2377")
        };
        let node_addr = self.node.config.node_addr.to_string();
        let listen = req
            .listen_addr
            .clone()
            .filter(|a| !a.is_empty() && !a.starts_with("0.0.0.0"))
            .unwrap_or_else(|| format!("{node_addr}:2377"));
        // An advertised address without a port takes the listening port, as in Docker.
        let listen_port = listen.rsplit_once(':').map(|(_, p)| p).unwrap_or("2377");
        let advertise = match req.advertise_addr.clone().filter(|a| !a.is_empty()) {
            Some(a) if a.contains(':') => a,
            Some(a) => format!("{a}:{listen_port}"),
            None => listen.clone(),
        };
        self.node
            .join(&token, &remote, listen, advertise, req.availability.clone())
            .await
            .map_err(|e| match e {
                JoinFailure::AlreadyInSwarm => BackendError::AlreadyInSwarm,
                JoinFailure::Join(crate::cluster::JoinError::BadToken) => {
                    BackendError::from(SwarmError::invalid_parameter("invalid join token"))
                }
                // Docker keeps trying in the background; swarmd gives up at once and says
                // so, leaving the node out of any swarm.
                JoinFailure::Join(crate::cluster::JoinError::Unreachable(m)) => {
                    BackendError::from(SwarmError::unavailable(format!(
                        "could not reach the manager at {remote}; this node did not join: {m}"
                    )))
                }
                JoinFailure::Join(crate::cluster::JoinError::Refused(m)) => {
                    BackendError::from(SwarmError::invalid_parameter(m))
                }
                JoinFailure::StillJoining(m) => BackendError::from(SwarmError::unavailable(format!(
                    "Timeout was reached before node joined. The attempt to join the swarm will continue in the background. Use the \"docker info\" command to see the current swarm status of your node. ({m})"
                ))),
                JoinFailure::Invalid(m) => BackendError::from(SwarmError::invalid_parameter(m)),
                JoinFailure::Other(m) => BackendError::from(SwarmError::internal(m)),
            })
    }

    async fn swarm_leave(&self, force: bool) -> BackendResult<()> {
        self.node.leave(force).await.map_err(|e| match e {
            LeaveError::NotInSwarm => BackendError::NotInSwarm,
            LeaveError::Manager(m) => BackendError::from(SwarmError::unavailable(m)),
        })
    }

    async fn swarm_inspect(&self) -> BackendResult<Cluster> {
        let m = self.manager_for_read().await?;
        m.store
            .view(|t| t.cluster().cloned())
            .ok_or(BackendError::NotManager)
    }

    async fn swarm_update(
        &self,
        version: u64,
        spec: SwarmSpec,
        flags: SwarmUpdateFlags,
    ) -> BackendResult<()> {
        let m = self.manager()?;
        m.control()
            .update_swarm(
                version,
                spec,
                flags.rotate_worker_token,
                flags.rotate_manager_token,
                flags.rotate_manager_unlock_key,
            )
            .await?;
        // This manager's keys follow at once (the CLI prints the key next); the others'
        // reconcilers follow the replicated change.
        let node = self.node.clone();
        tokio::task::spawn_blocking(move || node.reconcile_seal())
            .await
            .map_err(|e| BackendError::from(SwarmError::internal(e.to_string())))?;
        Ok(())
    }

    async fn swarm_unlock(&self, key: String) -> BackendResult<()> {
        self.node.unlock(&key).await.map_err(|e| match e {
            UnlockError::NotLocked => BackendError::from(SwarmError::conflict(e.to_string())),
            UnlockError::Invalid(m) => BackendError::from(SwarmError::invalid_parameter(m)),
            UnlockError::WrongKey => BackendError::from(SwarmError::unauthorized(e.to_string())),
            UnlockError::Other(m) => BackendError::from(SwarmError::internal(m)),
        })
    }

    /// The swarm's unlock key, or "" without autolock (the CLI then says "no unlock key is
    /// set"), as Docker answers.
    async fn swarm_unlock_key(&self) -> BackendResult<String> {
        let m = self.manager_for_read().await?;
        Ok(m.store
            .view(|t| t.cluster().map(|c| c.unlock_key.clone()))
            .unwrap_or_default())
    }

    async fn nodes(&self) -> BackendResult<Vec<Node>> {
        let m = self.manager_for_read().await?;
        Ok(m.store.view(|t| t.nodes.values().cloned().collect()))
    }

    async fn raft_view(&self) -> BackendResult<RaftView> {
        let m = self.manager()?;
        let leader = m.raft.leader().map(|(id, _)| id);
        let unreachable = m.raft.unreachable_peers(MANAGER_UNREACHABLE_AFTER);
        Ok(m.store.view(|t| {
            let node_of = |raft_id: u64| {
                t.nodes
                    .values()
                    .find(|n| n.manager.as_ref().is_some_and(|i| i.raft_id == raft_id))
                    .map(|n| n.id.clone())
            };
            RaftView {
                leader: leader.and_then(node_of),
                unreachable: unreachable.map(|ids| ids.into_iter().filter_map(node_of).collect()),
            }
        }))
    }

    async fn node_update(&self, id: &str, version: u64, spec: NodeSpec) -> BackendResult<()> {
        let m = self.manager()?;
        Ok(m.control().update_node(id, version, spec).await?)
    }

    async fn node_remove(&self, id: &str, force: bool) -> BackendResult<()> {
        let m = self.manager()?;
        Ok(m.control().remove_node(id, force).await?)
    }

    async fn services(&self) -> BackendResult<Vec<Service>> {
        let m = self.manager_for_read().await?;
        Ok(m.store.view(|t| t.services.values().cloned().collect()))
    }

    async fn service_create(&self, spec: ServiceSpec) -> BackendResult<(String, Vec<String>)> {
        let m = self.manager()?;
        Ok(m.control().create_service(spec).await?)
    }

    async fn service_update(
        &self,
        id: &str,
        version: u64,
        spec: ServiceSpec,
        opts: ServiceUpdateOptions,
    ) -> BackendResult<Vec<String>> {
        let m = self.manager()?;
        Ok(m.control()
            .update_service(id, version, spec, opts.rollback)
            .await?)
    }

    async fn service_remove(&self, id: &str) -> BackendResult<()> {
        let m = self.manager()?;
        Ok(m.control().remove_service(id).await?)
    }

    async fn secrets(&self) -> BackendResult<Vec<Secret>> {
        let m = self.manager_for_read().await?;
        Ok(m.store.view(|t| t.secrets.values().cloned().collect()))
    }

    async fn secret_create(&self, spec: ObjectSpec) -> BackendResult<String> {
        let m = self.manager()?;
        Ok(m.control().create_secret(spec).await?)
    }

    async fn secret_update(&self, id: &str, version: u64, spec: ObjectSpec) -> BackendResult<()> {
        let m = self.manager()?;
        Ok(m.control().update_secret(id, version, spec).await?)
    }

    async fn secret_remove(&self, id: &str) -> BackendResult<()> {
        let m = self.manager()?;
        Ok(m.control().remove_secret(id).await?)
    }

    async fn configs(&self) -> BackendResult<Vec<Config>> {
        let m = self.manager_for_read().await?;
        Ok(m.store.view(|t| t.configs.values().cloned().collect()))
    }

    async fn config_create(&self, spec: ObjectSpec) -> BackendResult<String> {
        let m = self.manager()?;
        Ok(m.control().create_config(spec).await?)
    }

    async fn config_update(&self, id: &str, version: u64, spec: ObjectSpec) -> BackendResult<()> {
        let m = self.manager()?;
        Ok(m.control().update_config(id, version, spec).await?)
    }

    async fn config_remove(&self, id: &str) -> BackendResult<()> {
        let m = self.manager()?;
        Ok(m.control().remove_config(id).await?)
    }

    async fn networks(&self) -> BackendResult<Vec<swarmd_types::Network>> {
        let m = self.manager_for_read().await?;
        Ok(m.store.view(|t| t.networks.values().cloned().collect()))
    }

    async fn network_create(
        &self,
        spec: swarmd_types::Network,
        local_subnets: Vec<String>,
    ) -> BackendResult<String> {
        let m = self.manager()?;
        Ok(m.control().create_network(spec, local_subnets).await?)
    }

    async fn network_remove(&self, id: &str) -> BackendResult<()> {
        let m = self.manager()?;
        Ok(m.control().remove_network(id).await?)
    }

    async fn tasks(&self) -> BackendResult<Vec<Task>> {
        let m = self.manager_for_read().await?;
        Ok(m.store.view(|t| t.tasks.values().cloned().collect()))
    }

    async fn task_logs(&self, tasks: Vec<Task>, opts: LogOptions) -> BackendResult<LogStream> {
        let a = self.active()?;
        let exec_opts = swarmd_agent::LogOptions {
            follow: opts.follow,
            tail: opts.tail,
            since: opts.since.and_then(swarmd_types::timefmt::since_bound),
            timestamps: opts.timestamps,
            stdout: opts.stdout,
            stderr: opts.stderr,
        };
        let mut streams = Vec::new();
        for t in &tasks {
            // This node's tasks are read here; the others below, through the broker.
            if t.node_id != a.state.node_id {
                continue;
            }
            let stream = match a.agent.task_logs(&t.id, exec_opts.clone()).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(task = %t.id, error = %e, "no logs for task");
                    continue;
                }
            };
            let (node_id, service_id, task_id) =
                (t.node_id.clone(), t.service_id.clone(), t.id.clone());
            let until = opts.until;
            streams.push(
                stream
                    .filter_map(move |r| {
                        let line = match r {
                            Ok(e) => {
                                if let Some(u) = until
                                    && swarmd_types::timefmt::unix_seconds(&e.timestamp)
                                        .is_some_and(|ts| ts >= u)
                                {
                                    return futures::future::ready(None);
                                }
                                Some(Ok(LogLine {
                                    stream: match e.stream {
                                        swarmd_agent::exec::LogStream::Stdout => {
                                            LogStreamKind::Stdout
                                        }
                                        swarmd_agent::exec::LogStream::Stderr => {
                                            LogStreamKind::Stderr
                                        }
                                    },
                                    timestamp: e.timestamp,
                                    node_id: node_id.clone(),
                                    service_id: service_id.clone(),
                                    task_id: task_id.clone(),
                                    data: e.line,
                                }))
                            }
                            Err(e) => {
                                Some(Err(BackendError::from(SwarmError::internal(e.to_string()))))
                            }
                        };
                        futures::future::ready(line)
                    })
                    .boxed(),
            );
        }
        // Tasks on other nodes: the manager's log broker asks their agents.
        if a.mgr.is_some() {
            let mut by_node: std::collections::BTreeMap<String, Vec<String>> = Default::default();
            let mut owners: HashMap<String, (String, String)> = HashMap::new();
            for t in tasks
                .iter()
                .filter(|t| !t.node_id.is_empty() && t.node_id != a.state.node_id)
            {
                by_node
                    .entry(t.node_id.clone())
                    .or_default()
                    .push(t.id.clone());
                owners.insert(t.id.clone(), (t.node_id.clone(), t.service_id.clone()));
            }
            if !by_node.is_empty() {
                let template = swarmd_types::dispatcher::LogSubscription {
                    id: String::new(),
                    task_ids: vec![],
                    follow: opts.follow,
                    tail: opts.tail,
                    since: opts.since,
                    stdout: opts.stdout,
                    stderr: opts.stderr,
                };
                let until = opts.until;
                let remote = DispatcherApi::subscribe_logs(
                    a.follow.as_ref(),
                    swarmd_types::dispatcher::BrokerSubscription {
                        tasks_by_node: by_node,
                        template,
                    },
                )
                .await
                .map_err(|e| BackendError::from(SwarmError::unavailable(e.to_string())))?
                .filter_map(move |r| {
                    let line = match r {
                        Ok(l) => {
                            let late = until.is_some_and(|u| {
                                swarmd_types::timefmt::unix_seconds(&l.timestamp)
                                    .is_some_and(|ts| ts >= u)
                            });
                            let (node_id, service_id) =
                                owners.get(&l.task_id).cloned().unwrap_or_default();
                            (!late).then(|| {
                                Ok(LogLine {
                                    stream: if l.stderr {
                                        LogStreamKind::Stderr
                                    } else {
                                        LogStreamKind::Stdout
                                    },
                                    timestamp: l.timestamp,
                                    node_id,
                                    service_id,
                                    task_id: l.task_id,
                                    data: l.data.into(),
                                })
                            })
                        }
                        Err(e) => Some(Err(BackendError::from(SwarmError::unavailable(
                            e.to_string(),
                        )))),
                    };
                    futures::future::ready(line)
                })
                .boxed();
                streams.push(remote);
            }
        }
        if opts.follow {
            Ok(futures::stream::select_all(streams).boxed())
        } else {
            Ok(futures::stream::iter(streams).flatten().boxed())
        }
    }

    fn local_engine(&self) -> LocalEngine {
        match &self.node.exec {
            ExecChoice::Docker { socket } => LocalEngine::Docker {
                socket_path: socket.clone(),
            },
            ExecChoice::Process | ExecChoice::Given(_) => LocalEngine::Processes,
        }
    }

    async fn local_containers(&self) -> BackendResult<Vec<ContainerSummary>> {
        let exec: Option<Arc<dyn swarmd_agent::Executor>> = match self.node.active() {
            Some(a) => Some(a.agent.executor().clone()),
            None => self
                .node
                .process_exec
                .clone()
                .map(|e| e as Arc<dyn swarmd_agent::Executor>),
        };
        match exec {
            Some(e) => e
                .containers()
                .await
                .map_err(|e| BackendError::from(SwarmError::internal(e.to_string()))),
            None => Ok(vec![]),
        }
    }
}
