//! Our stored objects → Docker's API objects (the daemon's `daemon/cluster/convert`).
//!
//! Rules that matter to clients: timestamps are RFC 3339 or absent (Go's `time.Time` fails to
//! decode `""`, which would break every CLI command); fields the Go types print without
//! `omitempty` are always present (`ForceUpdate`, `Endpoint.Spec`, `Status.PortStatus`);
//! `Slot` and `NodeID` are omitted when zero/empty, as Go does.

use std::collections::HashMap;

use swarmd_types::models::{
    self, ClusterInfo, Commit, EngineDescription, ManagerStatus, NodeDescription, ObjectVersion,
    PeerNode, Platform, PluginsInfo, PortStatus, Reachability, ResourceObject, ServiceEndpoint,
    ServiceEndpointVirtualIps, ServiceJobStatus, ServiceServiceStatus, SwarmInfo, SystemInfo,
    SystemVersion, SystemVersionComponents, SystemVersionPlatform, TaskState, TlsInfo,
};
use swarmd_types::{Cluster, Network, Node, NodeState, RootCa, Service, Task};

use crate::backend::{DaemonInfo, RaftView, SwarmStatus};
use crate::spec;
use crate::version::{API_VERSION, MIN_API_VERSION};

/// The version this daemon reports as `Server Version` / `Engine.Version`.
pub const SERVER_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "-swarmd");

