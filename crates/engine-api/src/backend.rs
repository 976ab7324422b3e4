//! The contract between the HTTP layer and the node behind it.
//!
//! The API layer decodes Docker's JSON, resolves IDs/names, filters and encodes answers;
//! everything that touches cluster state goes through [`Backend`]. The composition root
//! (`swarmd`) implements it over the manager's control operations and the local agent.

use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
pub use swarmd_types::ObjectSpec;
use swarmd_types::error::SwarmError;
use swarmd_types::models::{ContainerSummary, LocalNodeState, NodeSpec, ServiceSpec, SwarmSpec};
use swarmd_types::{Cluster, Config, Network, Node, Secret, Service, Task};

pub use crate::swarm_request::{InitRequest, JoinRequest};

/// Errors a backend call can end with. Mapped to HTTP status codes and Docker's message
/// texts in one place (`error.rs`): the node's swarm states here, every refusal with a
/// code in [`SwarmError`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BackendError {
    /// 503 "This node is not a swarm manager. ..."
    #[error("not a swarm manager")]
    NotManager,
    /// 503 "This node is already part of a swarm. ..."
    #[error("already part of a swarm")]
    AlreadyInSwarm,
    /// 503 "This node is not part of a swarm"
    #[error("not part of a swarm")]
    NotInSwarm,
    /// 503 "Swarm is encrypted and needs to be unlocked before it can be used. ..."
    #[error("swarm is locked")]
    Locked,
    /// A refusal with its code (the manager's, or the node's own): the code picks the
    /// status, the error renders Docker's text.
    #[error(transparent)]
    Swarm(#[from] SwarmError),
}

pub type BackendResult<T> = Result<T, BackendError>;

/// Raft's view of the managers, for `ManagerStatus` in `node ls` / `node inspect`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RaftView {
    /// The Raft leader's node ID, if known.
    pub leader: Option<String>,
    /// Node IDs of the managers this manager's Raft cannot reach. `None` when it cannot tell
    /// (it is not the leader): reachability then follows the node's heartbeat.
    pub unreachable: Option<std::collections::HashSet<String>>,
}

/// What `/info` and `/_ping` need to know about this node's swarm membership.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SwarmStatus {
    pub local_node_state: LocalNodeState,
    /// Empty until the node is part of a swarm.
    pub node_id: String,
    /// The node's address (`--advertise-addr` host).
    pub node_addr: String,
    /// True on managers (the API can serve swarm calls).
    pub control_available: bool,
    pub error: String,
    /// The managers as `(node_id, cluster address)`, e.g. `("abc...", "127.0.0.2:2377")`.
    pub remote_managers: Vec<(String, String)>,
    pub nodes: u64,
    pub managers: u64,
    /// Present on managers.
    pub cluster: Option<Cluster>,
}

/// Facts about this node's daemon for `/info` and `/version`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DaemonInfo {
    pub name: String,
    pub daemon_id: String,
    pub ncpu: i64,
    pub mem_total: i64,
    pub os: String,
    pub arch: String,
    pub kernel_version: String,
    pub data_root: String,
    /// "docker" or "process".
    pub executor: String,
    /// The engine's version when the docker executor drives one.
    pub engine_version: Option<String>,
    pub labels: Vec<String>,
    pub containers_running: i64,
    pub containers_stopped: i64,
}

/// Options of `docker swarm update` that are not in the spec.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SwarmUpdateFlags {
    pub rotate_worker_token: bool,
    pub rotate_manager_token: bool,
    pub rotate_manager_unlock_key: bool,
}

/// Options of a service update call (`POST /services/{id}/update`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceUpdateOptions {
    /// `rollback=previous`: restore the previous spec (the body's spec is ignored).
    pub rollback: bool,
    /// `registryAuthFrom` etc. are accepted and ignored (no registry).
    pub registry_auth_from: Option<String>,
}

/// Options for reading logs (`/services/{id}/logs`, `/tasks/{id}/logs`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogOptions {
    pub follow: bool,
    pub stdout: bool,
    pub stderr: bool,
    /// Only entries at or after this time (seconds since the epoch).
    pub since: Option<f64>,
    /// Only entries before this time.
    pub until: Option<f64>,
    /// Last N lines per task; `None` means all.
    pub tail: Option<usize>,
    pub timestamps: bool,
    /// Add `com.docker.swarm.node.id=..,com.docker.swarm.service.id=..,com.docker.swarm.task.id=..`.
    pub details: bool,
}

/// Which stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStreamKind {
    Stdout,
    Stderr,
}

/// One line of a task's output.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    pub stream: LogStreamKind,
    /// RFC 3339 with nanoseconds.
    pub timestamp: String,
    pub node_id: String,
    pub service_id: String,
    pub task_id: String,
    /// The line including its trailing newline.
    pub data: Bytes,
}

pub type LogStream = BoxStream<'static, BackendResult<LogLine>>;

/// Where container/image/exec calls go when a local Docker Engine runs the tasks.
#[derive(Debug, Clone, PartialEq)]
pub enum LocalEngine {
    /// Proxy the request verbatim to the engine's unix socket.
    Docker { socket_path: String },
    /// No engine: present local tasks as containers (process executor).
    Processes,
}

