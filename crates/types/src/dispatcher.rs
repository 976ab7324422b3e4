//! The agent ⇄ dispatcher protocol.
//!
//! These messages are exactly what the network dispatcher carries over gRPC once nodes
//! join over the network; on a single node the agent calls the manager's dispatcher
//! in-process through the same [`DispatcherApi`] trait. Shape follows swarmkit's
//! dispatcher: a session stream, heartbeats, assignments (a complete set on connect, then
//! incremental changes) and batched task status updates.

use std::time::Duration;

use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

use crate::objects::{Config, Node, NodeDescription, Secret, Task, TaskStatus};

/// Opens a session. The node ID comes from the node's certificate on the network path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRequest {
    pub node_id: String,
    pub description: NodeDescription,
    /// The node's data-plane address (`--node-addr`).
    pub addr: String,
}

/// Sent on the session stream when it opens and whenever the node object or the manager
/// set changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionMessage {
    pub session_id: String,
    pub node: Node,
    /// Cluster addresses of the managers, for reconnecting elsewhere.
    pub managers: Vec<String>,
    pub heartbeat_period_ms: u64,
    /// The routing mesh's table (published ingress ports and their backends), the same
    /// for every node. `None` from dispatchers that keep no table (tests, older managers):
    /// the node then leaves its mesh as it is.
    #[serde(default)]
    pub ingress: Option<IngressTable>,
    /// Service discovery and VIP balancing on the overlay networks, the same for every node.
    /// `None` from dispatchers that keep no table: the node leaves its data plane as it is.
    #[serde(default)]
    pub discovery: Option<DiscoveryTable>,
    /// The roots (PEM) every node is to trust now: the root CA, and the new one too while a
    /// root rotation runs. A node trusting others renews its certificate (and gets these
    /// roots with it). `None` from dispatchers that do not say: the node renews on its own
    /// schedule only.
    #[serde(default)]
    pub trust_roots: Option<String>,
}

/// An overlay network as every node's data plane needs it (the ingress network is left
/// out: the routing mesh forwards published ports itself).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscoveryNetwork {
    pub id: String,
    pub name: String,
    /// `10.0.1.0/24`.
    pub subnet: String,
    /// `10.0.1.1`: every node's bridge address on the network, where its DNS answers.
    pub gateway: String,
    pub vxlan_id: u32,
}

/// A running task's address on one network, and where the task runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EndpointTask {
    pub task_id: String,
    /// The task's address on the network, without prefix length.
    pub addr: String,
    pub node_id: String,
    /// The node's data-plane address (VXLAN peers).
    pub node_addr: String,
}

/// One service's presence on one network: the names it answers to there and where they
/// lead.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceEndpoint {
    pub network_id: String,
    pub service_id: String,
    pub service_name: String,
    /// Network aliases from the service spec: they resolve like the service name.
    pub aliases: Vec<String>,
    /// The service's virtual IP on the network (no prefix length); `None` in dnsrr mode,
    /// where the name resolves to the task addresses.
    pub vip: Option<String>,
    /// Running tasks (desired running, on a ready node), sorted by task ID: the VIP's
    /// backends and the `tasks.<service>` answers.
    pub tasks: Vec<EndpointTask>,
}

/// The discovery table, derived from the store by the leader's dispatcher and sent whole on
/// every session when it changes (level-triggered, like [`IngressTable`]). Networks are
/// sorted by ID, endpoints by (network ID, service ID).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscoveryTable {
    pub networks: Vec<DiscoveryNetwork>,
    pub endpoints: Vec<ServiceEndpoint>,
    /// The swarm's VXLAN UDP port (`swarm init --data-path-port`); 0 from a manager that
    /// predates it, meaning 4789.
    #[serde(default)]
    pub data_path_port: u16,
}

/// Transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum IngressProtocol {
    Tcp,
    Udp,
}

impl IngressProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            IngressProtocol::Tcp => "tcp",
            IngressProtocol::Udp => "udp",
        }
    }
}

/// Where the mesh may send a connection: a running task's target port as bound on its
/// node (the node's data-plane address and the host port the executor reported).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct IngressBackend {
    pub task_id: String,
    /// `ip:port`.
    pub addr: String,
}

/// One published ingress port: every node listens on it and forwards to the backends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngressPort {
    pub protocol: IngressProtocol,
    pub published_port: u16,
    pub target_port: u16,
    pub service_id: String,
    pub service_name: String,
    /// Running tasks only, sorted by task ID; empty when none runs (connections are then
    /// refused at once).
    pub backends: Vec<IngressBackend>,
}

/// The routing mesh's whole table, derived from the store by the leader's dispatcher and
/// sent to every node on its session whenever it changes (level-triggered: each message
/// is complete, sorted by protocol and published port).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngressTable {
    pub ports: Vec<IngressPort>,
}