/// An RFC 3339 timestamp, or nothing for an unset one.
pub fn opt_time(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

fn opt_string(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

fn version(index: u64) -> Option<ObjectVersion> {
    Some(ObjectVersion { index: Some(index) })
}

fn node_state(s: NodeState) -> models::NodeState {
    match s {
        NodeState::Unknown => models::NodeState::UNKNOWN,
        NodeState::Down => models::NodeState::DOWN,
        NodeState::Ready => models::NodeState::READY,
        NodeState::Disconnected => models::NodeState::DISCONNECTED,
    }
}

/// A node as `GET /nodes` shows it. `raft` gives the leader and, on the leader, which
/// managers Raft cannot reach; `tls` is the cluster's TLS info (Docker repeats it per node).
pub fn node_to_docker(node: &Node, raft: &RaftView, tls: Option<&TlsInfo>) -> models::Node {
    let leader = raft.leader.as_deref();
    let d = &node.description;
    models::Node {
        id: Some(node.id.clone()),
        version: version(node.meta.version),
        created_at: opt_time(&node.meta.created_at),
        updated_at: opt_time(&node.meta.updated_at),
        spec: Some(node.spec.clone()),
        description: Some(NodeDescription {
            hostname: Some(d.hostname.clone()),
            platform: Some(Platform {
                architecture: Some(d.architecture.clone()),
                os: Some(d.os.clone()),
            }),
            resources: Some(ResourceObject {
                nano_cpus: Some(d.nano_cpus),
                memory_bytes: Some(d.memory_bytes),
                generic_resources: None,
            }),
            engine: Some(EngineDescription {
                engine_version: Some(d.engine_version.clone()),
                labels: Some(d.engine_labels.clone()),
                plugins: Some(Vec::new()),
            }),
            // What the CA recorded when it issued the node's certificate; the swarm's
            // for a node not issued one since.
            tls_info: d.tls_info.clone().or_else(|| tls.cloned()),
        }),
        status: Some(models::NodeStatus {
            state: Some(node_state(node.status.state)),
            message: Some(node.status.message.clone()),
            addr: Some(node.status.addr.clone()),
        }),
        manager_status: node.manager.as_ref().map(|m| ManagerStatus {
            // Go's `Leader bool json:",omitempty"`: only the leader carries it.
            leader: (leader == Some(node.id.as_str())).then_some(true),
            reachability: Some(if manager_reachable(node, raft) {
                Reachability::REACHABLE
            } else {
                Reachability::UNREACHABLE
            }),
            addr: Some(m.addr.clone()),
        }),
    }
}

/// A manager is reachable if it leads, else as the leader's Raft sees it, else (on a
/// follower, which cannot tell) if its node is up.
fn manager_reachable(node: &Node, raft: &RaftView) -> bool {
    if raft.leader.as_deref() == Some(node.id.as_str()) {
        return true;
    }
    match &raft.unreachable {
        Some(set) => !set.contains(&node.id),
        None => node.status.state == NodeState::Ready,
    }
}

/// Docker's service object. bollard-stubs' `Service` lacks `PreviousSpec` (the daemon sends
/// it; `docker service inspect` and docker-py show it), so it is added here.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DockerService {
    #[serde(flatten)]
    pub service: models::Service,
    #[serde(rename = "PreviousSpec", skip_serializing_if = "Option::is_none")]
    pub previous_spec: Option<models::ServiceSpec>,
}

/// A service as `GET /services` shows it.
pub fn service_to_docker(
    svc: &Service,
    status: Option<ServiceServiceStatus>,
    insert_defaults: bool,
) -> DockerService {
    let mut spec = svc.spec.clone();
    if insert_defaults {
        spec::insert_service_defaults(&mut spec);
    }
    spec::ensure_force_update(&mut spec);
    let previous_spec = svc.previous_spec.clone().map(|mut p| {
        spec::ensure_force_update(&mut p);
        p
    });
    let endpoint = ServiceEndpoint {
        spec: Some(svc.endpoint.spec.clone().unwrap_or_default()),
        ports: (!svc.endpoint.ports.is_empty()).then(|| svc.endpoint.ports.clone()),
        virtual_ips: (!svc.endpoint.virtual_ips.is_empty()).then(|| {
            svc.endpoint
                .virtual_ips
                .iter()
                .map(|v| ServiceEndpointVirtualIps {
                    network_id: Some(v.network_id.clone()),
                    addr: Some(v.addr.clone()),
                })
                .collect()
        }),
    };
    let job_status = spec::is_job(&svc.spec).then(|| ServiceJobStatus {
        job_iteration: version(svc.job_iteration),
        last_execution: opt_time(&svc.meta.updated_at),
    });
    let service = models::Service {
        id: Some(svc.id.clone()),
        version: version(svc.meta.version),
        created_at: opt_time(&svc.meta.created_at),
        updated_at: opt_time(&svc.meta.updated_at),
        spec: Some(spec),
        endpoint: Some(endpoint),
        update_status: svc.update_status.clone().map(|mut u| {
            u.started_at = u.started_at.filter(|s| !s.is_empty());
            u.completed_at = u.completed_at.filter(|s| !s.is_empty());
            u
        }),
        service_status: status,
        job_status,
    };
    DockerService {
        service,
        previous_spec,
    }
}

/// swarmkit's `ListServiceStatuses` for one service: running tasks, desired tasks
/// (replicas, a job's MaxConcurrent, or for global modes the tasks meant to run), and for
/// jobs the tasks completed in the current iteration. `tasks` may hold other services'
/// tasks; they are skipped.
///
/// As in the daemon, a task on a node that is down does not count as running (its last
/// report may say running, but nobody can tell).
pub fn service_status(
    svc: &Service,
    tasks: &[Task],
    down_nodes: &std::collections::HashSet<String>,
) -> ServiceServiceStatus {
    let mode = svc.spec.mode.as_ref();
    let mut desired: u64 = match mode {
        Some(m) if m.replicated.is_some() => m
            .replicated
            .as_ref()
            .and_then(|r| r.replicas)
            .unwrap_or(1)
            .max(0) as u64,
        Some(m) if m.replicated_job.is_some() => m
            .replicated_job
            .as_ref()
            .and_then(|r| r.max_concurrent)
            .unwrap_or(1)
            .max(0) as u64,
        Some(m) if m.global.is_some() || m.global_job.is_some() => 0,
        _ => 1,
    };
    let global = spec::is_global(&svc.spec);
    let job = spec::is_job(&svc.spec);
    let mut running = 0u64;
    let mut completed = 0u64;
    for t in tasks.iter().filter(|t| t.service_id == svc.id) {
        if job {
            if t.job_iteration != Some(svc.job_iteration) {
                continue;
            }
            if t.status.state == TaskState::COMPLETE {
                completed += 1;
            }
        }
        if t.status.state == TaskState::RUNNING && !down_nodes.contains(&t.node_id) {
            running += 1;
        }
        if global && t.desired_state == TaskState::RUNNING {
            desired += 1;
        }
        if global && t.status.state != TaskState::COMPLETE && t.desired_state == TaskState::COMPLETE
        {
            desired += 1;
        }
    }
    ServiceServiceStatus {
        running_tasks: Some(running),
        desired_tasks: Some(desired),
        completed_tasks: Some(completed),
    }
}

/// A task as `GET /tasks` shows it.
pub fn task_to_docker(t: &Task) -> models::Task {
    let mut spec = (*t.spec).clone();
    spec::ensure_task_force_update(&mut spec);
    // The scheduler's reason for not placing a task is what Docker shows as the task's
    // error while it is pending ("no suitable node ...").
    let err = if t.status.err.is_empty() {
        &t.status.sched_err
    } else {
        &t.status.err
    };
    models::Task {
        id: Some(t.id.clone()),
        version: version(t.meta.version),
        created_at: opt_time(&t.meta.created_at),
        updated_at: opt_time(&t.meta.updated_at),
        name: None,
        labels: Some(HashMap::new()),
        spec: Some(spec),
        service_id: Some(t.service_id.clone()),
        slot: (t.slot > 0).then_some(t.slot as i64),
        node_id: opt_string(&t.node_id),
        assigned_generic_resources: None,
        status: Some(models::TaskStatus {
            timestamp: opt_time(&t.status.timestamp),
            state: Some(t.status.state),
            message: Some(t.status.message.clone()),
            err: opt_string(err),
            container_status: t.status.container.clone(),
            port_status: Some(t.status.ports.clone().unwrap_or(PortStatus { ports: None })),
        }),
        desired_state: Some(t.desired_state),
        job_iteration: t.job_iteration.and_then(version),
    }
}

/// Docker's task object with `NetworksAttachments`, which bollard-stubs' `Task` lacks.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DockerTask {
    #[serde(flatten)]
    pub task: models::Task,
    #[serde(rename = "NetworksAttachments", skip_serializing_if = "Vec::is_empty")]
    pub networks_attachments: Vec<serde_json::Value>,
}

