//! Swarm networks (swarmkit's controlapi `network.go`), the `ingress` network made at
//! `swarm init`, services' network references and their virtual IPs.
//!
//! Subnets and VIPs are allocated with the write that needs them (one store transaction),
//! so an overlapping `--subnet` or a full network is refused at the API, and two writers can
//! never take one address: the second proposal conflicts on the store's versions.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

use swarmd_store::Tables;
use swarmd_types::error::SwarmError;
use swarmd_types::models::{
    EndpointPortConfigPublishModeEnum as PubMode, EndpointSpecModeEnum, ServiceSpec,
};
use swarmd_types::{AttachedNetwork, Kind, Network, VirtualIp, ids, is_terminal};

use super::{Control, ControlResult, invalid};
use crate::ipam::{self, Cidr};

/// Docker's option key for an overlay network's VXLAN ID.
pub const VXLAN_OPTION: &str = "com.docker.network.driver.overlay.vxlanid_list";
/// The first VXLAN ID Docker hands out (ingress gets it).
const FIRST_VXLAN: u32 = 4096;
/// Names Docker reserves for its predefined networks.
const PREDEFINED: &[&str] = &["bridge", "host", "none", "default", "docker_gwbridge"];

/// The cluster's default address pools (`10.0.0.0/8`) and subnet size (24).
fn pools(t: &Tables) -> (Vec<Cidr>, u8) {
    let (pool, size) = t
        .cluster()
        .map(|c| (c.default_addr_pool.clone(), c.subnet_size))
        .unwrap_or_default();
    let mut pools: Vec<Cidr> = pool.iter().filter_map(|p| Cidr::parse(p)).collect();
    if pools.is_empty() {
        pools.push(Cidr {
            base: 10 << 24,
            len: 8,
        });
    }
    let size = if size == 0 || size > 32 {
        24
    } else {
        size as u8
    };
    (pools, size)
}

fn next_vxlan(t: &Tables) -> u32 {
    let used: BTreeSet<u32> = t
        .networks
        .values()
        .filter_map(|n| n.options.get(VXLAN_OPTION)?.parse().ok())
        .collect();
    (FIRST_VXLAN..)
        .find(|v| !used.contains(v))
        .unwrap_or(FIRST_VXLAN)
}

/// The `ingress` network as Docker makes it at `swarm init`: the pool's first subnet.
pub fn ingress_network(pool: &[String], subnet_size: u32) -> Network {
    let pools: Vec<Cidr> = pool.iter().filter_map(|p| Cidr::parse(p)).collect();
    let pools = if pools.is_empty() {
        vec![Cidr {
            base: 10 << 24,
            len: 8,
        }]
    } else {
        pools
    };
    let size = if subnet_size == 0 || subnet_size > 32 {
        24
    } else {
        subnet_size as u8
    };
    let subnet = ipam::pick_subnet(&pools, size, &[]).unwrap_or(pools[0]);
    Network {
        id: ids::new_id(),
        meta: Default::default(),
        name: "ingress".into(),
        driver: "overlay".into(),
        labels: HashMap::new(),
        attachable: false,
        ingress: true,
        internal: false,
        subnet: subnet.to_string(),
        gateway: subnet.first_host().to_string(),
        ip_range: String::new(),
        options: HashMap::from([(VXLAN_OPTION.to_string(), FIRST_VXLAN.to_string())]),
        ipam_driver: "default".into(),
        ipam_options: HashMap::new(),
    }
}

