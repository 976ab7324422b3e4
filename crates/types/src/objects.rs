//! The objects kept in the replicated store.
//!
//! Field ownership (docs/DESIGN.md §2, principle 3): each field's doc comment names its one writer.

use std::collections::HashMap;
use std::sync::Arc;

use bollard_stubs::models::{
    ContainerStatus, EndpointPortConfig, EndpointSpec, NodeSpec, PortStatus, ServiceSpec,
    ServiceUpdateStatus, SwarmSpec, TaskSpec, TaskState,
};
use serde::{Deserialize, Serialize};

/// Version and timestamps of a stored object. Written only by the store's apply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// Raft log index of the entry that last wrote the object. Updates must carry the
    /// version they read; a mismatch is a conflict.
    pub version: u64,
    pub created_at: String,
    pub updated_at: String,
}

/// The kinds of object in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Kind {
    Cluster,
    Node,
    Service,
    Task,
    Network,
    Secret,
    Config,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Cluster => "cluster",
            Kind::Node => "node",
            Kind::Service => "service",
            Kind::Task => "task",
            Kind::Network => "network",
            Kind::Secret => "secret",
            Kind::Config => "config",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The swarm itself: one object, created by `swarm init`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cluster {
    pub id: String,
    pub meta: Meta,
    /// Written by the API (`swarm update`).
    pub spec: SwarmSpec,
    /// Root CA. Written by the CA at init and on rotation.
    pub root_ca: RootCa,
    /// Join secrets. Written by the API (`join-token --rotate`).
    pub join_tokens: JoinTokens,
    /// Default address pool for overlay networks (CIDRs) and the subnet size.
    pub default_addr_pool: Vec<String>,
    pub subnet_size: u32,
    pub data_path_port: u32,
    /// The autolock key (`SWMKEY-1-...`) while `spec.encryption_config.auto_lock_managers`
    /// is on, empty otherwise. Written by the API (`swarm update --autolock`, `swarm
    /// unlock-key --rotate`); every manager wraps its own data key with it. It lives only
    /// in the replicated store, which is encrypted at rest, and is never shown by `swarm
    /// inspect`.
    #[serde(default)]
    pub unlock_key: String,
}

/// The swarm's root certificate authority.
///
/// The CA's key lives here and nowhere else: never in the cluster spec (a `SigningCAKey`
/// sent with `swarm init`/`update` is taken out of the spec before it is stored, as swarmkit
/// does), never in an API answer, never in a log line (hence the hand-written `Debug`).
/// The store holding it is encrypted at rest.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RootCa {
    pub cert_pem: String,
    /// The CA's private key. Lives only in the managers' store.
    pub key_pem: String,
    /// `sha256:<hex>` digest of the DER certificate, as embedded in join tokens.
    pub digest: String,
    /// The `CAConfig.ForceRotate` value this root answers (swarmkit's `LastForcedRotation`):
    /// a spec whose `ForceRotate` differs asks for a new root. `None` in clusters stored
    /// before it was recorded; the stored spec's value stands in for it then.
    #[serde(default)]
    pub last_forced_rotation: Option<u64>,
    /// A root rotation under way (swarmkit's `RootRotation`): the new root, and its
    /// certificate cross-signed by this root. The CA signs with the new key meanwhile; the
    /// leader's reconciler makes the new root this one once every node has a certificate
    /// from it.
    #[serde(default)]
    pub root_rotation: Option<RootRotation>,
}

/// The root a rotation moves to.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RootRotation {
    pub cert_pem: String,
    /// The new root's private key. Lives only in the managers' store, like [`RootCa`]'s.
    pub key_pem: String,
    /// The new root's certificate signed by the old root's key: sent along with the
    /// certificates signed during the rotation so nodes that trust only the old root
    /// verify them.
    pub cross_signed_pem: String,
}

impl std::fmt::Debug for RootRotation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootRotation")
            .field("key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for RootCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootCa")
            .field("digest", &self.digest)
            .field("key_pem", &"<redacted>")
            .field("last_forced_rotation", &self.last_forced_rotation)
            .field("root_rotation", &self.root_rotation)
            .finish_non_exhaustive()
    }
}

/// The current worker and manager join tokens (`SWMTKN-1-<ca digest>-<secret>`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JoinTokens {
    pub worker: String,
    pub manager: String,
}

/// A member of the swarm.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub id: String,
    pub meta: Meta,
    /// Desired role, labels, availability. Written by the API (`node update`).
    pub spec: NodeSpec,
    /// What the node reported about itself. Written by the dispatcher from the session.
    pub description: NodeDescription,
    /// Ready/down and the node's address. Written by the dispatcher.
    pub status: NodeStatus,
    /// Set for managers: raft id and cluster address. Written by the raft membership code.
    pub manager: Option<ManagerInfo>,
    /// The role the node's certificate carries. Written by the CA.
    pub role: Role,
}

