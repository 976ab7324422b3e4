//! A fake node behind the API, for router and CLI tests: an in-memory swarm that places
//! every replica on the local node and runs it at once.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use swarmd_engine_api::{
    Backend, BackendError, BackendResult, DaemonInfo, LocalEngine, LogLine, LogOptions, LogStream,
    LogStreamKind, RaftView, ServiceUpdateOptions, SwarmStatus, SwarmUpdateFlags,
};
use swarmd_types::error::SwarmError;
use swarmd_types::models::{
    ContainerSummary, ContainerSummaryStateEnum, LocalNodeState, NodeSpec, ServiceSpec, SwarmSpec,
    TaskState,
};
use swarmd_types::{
    Cluster, JoinTokens, ManagerInfo, Meta, Node, NodeDescription, NodeState, NodeStatus, Role,
    Service, Task, TaskStatus,
};

pub const NODE_ID: &str = "node0000000000000000000001";
pub const HOSTNAME: &str = "fakehost";

#[derive(Default)]
pub struct State {
    pub status: SwarmStatus,
    pub cluster: Option<Cluster>,
    pub nodes: Vec<Node>,
    pub services: Vec<Service>,
    pub tasks: Vec<Task>,
    pub next_id: u64,
    pub version: u64,
    pub engine: Option<LocalEngine>,
    pub containers: Vec<ContainerSummary>,
}

#[derive(Clone, Default)]
pub struct FakeBackend {
    pub state: Arc<Mutex<State>>,
}

fn meta(version: u64) -> Meta {
    Meta {
        version,
        created_at: "2025-01-02T03:04:05.000000001Z".into(),
        updated_at: "2025-01-02T03:04:05.000000001Z".into(),
    }
}

impl State {
    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!(
            "{prefix}{:0>width$}",
            self.next_id,
            width = 25 - prefix.len()
        )
    }

    fn bump(&mut self) -> u64 {
        self.version += 1;
        self.version
    }

    fn replicas(spec: &ServiceSpec) -> u64 {
        spec.mode
            .as_ref()
            .and_then(|m| m.replicated.as_ref())
            .and_then(|r| r.replicas)
            .unwrap_or(1)
            .max(0) as u64
    }

    /// Replaces the service's running tasks with fresh ones at its current spec.
    fn reconcile(&mut self, service_id: &str) {
        let Some(svc) = self.services.iter().find(|s| s.id == service_id).cloned() else {
            return;
        };
        for t in self.tasks.iter_mut().filter(|t| t.service_id == service_id) {
            t.desired_state = TaskState::SHUTDOWN;
            t.status.state = TaskState::SHUTDOWN;
        }
        let global = svc.spec.mode.as_ref().is_some_and(|m| m.global.is_some());
        let slots: Vec<u64> = if global {
            vec![0]
        } else {
            (1..=Self::replicas(&svc.spec)).collect()
        };
        for slot in slots {
            let id = self.id("task");
            let version = self.bump();
            self.tasks.push(Task {
                id,
                meta: meta(version),
                service_id: svc.id.clone(),
                service_name: svc.spec.name.clone().unwrap_or_default(),
                slot,
                node_id: NODE_ID.into(),
                spec: svc.spec.task_template.clone().unwrap_or_default().into(),
                spec_version: svc.spec_version,
                service_labels: svc.spec.labels.clone().unwrap_or_default(),
                desired_state: TaskState::RUNNING,
                status: TaskStatus {
                    state: TaskState::RUNNING,
                    timestamp: "2025-01-02T03:04:06Z".into(),
                    message: "started".into(),
                    ..Default::default()
                },
                endpoint_ports: Vec::new(),
                job_iteration: None,
                networks: Vec::new(),
                log_driver: None,
            });
        }
    }
}

impl FakeBackend {
    pub fn new() -> Self {
        let fake = FakeBackend::default();
        fake.state.lock().unwrap().status.local_node_state = LocalNodeState::INACTIVE;
        fake
    }

