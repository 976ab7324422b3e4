//! The discovery table: the overlay networks, and on each the services' names, VIPs and
//! running tasks. Every node's DNS server answers from it and every node balances VIP
//! connections with it.
//!
//! Like the ingress table it is a pure function of the store, recomputed by the dispatcher
//! and sent whole on the sessions when it changes. A task is listed once it is RUNNING and
//! meant to stay so, on a ready node (the same rule as the mesh's backends): a name never
//! leads to a task that cannot answer.

use swarmd_store::Tables;
use swarmd_types::dispatcher::{DiscoveryNetwork, DiscoveryTable, EndpointTask, ServiceEndpoint};
use swarmd_types::models::TaskState;
use swarmd_types::{NodeState, Service};

use crate::control::networks::{service_networks, vxlan_id};
use crate::ipam::Cidr;

/// The service's VIP on the network, without prefix length.
fn vip(svc: &Service, network_id: &str) -> Option<String> {
    svc.endpoint
        .virtual_ips
        .iter()
        .find(|v| v.network_id == network_id)
        .and_then(|v| Cidr::parse_addr(&v.addr))
        .map(|a| a.to_string())
}

/// The discovery table as the store has it now.
pub fn table(t: &Tables) -> DiscoveryTable {
    let mut networks: Vec<DiscoveryNetwork> = t
        .networks
        .values()
        .filter(|n| !n.ingress)
        .map(|n| DiscoveryNetwork {
            id: n.id.clone(),
            name: n.name.clone(),
            subnet: n.subnet.clone(),
            gateway: n.gateway.clone(),
            vxlan_id: vxlan_id(n),
        })
        .collect();
    networks.sort_by(|a, b| a.id.cmp(&b.id));

    let mut endpoints = Vec::new();
    for svc in t.services.values() {
        let nets: Vec<_> = service_networks(t, &svc.spec)
            .into_iter()
            .filter(|(n, _)| !n.ingress)
            .collect();
        if nets.is_empty() {
            continue;
        }
        let running: Vec<_> = t
            .tasks_of_service(&svc.id)
            .filter(|task| {
                task.status.state == TaskState::RUNNING && task.desired_state == TaskState::RUNNING
            })
            .filter_map(|task| {
                let node = t.nodes.get(&task.node_id)?;
                (node.status.state == NodeState::Ready).then_some((task, node))
            })
            .collect();
        for (net, aliases) in nets {
            let mut tasks: Vec<EndpointTask> = running
                .iter()
                .filter_map(|(task, node)| {
                    let att = task.networks.iter().find(|a| a.network_id == net.id)?;
                    let addr = Cidr::parse_addr(att.addresses.first()?)?;
                    Some(EndpointTask {
                        task_id: task.id.clone(),
                        addr: addr.to_string(),
                        node_id: node.id.clone(),
                        node_addr: node.status.addr.clone(),
                    })
                })
                .collect();
            tasks.sort();
            endpoints.push(ServiceEndpoint {
                network_id: net.id.clone(),
                service_id: svc.id.clone(),
                service_name: svc.spec.name.clone().unwrap_or_default(),
                aliases,
                vip: vip(svc, &net.id),
                tasks,
            });
        }
    }
    endpoints.sort_by(|a, b| (&a.network_id, &a.service_id).cmp(&(&b.network_id, &b.service_id)));
    DiscoveryTable {
        networks,
        endpoints,
        data_path_port: t
            .cluster()
            .and_then(|c| u16::try_from(c.data_path_port).ok())
            .unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::networks::ingress_network;
    use crate::dispatcher::test_support::{node, store_of};
    use swarmd_types::models::{NetworkAttachmentConfig, TaskSpec};
    use swarmd_types::{NetworkAttachment, Node, Task, TaskStatus, VirtualIp};

    fn net(id: &str, subnet: &str) -> swarmd_types::Network {
        swarmd_types::Network {
            id: id.into(),
            name: format!("{id}-name"),
            driver: "overlay".into(),
            subnet: subnet.into(),
            gateway: subnet.replace(".0/24", ".1"),
            options: [(
                crate::control::networks::VXLAN_OPTION.to_string(),
                "4097".to_string(),
            )]
            .into(),
            ..Default::default()
        }
    }

    /// A service on `nets` (network ID, aliases) with VIPs `vips` (network ID, CIDR).
    fn svc(id: &str, nets: &[(&str, &[&str])], vips: &[(&str, &str)]) -> Service {
        let mut s = Service {
            id: id.into(),
            ..Default::default()
        };
        s.spec.name = Some(id.to_string());
        s.spec.task_template = Some(TaskSpec {
            networks: Some(
                nets.iter()
                    .map(|(n, aliases)| NetworkAttachmentConfig {
                        target: Some(n.to_string()),
                        aliases: Some(aliases.iter().map(|a| a.to_string()).collect()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        });
        s.endpoint.virtual_ips = vips
            .iter()
            .map(|(n, a)| VirtualIp {
                network_id: n.to_string(),
                addr: a.to_string(),
            })
            .collect();
        s
    }

    fn task(id: &str, svc: &str, node: &str, state: TaskState, atts: &[(&str, &str)]) -> Task {
        Task {
            id: id.into(),
            service_id: svc.into(),
            node_id: node.into(),
            desired_state: TaskState::RUNNING,
            status: TaskStatus {
                state,
                ..Default::default()
            },
            networks: atts
                .iter()
                .map(|(n, a)| NetworkAttachment {
                    network_id: n.to_string(),
                    addresses: vec![a.to_string()],
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn derive(
        networks: Vec<swarmd_types::Network>,
        nodes: Vec<Node>,
        services: Vec<Service>,
        tasks: Vec<Task>,
    ) -> DiscoveryTable {
        store_of(networks, nodes, services, tasks).view(|t| table(t))
    }

    const R: TaskState = TaskState::RUNNING;

    #[test]
    fn services_on_networks_with_vips_aliases_and_running_tasks_only() {
        let ingress = ingress_network(&[], 24);
        let ingress_id = ingress.id.clone();
        let table = derive(
            vec![
                net("front", "10.0.1.0/24"),
                net("back", "10.0.2.0/24"),
                ingress,
            ],
            vec![
                node("n1", "127.0.0.2", NodeState::Ready),
                node("n2", "127.0.0.3", NodeState::Ready),
                node("down", "127.0.0.4", NodeState::Down),
            ],
            vec![
                svc(
                    "api",
                    &[("front", &["web"]), ("back", &[])],
                    &[("front", "10.0.1.2/24"), ("back", "10.0.2.2/24")],
                ),
                // dnsrr: no VIP.
                svc("db", &[("back", &[])], &[]),
                // Not on any overlay: absent.
                svc("lonely", &[], &[]),
            ],
            vec![
                task(
                    "t1",
                    "api",
                    "n1",
                    R,
                    &[("front", "10.0.1.5/24"), ("back", "10.0.2.5/24")],
                ),
                task("t2", "api", "n2", R, &[("front", "10.0.1.6/24")]),
                // Starting, or on a down node: not listed.
                task(
                    "t3",
                    "api",
                    "n1",
                    TaskState::STARTING,
                    &[("front", "10.0.1.7/24")],
                ),
                task("t4", "api", "down", R, &[("front", "10.0.1.8/24")]),
                task("d1", "db", "n2", R, &[("back", "10.0.2.9/24")]),
            ],
        );
        let ids: Vec<_> = table.networks.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(ids, ["back", "front"], "ingress is left out");
        assert_eq!(table.networks[1].gateway, "10.0.1.1");
        assert_eq!(table.networks[1].vxlan_id, 4097);
        assert!(!ids.contains(&ingress_id.as_str()));

        let key: Vec<_> = table
            .endpoints
            .iter()
            .map(|e| (e.network_id.as_str(), e.service_id.as_str()))
            .collect();
        assert_eq!(key, [("back", "api"), ("back", "db"), ("front", "api")]);

        let front = &table.endpoints[2];
        assert_eq!(front.vip.as_deref(), Some("10.0.1.2"));
        assert_eq!(front.aliases, ["web"]);
        let addrs: Vec<_> = front.tasks.iter().map(|t| t.addr.as_str()).collect();
        assert_eq!(addrs, ["10.0.1.5", "10.0.1.6"]);
        assert_eq!(front.tasks[1].node_addr, "127.0.0.3");

        let back_api = &table.endpoints[0];
        let addrs: Vec<_> = back_api.tasks.iter().map(|t| t.addr.as_str()).collect();
        assert_eq!(addrs, ["10.0.2.5"], "t2 is not on back");

        let db = &table.endpoints[1];
        assert_eq!(db.vip, None);
        assert_eq!(db.tasks[0].addr, "10.0.2.9");
    }

    #[test]
    fn a_service_without_running_tasks_still_has_its_name() {
        let table = derive(
            vec![net("front", "10.0.1.0/24")],
            vec![],
            vec![svc("api", &[("front", &[])], &[("front", "10.0.1.2/24")])],
            vec![],
        );
        assert_eq!(table.endpoints.len(), 1);
        assert!(table.endpoints[0].tasks.is_empty());
        assert_eq!(table.endpoints[0].vip.as_deref(), Some("10.0.1.2"));
    }

    /// `swarm init --data-path-port 7789`: every node's table carries the port its VXLAN
    /// devices use; without a cluster (or from an older manager) 0, meaning 4789.
    #[test]
    fn the_table_carries_the_swarms_data_path_port() {
        let mut t = swarmd_store::Tables::default();
        assert_eq!(table(&t).data_path_port, 0);
        t.clusters.insert(
            "c".into(),
            swarmd_types::Cluster {
                id: "c".into(),
                data_path_port: 7789,
                ..Default::default()
            },
        );
        assert_eq!(table(&t).data_path_port, 7789);
    }
}
