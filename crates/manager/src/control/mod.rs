//! Control: the operations behind the swarm API (swarmkit's controlapi).
//!
//! Each operation validates input, builds store actions against the current state and
//! commits them through Raft. Control is the one writer of specs (services, nodes, the
//! cluster) and of service endpoints (published ports are allocated with the spec, so a
//! conflict is refused at the API like Docker does).

pub mod autolock;
pub mod ca_config;
mod names;
pub mod networks;
pub(crate) mod ports;
#[cfg(test)]
mod refusals;
mod secrets;
pub mod swarm_options;
pub mod swarm_spec;
mod validate;

use swarmd_store::Store;
use swarmd_types::error::SwarmError;
use swarmd_types::models::{
    NodeSpec, NodeSpecAvailabilityEnum, NodeSpecRoleEnum, ServiceSpec, ServiceUpdateStatus,
    ServiceUpdateStatusStateEnum, SwarmSpec, SwarmSpecCaConfig, SwarmSpecDispatcher,
    SwarmSpecEncryptionConfig, SwarmSpecOrchestration, SwarmSpecRaft, SwarmSpecTaskDefaults,
};
use swarmd_types::{
    Cluster, JoinTokens, Kind, ManagerInfo, Node, NodeDescription, NodeState, NodeStatus, Role,
    RootCa, Service, ServiceEndpoint, ids,
};

pub use secrets::{MAX_CONFIG_SIZE, MAX_SECRET_SIZE, ObjectSpec, check_references};
pub use validate::validate_service_spec;

/// Errors of control operations: the shared API error, so refusals carry their code to
/// the Docker API as they are (see [`swarmd_types::error`]).
pub type ControlError = SwarmError;

pub type ControlResult<T> = Result<T, ControlError>;

/// The shortest node certificate lifetime a swarm accepts: swarmkit's 1 h, unless the
/// `SWARMD_MIN_CERT_EXPIRY_SECS` environment variable lowers it. That knob exists so tests
/// can watch certificates renew in seconds; nothing else should set it.
pub fn min_cert_expiry() -> std::time::Duration {
    std::env::var("SWARMD_MIN_CERT_EXPIRY_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(std::time::Duration::from_secs)
        .unwrap_or(std::time::Duration::from_secs(3600))
}

/// Checks the parts of a swarm spec swarmkit validates, with its messages.
pub fn validate_swarm_spec(spec: &SwarmSpec) -> ControlResult<()> {
    if let Some(expiry) = spec.ca_config.as_ref().and_then(|c| c.node_cert_expiry)
        && expiry != 0
    {
        let min = min_cert_expiry();
        if expiry < 0 || (expiry as u128) < min.as_nanos() {
            return Err(invalid(format!(
                "minimum certificate expiry time is {}",
                go_duration(min)
            )));
        }
    }
    if spec
        .dispatcher
        .as_ref()
        .and_then(|d| d.heartbeat_period)
        .is_some_and(|p| p < 0)
    {
        return Err(invalid(
            "heartbeat time period cannot be a negative duration",
        ));
    }
    if let Some(r) = &spec.raft {
        swarm_options::validate_raft(r).map_err(invalid)?;
    }
    Ok(())
}

/// A duration as Go prints it (`1h0m0s`, `30s`).
fn go_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    let (h, m, sec) = (s / 3600, (s % 3600) / 60, s % 60);
    if h > 0 {
        format!("{h}h{m}m{sec}s")
    } else if m > 0 {
        format!("{m}m{sec}s")
    } else {
        format!("{sec}s")
    }
}

pub use swarmd_types::error::NO_LEADER;

fn invalid(msg: impl std::fmt::Display) -> ControlError {
    SwarmError::invalid_argument(msg)
}

/// What `swarm init` needs to create the cluster and its first node.
#[derive(Debug, Clone)]
pub struct InitParams {
    pub node_id: String,
    pub description: NodeDescription,
    pub node_addr: String,
    /// Cluster (gRPC) address this manager listens on.
    pub listen_addr: String,
    /// This manager's Raft member ID.
    pub raft_id: u64,
    /// The swarm's ID and root CA when the caller made them already (it needed its own
    /// certificate before Raft could start); generated here when `None`.
    pub cluster_id: Option<String>,
    pub root_ca: Option<RootCa>,
    pub spec: SwarmSpec,
    pub availability: Option<NodeSpecAvailabilityEnum>,
    pub default_addr_pool: Vec<String>,
    pub subnet_size: u32,
    pub data_path_port: u32,
}

