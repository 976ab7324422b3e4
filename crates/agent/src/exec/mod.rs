//! Executors: the backends that actually run a node's tasks (docs/DESIGN.md §5).
//!
//! An [`Executor`] describes the node and hands out one [`Controller`] per task. The
//! controller's steps (prepare, start, wait, shutdown, terminate, remove) are driven by the
//! agent's task runner (`crate::runner`), which decides *which* step to take; executors only
//! know *how*. Every step is idempotent and every controller resolves its container or
//! process lazily (by task ID), so a restarted agent can re-adopt what is still running
//! simply by creating a fresh controller and calling the next step.
//!
//! Two executors exist: [`docker::DockerExecutor`] (a local Docker Engine through bollard)
//! and [`process::ProcessExecutor`] (host processes, for machines without Docker and for
//! fast tests).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bollard_stubs::models::{
    ContainerSummary, EndpointPortConfig, EndpointPortConfigProtocolEnum,
    EndpointPortConfigPublishModeEnum, TaskSpecContainerSpec, TaskSpecResources,
};
use bytes::Bytes;
use futures::stream::BoxStream;
use swarmd_types::{NodeDescription, Task};

pub mod docker;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod files;
pub mod host_opts;
pub mod memfs;
pub mod process;

pub mod template;

/// Overlay attachments are part of every [`TaskRuntime`]; the docker executor applies them.
pub use docker::overlay;

/// Label carrying the service ID on every task container (Docker's own key).
pub const LABEL_SERVICE_ID: &str = "com.docker.swarm.service.id";
/// Label carrying the service name.
pub const LABEL_SERVICE_NAME: &str = "com.docker.swarm.service.name";
/// Label carrying the task ID; this is how controllers find their container again.
pub const LABEL_TASK_ID: &str = "com.docker.swarm.task.id";
/// Label carrying the task's display name (`service.slot`).
pub const LABEL_TASK_NAME: &str = "com.docker.swarm.task.name";
/// Label carrying the node ID, so several nodes sharing one engine never touch each
/// other's containers.
pub const LABEL_NODE_ID: &str = "com.docker.swarm.node.id";
/// Docker also sets an empty `com.docker.swarm.task` label; tools filter on it.
pub const LABEL_TASK: &str = "com.docker.swarm.task";

/// Stop grace period when the spec gives none (Docker's default).
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(10);

/// Why an executor step failed. The `Display` text is what users see in the ERROR column
/// of `docker service ps`, so it follows Docker's wording where Docker has one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecError {
    /// The image is neither local nor pullable.
    #[error("No such image: {0}")]
    NoSuchImage(String),
    /// The process executor got a spec with neither Command nor Args.
    #[error("no command given: the process executor needs a command")]
    NoCommand,
    /// The task's main process exited with a non-zero code.
    #[error("task: non-zero exit ({0})")]
    NonZeroExit(i64),
    /// The task's health check failed before it ever became healthy (Docker's wording).
    #[error("dockerexec: unhealthy container")]
    Unhealthy,
    /// The task turned unhealthy while running and was stopped; the exit code of the stop.
    #[error("task: non-zero exit ({0}): dockerexec: unhealthy container")]
    UnhealthyExit(i64),
    /// A process adopted after an agent restart disappeared; it is not our child, so its
    /// exit code cannot be known.
    #[error("exit status unknown (process adopted after restart)")]
    ExitUnknown,
    /// The container or process of the task does not exist (removed behind our back, or
    /// never created).
    #[error("no such container for task {0}")]
    NotFound(String),
    /// `wait` was called for a task that was created but never started.
    #[error("task {0} was never started")]
    NotStarted(String),
    /// The spec cannot be run by this executor (bad user, missing working dir, ...).
    #[error("invalid task spec: {0}")]
    InvalidSpec(String),
    /// The engine refused a request; retrying the same request will not help.
    #[error("{0}")]
    Engine(String),
    /// The engine could not be reached or the request timed out; worth retrying.
    #[error("{0}")]
    Unavailable(String),
    /// A local I/O failure (state dir, log files, spawning a process).
    #[error("{0}")]
    Io(String),
    /// The task's secrets would be written to a directory that is not memory-backed, so
    /// their plaintext would reach a disk; the task fails instead (see [`memfs`]).
    #[error(
        "refusing to write secrets to {dir}: it is not on a tmpfs or ramfs (filesystem type \
         {fs_type:#x}); set SWARMD_SECRETS_ROOT to a directory on a tmpfs"
    )]
    SecretsNotInMemory { dir: String, fs_type: u32 },
}