/// A node's role.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    #[default]
    Worker,
    Manager,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Worker => "worker",
            Role::Manager => "manager",
        }
    }
}

/// What a node reports about itself when it opens a session.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeDescription {
    pub hostname: String,
    pub os: String,
    pub architecture: String,
    /// CPU capacity in nano-CPUs (1e9 per core).
    pub nano_cpus: i64,
    pub memory_bytes: i64,
    pub engine_version: String,
    /// Labels of the node's engine (`engine.labels.*` constraints).
    pub engine_labels: HashMap<String, String>,
    /// Which executor runs the node's tasks: "docker" or "process".
    pub executor: String,
    /// The node's certificate's issuer and the roots it trusts, recorded by the CA when it
    /// issues the certificate (a session's description leaves it as it is). `None` for a
    /// node not issued one since this was recorded.
    #[serde(default)]
    pub tls_info: Option<crate::models::TlsInfo>,
}

/// Observed state of a node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub state: NodeState,
    pub message: String,
    /// The address the node's data plane binds to.
    pub addr: String,
}

/// Liveness of a node as the dispatcher sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeState {
    #[default]
    Unknown,
    Down,
    Ready,
    Disconnected,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Unknown => "unknown",
            NodeState::Down => "down",
            NodeState::Ready => "ready",
            NodeState::Disconnected => "disconnected",
        }
    }
}

/// Raft membership of a manager node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ManagerInfo {
    pub raft_id: u64,
    /// Cluster (gRPC) address, e.g. `127.0.0.2:2377`.
    pub addr: String,
}

/// A service: the spec the user wrote plus what the cluster derived from it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Service {
    pub id: String,
    pub meta: Meta,
    /// Written by the API (`service create/update`), and by the updater when an update
    /// rolls back automatically (`--update-failure-action rollback`), as swarmkit's does.
    pub spec: ServiceSpec,
    /// The spec before the last update, for rollback. Written by the API (cleared by an
    /// automatic rollback).
    pub previous_spec: Option<ServiceSpec>,
    /// Incremented on each spec change (API, automatic rollback); tasks record the value
    /// they were made from. A task is out of date when its version differs and its spec
    /// does too (so a rollback leaves tasks of the restored spec alone).
    pub spec_version: u64,
    /// Published ports after allocation (auto-assigned published ports filled in).
    /// Written by the allocator.
    pub endpoint: ServiceEndpoint,
    /// Rolling update progress. Written by the updater.
    pub update_status: Option<ServiceUpdateStatus>,
    /// For jobs: incremented by the API on each (re-)run.
    pub job_iteration: u64,
}

/// Allocated endpoint of a service.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceEndpoint {
    /// The endpoint spec the ports were allocated for (a copy of `spec.endpoint_spec`).
    pub spec: Option<EndpointSpec>,
    pub ports: Vec<EndpointPortConfig>,
    pub virtual_ips: Vec<VirtualIp>,
}

/// A service's virtual IP on a network.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VirtualIp {
    pub network_id: String,
    pub addr: String,
}

/// One instance of a service.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    pub meta: Meta,
    pub service_id: String,
    /// Service name at creation (for container names and logs).
    pub service_name: String,
    /// Replicated services: 1..=replicas. Global services: 0 (the node identifies it).
    pub slot: u64,
    /// Written by the scheduler (replicated) or the global orchestrator.
    pub node_id: String,
    /// The service's task template when the task was made. Written by orchestrators. Shared
    /// between the tasks made from the same template (see [`SharedSpec`]).
    pub spec: SharedSpec,
    /// `Service::spec_version` the task was made from.
    pub spec_version: u64,
    /// Service labels at creation, for `label=` filters.
    pub service_labels: HashMap<String, String>,
    /// Written by orchestrators only; moves forward.
    pub desired_state: TaskState,
    /// Observed state. Written by the allocator/scheduler up to ASSIGNED, then by the agent.
    pub status: TaskStatus,
    /// Ports published for this task (copy of the service endpoint at creation).
    pub endpoint_ports: Vec<EndpointPortConfig>,
    /// Job iteration the task belongs to (jobs only).
    pub job_iteration: Option<u64>,
    /// The task's address on each network it joins (its service's networks, and ingress
    /// when the service publishes ingress ports). Written by the allocator before the task
    /// leaves NEW; the addresses are free again once the task is terminal or removed.
    #[serde(default)]
    pub networks: Vec<NetworkAttachment>,
    /// The log driver the task runs with, fixed when it is made (swarmkit's
    /// `Task.LogDriver`): the service's `TaskTemplate.LogDriver`, else the cluster's
    /// `TaskDefaults.LogDriver` at that time. Kept apart from `spec`, which stays the
    /// service's template (shared, and compared against it by the updater).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_driver: Option<crate::models::TaskSpecLogDriver>,
}