/// A store holding a freshly initialised one-manager swarm (`manager1` at 127.0.0.1) with
/// its control, for unit tests of code that needs a cluster object.
#[cfg(test)]
pub(crate) async fn initialised_for_test() -> Control {
    let mem = std::sync::Arc::new(swarmd_store::MemoryStore::new());
    let store = Store::new(
        mem.clone(),
        std::sync::Arc::new(swarmd_store::LocalProposer::new(mem)),
    );
    let control = Control::new(store);
    control
        .init_cluster(InitParams {
            node_id: "manager1".into(),
            description: Default::default(),
            node_addr: "127.0.0.1".into(),
            listen_addr: "127.0.0.1:2377".into(),
            raft_id: 1,
            cluster_id: None,
            root_ca: None,
            spec: Default::default(),
            availability: None,
            default_addr_pool: vec![],
            subnet_size: 0,
            data_path_port: 0,
        })
        .await
        .unwrap();
    control
}

/// Docker's defaults for a new swarm spec, filled where the request left them out.
pub fn default_swarm_spec(mut spec: SwarmSpec) -> SwarmSpec {
    if spec.name.as_deref().unwrap_or("").is_empty() {
        spec.name = Some("default".into());
    }
    spec.labels.get_or_insert_with(Default::default);
    let o = spec
        .orchestration
        .get_or_insert_with(SwarmSpecOrchestration::default);
    o.task_history_retention_limit.get_or_insert(5);
    let r = spec.raft.get_or_insert_with(SwarmSpecRaft::default);
    r.snapshot_interval.get_or_insert(10_000);
    r.keep_old_snapshots.get_or_insert(0);
    r.log_entries_for_slow_followers.get_or_insert(500);
    r.election_tick.get_or_insert(10);
    r.heartbeat_tick.get_or_insert(1);
    let d = spec
        .dispatcher
        .get_or_insert_with(SwarmSpecDispatcher::default);
    d.heartbeat_period.get_or_insert(5_000_000_000);
    let c = spec
        .ca_config
        .get_or_insert_with(SwarmSpecCaConfig::default);
    c.node_cert_expiry.get_or_insert(7_776_000_000_000_000);
    let e = spec
        .encryption_config
        .get_or_insert_with(SwarmSpecEncryptionConfig::default);
    e.auto_lock_managers.get_or_insert(false);
    spec.task_defaults
        .get_or_insert_with(SwarmSpecTaskDefaults::default);
    spec
}

/// The control API over the store.
#[derive(Clone)]
pub struct Control {
    store: Store,
}