/// Whether an assignment is (re)sent or withdrawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AssignmentAction {
    Update,
    Remove,
}

/// An object a node needs: its tasks and the secrets and configs they reference.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Assignment {
    Task(Task),
    Secret(Secret),
    Config(Config),
}

impl Assignment {
    pub fn id(&self) -> &str {
        match self {
            Assignment::Task(t) => &t.id,
            Assignment::Secret(s) => &s.id,
            Assignment::Config(c) => &c.id,
        }
    }
}

/// One change in a node's assignment set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssignmentChange {
    pub action: AssignmentAction,
    pub assignment: Assignment,
}

/// Complete: the whole set (everything not in it is withdrawn). Incremental: only changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AssignmentsKind {
    Complete,
    Incremental,
}

/// A message on the assignments stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssignmentsMessage {
    pub kind: AssignmentsKind,
    pub changes: Vec<AssignmentChange>,
}

/// A task's observed status as the agent reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskStatusUpdate {
    pub task_id: String,
    pub status: TaskStatus,
}

/// A request from a manager for the output of some of the node's tasks (swarmkit's log
/// broker: the manager subscribes, the agents publish).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogSubscription {
    pub id: String,
    pub task_ids: Vec<String>,
    pub follow: bool,
    /// Last N lines per task.
    pub tail: Option<usize>,
    /// Only lines at or after this time (seconds since the epoch).
    pub since: Option<f64>,
    pub stdout: bool,
    pub stderr: bool,
}

/// One line of a task's output, as published by an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishedLine {
    pub task_id: String,
    /// true for stderr.
    pub stderr: bool,
    /// RFC 3339 with nanoseconds.
    pub timestamp: String,
    pub data: Vec<u8>,
}

/// A batch of lines for one subscription; `close` says the node has sent everything.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishLogs {
    pub subscription_id: String,
    pub lines: Vec<PublishedLine>,
    pub close: bool,
}

/// A manager's request for task output from the leader's log broker: which tasks on
/// which nodes, and how (the subscription's ID and task list are filled in per node).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BrokerSubscription {
    pub tasks_by_node: std::collections::BTreeMap<String, Vec<String>>,
    pub template: LogSubscription,
}

/// Why a dispatcher call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
pub enum DispatchError {
    /// The session is unknown or expired: open a new one.
    #[error("session invalid")]
    SessionInvalid,
    /// This manager is not the leader; try the named one.
    #[error("not the leader")]
    NotLeader { leader_addr: Option<String> },
    /// The node was removed from the swarm.
    #[error("node {0} was removed from the swarm")]
    NodeRemoved(String),
    #[error("dispatcher unavailable: {0}")]
    Unavailable(String),
}

pub type DispatchStream<T> = BoxStream<'static, Result<T, DispatchError>>;

/// The dispatcher as the agent sees it (in-process now, gRPC client later).
#[async_trait::async_trait]
pub trait DispatcherApi: Send + Sync + 'static {
    /// Opens a session; the first message carries the session ID.
    async fn session(
        &self,
        req: SessionRequest,
    ) -> Result<DispatchStream<SessionMessage>, DispatchError>;
    /// Keeps the session alive; returns the period until the next heartbeat is due.
    async fn heartbeat(&self, session_id: &str) -> Result<Duration, DispatchError>;
    /// The node's assignments: one `Complete` message, then `Incremental` ones.
    async fn assignments(
        &self,
        session_id: &str,
    ) -> Result<DispatchStream<AssignmentsMessage>, DispatchError>;
    /// Reports observed task states, many per call.
    async fn update_task_status(
        &self,
        session_id: &str,
        updates: Vec<TaskStatusUpdate>,
    ) -> Result<(), DispatchError>;
    /// Log subscriptions for this node's tasks, while the session lasts. Dispatchers that
    /// serve no logs (test fakes) keep the stream open and empty.
    async fn log_subscriptions(
        &self,
        _session_id: &str,
    ) -> Result<DispatchStream<LogSubscription>, DispatchError> {
        Ok(Box::pin(futures::stream::pending()))
    }
    /// Lines for a subscription. An error means the subscriber is gone: stop sending.
    async fn publish_logs(
        &self,
        _session_id: &str,
        _logs: PublishLogs,
    ) -> Result<(), DispatchError> {
        Err(DispatchError::Unavailable(
            "this dispatcher takes no logs".into(),
        ))
    }
    /// The output of tasks on other nodes, from the leader's log broker (a manager's
    /// `service logs`). Dispatchers without a broker refuse.
    async fn subscribe_logs(
        &self,
        _req: BrokerSubscription,
    ) -> Result<DispatchStream<PublishedLine>, DispatchError> {
        Err(DispatchError::Unavailable(
            "this dispatcher has no log broker".into(),
        ))
    }
}