/// The node behind the API.
///
/// Every `id` argument is a full object ID: the API layer resolves names and ID prefixes
/// (Docker's full ID, exact name, unique prefix order) before it calls a mutating method.
/// List methods return everything; the API layer filters, so filter semantics live in one
/// place. Manager-only calls are guarded by the API from [`Backend::swarm_status`] first
/// (so the 503 texts match Docker's per state); backends still answer `NotManager` if the
/// node's role changed in between.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    // --- system
    fn daemon_info(&self) -> DaemonInfo;
    /// Cheap: called on every `/_ping`.
    fn swarm_status(&self) -> SwarmStatus;

    // --- swarm (503 NotManager/NotInSwarm where Docker answers so)
    /// Returns the new node's ID.
    async fn swarm_init(&self, req: InitRequest) -> BackendResult<String>;
    async fn swarm_join(&self, req: JoinRequest) -> BackendResult<()>;
    async fn swarm_leave(&self, force: bool) -> BackendResult<()>;
    async fn swarm_inspect(&self) -> BackendResult<Cluster>;
    async fn swarm_update(
        &self,
        version: u64,
        spec: SwarmSpec,
        flags: SwarmUpdateFlags,
    ) -> BackendResult<()>;
    async fn swarm_unlock(&self, key: String) -> BackendResult<()>;
    async fn swarm_unlock_key(&self) -> BackendResult<String>;

    // --- nodes
    async fn nodes(&self) -> BackendResult<Vec<Node>>;
    /// Raft's view of the managers, for `ManagerStatus`.
    async fn raft_view(&self) -> BackendResult<RaftView>;
    async fn node_update(&self, id: &str, version: u64, spec: NodeSpec) -> BackendResult<()>;
    async fn node_remove(&self, id: &str, force: bool) -> BackendResult<()>;

    // --- services
    async fn services(&self) -> BackendResult<Vec<Service>>;
    /// Returns the new service's ID and warnings.
    async fn service_create(&self, spec: ServiceSpec) -> BackendResult<(String, Vec<String>)>;
    /// Returns warnings.
    async fn service_update(
        &self,
        id: &str,
        version: u64,
        spec: ServiceSpec,
        opts: ServiceUpdateOptions,
    ) -> BackendResult<Vec<String>>;
    async fn service_remove(&self, id: &str) -> BackendResult<()>;

    // --- secrets and configs. Defaults answer 501 so test fakes need not implement them.
    async fn secrets(&self) -> BackendResult<Vec<Secret>> {
        Err(not_supported())
    }
    /// Returns the new secret's ID.
    async fn secret_create(&self, _spec: ObjectSpec) -> BackendResult<String> {
        Err(not_supported())
    }
    async fn secret_update(
        &self,
        _id: &str,
        _version: u64,
        _spec: ObjectSpec,
    ) -> BackendResult<()> {
        Err(not_supported())
    }
    async fn secret_remove(&self, _id: &str) -> BackendResult<()> {
        Err(not_supported())
    }
    async fn configs(&self) -> BackendResult<Vec<Config>> {
        Err(not_supported())
    }
    /// Returns the new config's ID.
    async fn config_create(&self, _spec: ObjectSpec) -> BackendResult<String> {
        Err(not_supported())
    }
    async fn config_update(
        &self,
        _id: &str,
        _version: u64,
        _spec: ObjectSpec,
    ) -> BackendResult<()> {
        Err(not_supported())
    }
    async fn config_remove(&self, _id: &str) -> BackendResult<()> {
        Err(not_supported())
    }

    // --- swarm networks. Defaults: none (test fakes), and 501 for writes.
    async fn networks(&self) -> BackendResult<Vec<Network>> {
        Ok(Vec::new())
    }
    /// `network create -d overlay`: `spec` carries the request (subnet empty = allocate);
    /// allocated subnets avoid `local_subnets` (the engine's networks). Returns the ID.
    async fn network_create(
        &self,
        _spec: Network,
        _local_subnets: Vec<String>,
    ) -> BackendResult<String> {
        Err(SwarmError::not_implemented("swarm networks are not supported by this backend").into())
    }
    async fn network_remove(&self, _id: &str) -> BackendResult<()> {
        Err(SwarmError::not_implemented("swarm networks are not supported by this backend").into())
    }

    // --- tasks
    async fn tasks(&self) -> BackendResult<Vec<Task>>;

    // --- logs: lines of the given tasks (resolved by the API layer), in time order per
    // task; with `follow` the stream stays open.
    async fn task_logs(&self, tasks: Vec<Task>, opts: LogOptions) -> BackendResult<LogStream>;

    // --- local engine
    fn local_engine(&self) -> LocalEngine;
    /// Local tasks as containers (process executor's `docker ps`).
    async fn local_containers(&self) -> BackendResult<Vec<ContainerSummary>>;
}

fn not_supported() -> BackendError {
    SwarmError::not_implemented("secrets and configs are not supported by this backend").into()
}

/// Default period the CLI waits between polls; kept here so tests and docs agree.
pub const CLI_POLL_INTERVAL: Duration = Duration::from_millis(200);