impl ExecError {
    /// Whether retrying the same step later may succeed. The runner retries temporary
    /// errors with backoff instead of failing the task (swarmkit's `Temporary`).
    pub fn is_temporary(&self) -> bool {
        matches!(self, ExecError::Unavailable(_))
    }

    pub(crate) fn io(context: impl std::fmt::Display, err: impl std::fmt::Display) -> Self {
        ExecError::Io(format!("{context}: {err}"))
    }
}

/// Transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// The lowercase name Docker uses in port keys (`80/tcp`).
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }

    /// Parses Docker's lowercase protocol name.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" | "" => Some(Protocol::Tcp),
            "udp" => Some(Protocol::Udp),
            "sctp" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    fn from_endpoint(p: Option<EndpointPortConfigProtocolEnum>) -> Self {
        match p {
            Some(EndpointPortConfigProtocolEnum::UDP) => Protocol::Udp,
            Some(EndpointPortConfigProtocolEnum::SCTP) => Protocol::Sctp,
            _ => Protocol::Tcp,
        }
    }

    /// The protocol as the swarm models spell it.
    pub fn to_endpoint(self) -> EndpointPortConfigProtocolEnum {
        match self {
            Protocol::Tcp => EndpointPortConfigProtocolEnum::TCP,
            Protocol::Udp => EndpointPortConfigProtocolEnum::UDP,
            Protocol::Sctp => EndpointPortConfigProtocolEnum::SCTP,
        }
    }
}

/// A port of the task that must be reachable from the node's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetPort {
    /// The port inside the task.
    pub target: u16,
    pub protocol: Protocol,
    /// The endpoint's port name, if the user gave one.
    pub name: Option<String>,
    /// For `mode=host` publications with an explicit published port: that exact host port.
    /// Otherwise the executor picks an ephemeral port and the mesh forwards to it.
    pub fixed_host_port: Option<u16>,
}

/// A target port bound on the host, as reported in the task status.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BoundPort {
    pub target: u16,
    #[serde(with = "protocol_serde")]
    pub protocol: Protocol,
    pub host_ip: String,
    pub host_port: u16,
}

mod protocol_serde {
    use super::Protocol;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(p: &Protocol, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(p.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Protocol, D::Error> {
        let s = String::deserialize(d)?;
        Protocol::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("bad protocol {s}")))
    }
}

/// Everything an executor needs to run one task, extracted from a [`Task`] so executors do
/// not depend on the store's object layout.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRuntime {
    pub task_id: String,
    pub service_id: String,
    pub service_name: String,
    pub node_id: String,
    pub slot: u64,
    /// `service.slot` (or `service.node` for global services), as `service ps` shows it.
    pub task_name: String,
    /// `service.slot.taskid`, Docker's container name for swarm tasks.
    pub container_name: String,
    pub spec: TaskSpecContainerSpec,
    pub resources: Option<TaskSpecResources>,
    /// `TaskTemplate.LogDriver`: the container's log driver (see [`host_opts`]).
    pub log_driver: Option<bollard_stubs::models::TaskSpecLogDriver>,
    /// Published target ports, deduplicated by (target, protocol).
    pub ports: Vec<TargetPort>,
    /// The node's data-plane address (`--node-addr`); host ports are bound there.
    pub node_addr: String,
    /// Secret and config files, resolved by the worker from what the dispatcher delivered
    /// (empty for runtimes built only to find an existing task).
    pub files: files::TaskFiles,
    /// Overlay networks the task is attached to, with its address on each (docker
    /// executor; the first one is the container's network at create time).
    pub networks: Vec<overlay::OverlayAttachment>,
}