/// swarmkit's `validateIPAMConfiguration` (IPv4 only here), then the subnet: the given one
/// unless it overlaps a swarm network, else the pool's first subnet free of swarm networks
/// and of `local_subnets` (the engine's own networks).
pub fn plan_network(
    t: &Tables,
    mut n: Network,
    local_subnets: &[String],
) -> ControlResult<Network> {
    if n.name.is_empty() {
        return Err(invalid("meta: name must be provided"));
    }
    if PREDEFINED.contains(&n.name.as_str()) {
        return Err(SwarmError::forbidden(format!(
            "{} is a pre-defined network and cannot be created",
            n.name
        )));
    }
    if n.driver.is_empty() {
        n.driver = "overlay".into();
    }
    if n.ipam_driver.is_empty() {
        n.ipam_driver = "default".into();
    }
    if n.ipam_driver != "default" {
        return Err(invalid(format!(
            "ipam driver {} is not supported: swarmd has only the default IPAM driver",
            n.ipam_driver
        )));
    }
    if n.ingress
        && let Some(cur) = t.networks.values().find(|x| x.ingress)
    {
        return Err(SwarmError::already_exists(format!(
            "ingress network ({}) is already present",
            cur.id
        )));
    }
    let swarm_subnets: Vec<Cidr> = t
        .networks
        .values()
        .filter_map(|x| Cidr::parse(&x.subnet))
        .collect();
    let subnet = if n.subnet.is_empty() {
        if !n.gateway.is_empty() || !n.ip_range.is_empty() {
            return Err(invalid(
                "ipam configuration: gateway or range given without a subnet",
            ));
        }
        let (pools, size) = pools(t);
        let mut used = swarm_subnets.clone();
        used.extend(local_subnets.iter().filter_map(|s| Cidr::parse(s)));
        ipam::pick_subnet(&pools, size, &used).ok_or_else(|| {
            invalid("could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network")
        })?
    } else {
        let s = Cidr::parse(&n.subnet)
            .ok_or_else(|| invalid(format!("invalid subnet {}", n.subnet)))?;
        if swarm_subnets.iter().any(|u| u.overlaps(s)) {
            return Err(SwarmError::forbidden(
                "invalid pool request: Pool overlaps with other one on this address space",
            ));
        }
        s
    };
    if !n.ip_range.is_empty() {
        let r = Cidr::parse(&n.ip_range)
            .ok_or_else(|| invalid(format!("invalid range {}", n.ip_range)))?;
        if !subnet.contains(Ipv4Addr::from(r.base)) {
            return Err(invalid(format!(
                "subnet {} does not contain range {}",
                n.subnet, n.ip_range
            )));
        }
        n.ip_range = r.to_string();
    }
    if n.gateway.is_empty() {
        n.gateway = subnet.first_host().to_string();
    } else {
        let gw: Ipv4Addr = n
            .gateway
            .parse()
            .map_err(|_| invalid(format!("invalid gateway {}", n.gateway)))?;
        if !subnet.contains(gw) {
            return Err(invalid(format!(
                "subnet {} does not contain gateway {}",
                n.subnet, n.gateway
            )));
        }
    }
    n.subnet = subnet.to_string();
    n.options
        .insert(VXLAN_OPTION.to_string(), next_vxlan(t).to_string());
    Ok(n)
}

/// Addresses taken on `network`: its gateway, every service VIP on it, and the attachment of
/// every task that is not terminal yet.
pub fn used_addresses(t: &Tables, network: &Network) -> BTreeSet<u32> {
    let mut used = BTreeSet::new();
    if let Ok(gw) = network.gateway.parse::<Ipv4Addr>() {
        used.insert(u32::from(gw));
    }
    for s in t.services.values() {
        for v in s
            .endpoint
            .virtual_ips
            .iter()
            .filter(|v| v.network_id == network.id)
        {
            if let Some(a) = Cidr::parse_addr(&v.addr) {
                used.insert(u32::from(a));
            }
        }
    }
    for task in t.tasks.values().filter(|x| !is_terminal(x.status.state)) {
        for att in task.networks.iter().filter(|a| a.network_id == network.id) {
            used.extend(
                att.addresses
                    .iter()
                    .filter_map(|a| Cidr::parse_addr(a))
                    .map(u32::from),
            );
        }
    }
    used
}

