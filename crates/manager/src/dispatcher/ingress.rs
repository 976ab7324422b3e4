//! The routing mesh's table: which ports every node publishes and where each one forwards.
//!
//! Derived from the store alone (a pure function), so the dispatcher can recompute it on
//! any change and send it whole to every node: level-triggered, nothing to get out of step.
//! A backend is a task that is RUNNING and meant to stay so (health is folded in: a task
//! with a health check reaches RUNNING only once healthy), on a node that is up, at the
//! host port its agent reported for the published target (`status.ports`).

use swarmd_store::Tables;
use swarmd_types::dispatcher::{IngressBackend, IngressPort, IngressProtocol, IngressTable};
use swarmd_types::models::{
    EndpointPortConfig, EndpointPortConfigProtocolEnum as Proto,
    EndpointPortConfigPublishModeEnum as PubMode, TaskState,
};
use swarmd_types::{NodeState, Task};

fn protocol(p: &EndpointPortConfig) -> Option<IngressProtocol> {
    match p.protocol {
        None | Some(Proto::EMPTY) | Some(Proto::TCP) => Some(IngressProtocol::Tcp),
        Some(Proto::UDP) => Some(IngressProtocol::Udp),
        Some(Proto::SCTP) => None,
    }
}

fn is_ingress(p: &EndpointPortConfig) -> bool {
    matches!(
        p.publish_mode,
        None | Some(PubMode::EMPTY) | Some(PubMode::INGRESS)
    )
}

fn port(v: Option<i64>) -> Option<u16> {
    v.and_then(|p| u16::try_from(p).ok()).filter(|p| *p != 0)
}

/// The host port the task's agent bound for `target`/`proto`, if it reported one.
fn bound_port(task: &Task, target: u16, proto: IngressProtocol) -> Option<u16> {
    task.status
        .ports
        .as_ref()?
        .ports
        .as_ref()?
        .iter()
        .find(|b| port(b.target_port) == Some(target) && protocol(b) == Some(proto))
        .and_then(|b| port(b.published_port))
}