impl Control {
    pub fn new(store: Store) -> Self {
        Control { store }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Creates the cluster object and this node as its first manager.
    pub async fn init_cluster(&self, p: InitParams) -> ControlResult<String> {
        let ca = match p.root_ca.clone() {
            Some(ca) => ca,
            None => {
                let m = swarmd_pki::generate_root_ca().map_err(SwarmError::internal)?;
                RootCa {
                    cert_pem: m.cert_pem,
                    key_pem: m.key_pem,
                    digest: m.digest,
                    last_forced_rotation: None,
                    root_rotation: None,
                }
            }
        };
        let mut spec = default_swarm_spec(p.spec.clone());
        ca_config::scrub_signing_material(&mut spec);
        // A new swarm's root is new: a `ForceRotate` in the init spec is already answered.
        let ca = RootCa {
            last_forced_rotation: Some(
                ca.last_forced_rotation
                    .unwrap_or_else(|| ca_config::force_rotate(&spec)),
            ),
            ..ca
        };
        let token =
            |_: ()| swarmd_pki::generate_join_token(&ca.digest).map_err(SwarmError::internal);
        let cluster = Cluster {
            id: p.cluster_id.clone().unwrap_or_else(ids::new_id),
            meta: Default::default(),
            spec,
            root_ca: ca.clone(),
            join_tokens: JoinTokens {
                worker: token(())?,
                manager: token(())?,
            },
            default_addr_pool: if p.default_addr_pool.is_empty() {
                vec!["10.0.0.0/8".into()]
            } else {
                p.default_addr_pool.clone()
            },
            subnet_size: if p.subnet_size == 0 {
                24
            } else {
                p.subnet_size
            },
            data_path_port: if p.data_path_port == 0 {
                4789
            } else {
                p.data_path_port
            },
            unlock_key: autolock::next_unlock_key(autolock::autolock_enabled(&p.spec), "", false),
        };
        let node = Node {
            id: p.node_id.clone(),
            meta: Default::default(),
            spec: NodeSpec {
                name: None,
                labels: Some(Default::default()),
                role: Some(NodeSpecRoleEnum::MANAGER),
                availability: Some(p.availability.unwrap_or(NodeSpecAvailabilityEnum::ACTIVE)),
            },
            description: p.description.clone(),
            status: NodeStatus {
                state: NodeState::Unknown,
                message: String::new(),
                addr: p.node_addr.clone(),
            },
            manager: Some(ManagerInfo {
                raft_id: p.raft_id,
                addr: p.listen_addr.clone(),
            }),
            role: Role::Manager,
        };
        // Docker makes the routing mesh's `ingress` network with the swarm.
        let ingress = networks::ingress_network(&cluster.default_addr_pool, cluster.subnet_size);
        self.store
            .update(|t, tx| {
                if t.cluster().is_some() {
                    return Err(SwarmError::conflict("already part of a swarm"));
                }
                tx.create(cluster.clone());
                tx.create(node.clone());
                tx.create(ingress.clone());
                Ok(())
            })
            .await?;
        Ok(p.node_id)
    }

    /// `swarm update`: a new spec and/or rotated join tokens or unlock key. Turning
    /// autolock on creates the unlock key, turning it off drops it.
    pub async fn update_swarm(
        &self,
        version: u64,
        spec: SwarmSpec,
        rotate_worker: bool,
        rotate_manager: bool,
        rotate_unlock: bool,
    ) -> ControlResult<()> {
        validate_swarm_spec(&spec)?;
        self.store
            .update(|t, tx| {
                let Some(c) = t.cluster() else {
                    return Err(SwarmError::unavailable("This node is not a swarm manager."));
                };
                if c.meta.version != version {
                    return Err(SwarmError::out_of_sequence());
                }
                let last_forced = ca_config::last_forced_rotation(&c.root_ca, &c.spec);
                let plan =
                    ca_config::plan_ca_change(&c.root_ca, last_forced, spec.ca_config.as_ref())?;
                let mut c = c.clone();
                if let ca_config::CaRequest::NewRoot(new) = plan {
                    // Asking again for the root a rotation already moves to changes nothing.
                    let same = match (&new, &c.root_ca.root_rotation) {
                        (Some(n), Some(r)) => {
                            swarmd_pki::ca_digest_of(&r.cert_pem).is_ok_and(|d| d == n.digest)
                        }
                        _ => false,
                    };
                    if !same {
                        let rotation = crate::ca_rotation::start(&c.root_ca, new)
                            .map_err(|e| invalid(e.to_string()))?;
                        tracing::info!(cluster = %c.id, "root CA rotation started");
                        c.root_ca.root_rotation = Some(rotation);
                    }
                }
                c.spec = default_swarm_spec(spec.clone());
                ca_config::scrub_signing_material(&mut c.spec);
                c.root_ca.last_forced_rotation = Some(ca_config::force_rotate(&c.spec));
                if rotate_worker {
                    c.join_tokens.worker = swarmd_pki::generate_join_token(&c.root_ca.digest)
                        .map_err(SwarmError::internal)?;
                }
                if rotate_manager {
                    c.join_tokens.manager = swarmd_pki::generate_join_token(&c.root_ca.digest)
                        .map_err(SwarmError::internal)?;
                }
                c.unlock_key = autolock::next_unlock_key(
                    autolock::autolock_enabled(&c.spec),
                    &c.unlock_key,
                    rotate_unlock,
                );
                tx.update(c);
                Ok(())
            })
            .await
    }

    /// `service create`. Returns the ID and warnings.
    pub async fn create_service(&self, spec: ServiceSpec) -> ControlResult<(String, Vec<String>)> {
        let mut spec = validate_service_spec(spec).map_err(invalid)?;
        if spec.name.as_deref().unwrap_or("").is_empty() {
            spec.name = Some(names::random_name());
        }
        let id = ids::new_id();
        self.store
            .update(|t, tx| {
                let name = spec.name.clone().unwrap_or_default();
                if t.id_by_name(Kind::Service, &name).is_some() {
                    return Err(SwarmError::already_exists(format!(
                        "name conflicts with an existing object: service {name} already exists"
                    )));
                }
                secrets::check_references(t, &spec)?;
                let mut spec = spec.clone();
                networks::resolve_service_networks(t, &mut spec)?;
                let ports =
                    ports::allocate(t, &id, spec.endpoint_spec.as_ref()).map_err(invalid)?;
                let virtual_ips = networks::allocate_vips(t, &id, &spec)?;
                tx.create(Service {
                    id: id.clone(),
                    meta: Default::default(),
                    spec: spec.clone(),
                    previous_spec: None,
                    spec_version: 1,
                    endpoint: ServiceEndpoint {
                        spec: spec.endpoint_spec.clone(),
                        ports,
                        virtual_ips,
                    },
                    update_status: None,
                    job_iteration: 0,
                });
                Ok(())
            })
            .await?;
        Ok((id, vec![]))
    }

    /// `service update` (or `rollback=previous`).
    pub async fn update_service(
        &self,
        id: &str,
        version: u64,
        spec: ServiceSpec,
        rollback: bool,
    ) -> ControlResult<Vec<String>> {
        let new_spec = if rollback {
            None
        } else {
            Some(validate_service_spec(spec).map_err(invalid)?)
        };
        self.store
            .update(|t, tx| {
                let Some(cur) = t.services.get(id) else {
                    return Err(SwarmError::not_found("service", id));
                };
                if cur.meta.version != version {
                    return Err(SwarmError::out_of_sequence());
                }
                let mut spec = match &new_spec {
                    Some(s) => s.clone(),
                    None => cur.previous_spec.clone().ok_or_else(|| {
                        SwarmError::failed_precondition(format!(
                            "service {id} does not have a previous spec"
                        ))
                    })?,
                };
                if spec.name.as_deref().unwrap_or("").is_empty() {
                    spec.name = cur.spec.name.clone();
                }
                if spec.name != cur.spec.name {
                    return Err(SwarmError::unimplemented(
                        "renaming services is not supported",
                    ));
                }
                if validate::mode_kind(&spec) != validate::mode_kind(&cur.spec) {
                    // swarmkit's errModeChangeNotAllowed, answered as Unimplemented.
                    return Err(SwarmError::unimplemented(
                        "service mode change is not allowed",
                    ));
                }
                secrets::check_references(t, &spec)?;
                networks::resolve_service_networks(t, &mut spec)?;
                let ports = ports::allocate(t, id, spec.endpoint_spec.as_ref()).map_err(invalid)?;
                let virtual_ips = networks::allocate_vips(t, id, &spec)?;
                let mut svc = cur.clone();
                let redeploy =
                    spec.task_template != cur.spec.task_template || ports != cur.endpoint.ports;
                svc.previous_spec = Some(cur.spec.clone());
                svc.spec = spec;
                // Every update of a job runs it again (swarmkit's JobIteration).
                if validate::mode_kind(&svc.spec).ends_with("-job") {
                    svc.job_iteration += 1;
                }
                if redeploy {
                    svc.spec_version += 1;
                    // As swarmkit: a new update starts without a status (the CLI must not
                    // mistake the last update's "completed" for this one's); a rollback
                    // starts as rollback_started. The updater takes it from here.
                    svc.update_status = rollback.then(|| ServiceUpdateStatus {
                        state: Some(ServiceUpdateStatusStateEnum::ROLLBACK_STARTED),
                        started_at: Some(swarmd_types::timefmt::now()),
                        completed_at: None,
                        message: Some("manually requested rollback".into()),
                    });
                }
                svc.endpoint = ServiceEndpoint {
                    spec: svc.spec.endpoint_spec.clone(),
                    ports,
                    virtual_ips,
                };
                tx.update(svc);
                Ok(())
            })
            .await?;
        Ok(vec![])
    }

    /// `service rm`: the service goes at once; orchestrators shut its tasks down and the
    /// reaper deletes them.
    pub async fn remove_service(&self, id: &str) -> ControlResult<()> {
        self.store
            .update(|t, tx| {
                if !t.services.contains_key(id) {
                    return Err(SwarmError::not_found("service", id));
                }
                tx.remove(Kind::Service, id);
                Ok(())
            })
            .await
    }

    /// `node update`.
    pub async fn update_node(&self, id: &str, version: u64, spec: NodeSpec) -> ControlResult<()> {
        self.store
            .update(|t, tx| {
                let Some(cur) = t.nodes.get(id) else {
                    return Err(SwarmError::not_found("node", id));
                };
                if cur.meta.version != version {
                    return Err(SwarmError::out_of_sequence());
                }
                let managers = t.nodes.values().filter(|n| n.role == Role::Manager).count();
                if cur.role == Role::Manager
                    && spec.role == Some(NodeSpecRoleEnum::WORKER)
                    && managers <= 1
                {
                    return Err(SwarmError::failed_precondition(
                        "attempting to demote the last manager of the swarm",
                    ));
                }
                let mut n = cur.clone();
                n.spec = spec.clone();
                if n.spec.availability.is_none() {
                    n.spec.availability = cur.spec.availability;
                }
                if n.spec.role.is_none() {
                    n.spec.role = cur.spec.role;
                }
                tx.update(n);
                Ok(())
            })
            .await
    }

    /// `node rm`. Managers must be demoted first, as in Docker.
    pub async fn remove_node(&self, id: &str, force: bool) -> ControlResult<()> {
        self.store
            .update(|t, tx| {
                let Some(n) = t.nodes.get(id) else {
                    return Err(SwarmError::not_found("node", id));
                };
                if n.role == Role::Manager {
                    return Err(SwarmError::failed_precondition(format!(
                        "node {id} is a cluster manager and is a member of the raft cluster. It must be demoted to worker before removal"
                    )));
                }
                if !force && n.status.state != NodeState::Down {
                    return Err(SwarmError::failed_precondition(format!(
                        "node {id} is not down and can't be removed"
                    )));
                }
                tx.remove(Kind::Node, id);
                Ok(())
            })
            .await
    }
}