    /// A fake that is already the manager of a one-node swarm.
    pub fn manager() -> Self {
        let fake = Self::new();
        fake.init_now();
        fake
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    fn init_now(&self) -> String {
        self.with(|st| {
            let version = st.bump();
            st.cluster = Some(Cluster {
                id: "cluster0000000000000000001".into(),
                meta: meta(version),
                spec: serde_json::from_value(serde_json::json!({
                    "Name": "default",
                    "Orchestration": {"TaskHistoryRetentionLimit": 5},
                    "Raft": {"SnapshotInterval": 10000, "KeepOldSnapshots": 0,
                             "LogEntriesForSlowFollowers": 500, "ElectionTick": 10, "HeartbeatTick": 1},
                    "Dispatcher": {"HeartbeatPeriod": 5000000000i64},
                    "CAConfig": {"NodeCertExpiry": 7776000000000000i64},
                    "TaskDefaults": {},
                    "EncryptionConfig": {"AutoLockManagers": false}
                }))
                .unwrap(),
                join_tokens: JoinTokens {
                    worker: "SWMTKN-1-digest-worker".into(),
                    manager: "SWMTKN-1-digest-manager".into(),
                },
                default_addr_pool: vec!["10.0.0.0/8".into()],
                subnet_size: 24,
                data_path_port: 4789,
                ..Default::default()
            });
            let version = st.bump();
            st.nodes.push(Node {
                id: NODE_ID.into(),
                meta: meta(version),
                spec: serde_json::from_value(serde_json::json!({
                    "Labels": {}, "Role": "manager", "Availability": "active"
                }))
                .unwrap(),
                description: NodeDescription {
                    hostname: HOSTNAME.into(),
                    os: "linux".into(),
                    architecture: "x86_64".into(),
                    nano_cpus: 2_000_000_000,
                    memory_bytes: 4 << 30,
                    engine_version: "swarmd-fake".into(),
                    engine_labels: HashMap::new(),
                    executor: "process".into(),
                    tls_info: None,
                },
                status: NodeStatus {
                    state: NodeState::Ready,
                    message: String::new(),
                    addr: "127.0.0.1".into(),
                },
                manager: Some(ManagerInfo {
                    raft_id: 1,
                    addr: "127.0.0.1:2377".into(),
                }),
                role: Role::Manager,
            });
            st.status = SwarmStatus {
                local_node_state: LocalNodeState::ACTIVE,
                node_id: NODE_ID.into(),
                node_addr: "127.0.0.1".into(),
                control_available: true,
                error: String::new(),
                remote_managers: vec![(NODE_ID.into(), "127.0.0.1:2377".into())],
                nodes: 1,
                managers: 1,
                cluster: st.cluster.clone(),
            };
            NODE_ID.to_string()
        })
    }
}

#[async_trait]
impl Backend for FakeBackend {
    fn daemon_info(&self) -> DaemonInfo {
        DaemonInfo {
            name: HOSTNAME.into(),
            daemon_id: "daemon-id".into(),
            ncpu: 2,
            mem_total: 4 << 30,
            os: "Fake Linux".into(),
            arch: "x86_64".into(),
            kernel_version: "6.1.0".into(),
            data_root: "/var/lib/swarmd".into(),
            executor: "process".into(),
            engine_version: None,
            labels: vec!["a=b".into()],
            containers_running: 0,
            containers_stopped: 0,
        }
    }

    fn swarm_status(&self) -> SwarmStatus {
        self.with(|st| st.status.clone())
    }

    async fn swarm_init(&self, _req: swarmd_engine_api::InitRequest) -> BackendResult<String> {
        if self.with(|st| st.cluster.is_some()) {
            return Err(BackendError::AlreadyInSwarm);
        }
        Ok(self.init_now())
    }

    async fn swarm_join(&self, _req: swarmd_engine_api::JoinRequest) -> BackendResult<()> {
        Err(BackendError::from(SwarmError::unavailable(
            "join is not faked",
        )))
    }