impl TaskRuntime {
    /// Builds the runtime view of `task` for a node whose data plane binds `node_addr`.
    /// Tasks without a container spec get an empty one; the executor then rejects them
    /// with a clear error at prepare time.
    pub fn from_task(task: &Task, node_addr: &str) -> Self {
        let mut ports: Vec<TargetPort> = Vec::new();
        for p in &task.endpoint_ports {
            let Some(target) = p.target_port.and_then(|t| u16::try_from(t).ok()) else {
                continue;
            };
            if target == 0 {
                continue;
            }
            let protocol = Protocol::from_endpoint(p.protocol);
            if ports
                .iter()
                .any(|q| q.target == target && q.protocol == protocol)
            {
                continue;
            }
            let fixed_host_port = match p.publish_mode {
                Some(EndpointPortConfigPublishModeEnum::HOST) => p
                    .published_port
                    .and_then(|h| u16::try_from(h).ok())
                    .filter(|h| *h != 0),
                _ => None,
            };
            ports.push(TargetPort {
                target,
                protocol,
                name: p.name.clone().filter(|n| !n.is_empty()),
                fixed_host_port,
            });
        }
        TaskRuntime {
            task_id: task.id.clone(),
            service_id: task.service_id.clone(),
            service_name: task.service_name.clone(),
            node_id: task.node_id.clone(),
            slot: task.slot,
            task_name: task.display_name(),
            container_name: task.container_name(),
            spec: task.spec.container_spec.clone().unwrap_or_default(),
            resources: task.spec.resources.clone(),
            // As made by the manager (service's, else the cluster default); a task from an
            // older manager has only its spec's.
            log_driver: task
                .log_driver
                .clone()
                .or_else(|| task.spec.log_driver.clone()),
            ports,
            node_addr: node_addr.to_string(),
            files: Default::default(),
            networks: overlay_attachments(task),
        }
    }

    /// A runtime that knows only the task ID: enough for a controller to find, stop,
    /// remove or read the logs of an existing container/process (orphans, log requests for
    /// tasks the agent no longer tracks).
    pub fn for_existing(task_id: &str, node_addr: &str) -> Self {
        let task = Task {
            id: task_id.to_string(),
            ..Task::default()
        };
        Self::from_task(&task, node_addr)
    }

    /// How long `shutdown` waits after the stop signal before SIGKILL.
    pub fn stop_grace(&self) -> Duration {
        match self.spec.stop_grace_period {
            Some(ns) if ns >= 0 => Duration::from_nanos(ns as u64),
            _ => DEFAULT_STOP_GRACE,
        }
    }

    /// The image reference without any `@sha256:...` digest (the CLI appends one when it
    /// can resolve it against a registry; there is none here, images are local).
    pub fn image(&self) -> String {
        strip_digest(self.spec.image.as_deref().unwrap_or_default()).to_string()
    }

    /// The node address parsed as an IP, for binding host ports.
    pub fn node_ip(&self) -> Result<IpAddr, ExecError> {
        self.node_addr.parse().map_err(|_| {
            ExecError::InvalidSpec(format!("node address {:?} is not an IP", self.node_addr))
        })
    }

    /// The labels every task container carries: the spec's container labels plus Docker's
    /// swarm labels (which win on conflict, as in Docker).
    pub fn labels(&self) -> HashMap<String, String> {
        let mut labels = self.spec.labels.clone().unwrap_or_default();
        labels.insert(LABEL_SERVICE_ID.into(), self.service_id.clone());
        labels.insert(LABEL_SERVICE_NAME.into(), self.service_name.clone());
        labels.insert(LABEL_TASK_ID.into(), self.task_id.clone());
        labels.insert(LABEL_TASK_NAME.into(), self.task_name.clone());
        labels.insert(LABEL_NODE_ID.into(), self.node_id.clone());
        labels.insert(LABEL_TASK.into(), String::new());
        labels
    }
}

/// The overlay networks a task's container joins: every attachment but the ingress network's
/// (the routing mesh forwards published ports itself), in the service's order. An
/// attachment without network details (written by an older manager) is left out.
fn overlay_attachments(task: &Task) -> Vec<overlay::OverlayAttachment> {
    task.networks
        .iter()
        .filter_map(|a| {
            let net = a.network.as_ref().filter(|n| !n.ingress)?;
            let addr = a.addresses.first()?;
            Some(overlay::OverlayAttachment {
                network_id: a.network_id.clone(),
                network_name: net.name.clone(),
                subnet: net.subnet.clone(),
                gateway: net.gateway.clone(),
                address: addr
                    .split_once('/')
                    .map_or(addr.as_str(), |(ip, _)| ip)
                    .to_string(),
            })
        })
        .collect()
}