/// The next free address of `network` as `a.b.c.d/len`, marking it used.
pub fn take_address(network: &Network, used: &mut BTreeSet<u32>) -> Option<String> {
    let subnet = Cidr::parse(&network.subnet)?;
    let range = Cidr::parse(&network.ip_range);
    let a = ipam::next_address(subnet, range, used)?;
    used.insert(u32::from(a));
    Some(format!("{a}/{}", subnet.len))
}

/// Whether the service publishes a port through the routing mesh (and so joins ingress).
pub fn needs_ingress(spec: &ServiceSpec) -> bool {
    spec.endpoint_spec
        .as_ref()
        .and_then(|e| e.ports.as_ref())
        .is_some_and(|ports| {
            ports.iter().any(|p| {
                matches!(
                    p.publish_mode,
                    None | Some(PubMode::EMPTY) | Some(PubMode::INGRESS)
                )
            })
        })
}

fn is_dnsrr(spec: &ServiceSpec) -> bool {
    spec.endpoint_spec
        .as_ref()
        .and_then(|e| e.mode)
        .is_some_and(|m| m == EndpointSpecModeEnum::DNSRR)
}

/// The daemon's `populateNetworkID` and swarmkit's checks on a service's networks: each
/// target (ID, name or unique ID prefix) becomes the network's ID; unknown networks are
/// refused with Docker's "network X not found", the ingress network may not be named, a
/// network may be named once, and dnsrr services cannot publish ingress ports.
pub fn resolve_service_networks(t: &Tables, spec: &mut ServiceSpec) -> ControlResult<()> {
    if is_dnsrr(spec) && needs_ingress(spec) {
        return Err(invalid(
            "EndpointSpec: port published with ingress mode can't be used with dnsrr mode",
        ));
    }
    // The deprecated top-level `Networks` moves into the task template, as the daemon does.
    #[allow(deprecated)]
    let legacy = spec.networks.take();
    let tt = spec.task_template.get_or_insert_with(Default::default);
    if tt.networks.as_ref().is_none_or(|n| n.is_empty())
        && let Some(l) = legacy.filter(|l| !l.is_empty())
    {
        tt.networks = Some(l);
    }
    let mut seen = BTreeSet::new();
    for att in tt.networks.iter_mut().flatten() {
        let target = att.target.clone().unwrap_or_default();
        let net = find_network(t, &target)
            .ok_or_else(|| SwarmError::not_found("network", target.clone()))?;
        if net.ingress {
            return Err(invalid(format!(
                "Service cannot be explicitly attached to the ingress network \"{}\"",
                net.name
            )));
        }
        if !seen.insert(net.id.clone()) {
            return Err(invalid(format!(
                "service cannot have multiple attachments to the same network: {}",
                net.name
            )));
        }
        att.target = Some(net.id.clone());
    }
    Ok(())
}

/// A network by full ID, exact name, then unique ID prefix.
pub fn find_network<'a>(t: &'a Tables, input: &str) -> Option<&'a Network> {
    if input.is_empty() {
        return None;
    }
    if let Some(n) = t.networks.get(input) {
        return Some(n);
    }
    // A scan rather than the name index: there are few networks, and this also serves
    // tables built by hand in tests.
    if let Some(n) = t.networks.values().find(|n| n.name == input) {
        return Some(n);
    }
    let mut prefixed = t.networks.values().filter(|n| n.id.starts_with(input));
    match (prefixed.next(), prefixed.next()) {
        (Some(n), None) => Some(n),
        _ => None,
    }
}

/// The networks a service's tasks join, in order: ingress first when the service publishes
/// ingress ports (as Docker lists it), then the spec's networks with their aliases.
pub fn service_networks<'a>(t: &'a Tables, spec: &ServiceSpec) -> Vec<(&'a Network, Vec<String>)> {
    let mut out = Vec::new();
    if needs_ingress(spec)
        && let Some(ingress) = t.networks.values().find(|n| n.ingress)
    {
        out.push((ingress, Vec::new()));
    }
    let atts = spec
        .task_template
        .as_ref()
        .and_then(|tt| tt.networks.as_ref());
    for att in atts.into_iter().flatten() {
        if let Some(n) = att.target.as_deref().and_then(|id| t.networks.get(id)) {
            out.push((n, att.aliases.clone().unwrap_or_default()));
        }
    }
    out
}