    async fn swarm_leave(&self, force: bool) -> BackendResult<()> {
        self.with(|st| {
            if st.cluster.is_none() {
                return Err(BackendError::NotInSwarm);
            }
            if !force {
                return Err(BackendError::from(SwarmError::unavailable(
                    "You are attempting to leave the swarm on a node that is participating as a manager. Use `--force` to ignore this message.",
                )));
            }
            *st = State {
                engine: st.engine.take(),
                ..Default::default()
            };
            st.status.local_node_state = LocalNodeState::INACTIVE;
            Ok(())
        })
    }

    async fn swarm_inspect(&self) -> BackendResult<Cluster> {
        self.with(|st| st.cluster.clone().ok_or(BackendError::NotManager))
    }

    async fn swarm_update(
        &self,
        version: u64,
        spec: SwarmSpec,
        _flags: SwarmUpdateFlags,
    ) -> BackendResult<()> {
        self.with(|st| {
            let v = st.bump();
            let c = st.cluster.as_mut().ok_or(BackendError::NotManager)?;
            if c.meta.version != version {
                return Err(SwarmError::out_of_sequence().into());
            }
            c.spec = spec;
            c.meta.version = v;
            Ok(())
        })
    }

    async fn swarm_unlock(&self, _key: String) -> BackendResult<()> {
        Ok(())
    }

    async fn swarm_unlock_key(&self) -> BackendResult<String> {
        Ok("SWMKEY-1-fake".into())
    }

    async fn nodes(&self) -> BackendResult<Vec<Node>> {
        Ok(self.with(|st| st.nodes.clone()))
    }

    async fn raft_view(&self) -> BackendResult<RaftView> {
        Ok(RaftView {
            leader: Some(NODE_ID.into()),
            unreachable: Some(Default::default()),
        })
    }

    async fn node_update(&self, id: &str, version: u64, spec: NodeSpec) -> BackendResult<()> {
        self.with(|st| {
            let v = st.bump();
            let n = st
                .nodes
                .iter_mut()
                .find(|n| n.id == id)
                .ok_or(BackendError::from(SwarmError::not_found("node", id)))?;
            if n.meta.version != version {
                return Err(SwarmError::out_of_sequence().into());
            }
            n.spec = spec;
            n.meta.version = v;
            Ok(())
        })
    }

    async fn node_remove(&self, id: &str, _force: bool) -> BackendResult<()> {
        self.with(|st| {
            st.nodes.retain(|n| n.id != id);
            Ok(())
        })
    }

    async fn services(&self) -> BackendResult<Vec<Service>> {
        Ok(self.with(|st| st.services.clone()))
    }

    async fn service_create(&self, spec: ServiceSpec) -> BackendResult<(String, Vec<String>)> {
        self.with(|st| {
            let name = spec.name.clone().unwrap_or_default();
            if st
                .services
                .iter()
                .any(|s| s.spec.name.as_deref() == Some(name.as_str()))
            {
                return Err(SwarmError::already_exists(format!(
                    "name conflicts with an existing object: service {name} already exists"
                ))
                .into());
            }
            let id = st.id("svc");
            let version = st.bump();
            st.services.push(Service {
                id: id.clone(),
                meta: meta(version),
                spec,
                spec_version: 1,
                ..Default::default()
            });
            st.reconcile(&id);
            Ok((id, Vec::new()))
        })
    }