/// A swarm network as the swarm API (`swarm.Network`) shows it inside a task.
pub fn swarm_network(n: &Network) -> serde_json::Value {
    let ipam = serde_json::json!({
        "Driver": {"Name": if n.ipam_driver.is_empty() { "default" } else { &n.ipam_driver }},
        "Configs": [{"Subnet": n.subnet, "Gateway": n.gateway}],
    });
    let mut spec = serde_json::json!({
        "Name": n.name,
        "Labels": n.labels,
        "DriverConfiguration": {"Name": n.driver},
        "Scope": "swarm",
        "IPAMOptions": ipam,
    });
    if let Some(o) = spec.as_object_mut() {
        for (k, v) in [
            ("Ingress", n.ingress),
            ("Attachable", n.attachable),
            ("Internal", n.internal),
        ] {
            if v {
                o.insert(k.into(), v.into());
            }
        }
    }
    serde_json::json!({
        "ID": n.id,
        "Version": {"Index": n.meta.version},
        "CreatedAt": opt_time(&n.meta.created_at),
        "UpdatedAt": opt_time(&n.meta.updated_at),
        "Spec": spec,
        "DriverState": {"Name": n.driver, "Options": n.options},
        "IPAMOptions": ipam,
    })
}

/// A task with its network attachments (`networks` are the swarm's networks).
pub fn task_with_networks(t: &Task, networks: &[Network]) -> DockerTask {
    DockerTask {
        task: task_to_docker(t),
        networks_attachments: t
            .networks
            .iter()
            .filter_map(|a| {
                let n = networks.iter().find(|n| n.id == a.network_id)?;
                Some(serde_json::json!({
                    "Network": swarm_network(n),
                    "Addresses": a.addresses,
                }))
            })
            .collect(),
    }
}

/// swarmkit's task name `service.slot.id` (`service.node.id` for global tasks), which the
/// `name` filter and name resolution match.
pub fn task_full_name(t: &Task) -> String {
    t.container_name()
}

/// The cluster's TLS info: the CA certificate and, from it, the issuer subject and public
/// key (DER, base64), which `docker swarm ca` and node TLS checks compare.
pub fn tls_info(root: &RootCa) -> TlsInfo {
    let (subject, public_key) = issuer_info(&root.cert_pem).unwrap_or_default();
    TlsInfo {
        trust_root: Some(root.cert_pem.clone()),
        cert_issuer_subject: Some(subject),
        cert_issuer_public_key: Some(public_key),
    }
}

/// Base64 of the raw subject and SubjectPublicKeyInfo of the first certificate in `pem`.
fn issuer_info(pem: &str) -> Option<(String, String)> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    let cert = pem.parse_x509().ok()?;
    Some((
        base64(cert.tbs_certificate.subject.as_raw()),
        base64(cert.tbs_certificate.subject_pki.raw),
    ))
}