/// The network's VXLAN ID as recorded in its driver options (0 when absent).
pub fn vxlan_id(n: &Network) -> u32 {
    n.options
        .get(VXLAN_OPTION)
        .and_then(|v| v.split(',').next()?.trim().parse().ok())
        .unwrap_or(0)
}

/// What a task's node needs of `n` to attach the task to it.
pub fn attached_network(n: &Network) -> AttachedNetwork {
    AttachedNetwork {
        name: n.name.clone(),
        subnet: n.subnet.clone(),
        gateway: n.gateway.clone(),
        vxlan_id: vxlan_id(n),
        ingress: n.ingress,
    }
}

/// VIPs for a service in VIP mode: one per network it joins (ingress included); kept across
/// updates for networks it already had; none in dnsrr mode.
pub fn allocate_vips(
    t: &Tables,
    service_id: &str,
    spec: &ServiceSpec,
) -> ControlResult<Vec<VirtualIp>> {
    if is_dnsrr(spec) {
        return Ok(Vec::new());
    }
    let previous: BTreeMap<&str, &str> = t
        .services
        .get(service_id)
        .map(|s| {
            s.endpoint
                .virtual_ips
                .iter()
                .map(|v| (v.network_id.as_str(), v.addr.as_str()))
                .collect()
        })
        .unwrap_or_default();
    let mut out = Vec::new();
    for (net, _) in service_networks(t, spec) {
        if let Some(addr) = previous.get(net.id.as_str()) {
            out.push(VirtualIp {
                network_id: net.id.clone(),
                addr: addr.to_string(),
            });
            continue;
        }
        let mut used = used_addresses(t, net);
        let addr = take_address(net, &mut used).ok_or_else(|| {
            invalid(format!(
                "could not allocate a virtual IP on network {}: no available IPv4 addresses",
                net.name
            ))
        })?;
        out.push(VirtualIp {
            network_id: net.id.clone(),
            addr,
        });
    }
    Ok(out)
}

impl Control {
    /// `network create -d overlay`. `local_subnets` are the engine's own networks' subnets,
    /// which an allocated subnet avoids. Returns the new ID.
    pub async fn create_network(
        &self,
        spec: Network,
        local_subnets: Vec<String>,
    ) -> ControlResult<String> {
        let id = ids::new_id();
        self.store
            .update(|t, tx| {
                if t.id_by_name(Kind::Network, &spec.name).is_some() {
                    return Err(SwarmError::conflict(format!(
                        "network with name {} already exists",
                        spec.name
                    )));
                }
                let mut n = plan_network(t, spec.clone(), &local_subnets)?;
                n.id = id.clone();
                tracing::info!(network = %n.name, id = %n.id, subnet = %n.subnet, "network created");
                tx.create(n);
                Ok(())
            })
            .await?;
        Ok(id)
    }