/// A task's spec, shared: the tasks of one service version hold one copy between them.
///
/// A [`TaskSpec`] is 1.4 KB inline plus its strings; as a plain field every one of a
/// million tasks (and every event and message carrying one) held its own copy, which made
/// the spec most of the leader's memory per task (BENCHMARKS.md, "Scale simulation"). The
/// store hands equal specs the same allocation when it applies them. Reads deref to the
/// spec; a write through `DerefMut` copies it first if it is shared (copy on write), so no
/// task's change reaches another. Serialized exactly as the spec itself.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SharedSpec(Arc<TaskSpec>);

impl SharedSpec {
    /// Whether both hold the same allocation (not merely equal specs).
    pub fn ptr_eq(&self, other: &SharedSpec) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl std::ops::Deref for SharedSpec {
    type Target = TaskSpec;
    fn deref(&self) -> &TaskSpec {
        &self.0
    }
}

impl std::ops::DerefMut for SharedSpec {
    fn deref_mut(&mut self) -> &mut TaskSpec {
        Arc::make_mut(&mut self.0)
    }
}

impl From<TaskSpec> for SharedSpec {
    fn from(spec: TaskSpec) -> Self {
        SharedSpec(Arc::new(spec))
    }
}

impl PartialEq<TaskSpec> for SharedSpec {
    fn eq(&self, other: &TaskSpec) -> bool {
        *self.0 == *other
    }
}

impl std::fmt::Debug for SharedSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A task's place on one network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkAttachment {
    pub network_id: String,
    /// CIDR notation, e.g. `10.0.1.3/24` (as Docker shows `NetworksAttachments`).
    pub addresses: Vec<String>,
    /// The aliases the service spec gives on this network (answered by the nodes' DNS).
    pub aliases: Vec<String>,
    /// What the task's node needs of the network to attach the task (swarmkit embeds the
    /// whole network object for the same reason); written with the address.
    #[serde(default)]
    pub network: Option<AttachedNetwork>,
}

/// The part of a network a node needs to put a task on it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachedNetwork {
    pub name: String,
    /// `10.0.1.0/24`.
    pub subnet: String,
    /// `10.0.1.1`: the bridge's address on every node, where the node's DNS server answers.
    pub gateway: String,
    /// The VXLAN network identifier linking the network's bridges across machines.
    pub vxlan_id: u32,
    /// The routing mesh's network: the mesh forwards published ports itself, so tasks are
    /// not attached to it on the node.
    pub ingress: bool,
}

impl Task {
    /// The task's name as Docker shows it: `service.slot` or `service.node` for global.
    pub fn display_name(&self) -> String {
        if self.slot > 0 {
            format!("{}.{}", self.service_name, self.slot)
        } else {
            format!("{}.{}", self.service_name, self.node_id)
        }
    }

    /// The container name Docker uses: `service.slot.taskid` (or `service.node.taskid`).
    pub fn container_name(&self) -> String {
        format!("{}.{}", self.display_name(), self.id)
    }
}

/// Observed status of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskStatus {
    pub state: TaskState,
    pub timestamp: String,
    pub message: String,
    /// Error text when the task failed or was rejected.
    pub err: String,
    pub container: Option<ContainerStatus>,
    /// Host ports the executor bound for the task's targets.
    pub ports: Option<PortStatus>,
    /// Why the scheduler could not place the task (shown by `service ps`).
    pub sched_err: String,
    /// When the task reached RUNNING (RFC 3339), kept in later reports. Written by the
    /// agent; the updater measures its monitor window from it.
    #[serde(default)]
    pub started_at: String,
}

impl Default for TaskStatus {
    fn default() -> Self {
        TaskStatus {
            state: TaskState::NEW,
            timestamp: String::new(),
            message: String::new(),
            err: String::new(),
            container: None,
            ports: None,
            sched_err: String::new(),
            started_at: String::new(),
        }
    }
}