/// Standard base64 with padding (Go's `encoding/json` encoding of `[]byte`).
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `GET /swarm`: the cluster with its join tokens.
pub fn cluster_to_swarm(c: &Cluster) -> models::Swarm {
    let info = cluster_to_info(c);
    models::Swarm {
        id: info.id,
        version: info.version,
        created_at: info.created_at,
        updated_at: info.updated_at,
        spec: info.spec,
        tls_info: info.tls_info,
        root_rotation_in_progress: info.root_rotation_in_progress,
        data_path_port: info.data_path_port,
        default_addr_pool: info.default_addr_pool,
        subnet_size: info.subnet_size,
        join_tokens: Some(models::JoinTokens {
            worker: Some(c.join_tokens.worker.clone()),
            manager: Some(c.join_tokens.manager.clone()),
        }),
    }
}

/// The swarm spec as `GET /swarm` and `/info` show it: never with the signing CA key (nor
/// its certificate), as moby's `SwarmFromGRPC` leaves both out. Control does not store
/// them; this keeps a read safe whatever an older store holds.
fn shown_swarm_spec(spec: &models::SwarmSpec) -> models::SwarmSpec {
    let mut spec = spec.clone();
    if let Some(ca) = spec.ca_config.as_mut() {
        ca.signing_ca_cert = None;
        ca.signing_ca_key = None;
    }
    spec
}

/// `/info`'s `Swarm.Cluster`: the cluster without join tokens.
pub fn cluster_to_info(c: &Cluster) -> ClusterInfo {
    ClusterInfo {
        id: Some(c.id.clone()),
        version: version(c.meta.version),
        created_at: opt_time(&c.meta.created_at),
        updated_at: opt_time(&c.meta.updated_at),
        spec: Some(shown_swarm_spec(&c.spec)),
        tls_info: Some(tls_info(&c.root_ca)),
        root_rotation_in_progress: Some(c.root_ca.root_rotation.is_some()),
        data_path_port: Some(c.data_path_port),
        default_addr_pool: Some(c.default_addr_pool.clone()),
        subnet_size: Some(c.subnet_size),
    }
}

/// `/info`'s `Swarm` section.
pub fn swarm_info(s: &SwarmStatus) -> SwarmInfo {
    SwarmInfo {
        node_id: Some(s.node_id.clone()),
        node_addr: Some(s.node_addr.clone()),
        local_node_state: Some(s.local_node_state),
        control_available: Some(s.control_available),
        error: Some(s.error.clone()),
        remote_managers: Some(
            s.remote_managers
                .iter()
                .map(|(node_id, addr)| PeerNode {
                    node_id: Some(node_id.clone()),
                    addr: Some(addr.clone()),
                })
                .collect(),
        ),
        nodes: Some(s.nodes as i64),
        managers: Some(s.managers as i64),
        cluster: s.cluster.as_ref().map(cluster_to_info),
    }
}

/// `GET /info`.
pub fn system_info(d: &DaemonInfo, s: &SwarmStatus, system_time: String) -> SystemInfo {
    SystemInfo {
        id: Some(d.daemon_id.clone()),
        containers: Some(d.containers_running + d.containers_stopped),
        containers_running: Some(d.containers_running),
        containers_paused: Some(0),
        containers_stopped: Some(d.containers_stopped),
        images: Some(0),
        driver: Some(format!("swarmd-{}", d.executor)),
        driver_status: Some(Vec::new()),
        docker_root_dir: Some(d.data_root.clone()),
        plugins: Some(PluginsInfo {
            volume: Some(vec!["local".into()]),
            network: Some(vec!["bridge".into(), "host".into(), "overlay".into()]),
            authorization: None,
            log: Some(vec!["json-file".into()]),
        }),
        memory_limit: Some(true),
        swap_limit: Some(false),
        cpu_cfs_period: Some(true),
        cpu_cfs_quota: Some(true),
        cpu_shares: Some(true),
        cpu_set: Some(true),
        pids_limit: Some(true),
        oom_kill_disable: Some(false),
        ipv4_forwarding: Some(true),
        debug: Some(false),
        nfd: Some(0),
        n_goroutines: Some(0),
        system_time: Some(system_time),
        logging_driver: Some("json-file".into()),
        n_events_listener: Some(0),
        kernel_version: Some(d.kernel_version.clone()),
        operating_system: Some(d.os.clone()),
        os_version: Some(String::new()),
        os_type: Some("linux".into()),
        architecture: Some(d.arch.clone()),
        ncpu: Some(d.ncpu),
        mem_total: Some(d.mem_total),
        index_server_address: Some("https://index.docker.io/v1/".into()),
        name: Some(d.name.clone()),
        labels: Some(d.labels.clone()),
        experimental_build: Some(false),
        server_version: Some(SERVER_VERSION.into()),
        default_runtime: Some("runc".into()),
        swarm: Some(swarm_info(s)),
        live_restore_enabled: Some(false),
        init_binary: Some(String::new()),
        containerd_commit: Some(Commit {
            id: Some(String::new()),
        }),
        runc_commit: Some(Commit {
            id: Some(String::new()),
        }),
        init_commit: Some(Commit {
            id: Some(String::new()),
        }),
        security_options: Some(Vec::new()),
        warnings: Some(Vec::new()),
        ..Default::default()
    }
}

