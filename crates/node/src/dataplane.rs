//! The node's overlay data plane (docs/DESIGN.md §6), following the discovery table the
//! dispatcher sends on every session. For the docker executor's containers:
//!
//! - **DNS**: a server on the gateway of each overlay network this node has containers on
//!   (the containers' resolver, set by the executor) answers service names, `tasks.` names
//!   and aliases from the table (crates/dns) and forwards the rest to the host's resolvers.
//! - **VIPs**: inside each task container's network namespace, an nftables table DNATs the
//!   VIPs of the services on its networks to their running tasks (crates/netplane `vip`).
//! - **VXLAN**: each such network's bridge is linked to the machines of the other nodes
//!   with running tasks on it (machines other than this one: nodes sharing a machine share
//!   its engine's bridge already). ARP for the gateway (the same address on every
//!   machine's bridge) is kept off the VXLAN by a bridge-family nft table per network
//!   (crates/netplane `gwguard`), put in place before the device is linked.
//!
//! Level-triggered: every pass derives what should be from the table and the engine's
//! containers and converges to it. A pass runs on a table change, on a container's create
//! or start (engine events, so a new container gets its rules within milliseconds of its
//! start) and every few seconds anyway.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::{EventsOptions, ListContainersOptions};
use futures::StreamExt;
use swarmd_agent::exec::LABEL_NODE_ID;
use swarmd_agent::exec::overlay::{bridge_ifname, engine_network_name_of};
use swarmd_dns::{DnsServer, DnsTable, NetworkScope, ServiceRecord, Subnet};
use swarmd_netplane::vip::{VipRule, apply_in_netns, ruleset};
use swarmd_netplane::{Netplane, VxlanSpec, gwguard, vxlan_ifname};
use swarmd_types::dispatcher::{DiscoveryTable, SessionMessage};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How often a pass runs without any trigger (missed events, a failed apply).
const RESYNC: Duration = Duration::from_secs(5);
const DNS_PORT: u16 = 53;

/// The DNS table of a discovery table: names per network, and each task's networks (so a
/// container resolves the names of all its networks, whichever address it asks from).
pub fn dns_table(d: &DiscoveryTable) -> DnsTable {
    let networks = d
        .networks
        .iter()
        .filter_map(|n| {
            Some(NetworkScope {
                id: n.id.clone(),
                subnet: Subnet::parse(&n.subnet)?,
            })
        })
        .collect();
    let services: Vec<ServiceRecord> = d
        .endpoints
        .iter()
        .map(|e| ServiceRecord {
            network_id: e.network_id.clone(),
            name: e.service_name.clone(),
            aliases: e.aliases.clone(),
            vip: e.vip.as_deref().and_then(|v| v.parse().ok()),
            task_addrs: e.tasks.iter().filter_map(|t| t.addr.parse().ok()).collect(),
        })
        .collect();
    let mut tasks: BTreeMap<&str, Vec<(String, Ipv4Addr)>> = BTreeMap::new();
    for e in &d.endpoints {
        for t in &e.tasks {
            if let Ok(ip) = t.addr.parse() {
                tasks
                    .entry(&t.task_id)
                    .or_default()
                    .push((e.network_id.clone(), ip));
            }
        }
    }
    let tasks: Vec<_> = tasks.into_values().collect();
    DnsTable::build(networks, &services, &tasks)
}

/// The VIP rules of a container attached to `networks`: every VIP of a service on one of
/// them, with the service's running tasks on that network as backends.
pub fn vip_rules(d: &DiscoveryTable, networks: &BTreeSet<String>) -> Vec<VipRule> {
    let mut rules: Vec<VipRule> = d
        .endpoints
        .iter()
        .filter(|e| networks.contains(&e.network_id))
        .filter_map(|e| {
            Some(VipRule {
                vip: e.vip.as_deref()?.parse().ok()?,
                backends: e.tasks.iter().filter_map(|t| t.addr.parse().ok()).collect(),
            })
        })
        .collect();
    rules.sort();
    rules.dedup_by_key(|r| r.vip);
    rules
}