    async fn service_update(
        &self,
        id: &str,
        version: u64,
        spec: ServiceSpec,
        opts: ServiceUpdateOptions,
    ) -> BackendResult<Vec<String>> {
        self.with(|st| {
            let v = st.bump();
            let svc = st
                .services
                .iter_mut()
                .find(|s| s.id == id)
                .ok_or(BackendError::from(SwarmError::not_found("service", id)))?;
            if svc.meta.version != version {
                return Err(SwarmError::out_of_sequence().into());
            }
            let new_spec = if opts.rollback {
                svc.previous_spec.clone().ok_or_else(|| {
                    BackendError::from(SwarmError::invalid_parameter(
                        "service does not have a previous spec",
                    ))
                })?
            } else {
                spec
            };
            svc.previous_spec = Some(std::mem::replace(&mut svc.spec, new_spec));
            svc.spec_version += 1;
            svc.meta.version = v;
            svc.update_status = Some(swarmd_types::models::ServiceUpdateStatus {
                state: Some(swarmd_types::models::ServiceUpdateStatusStateEnum::COMPLETED),
                started_at: Some("2025-01-02T03:04:07Z".into()),
                completed_at: Some("2025-01-02T03:04:08Z".into()),
                message: Some("update completed".into()),
            });
            let id = svc.id.clone();
            st.reconcile(&id);
            Ok(Vec::new())
        })
    }

    async fn service_remove(&self, id: &str) -> BackendResult<()> {
        self.with(|st| {
            st.services.retain(|s| s.id != id);
            st.tasks.retain(|t| t.service_id != id);
            Ok(())
        })
    }

    async fn tasks(&self) -> BackendResult<Vec<Task>> {
        Ok(self.with(|st| st.tasks.clone()))
    }

    async fn task_logs(&self, tasks: Vec<Task>, opts: LogOptions) -> BackendResult<LogStream> {
        let lines: Vec<BackendResult<LogLine>> = tasks
            .iter()
            .flat_map(|t| {
                let line = |stream, text: &str| LogLine {
                    stream,
                    timestamp: "2025-01-02T03:04:06.5Z".into(),
                    node_id: t.node_id.clone(),
                    service_id: t.service_id.clone(),
                    task_id: t.id.clone(),
                    data: Bytes::from(format!("{text} from {}\n", t.slot)),
                };
                [
                    Ok(line(LogStreamKind::Stdout, "hello")),
                    Ok(line(LogStreamKind::Stderr, "oops")),
                ]
            })
            .collect();
        let stream = futures::stream::iter(lines);
        if opts.follow {
            Ok(stream.chain(futures::stream::pending()).boxed())
        } else {
            Ok(stream.boxed())
        }
    }

    fn local_engine(&self) -> LocalEngine {
        self.with(|st| st.engine.clone().unwrap_or(LocalEngine::Processes))
    }

    async fn local_containers(&self) -> BackendResult<Vec<ContainerSummary>> {
        Ok(self.with(|st| st.containers.clone()))
    }
}

/// A running process-executor "container" for `docker ps` tests.
pub fn process_container(id: &str, name: &str, running: bool) -> ContainerSummary {
    ContainerSummary {
        id: Some(id.into()),
        names: Some(vec![format!("/{name}")]),
        image: Some("busybox:latest".into()),
        command: Some("sleep 1000".into()),
        created: Some(1_700_000_000),
        state: Some(if running {
            ContainerSummaryStateEnum::RUNNING
        } else {
            ContainerSummaryStateEnum::EXITED
        }),
        status: Some(if running { "Up 1 second" } else { "Exited (0)" }.into()),
        ..Default::default()
    }
}

/// What a docker CLI run gave: success, stdout, stderr.
pub struct CliOut {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the stock docker CLI against `host` with its own `config` dir (no context, no
/// pinned API version), bounded at 60 s; the output is echoed for the test log.
pub async fn docker_cli(host: &str, config: &Path, args: &[&str]) -> CliOut {
    let mut cmd = tokio::process::Command::new("docker");
    cmd.args(args)
        .env("DOCKER_HOST", host)
        .env("DOCKER_CONFIG", config)
        .env_remove("DOCKER_CONTEXT")
        .env_remove("DOCKER_API_VERSION")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = match tokio::time::timeout(Duration::from_secs(60), cmd.output()).await {
        Ok(Ok(out)) => out,
        other => {
            return CliOut {
                ok: false,
                stdout: String::new(),
                stderr: format!("docker {args:?} failed to run: {other:?}"),
            };
        }
    };
    let o = CliOut {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    eprintln!("$ docker {}\n{}{}", args.join(" "), o.stdout, o.stderr);
    o
}