/// Strips an `@digest` suffix from an image reference.
pub fn strip_digest(image: &str) -> &str {
    match image.find('@') {
        Some(i) => &image[..i],
        None => image,
    }
}

/// How a task's main process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    /// The exit code; for a process killed by a signal, 128 + the signal number (as a
    /// shell and Docker report it).
    pub code: i64,
}

impl ExitStatus {
    pub fn success(&self) -> bool {
        self.code == 0
    }
}

/// What the executor observes about a task right now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeStatus {
    /// Whether a container/process record exists for the task at all.
    pub exists: bool,
    pub running: bool,
    /// Known once the task has exited (and only if the exit code could be observed).
    pub exit_code: Option<i64>,
    pub pid: Option<i64>,
    /// The container ID (docker) or a stable 64-hex ID derived from the task ID (process).
    pub container_id: Option<String>,
    /// Published target ports and the host ports they are bound to.
    pub ports: Vec<BoundPort>,
}

impl RuntimeStatus {
    /// The bound ports in the form the task status carries (`PortStatus.Ports`): the
    /// published port is the host port on the node address, mode `host`.
    pub fn port_configs(&self, rt: &TaskRuntime) -> Vec<EndpointPortConfig> {
        self.ports
            .iter()
            .map(|b| EndpointPortConfig {
                name: rt
                    .ports
                    .iter()
                    .find(|p| p.target == b.target && p.protocol == b.protocol)
                    .and_then(|p| p.name.clone()),
                protocol: Some(b.protocol.to_endpoint()),
                target_port: Some(i64::from(b.target)),
                published_port: Some(i64::from(b.host_port)),
                publish_mode: Some(EndpointPortConfigPublishModeEnum::HOST),
            })
            .collect()
    }
}

/// Which lines `logs` returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogOptions {
    /// Keep the stream open and deliver new lines until the task has ended and all its
    /// output has been read.
    pub follow: bool,
    /// Only the last N lines (of those matching the other filters); `None` = all.
    pub tail: Option<usize>,
    /// Only lines written at or after this time.
    pub since: Option<SystemTime>,
    /// Passed through for the API layer's framing; entries always carry their timestamp.
    pub timestamps: bool,
    pub stdout: bool,
    pub stderr: bool,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            follow: false,
            tail: None,
            since: None,
            timestamps: false,
            stdout: true,
            stderr: true,
        }
    }
}

/// The stream a log line was written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogStream {
    Stdout,
    Stderr,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }
}

/// One line of a task's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub stream: LogStream,
    /// When the line was written (RFC 3339 with nanoseconds, UTC), as Docker prints it.
    pub timestamp: String,
    /// The raw bytes, including the trailing newline when the output had one.
    pub line: Bytes,
}

/// A stream of log lines; an error ends the stream.
pub type LogStreamBox = BoxStream<'static, Result<LogEntry, ExecError>>;

/// Runs tasks on this node. One per agent; shared with the API layer (logs, `docker ps`).
#[async_trait::async_trait]
pub trait Executor: Send + Sync + 'static {
    /// What this node offers, for the session with the dispatcher. The agent overrides the
    /// hostname when `--hostname` is given.
    async fn describe(&self) -> Result<NodeDescription, ExecError>;

    /// The controller of one task. Cheap and infallible: controllers find their container
    /// or process lazily, so a fresh controller for a running task adopts it.
    fn controller(&self, rt: &TaskRuntime) -> Arc<dyn Controller>;

    /// IDs of the tasks this executor has containers/processes for (running or not), so the
    /// agent can re-adopt them after a restart and clean up those no longer assigned.
    async fn list_tasks(&self) -> Result<Vec<String>, ExecError>;

    /// The local tasks presented as Docker containers, for `docker ps` and friends.
    async fn containers(&self) -> Result<Vec<ContainerSummary>, ExecError>;

    /// Stops the executor's background work (log collectors, exit watchers) WITHOUT
    /// touching the tasks themselves, so they survive an agent restart.
    async fn close(&self) {}
}