/// The ingress table as the store has it now.
pub fn table(t: &Tables) -> IngressTable {
    let mut ports = Vec::new();
    for svc in t.services.values() {
        for p in svc.endpoint.ports.iter().filter(|p| is_ingress(p)) {
            let (Some(proto), Some(published), Some(target)) =
                (protocol(p), port(p.published_port), port(p.target_port))
            else {
                continue;
            };
            let mut backends: Vec<IngressBackend> = t
                .tasks_of_service(&svc.id)
                .filter(|task| {
                    task.status.state == TaskState::RUNNING
                        && task.desired_state == TaskState::RUNNING
                })
                .filter_map(|task| {
                    let node = t.nodes.get(&task.node_id)?;
                    if node.status.state != NodeState::Ready || node.status.addr.is_empty() {
                        return None;
                    }
                    let host_port = bound_port(task, target, proto)?;
                    Some(IngressBackend {
                        task_id: task.id.clone(),
                        addr: format!("{}:{host_port}", node.status.addr),
                    })
                })
                .collect();
            backends.sort();
            ports.push(IngressPort {
                protocol: proto,
                published_port: published,
                target_port: target,
                service_id: svc.id.clone(),
                service_name: svc.spec.name.clone().unwrap_or_default(),
                backends,
            });
        }
    }
    ports.sort_by_key(|p| (p.protocol, p.published_port));
    // The allocator refuses duplicates; should a stale store hold one, the first wins.
    ports.dedup_by_key(|p| (p.protocol, p.published_port));
    IngressTable { ports }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatcher::test_support::{node, store_of};
    use swarmd_types::models::PortStatus;
    use swarmd_types::{Node, Service, TaskStatus};

    fn ep(published: i64, target: i64, proto: Proto, mode: PubMode) -> EndpointPortConfig {
        EndpointPortConfig {
            protocol: Some(proto),
            published_port: Some(published),
            target_port: Some(target),
            publish_mode: Some(mode),
            ..Default::default()
        }
    }

    fn svc(id: &str, ports: Vec<EndpointPortConfig>) -> Service {
        let mut s = Service {
            id: id.into(),
            ..Default::default()
        };
        s.spec.name = Some(format!("{id}-name"));
        s.endpoint.ports = ports;
        s
    }

    /// A task with the given states and bound (target, host, proto) ports.
    fn task(
        id: &str,
        service: &str,
        node: &str,
        state: TaskState,
        desired: TaskState,
        bound: &[(i64, i64, Proto)],
    ) -> Task {
        Task {
            id: id.into(),
            service_id: service.into(),
            node_id: node.into(),
            desired_state: desired,
            status: TaskStatus {
                state,
                ports: (!bound.is_empty()).then(|| PortStatus {
                    ports: Some(
                        bound
                            .iter()
                            .map(|(t, h, p)| ep(*h, *t, *p, PubMode::HOST))
                            .collect(),
                    ),
                }),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// The table derived from a store holding these objects.
    fn derive(nodes: Vec<Node>, services: Vec<Service>, tasks: Vec<Task>) -> IngressTable {
        store_of(vec![], nodes, services, tasks).view(|t| table(t))
    }

    fn addrs(p: &IngressPort) -> Vec<&str> {
        p.backends.iter().map(|b| b.addr.as_str()).collect()
    }

    const R: TaskState = TaskState::RUNNING;

    #[test]
    fn only_running_tasks_on_ready_nodes_with_a_bound_port_are_backends() {
        let table = derive(
            vec![
                node("n1", "127.0.0.2", NodeState::Ready),
                node("n2", "127.0.0.3", NodeState::Ready),
                node("down", "127.0.0.4", NodeState::Down),
            ],
            vec![svc("web", vec![ep(8080, 80, Proto::TCP, PubMode::INGRESS)])],
            vec![
                task("a", "web", "n1", R, R, &[(80, 40001, Proto::TCP)]),
                task("b", "web", "n2", R, R, &[(80, 40002, Proto::TCP)]),
                // Starting: not yet.
                task("c", "web", "n1", TaskState::STARTING, R, &[]),
                // Being shut down: no new connections.
                task(
                    "d",
                    "web",
                    "n2",
                    R,
                    TaskState::SHUTDOWN,
                    &[(80, 40003, Proto::TCP)],
                ),
                // Its node is down.
                task("e", "web", "down", R, R, &[(80, 40004, Proto::TCP)]),
                // Running, but from a spec without the port (no binding reported).
                task("f", "web", "n1", R, R, &[(81, 40005, Proto::TCP)]),
                task(
                    "g",
                    "web",
                    "n1",
                    TaskState::FAILED,
                    R,
                    &[(80, 40006, Proto::TCP)],
                ),
            ],
        );
        assert_eq!(table.ports.len(), 1);
        let p = &table.ports[0];
        assert_eq!(
            (p.protocol, p.published_port, p.target_port),
            (IngressProtocol::Tcp, 8080, 80)
        );
        assert_eq!(p.service_name, "web-name");
        assert_eq!(addrs(p), ["127.0.0.2:40001", "127.0.0.3:40002"]);
    }

    #[test]
    fn a_port_without_running_tasks_stays_listed_with_no_backends() {
        let table = derive(
            vec![node("n1", "127.0.0.2", NodeState::Ready)],
            vec![svc("web", vec![ep(8080, 80, Proto::TCP, PubMode::INGRESS)])],
            vec![],
        );
        assert_eq!(table.ports.len(), 1);
        assert!(table.ports[0].backends.is_empty());
    }

    #[test]
    fn host_mode_ports_are_not_in_the_mesh_and_protocols_are_apart() {
        let table = derive(
            vec![node("n1", "127.0.0.2", NodeState::Ready)],
            vec![
                svc(
                    "dns",
                    vec![
                        ep(53, 53, Proto::UDP, PubMode::INGRESS),
                        ep(53, 53, Proto::TCP, PubMode::INGRESS),
                    ],
                ),
                svc("host", vec![ep(9000, 90, Proto::TCP, PubMode::HOST)]),
            ],
            vec![task(
                "a",
                "dns",
                "n1",
                R,
                R,
                &[(53, 40001, Proto::TCP), (53, 40002, Proto::UDP)],
            )],
        );
        let got: Vec<(IngressProtocol, u16, Vec<&str>)> = table
            .ports
            .iter()
            .map(|p| (p.protocol, p.published_port, addrs(p)))
            .collect();
        assert_eq!(
            got,
            [
                (IngressProtocol::Tcp, 53, vec!["127.0.0.2:40001"]),
                (IngressProtocol::Udp, 53, vec!["127.0.0.2:40002"]),
            ]
        );
    }
}