    /// `network rm`: refused while a service uses the network (or, for ingress, publishes
    /// ports), with swarmkit's messages. Tasks whose service is gone do not hold it: `stack
    /// rm` removes networks right after the services, before their tasks have stopped.
    pub async fn remove_network(&self, id: &str) -> ControlResult<()> {
        self.store
            .update(|t, tx| {
                let Some(n) = t.networks.get(id) else {
                    return Err(SwarmError::not_found("network", id));
                };
                if n.ingress {
                    if let Some(s) = t.services.values().find(|s| needs_ingress(&s.spec)) {
                        return Err(SwarmError::failed_precondition(format!(
                            "ingress network cannot be removed because service {} depends on it",
                            s.id
                        )));
                    }
                } else {
                    let uses = |s: &swarmd_types::Service| {
                        s.spec
                            .task_template
                            .as_ref()
                            .and_then(|tt| tt.networks.as_ref())
                            .is_some_and(|a| a.iter().any(|a| a.target.as_deref() == Some(id)))
                    };
                    if let Some(s) = t.services.values().find(|s| uses(s)) {
                        return Err(SwarmError::failed_precondition(format!(
                            "network {id} is in use by service {}",
                            s.id
                        )));
                    }
                }
                tx.remove(Kind::Network, id);
                Ok(())
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmd_types::error::Code;
    use swarmd_types::models::{
        EndpointPortConfig, EndpointSpec, NetworkAttachmentConfig, TaskSpec,
    };
    use swarmd_types::{Cluster, Service};

    fn tables() -> Tables {
        let mut t = Tables::default();
        t.clusters.insert(
            "c".into(),
            Cluster {
                id: "c".into(),
                default_addr_pool: vec!["10.0.0.0/8".into()],
                subnet_size: 24,
                ..Default::default()
            },
        );
        let ingress = ingress_network(&["10.0.0.0/8".into()], 24);
        t.networks.insert(ingress.id.clone(), ingress);
        t
    }

    fn add(t: &mut Tables, n: Network) -> Network {
        t.networks.insert(n.id.clone(), n.clone());
        n
    }

    fn req(name: &str) -> Network {
        Network {
            id: format!("id-{name}"),
            name: name.into(),
            driver: "overlay".into(),
            ..Default::default()
        }
    }

    #[test]
    fn ingress_is_dockers() {
        let i = ingress_network(&[], 0);
        assert_eq!(
            (i.subnet.as_str(), i.gateway.as_str()),
            ("10.0.0.0/24", "10.0.0.1")
        );
        assert!(i.ingress);
        assert_eq!(i.options[VXLAN_OPTION], "4096");
    }

    #[test]
    fn subnets_skip_swarm_and_local_networks() {
        let mut t = tables();
        let n = plan_network(&t, req("a"), &[]).unwrap();
        assert_eq!(
            (n.subnet.as_str(), n.gateway.as_str()),
            ("10.0.1.0/24", "10.0.1.1")
        );
        assert_eq!(n.options[VXLAN_OPTION], "4097");
        add(&mut t, n);
        let mut custom = req("b");
        custom.subnet = "10.0.2.0/24".into();
        let b = plan_network(&t, custom, &[]).unwrap();
        add(&mut t, b);
        let n = plan_network(&t, req("c"), &["10.0.3.0/24".into()]).unwrap();
        assert_eq!(n.subnet, "10.0.4.0/24");
    }

    /// `swarm init --default-addr-pool 10.20.0.0/25 --default-addr-pool 172.30.0.0/24
    /// --default-addr-pool-mask-length 26`: ingress and every overlay take /26s from the
    /// pools in order, the second pool once the first (two /26s) is full.
    #[test]
    fn subnets_come_from_the_swarms_pools_with_its_mask() {
        let pool: Vec<String> = vec!["10.20.0.0/25".into(), "172.30.0.0/24".into()];
        let mut t = Tables::default();
        t.clusters.insert(
            "c".into(),
            Cluster {
                id: "c".into(),
                default_addr_pool: pool.clone(),
                subnet_size: 26,
                ..Default::default()
            },
        );
        let ingress = add(&mut t, ingress_network(&pool, 26));
        assert_eq!(ingress.subnet, "10.20.0.0/26");
        let a = plan_network(&t, req("a"), &[]).unwrap();
        let a = add(&mut t, a);
        assert_eq!(
            (a.subnet.as_str(), a.gateway.as_str()),
            ("10.20.0.64/26", "10.20.0.65")
        );
        let b = plan_network(&t, req("b"), &[]).unwrap();
        let b = add(&mut t, b);
        assert_eq!(b.subnet, "172.30.0.0/26");
    }

    #[test]
    fn bad_ipam_is_refused_with_swarmkits_words() {
        let t = tables();
        let mut r = req("x");
        r.subnet = "10.0.0.128/25".into();
        let e = plan_network(&t, r, &[]).unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e}");
        assert!(e.to_string().contains("Pool overlaps"), "{e}");
        let mut r = req("x");
        r.subnet = "nope".into();
        let e = plan_network(&t, r, &[]).unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e}");
        assert_eq!(e.message(), "invalid subnet nope");
        let mut r = req("x");
        r.subnet = "10.9.0.0/24".into();
        r.gateway = "10.8.0.1".into();
        assert!(
            plan_network(&t, r, &[])
                .unwrap_err()
                .to_string()
                .ends_with("subnet 10.9.0.0/24 does not contain gateway 10.8.0.1")
        );
        let mut r = req("ingress2");
        r.ingress = true;
        let e = plan_network(&t, r, &[]).unwrap_err();
        assert_eq!(e.code(), Code::AlreadyExists, "{e}");
        assert!(e.message().contains("is already present"), "{e}");
        let e = plan_network(&t, req("bridge"), &[]).unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e}");
    }