/// Drives one task's container or process. Methods take `&self` so `wait` and `shutdown`
/// can run concurrently; every step is idempotent.
#[async_trait::async_trait]
pub trait Controller: Send + Sync + 'static {
    /// Makes the task ready to start: checks the spec, finds the image, creates the
    /// container. Adopts an existing container/process of this task instead of recreating.
    async fn prepare(&self) -> Result<(), ExecError>;

    /// Starts the task. Already running (or already exited) is success.
    async fn start(&self) -> Result<(), ExecError>;

    /// Waits for the task's main process to exit. Cancel-safe: dropping the future only
    /// stops waiting.
    async fn wait(&self) -> Result<ExitStatus, ExecError>;

    /// Graceful stop: the spec's stop signal (default SIGTERM), then SIGKILL once `grace`
    /// has passed. A task that is not running is success.
    async fn shutdown(&self, grace: Duration) -> Result<(), ExecError>;

    /// Immediate SIGKILL.
    async fn terminate(&self) -> Result<(), ExecError>;

    /// Removes the container/process record and its logs. Missing is success.
    async fn remove(&self) -> Result<(), ExecError>;

    /// The current observation of the task.
    async fn status(&self) -> Result<RuntimeStatus, ExecError>;

    /// The task's output.
    async fn logs(&self, opts: LogOptions) -> Result<LogStreamBox, ExecError>;
}

/// A 64-hex ID derived from a task ID, for executors that have no container IDs of their
/// own (the process executor presents tasks as containers with this ID).
pub fn hex_id_for(task_id: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(task_id.as_bytes()))
}

/// Docker's human-readable duration (`units.HumanDuration`), for "Up 5 seconds" and
/// "Exited (0) 2 minutes ago".
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 1 {
        return "Less than a second".into();
    }
    if secs == 1 {
        return "1 second".into();
    }
    if secs < 60 {
        return format!("{secs} seconds");
    }
    let mins = secs / 60;
    if mins == 1 {
        return "About a minute".into();
    }
    if mins < 60 {
        return format!("{mins} minutes");
    }
    let hours = (d.as_secs_f64() / 3600.0).round() as u64;
    if hours == 1 {
        return "About an hour".into();
    }
    if hours < 48 {
        return format!("{hours} hours");
    }
    if hours < 24 * 7 * 2 {
        return format!("{} days", hours / 24);
    }
    if hours < 24 * 30 * 2 {
        return format!("{} weeks", hours / 24 / 7);
    }
    if hours < 24 * 365 * 2 {
        return format!("{} months", hours / 24 / 30);
    }
    format!("{} years", hours / 24 / 365)
}

/// Seconds since the epoch, as a float (for records that must survive restarts).
pub(crate) fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Seconds since the epoch of a `SystemTime` (negative before the epoch).
pub(crate) fn unix_seconds(t: SystemTime) -> f64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// Applies `stdout`/`stderr`/`since` filters and then `tail` to already-read entries.
pub(crate) fn filter_entries(entries: Vec<LogEntry>, opts: &LogOptions) -> Vec<LogEntry> {
    let since = opts.since.map(unix_seconds);
    let mut out: Vec<LogEntry> = entries
        .into_iter()
        .filter(|e| entry_matches(e, opts, since))
        .collect();
    if let Some(n) = opts.tail
        && out.len() > n
    {
        out.drain(..out.len() - n);
    }
    out
}