/// The machines this node's bridge of `network_id` must reach: the data-plane addresses of
/// the other nodes with running tasks on it, less those on this machine (`is_local`).
pub fn vxlan_peers(
    d: &DiscoveryTable,
    network_id: &str,
    node_id: &str,
    mut is_local: impl FnMut(Ipv4Addr) -> bool,
) -> BTreeSet<Ipv4Addr> {
    d.endpoints
        .iter()
        .filter(|e| e.network_id == network_id)
        .flat_map(|e| &e.tasks)
        .filter(|t| t.node_id != node_id)
        .filter_map(|t| t.node_addr.parse().ok())
        .filter(|ip| !is_local(*ip))
        .collect()
}

/// True when `ip` is an address of this machine (binding to it succeeds).
fn is_local_addr(ip: Ipv4Addr) -> bool {
    std::net::UdpSocket::bind((ip, 0)).is_ok()
}

/// A container of this node's tasks as the data plane sees it.
struct LocalContainer {
    id: String,
    running: bool,
    /// Overlay network IDs it is attached to.
    networks: BTreeSet<String>,
}

/// The data plane of one node; see the module doc.
pub struct DataPlane {
    node_id: String,
    node_addr: IpAddr,
    docker: Docker,
    dns_table: watch::Sender<Arc<DnsTable>>,
    /// Gateway → the DNS server bound there (cancel to stop it).
    dns_servers: BTreeMap<Ipv4Addr, CancellationToken>,
    upstreams: Vec<SocketAddr>,
    /// Container ID → the VIP script last applied in its namespace.
    applied: HashMap<String, String>,
    netplane: Option<Netplane>,
    /// VXLAN devices this node made (removed when no longer needed).
    vxlans: BTreeSet<String>,
    /// Gateway guards in force, by VXLAN device: (nft table, the script applied). A guard
    /// goes in before its device and out after it.
    guards: BTreeMap<String, (String, String)>,
    local: HashMap<Ipv4Addr, bool>,
    cancel: CancellationToken,
}