/// The architecture as Go names it (`runtime.GOARCH`), which is what the daemon's
/// `/version` reports (`docker version` shows `linux/amd64`); `/info` keeps the kernel's
/// name (`x86_64`), as Docker does.
fn go_arch(arch: &str) -> &str {
    match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" | "i386" | "i686" => "386",
        "armv7l" | "armv6l" | "arm" => "arm",
        "powerpc64le" | "ppc64le" => "ppc64le",
        "riscv64gc" => "riscv64",
        a => a,
    }
}

/// `GET /version`.
pub fn system_version(d: &DaemonInfo) -> SystemVersion {
    let arch = go_arch(&d.arch);
    let details: HashMap<String, String> = [
        ("ApiVersion", API_VERSION),
        ("MinAPIVersion", MIN_API_VERSION),
        ("Arch", arch),
        ("Os", "linux"),
        ("KernelVersion", d.kernel_version.as_str()),
        ("Experimental", "false"),
        ("GitCommit", ""),
        ("GoVersion", "n/a (rust)"),
        ("BuildTime", ""),
        ("Executor", d.executor.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut components = vec![SystemVersionComponents {
        name: "Engine".into(),
        version: SERVER_VERSION.into(),
        details: Some(details),
    }];
    if let Some(engine) = &d.engine_version {
        components.push(SystemVersionComponents {
            name: "Docker Engine (executor)".into(),
            version: engine.clone(),
            details: None,
        });
    }
    SystemVersion {
        platform: Some(SystemVersionPlatform {
            name: "swarmd".into(),
        }),
        components: Some(components),
        version: Some(SERVER_VERSION.into()),
        api_version: Some(API_VERSION.into()),
        min_api_version: Some(MIN_API_VERSION.into()),
        git_commit: Some(String::new()),
        go_version: Some("n/a (rust)".into()),
        os: Some("linux".into()),
        arch: Some(arch.to_string()),
        kernel_version: Some(d.kernel_version.clone()),
        experimental: None,
        build_time: Some(String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use swarmd_types::models::{
        EndpointPortConfig, NodeSpec, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated,
        TaskSpec,
    };
    use swarmd_types::{ManagerInfo, Meta, NodeDescription as OurDesc, Role, TaskStatus};

    fn meta(v: u64) -> Meta {
        Meta {
            version: v,
            created_at: "2025-01-02T03:04:05.123456789Z".into(),
            updated_at: "2025-01-02T03:04:06Z".into(),
        }
    }

    pub(crate) fn sample_node(id: &str, host: &str, manager: bool) -> Node {
        Node {
            id: id.into(),
            meta: meta(3),
            spec: serde_json::from_value(json!({"Role": if manager {"manager"} else {"worker"}, "Availability": "active", "Labels": {}})).unwrap(),
            description: OurDesc {
                hostname: host.into(),
                os: "linux".into(),
                architecture: "x86_64".into(),
                nano_cpus: 2_000_000_000,
                memory_bytes: 1 << 30,
                engine_version: "28.2.2".into(),
                engine_labels: HashMap::new(),
                executor: "process".into(),
                tls_info: None,
            },
            status: swarmd_types::NodeStatus {
                state: NodeState::Ready,
                message: String::new(),
                addr: "127.0.0.2".into(),
            },
            manager: manager.then(|| ManagerInfo {
                raft_id: 1,
                addr: "127.0.0.2:2377".into(),
            }),
            role: if manager { Role::Manager } else { Role::Worker },
        }
    }

    #[test]
    fn node_shape() {
        let n = sample_node("n1", "host1", true);
        let raft = RaftView {
            leader: Some("n1".into()),
            unreachable: None,
        };
        let v = serde_json::to_value(node_to_docker(&n, &raft, None)).unwrap();
        assert_eq!(v["ID"], "n1");
        assert_eq!(v["Version"]["Index"], 3);
        assert_eq!(v["CreatedAt"], "2025-01-02T03:04:05.123456789Z");
        assert_eq!(v["Spec"]["Role"], "manager");
        assert_eq!(v["Description"]["Hostname"], "host1");
        assert_eq!(v["Description"]["Platform"]["OS"], "linux");
        assert_eq!(v["Description"]["Resources"]["NanoCPUs"], 2_000_000_000i64);
        assert_eq!(v["Description"]["Engine"]["EngineVersion"], "28.2.2");
        assert_eq!(v["Status"]["State"], "ready");
        assert_eq!(v["Status"]["Addr"], "127.0.0.2");
        assert_eq!(v["ManagerStatus"]["Leader"], true);
        assert_eq!(v["ManagerStatus"]["Reachability"], "reachable");
        assert_eq!(v["ManagerStatus"]["Addr"], "127.0.0.2:2377");

        let w = sample_node("n2", "host2", false);
        let v = serde_json::to_value(node_to_docker(&w, &raft, None)).unwrap();
        assert!(v.get("ManagerStatus").is_none());
        let mut m = sample_node("n3", "host3", true);
        m.meta.created_at.clear();
        let v = serde_json::to_value(node_to_docker(&m, &raft, None)).unwrap();
        assert!(v["ManagerStatus"].get("Leader").is_none());
        assert!(v.get("CreatedAt").is_none(), "empty timestamps are omitted");
    }

    #[test]
    fn manager_reachability_follows_the_leaders_raft_view() {
        let mut m = sample_node("n3", "host3", true);
        let reach = |m: &Node, raft: &RaftView| {
            serde_json::to_value(node_to_docker(m, raft, None)).unwrap()["ManagerStatus"]
                ["Reachability"]
                .as_str()
                .unwrap()
                .to_string()
        };
        // On the leader, Raft decides, whatever the node's heartbeat says.
        let cut = RaftView {
            leader: Some("n1".into()),
            unreachable: Some(["n3".to_string()].into()),
        };
        assert_eq!(reach(&m, &cut), "unreachable");
        let fine = RaftView {
            leader: Some("n1".into()),
            unreachable: Some(Default::default()),
        };
        m.status.state = NodeState::Down;
        assert_eq!(reach(&m, &fine), "reachable");
        // On a follower, the node's state stands in.
        let follower = RaftView {
            leader: Some("n1".into()),
            unreachable: None,
        };
        assert_eq!(reach(&m, &follower), "unreachable");
        m.status.state = NodeState::Ready;
        assert_eq!(reach(&m, &follower), "reachable");
    }

    pub(crate) fn sample_service(id: &str, name: &str, replicas: i64) -> Service {
        Service {
            id: id.into(),
            meta: meta(10),
            spec: ServiceSpec {
                name: Some(name.into()),
                labels: Some([("x".to_string(), "y".to_string())].into_iter().collect()),
                task_template: Some(TaskSpec {
                    container_spec: Some(swarmd_types::models::TaskSpecContainerSpec {
                        image: Some("busybox:latest".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                mode: Some(ServiceSpecMode {
                    replicated: Some(ServiceSpecModeReplicated {
                        replicas: Some(replicas),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
            spec_version: 1,
            ..Default::default()
        }
    }

    pub(crate) fn sample_task(
        id: &str,
        svc: &Service,
        slot: u64,
        node: &str,
        state: TaskState,
    ) -> Task {
        Task {
            id: id.into(),
            meta: meta(12),
            service_id: svc.id.clone(),
            service_name: svc.spec.name.clone().unwrap_or_default(),
            slot,
            node_id: node.into(),
            spec: svc.spec.task_template.clone().unwrap_or_default().into(),
            spec_version: svc.spec_version,
            service_labels: svc.spec.labels.clone().unwrap_or_default(),
            desired_state: TaskState::RUNNING,
            status: TaskStatus {
                state,
                timestamp: "2025-01-02T03:04:07Z".into(),
                message: "started".into(),
                ..Default::default()
            },
            endpoint_ports: Vec::new(),
            job_iteration: None,
            networks: Vec::new(),
            log_driver: None,
        }
    }

    #[test]
    fn service_shape() {
        let mut s = sample_service("s1", "web", 3);
        s.endpoint.ports = vec![EndpointPortConfig {
            target_port: Some(80),
            published_port: Some(8080),
            ..Default::default()
        }];
        let v = serde_json::to_value(service_to_docker(&s, None, false)).unwrap();
        assert_eq!(v["ID"], "s1");
        assert_eq!(v["Version"]["Index"], 10);
        assert_eq!(v["Spec"]["Name"], "web");
        assert_eq!(v["Spec"]["Mode"]["Replicated"]["Replicas"], 3);
        assert_eq!(v["Spec"]["TaskTemplate"]["ForceUpdate"], 0);
        assert_eq!(v["Endpoint"]["Spec"], json!({}));
        assert_eq!(v["Endpoint"]["Ports"][0]["PublishedPort"], 8080);
        assert!(v.get("UpdateStatus").is_none());
        assert!(v.get("ServiceStatus").is_none());
        assert!(v.get("JobStatus").is_none());
        assert!(v.get("PreviousSpec").is_none());

        let v = serde_json::to_value(service_to_docker(&s, None, true)).unwrap();
        assert_eq!(v["Spec"]["UpdateConfig"]["Parallelism"], 1);
        assert_eq!(
            v["Spec"]["TaskTemplate"]["RestartPolicy"]["Condition"],
            "any"
        );
    }

    #[test]
    fn service_status_counts_like_swarmkit() {
        let s = sample_service("s1", "web", 3);
        let other = sample_service("s2", "db", 1);
        let tasks = vec![
            sample_task("t1", &s, 1, "n1", TaskState::RUNNING),
            sample_task("t2", &s, 2, "n1", TaskState::PREPARING),
            sample_task("t3", &other, 1, "n1", TaskState::RUNNING),
        ];
        let none = Default::default();
        let st = service_status(&s, &tasks, &none);
        assert_eq!(st.running_tasks, Some(1));
        assert_eq!(st.desired_tasks, Some(3));
        assert_eq!(st.completed_tasks, Some(0));
        // A running task on a down node does not count.
        let down = std::collections::HashSet::from(["n1".to_string()]);
        assert_eq!(service_status(&s, &tasks, &down).running_tasks, Some(0));

        let mut g = sample_service("g1", "mon", 0);
        g.spec.mode = Some(ServiceSpecMode {
            global: Some(HashMap::new()),
            ..Default::default()
        });
        let mut shut = sample_task("t5", &g, 0, "n2", TaskState::SHUTDOWN);
        shut.desired_state = TaskState::SHUTDOWN;
        let tasks = vec![sample_task("t4", &g, 0, "n1", TaskState::RUNNING), shut];
        let st = service_status(&g, &tasks, &none);
        assert_eq!((st.running_tasks, st.desired_tasks), (Some(1), Some(1)));
    }

    #[test]
    fn task_shape() {
        let s = sample_service("s1", "web", 1);
        let mut t = sample_task("t1", &s, 1, "n1", TaskState::RUNNING);
        t.status.sched_err = "no suitable node".into();
        let v = serde_json::to_value(task_to_docker(&t)).unwrap();
        assert_eq!(v["ID"], "t1");
        assert_eq!(v["ServiceID"], "s1");
        assert_eq!(v["Slot"], 1);
        assert_eq!(v["NodeID"], "n1");
        assert_eq!(v["Status"]["State"], "running");
        assert_eq!(v["Status"]["Timestamp"], "2025-01-02T03:04:07Z");
        assert_eq!(v["Status"]["Err"], "no suitable node");
        assert_eq!(v["Status"]["PortStatus"], json!({}));
        assert_eq!(v["DesiredState"], "running");
        assert_eq!(v["Spec"]["ForceUpdate"], 0);
        assert_eq!(v["Labels"], json!({}));

        let mut g = sample_task("t2", &s, 0, "", TaskState::PENDING);
        g.status.timestamp.clear();
        let v = serde_json::to_value(task_to_docker(&g)).unwrap();
        assert!(v.get("Slot").is_none());
        assert!(v.get("NodeID").is_none());
        assert!(v["Status"].get("Timestamp").is_none());
        assert!(v["Status"].get("Err").is_none());
    }

    /// A swarm-ca certificate made with openssl; the expected values are the DER subject
    /// and SubjectPublicKeyInfo, base64 (from `openssl asn1parse` / `openssl pkey`).
    const CA_PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIBfjCCASOgAwIBAgIUWRl5UjX4WjRl9LiqW+e3x/qvov8wCgYIKoZIzj0EAwIw\nEzERMA8GA1UEAwwIc3dhcm0tY2EwIBcNMjYxMTIzMDUyNTE1WhgPMjEyNjEwMzAw\nNTI1MTVaMBMxETAPBgNVBAMMCHN3YXJtLWNhMFkwEwYHKoZIzj0CAQYIKoZIzj0D\nAQcDQgAEVIUdlDsUT3ZiSDEme8GKG3ZK+hzjYeW4biBX1SQwEnvXvPCevL9NVZB5\ndvLLeTYJxHB3c+A3H/++EgkmFv4cFKNTMFEwHQYDVR0OBBYEFA6xOGX+mnZCQvjo\n1bjOISPyeKLRMB8GA1UdIwQYMBaAFA6xOGX+mnZCQvjo1bjOISPyeKLRMA8GA1Ud\nEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSQAwRgIhAMXc4uJ4rqLvvKgH437Jsz/i\nCfFVWibNrhvaxbNzC1yqAiEA0lmqaFetyY7ZFk/JY+a0ePc3Wdbc1jfBjY1vvRWv\nz00=\n-----END CERTIFICATE-----\n";

    #[test]
    fn tls_info_from_the_ca_certificate() {
        let tls = tls_info(&RootCa {
            cert_pem: CA_PEM.into(),
            ..Default::default()
        });
        assert_eq!(tls.trust_root.as_deref(), Some(CA_PEM));
        assert_eq!(
            tls.cert_issuer_subject.as_deref(),
            Some("MBMxETAPBgNVBAMMCHN3YXJtLWNh")
        );
        assert_eq!(
            tls.cert_issuer_public_key.as_deref(),
            Some(
                "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEVIUdlDsUT3ZiSDEme8GKG3ZK+hzjYeW4biBX1SQwEnvXvPCevL9NVZB5dvLLeTYJxHB3c+A3H/++EgkmFv4cFA=="
            )
        );
    }

    #[test]
    fn swarm_and_info_never_show_the_signing_ca_key() {
        let mut c = Cluster {
            spec: serde_json::from_value(json!({
                "Name": "default",
                "CAConfig": {"SigningCACert": "CERT", "SigningCAKey": "SECRET-KEY", "ForceRotate": 3}
            }))
            .unwrap(),
            ..Default::default()
        };
        c.root_ca.key_pem = "ROOT-KEY".into();
        for shown in [
            serde_json::to_string(&cluster_to_swarm(&c)).unwrap(),
            serde_json::to_string(&cluster_to_info(&c)).unwrap(),
        ] {
            assert!(
                !shown.contains("SECRET-KEY") && !shown.contains("SigningCAKey"),
                "{shown}"
            );
            assert!(
                !shown.contains("ROOT-KEY") && !shown.contains("SigningCACert"),
                "{shown}"
            );
            assert!(shown.contains(r#""ForceRotate":3"#), "{shown}");
        }
        assert!(
            !format!("{c:?}").contains("ROOT-KEY"),
            "the key in a Debug line"
        );
    }

    #[test]
    fn base64_matches_known_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(&[0xff, 0xfe, 0xfd, 0x00]), "//79AA==");
    }

    #[test]
    fn swarm_shape_without_parsable_ca() {
        let c = Cluster {
            id: "c1".into(),
            meta: meta(2),
            spec: serde_json::from_value(json!({"Name": "default"})).unwrap(),
            root_ca: RootCa {
                cert_pem: "not a cert".into(),
                ..Default::default()
            },
            join_tokens: swarmd_types::JoinTokens {
                worker: "SWMTKN-1-w".into(),
                manager: "SWMTKN-1-m".into(),
            },
            default_addr_pool: vec!["10.0.0.0/8".into()],
            subnet_size: 24,
            data_path_port: 4789,
            unlock_key: "SWMKEY-1-neverinspected".into(),
        };
        let v = serde_json::to_value(cluster_to_swarm(&c)).unwrap();
        assert!(
            !v.to_string().contains("neverinspected"),
            "unlock key shown"
        );
        assert_eq!(v["ID"], "c1");
        assert_eq!(v["JoinTokens"]["Worker"], "SWMTKN-1-w");
        assert_eq!(v["TLSInfo"]["TrustRoot"], "not a cert");
        assert_eq!(v["TLSInfo"]["CertIssuerSubject"], "");
        assert_eq!(v["DataPathPort"], 4789);
        assert_eq!(v["SubnetSize"], 24);
        let _ = NodeSpec::default();
    }
}