pub(crate) fn entry_matches(e: &LogEntry, opts: &LogOptions, since: Option<f64>) -> bool {
    let stream_ok = match e.stream {
        LogStream::Stdout => opts.stdout,
        LogStream::Stderr => opts.stderr,
    };
    if !stream_ok {
        return false;
    }
    match since {
        Some(s) => swarmd_types::timefmt::unix_seconds(&e.timestamp).is_none_or(|t| t >= s),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard_stubs::models::TaskSpec;

    fn task_with_ports(ports: Vec<EndpointPortConfig>) -> Task {
        Task {
            id: "t1".into(),
            service_id: "s1".into(),
            service_name: "web".into(),
            slot: 2,
            node_id: "n1".into(),
            spec: TaskSpec {
                container_spec: Some(TaskSpecContainerSpec {
                    image: Some("busybox:latest@sha256:abc".into()),
                    labels: Some(HashMap::from([
                        ("mine".to_string(), "1".to_string()),
                        (LABEL_TASK_ID.to_string(), "spoofed".to_string()),
                    ])),
                    stop_grace_period: Some(2_000_000_000),
                    ..Default::default()
                }),
                ..Default::default()
            }
            .into(),
            endpoint_ports: ports,
            ..Default::default()
        }
    }

    #[test]
    fn runtime_from_task() {
        let p = |t: i64, proto, mode, published| EndpointPortConfig {
            target_port: Some(t),
            protocol: Some(proto),
            publish_mode: Some(mode),
            published_port: published,
            name: None,
        };
        let task = task_with_ports(vec![
            p(
                80,
                EndpointPortConfigProtocolEnum::TCP,
                EndpointPortConfigPublishModeEnum::INGRESS,
                Some(8080),
            ),
            p(
                80,
                EndpointPortConfigProtocolEnum::TCP,
                EndpointPortConfigPublishModeEnum::INGRESS,
                Some(8081),
            ),
            p(
                53,
                EndpointPortConfigProtocolEnum::UDP,
                EndpointPortConfigPublishModeEnum::HOST,
                Some(5353),
            ),
            p(
                -1,
                EndpointPortConfigProtocolEnum::TCP,
                EndpointPortConfigPublishModeEnum::HOST,
                None,
            ),
        ]);
        let rt = TaskRuntime::from_task(&task, "127.0.0.2");
        assert_eq!(rt.container_name, "web.2.t1");
        assert_eq!(rt.task_name, "web.2");
        assert_eq!(rt.image(), "busybox:latest");
        assert_eq!(rt.stop_grace(), Duration::from_secs(2));
        assert_eq!(rt.ports.len(), 2);
        assert_eq!(rt.ports[0].fixed_host_port, None);
        assert_eq!(rt.ports[1].protocol, Protocol::Udp);
        assert_eq!(rt.ports[1].fixed_host_port, Some(5353));
        let labels = rt.labels();
        assert_eq!(labels[LABEL_TASK_ID], "t1");
        assert_eq!(labels["mine"], "1");
        assert_eq!(labels[LABEL_NODE_ID], "n1");
    }

    #[test]
    fn defaults_and_helpers() {
        let rt = TaskRuntime::for_existing("abc", "127.0.0.1");
        assert_eq!(rt.stop_grace(), DEFAULT_STOP_GRACE);
        assert_eq!(rt.image(), "");
        assert_eq!(hex_id_for("abc").len(), 64);
        assert_eq!(human_duration(Duration::from_secs(0)), "Less than a second");
        assert_eq!(human_duration(Duration::from_secs(5)), "5 seconds");
        assert_eq!(human_duration(Duration::from_secs(70)), "About a minute");
        assert_eq!(human_duration(Duration::from_secs(600)), "10 minutes");
        assert_eq!(human_duration(Duration::from_secs(3 * 3600)), "3 hours");
        assert_eq!(
            ExecError::NonZeroExit(3).to_string(),
            "task: non-zero exit (3)"
        );
        assert_eq!(
            ExecError::NoSuchImage("foo:latest".into()).to_string(),
            "No such image: foo:latest"
        );
        // Docker's texts for a task that never became healthy / turned unhealthy.
        assert_eq!(
            ExecError::Unhealthy.to_string(),
            "dockerexec: unhealthy container"
        );
        assert_eq!(
            ExecError::UnhealthyExit(137).to_string(),
            "task: non-zero exit (137): dockerexec: unhealthy container"
        );
        assert!(!ExecError::Unhealthy.is_temporary());
    }

    #[test]
    fn filters_and_tail() {
        let e = |s, ts: &str, l: &str| LogEntry {
            stream: s,
            timestamp: ts.into(),
            line: Bytes::from(l.to_string()),
        };
        let entries = vec![
            e(LogStream::Stdout, "2024-01-01T00:00:00Z", "a\n"),
            e(LogStream::Stderr, "2024-01-01T00:00:01Z", "b\n"),
            e(LogStream::Stdout, "2024-01-01T00:00:02Z", "c\n"),
            e(LogStream::Stdout, "2024-01-01T00:00:03Z", "d\n"),
        ];
        let opts = LogOptions {
            stderr: false,
            tail: Some(2),
            ..Default::default()
        };
        let out = filter_entries(entries.clone(), &opts);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].line, Bytes::from_static(b"c\n"));
        let since = SystemTime::UNIX_EPOCH
            + Duration::from_secs(
                swarmd_types::timefmt::unix_seconds("2024-01-01T00:00:01Z").unwrap() as u64,
            );
        let opts = LogOptions {
            since: Some(since),
            ..Default::default()
        };
        assert_eq!(filter_entries(entries, &opts).len(), 3);
    }
}