impl DataPlane {
    pub fn new(
        node_id: String,
        node_addr: IpAddr,
        docker: Docker,
        cancel: CancellationToken,
    ) -> DataPlane {
        let netplane = match Netplane::connect() {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::warn!(error = %e, "no netlink: overlay networks stay on this machine");
                None
            }
        };
        DataPlane {
            node_id,
            node_addr,
            docker,
            dns_table: watch::channel(Arc::default()).0,
            dns_servers: BTreeMap::new(),
            upstreams: Vec::new(),
            applied: HashMap::new(),
            netplane,
            vxlans: BTreeSet::new(),
            guards: BTreeMap::new(),
            local: HashMap::new(),
            cancel,
        }
    }

    /// Follows the sessions' discovery table until cancelled.
    pub async fn run(mut self, mut latest: watch::Receiver<Option<SessionMessage>>) {
        let mut table: Option<DiscoveryTable> = None;
        let mut events = self.engine_events();
        loop {
            if let Some(d) = latest
                .borrow_and_update()
                .as_ref()
                .and_then(|m| m.discovery.clone())
            {
                table = Some(d);
            }
            if let Some(d) = &table {
                self.pass(d).await;
            }
            tokio::select! {
                _ = self.cancel.cancelled() => break,
                r = latest.changed() => if r.is_err() { self.cancel.cancelled().await; break },
                ev = events.next() => if ev.is_none() {
                    // The engine went away or restarted: listen again after a pause.
                    tokio::time::sleep(RESYNC).await;
                    events = self.engine_events();
                },
                _ = tokio::time::sleep(RESYNC) => {}
            }
        }
        for (_, stop) in std::mem::take(&mut self.dns_servers) {
            stop.cancel();
        }
        // Leaving the swarm (or stopping): unlink this machine from the others.
        if let Some(np) = &self.netplane {
            for name in std::mem::take(&mut self.vxlans) {
                if let Err(e) = np.remove_link(&name).await {
                    tracing::warn!(device = %name, error = %e, "VXLAN removal failed");
                }
            }
            for (_, (table, _)) in std::mem::take(&mut self.guards) {
                if let Err(e) = gwguard::remove(&table).await {
                    tracing::warn!(%table, error = %e, "gateway guard removal failed");
                }
            }
        }
    }

    /// Create and start events of this node's task containers.
    fn engine_events(&self) -> futures::stream::BoxStream<'static, ()> {
        let filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            (
                "event".to_string(),
                vec!["create".to_string(), "start".to_string()],
            ),
            (
                "label".to_string(),
                vec![format!("{LABEL_NODE_ID}={}", self.node_id)],
            ),
        ]);
        self.docker
            .events(Some(EventsOptions {
                filters: Some(filters),
                ..Default::default()
            }))
            .take_while(|r| std::future::ready(r.is_ok()))
            .map(|_| ())
            .boxed()
    }

    /// One reconciliation of DNS, VIP rules and VXLAN links against `d`.
    async fn pass(&mut self, d: &DiscoveryTable) {
        let dns = Arc::new(dns_table(d));
        self.dns_table.send_if_modified(|cur| {
            if **cur == *dns {
                return false;
            }
            *cur = dns;
            true
        });
        let containers = match self.containers(d).await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "listing task containers failed; next pass retries");
                return;
            }
        };
        let used: BTreeSet<String> = containers
            .iter()
            .flat_map(|c| c.networks.iter().cloned())
            .collect();
        self.reconcile_dns(d, &used).await;
        self.reconcile_vips(d, &containers).await;
        self.reconcile_vxlan(d, &used).await;
    }

    /// This node's task containers (created or running) on overlay networks of `d`.
    async fn containers(
        &self,
        d: &DiscoveryTable,
    ) -> Result<Vec<LocalContainer>, bollard::errors::Error> {
        let engine_names: HashMap<String, &str> = d
            .networks
            .iter()
            .map(|n| (engine_network_name_of(&n.name, &n.id), n.id.as_str()))
            .collect();
        let list = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(HashMap::from([(
                    "label".to_string(),
                    vec![format!("{LABEL_NODE_ID}={}", self.node_id)],
                )])),
                ..Default::default()
            }))
            .await?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                let networks: BTreeSet<String> = c
                    .network_settings
                    .and_then(|s| s.networks)
                    .into_iter()
                    .flatten()
                    .filter_map(|(name, _)| engine_names.get(&name).map(|id| id.to_string()))
                    .collect();
                let state = c.state.map(|s| s.to_string()).unwrap_or_default();
                (!networks.is_empty()).then(|| LocalContainer {
                    id: c.id.unwrap_or_default(),
                    running: state == "running",
                    networks,
                })
            })
            .collect())
    }

    /// A DNS server on the gateway of each network in `used`; none elsewhere.
    async fn reconcile_dns(&mut self, d: &DiscoveryTable, used: &BTreeSet<String>) {
        let wanted: BTreeSet<Ipv4Addr> = d
            .networks
            .iter()
            .filter(|n| used.contains(&n.id))
            .filter_map(|n| n.gateway.parse().ok())
            .collect();
        self.dns_servers.retain(|gw, stop| {
            let keep = wanted.contains(gw);
            if !keep {
                stop.cancel();
                tracing::info!(gateway = %gw, "DNS server stopped");
            }
            keep
        });
        for gw in wanted {
            if self.dns_servers.contains_key(&gw) {
                continue;
            }
            if self.upstreams.is_empty() {
                let conf = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
                let ours: Vec<IpAddr> = d
                    .networks
                    .iter()
                    .filter_map(|n| n.gateway.parse().ok())
                    .collect();
                self.upstreams = swarmd_dns::upstreams_from_resolv_conf(&conf, &ours);
            }
            let stop = self.cancel.child_token();
            let addr = SocketAddr::new(IpAddr::V4(gw), DNS_PORT);
            match DnsServer::start(
                &[addr],
                self.dns_table.subscribe(),
                self.upstreams.clone(),
                stop.clone(),
            )
            .await
            {
                Ok(_) => {
                    tracing::info!(%addr, "DNS server listening");
                    self.dns_servers.insert(gw, stop);
                }
                Err(e) => tracing::warn!(error = %e, "DNS server not started; next pass retries"),
            }
        }
    }

    /// Each running container's VIP table made to match its networks' VIPs.
    async fn reconcile_vips(&mut self, d: &DiscoveryTable, containers: &[LocalContainer]) {
        let running: BTreeSet<&str> = containers
            .iter()
            .filter(|c| c.running)
            .map(|c| c.id.as_str())
            .collect();
        self.applied.retain(|id, _| running.contains(id.as_str()));
        for c in containers.iter().filter(|c| c.running) {
            let script = ruleset(&vip_rules(d, &c.networks));
            if self.applied.get(&c.id) == Some(&script) {
                continue;
            }
            let pid = match self.docker.inspect_container(&c.id, None).await {
                Ok(ins) => ins.state.and_then(|s| s.pid).unwrap_or(0),
                Err(e) => {
                    tracing::debug!(container = %c.id, error = %e, "inspect failed");
                    continue;
                }
            };
            if pid <= 0 {
                continue;
            }
            match apply_in_netns(pid as u32, &script).await {
                Ok(()) => {
                    tracing::debug!(container = %c.id, pid, "VIP rules applied");
                    self.applied.insert(c.id.clone(), script);
                }
                Err(e) => {
                    tracing::warn!(container = %c.id, error = %e, "VIP rules not applied; next pass retries")
                }
            }
        }
    }

    /// The gateway guard of network `network_id` on VXLAN device `device` (crates/netplane
    /// `gwguard`), applied when it changed. On failure the device is linked anyway: without
    /// the guard containers may use another machine's gateway (which still answers), where
    /// not linking would cut the network in pieces. The next pass retries.
    async fn ensure_guard(&mut self, network_id: &str, device: &str, gateway: &str) {
        let Ok(gateway) = gateway.parse::<Ipv4Addr>() else {
            tracing::warn!(network = %network_id, %gateway, "no IPv4 gateway to guard");
            return;
        };
        let table = gwguard::table_name(network_id);
        let script = gwguard::ruleset(&table, device, gateway);
        if self.guards.get(device).map(|(_, s)| s) == Some(&script) {
            return;
        }
        match gwguard::apply(&script).await {
            Ok(()) => {
                tracing::debug!(network = %network_id, %table, "gateway guard applied");
                self.guards.insert(device.to_string(), (table, script));
            }
            Err(e) => {
                tracing::warn!(network = %network_id, error = %e, "gateway guard not applied; next pass retries")
            }
        }
    }

    /// VXLAN links from each used network's bridge to the machines of its other tasks.
    async fn reconcile_vxlan(&mut self, d: &DiscoveryTable, used: &BTreeSet<String>) {
        let Some(np) = self.netplane.clone() else {
            return;
        };
        let IpAddr::V4(local) = self.node_addr else {
            return;
        };
        let mut wanted = BTreeSet::new();
        for n in d.networks.iter().filter(|n| used.contains(&n.id)) {
            let cache = &mut self.local;
            let peers = vxlan_peers(d, &n.id, &self.node_id, |ip| {
                *cache.entry(ip).or_insert_with(|| is_local_addr(ip))
            });
            if peers.is_empty() || n.vxlan_id == 0 {
                continue;
            }
            let spec = VxlanSpec {
                name: vxlan_ifname(&n.id),
                vni: n.vxlan_id,
                local,
                bridge: bridge_ifname(&n.id),
                port: match d.data_path_port {
                    0 => swarmd_netplane::VXLAN_PORT,
                    p => p,
                },
            };
            wanted.insert(spec.name.clone());
            // The guard first, so that no gateway ARP crosses while the device is new.
            self.ensure_guard(&n.id, &spec.name, &n.gateway).await;
            let linked = match np.ensure_vxlan(&spec).await {
                Ok(index) => np.set_flood_peers(index, &peers).await,
                Err(e) => Err(e),
            };
            match linked {
                Ok(()) => {
                    if self.vxlans.insert(spec.name.clone()) {
                        tracing::info!(network = %n.id, device = %spec.name, ?peers, "overlay linked to other machines");
                    }
                }
                Err(e) => {
                    tracing::warn!(network = %n.id, error = %e, "VXLAN link failed; next pass retries")
                }
            }
        }
        let stale: Vec<String> = self.vxlans.difference(&wanted).cloned().collect();
        for name in stale {
            match np.remove_link(&name).await {
                Ok(()) => {
                    self.vxlans.remove(&name);
                }
                Err(e) => tracing::warn!(device = %name, error = %e, "VXLAN removal failed"),
            }
        }
        // A guard goes once its device is gone (never while the device still links).
        let stale: Vec<(String, String)> = self
            .guards
            .iter()
            .filter(|(dev, _)| !wanted.contains(*dev) && !self.vxlans.contains(*dev))
            .map(|(dev, (table, _))| (dev.clone(), table.clone()))
            .collect();
        for (dev, table) in stale {
            match gwguard::remove(&table).await {
                Ok(()) => {
                    self.guards.remove(&dev);
                }
                Err(e) => tracing::warn!(%table, error = %e, "gateway guard removal failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmd_types::dispatcher::{DiscoveryNetwork, EndpointTask, ServiceEndpoint};

    fn task(id: &str, addr: &str, node: &str, node_addr: &str) -> EndpointTask {
        EndpointTask {
            task_id: id.into(),
            addr: addr.into(),
            node_id: node.into(),
            node_addr: node_addr.into(),
        }
    }

    fn table() -> DiscoveryTable {
        DiscoveryTable {
            networks: vec![
                DiscoveryNetwork {
                    id: "back".into(),
                    name: "back".into(),
                    subnet: "10.0.2.0/24".into(),
                    gateway: "10.0.2.1".into(),
                    vxlan_id: 4098,
                },
                DiscoveryNetwork {
                    id: "front".into(),
                    name: "front".into(),
                    subnet: "10.0.1.0/24".into(),
                    gateway: "10.0.1.1".into(),
                    vxlan_id: 4097,
                },
            ],
            endpoints: vec![
                ServiceEndpoint {
                    network_id: "back".into(),
                    service_id: "db".into(),
                    service_name: "db".into(),
                    aliases: vec![],
                    vip: None,
                    tasks: vec![task("d1", "10.0.2.9", "n3", "192.0.2.3")],
                },
                ServiceEndpoint {
                    network_id: "front".into(),
                    service_id: "api".into(),
                    service_name: "api".into(),
                    aliases: vec!["web".into()],
                    vip: Some("10.0.1.2".into()),
                    tasks: vec![
                        task("a1", "10.0.1.5", "n1", "192.0.2.1"),
                        task("a2", "10.0.1.6", "n2", "192.0.2.2"),
                    ],
                },
                ServiceEndpoint {
                    network_id: "front".into(),
                    service_id: "idle".into(),
                    service_name: "idle".into(),
                    aliases: vec![],
                    vip: Some("10.0.1.3".into()),
                    tasks: vec![],
                },
            ],
            data_path_port: 0,
        }
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn dns_answers_names_aliases_and_tasks_per_network() {
        let t = dns_table(&table());
        let on_front = IpAddr::V4(ip("10.0.1.5"));
        let on_back = IpAddr::V4(ip("10.0.2.9"));
        assert_eq!(
            t.lookup(on_front, "api"),
            Some(&swarmd_dns::Answer::Vip(ip("10.0.1.2")))
        );
        assert_eq!(
            t.lookup(on_front, "web."),
            Some(&swarmd_dns::Answer::Vip(ip("10.0.1.2")))
        );
        assert_eq!(
            t.lookup(on_front, "tasks.api"),
            Some(&swarmd_dns::Answer::Tasks(vec![
                ip("10.0.1.5"),
                ip("10.0.1.6")
            ]))
        );
        // dnsrr on back: task addresses; not visible from front.
        assert_eq!(
            t.lookup(on_back, "db"),
            Some(&swarmd_dns::Answer::Tasks(vec![ip("10.0.2.9")]))
        );
        assert_eq!(t.lookup(on_front, "db"), None);
        assert_eq!(t.lookup(on_back, "api"), None);
    }

    #[test]
    fn vip_rules_cover_the_containers_networks_only() {
        let d = table();
        let front = BTreeSet::from(["front".to_string()]);
        let rules = vip_rules(&d, &front);
        assert_eq!(
            rules,
            vec![
                VipRule {
                    vip: ip("10.0.1.2"),
                    backends: vec![ip("10.0.1.5"), ip("10.0.1.6")],
                },
                VipRule {
                    vip: ip("10.0.1.3"),
                    backends: vec![],
                },
            ]
        );
        // dnsrr services have no VIP.
        let back = BTreeSet::from(["back".to_string()]);
        assert!(vip_rules(&d, &back).is_empty());
    }

    #[test]
    fn vxlan_peers_are_other_machines_with_tasks_on_the_network() {
        let d = table();
        let peers = vxlan_peers(&d, "front", "n1", |_| false);
        assert_eq!(peers, BTreeSet::from([ip("192.0.2.2")]), "not itself");
        let peers = vxlan_peers(&d, "front", "n3", |a| a == ip("192.0.2.2"));
        assert_eq!(
            peers,
            BTreeSet::from([ip("192.0.2.1")]),
            "nodes on this machine share its bridge"
        );
        assert!(vxlan_peers(&d, "back", "n3", |_| false).is_empty());
    }
}