    fn spec_with(nets: &[&str], ports: bool, mode: Option<EndpointSpecModeEnum>) -> ServiceSpec {
        ServiceSpec {
            name: Some("web".into()),
            task_template: Some(TaskSpec {
                networks: Some(
                    nets.iter()
                        .map(|n| NetworkAttachmentConfig {
                            target: Some(n.to_string()),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            endpoint_spec: Some(EndpointSpec {
                mode,
                ports: ports.then(|| {
                    vec![EndpointPortConfig {
                        target_port: Some(80),
                        published_port: Some(8080),
                        ..Default::default()
                    }]
                }),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn service_networks_resolve_to_ids_and_get_vips() {
        let mut t = tables();
        let mut a = plan_network(&t, req("front"), &[]).unwrap();
        a.id = "netfront123".into();
        add(&mut t, a.clone());
        let mut spec = spec_with(&["front"], true, None);
        resolve_service_networks(&t, &mut spec).unwrap();
        let target = spec
            .task_template
            .as_ref()
            .unwrap()
            .networks
            .as_ref()
            .unwrap()[0]
            .target
            .clone();
        assert_eq!(target.as_deref(), Some("netfront123"));
        let vips = allocate_vips(&t, "svc", &spec).unwrap();
        assert_eq!(vips.len(), 2, "ingress and front: {vips:?}");
        assert_eq!(vips[0].addr, "10.0.0.2/24");
        assert_eq!(vips[1].addr, "10.0.1.2/24");
        // A second service gets the next addresses.
        t.services.insert(
            "svc".into(),
            Service {
                id: "svc".into(),
                endpoint: swarmd_types::ServiceEndpoint {
                    virtual_ips: vips.clone(),
                    ..Default::default()
                },
                ..Default::default()
            },
        );
        let vips2 = allocate_vips(&t, "svc2", &spec).unwrap();
        assert_eq!(vips2[1].addr, "10.0.1.3/24");
        // The same service keeps its VIPs on update.
        assert_eq!(allocate_vips(&t, "svc", &spec).unwrap(), vips);

        let mut bad = spec_with(&["nosuch"], false, None);
        let e = resolve_service_networks(&t, &mut bad).unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{e}");
        assert_eq!(e.to_string(), "network nosuch not found");
        let mut bad = spec_with(&["ingress"], false, None);
        assert!(resolve_service_networks(&t, &mut bad).is_err());
        let mut dnsrr = spec_with(&["front"], true, Some(EndpointSpecModeEnum::DNSRR));
        assert!(
            resolve_service_networks(&t, &mut dnsrr)
                .unwrap_err()
                .to_string()
                .contains("can't be used with dnsrr mode")
        );
        let mut dnsrr = spec_with(&["front"], false, Some(EndpointSpecModeEnum::DNSRR));
        resolve_service_networks(&t, &mut dnsrr).unwrap();
        assert!(allocate_vips(&t, "svc3", &dnsrr).unwrap().is_empty());
    }
}