/// A swarm-scope network (overlay networks; `ingress`). Written by the API (`network
/// create`); the subnet and gateway are allocated with it (control's IPAM), so that an
/// overlapping subnet is refused at once.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Network {
    pub id: String,
    pub meta: Meta,
    pub name: String,
    pub driver: String,
    pub labels: HashMap<String, String>,
    pub attachable: bool,
    pub ingress: bool,
    pub internal: bool,
    /// IPv4 subnet in CIDR notation (`10.0.1.0/24`): given with `--subnet` or allocated
    /// from the cluster's default address pool.
    pub subnet: String,
    /// Gateway address (no prefix length): `--gateway`, or the subnet's first address.
    pub gateway: String,
    /// `--ip-range`: task and VIP addresses come from this part of the subnet.
    #[serde(default)]
    pub ip_range: String,
    /// Driver options; the VXLAN ID is recorded here as Docker does
    /// (`com.docker.network.driver.overlay.vxlanid_list`).
    pub options: HashMap<String, String>,
    /// IPAM driver name (`default`) and its options, as given.
    #[serde(default)]
    pub ipam_driver: String,
    #[serde(default)]
    pub ipam_options: HashMap<String, String>,
}

/// A secret. The data is kept in the store (encrypted at rest later) and never returned by
/// the API. `Debug` leaves the data out: objects end up in debug logs and error chains,
/// and a secret must never appear in a log (CVE-2019-13509).
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Secret {
    pub id: String,
    pub meta: Meta,
    pub name: String,
    pub labels: HashMap<String, String>,
    pub data: Vec<u8>,
    pub driver: Option<String>,
    pub templating: Option<String>,
    /// `Templating.Options` as the client gave them: kept so they read back as Docker
    /// returns them (the `golang` driver itself takes none).
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub templating_options: HashMap<String, String>,
}

/// A config. Like a secret, but its data is shown by `config inspect`. `Debug` prints
/// only the data's length, as for secrets (configs carry certificates and the like).
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Config {
    pub id: String,
    pub meta: Meta,
    pub name: String,
    pub labels: HashMap<String, String>,
    pub data: Vec<u8>,
    pub templating: Option<String>,
    /// `Templating.Options`, kept as given (see [`Secret::templating_options`]).
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub templating_options: HashMap<String, String>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret")
            .field("id", &self.id)
            .field("meta", &self.meta)
            .field("name", &self.name)
            .field("labels", &self.labels)
            .field("data_len", &self.data.len())
            .field("driver", &self.driver)
            .field("templating", &self.templating)
            .finish()
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("id", &self.id)
            .field("meta", &self.meta)
            .field("name", &self.name)
            .field("labels", &self.labels)
            .field("data_len", &self.data.len())
            .field("templating", &self.templating)
            .finish()
    }
}

/// Any stored object. The cluster and services are boxed: a service (two full specs) is
/// 4 KB inline, and unboxed it set the size of every object in every batch and event,
/// most of which are tasks (about 500 bytes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Object {
    Cluster(Box<Cluster>),
    Node(Node),
    Service(Box<Service>),
    Task(Task),
    Network(Network),
    Secret(Secret),
    Config(Config),
}

macro_rules! object_accessors {
    ($($variant:ident),*) => {
        impl Object {
            pub fn kind(&self) -> Kind {
                match self { $(Object::$variant(_) => Kind::$variant,)* }
            }
            pub fn id(&self) -> &str {
                match self { $(Object::$variant(o) => &o.id,)* }
            }
            pub fn meta(&self) -> &Meta {
                match self { $(Object::$variant(o) => &o.meta,)* }
            }
            pub fn meta_mut(&mut self) -> &mut Meta {
                match self { $(Object::$variant(o) => &mut o.meta,)* }
            }
        }
    };
}
object_accessors!(Cluster, Node, Service, Task, Network, Secret, Config);

impl Object {
    /// The user-visible name, for kinds whose names must be unique.
    pub fn unique_name(&self) -> Option<&str> {
        match self {
            Object::Service(s) => s.spec.name.as_deref(),
            Object::Network(n) => Some(&n.name),
            Object::Secret(s) => Some(&s.name),
            Object::Config(c) => Some(&c.name),
            _ => None,
        }
    }
}

/// Whether a task state is terminal (the task will never run again).
pub fn is_terminal(state: TaskState) -> bool {
    state > TaskState::RUNNING
}

macro_rules! into_object {
    ($($t:ident),*) => {
        $(impl From<$t> for Object {
            fn from(o: $t) -> Object { Object::$t(o) }
        })*
    };
}
into_object!(Node, Task, Network, Secret, Config);

impl From<Cluster> for Object {
    fn from(o: Cluster) -> Object {
        Object::Cluster(Box::new(o))
    }
}

impl From<Service> for Object {
    fn from(o: Service) -> Object {
        Object::Service(Box::new(o))
    }
}

impl From<Box<Service>> for Object {
    fn from(o: Box<Service>) -> Object {
        Object::Service(o)
    }
}
