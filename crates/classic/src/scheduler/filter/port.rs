//! Port filter: a container publishing a host port goes only where that port is free.
//! In host network mode the exposed ports are compared with those of host-mode
//! containers; otherwise each requested binding with those of every container.

use std::net::IpAddr;

use super::FilterError;
use crate::scheduler::model::{Container, Node, PortBinding, Request};

pub(super) fn filter<'a>(
    req: &Request,
    nodes: Vec<&'a Node>,
) -> Result<Vec<&'a Node>, FilterError> {
    if req.network_mode == "host" {
        filter_host(req, nodes)
    } else {
        filter_bridge(req, nodes)
    }
}

pub(super) fn describe(req: &Request) -> Vec<String> {
    if req.network_mode == "host" {
        req.exposed_ports
            .iter()
            .map(|p| format!("port {p} (Host mode)"))
            .collect()
    } else {
        req.port_bindings
            .iter()
            .map(|b| format!("port {} (Bridge mode)", b.host_port))
            .collect()
    }
}

fn filter_host<'a>(req: &Request, mut nodes: Vec<&'a Node>) -> Result<Vec<&'a Node>, FilterError> {
    for port in &req.exposed_ports {
        nodes.retain(|n| {
            !n.containers
                .iter()
                .any(|c| c.network_mode == "host" && c.exposed_ports.contains(port))
        });
        if nodes.is_empty() {
            return Err(FilterError::HostPort(port.clone()));
        }
    }
    Ok(nodes)
}

fn filter_bridge<'a>(
    req: &Request,
    mut nodes: Vec<&'a Node>,
) -> Result<Vec<&'a Node>, FilterError> {
    for wanted in &req.port_bindings {
        nodes.retain(|n| !n.containers.iter().any(|c| in_use(c, wanted)));
        if nodes.is_empty() {
            return Err(FilterError::BridgePort(wanted.host_port.clone()));
        }
    }
    Ok(nodes)
}

/// A container holds a port through its requested bindings (which a stopped container
/// keeps, and which are all a pending container has) or, once created, through the
/// ports in effect (where `-p 80` got its host port allocated).
fn in_use(c: &Container, wanted: &PortBinding) -> bool {
    let clash = |list: &[PortBinding]| list.iter().any(|b| conflicts(wanted, b));
    clash(&c.port_bindings) || (!c.id.is_empty() && clash(&c.published))
}

/// Same host port, and the same address or either side on all interfaces. A binding
/// without a host port never conflicts.
fn conflicts(wanted: &PortBinding, held: &PortBinding) -> bool {
    !held.host_port.is_empty()
        && held.host_port == wanted.host_port
        && (wanted.host_ip == held.host_ip || all_interfaces(wanted) || all_interfaces(held))
}

fn all_interfaces(b: &PortBinding) -> bool {
    b.host_ip.is_empty()
        || b.host_ip
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testutil::*;

    fn bind(ip: &str, port: &str) -> PortBinding {
        PortBinding {
            container_port: "80/tcp".into(),
            host_ip: ip.into(),
            host_port: port.into(),
        }
    }

    fn req_binding(ip: &str, port: &str) -> Request {
        Request {
            port_bindings: vec![bind(ip, port)],
            ..Default::default()
        }
    }

    fn holding(name: &str, requested: Vec<PortBinding>, published: Vec<PortBinding>) -> Node {
        let mut n = node(name);
        let mut c = container(&format!("id-{name}"), name);
        c.port_bindings = requested;
        c.published = published;
        n.containers.push(c);
        n
    }

    #[test]
    fn bound_port_excludes_node() {
        let busy = holding("busy", vec![bind("", "80")], vec![]);
        let free = holding("free", vec![bind("", "8080")], vec![]);
        let got = filter(&req_binding("", "80"), vec![&busy, &free]).unwrap();
        assert_eq!(names(&got), ["free"]);
        let err = filter(&req_binding("", "80"), vec![&busy]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unable to find a node with port 80 available"
        );
    }

    #[test]
    fn dynamically_allocated_port_counts_only_once_created() {
        let running = holding(
            "running",
            vec![bind("", "")],
            vec![bind("0.0.0.0", "32768")],
        );
        assert!(filter(&req_binding("", "32768"), vec![&running]).is_err());
        let mut pending = holding("pending", vec![], vec![bind("", "32768")]);
        pending.containers[0].id.clear();
        assert!(filter(&req_binding("", "32768"), vec![&pending]).is_ok());
        pending.containers[0].port_bindings = vec![bind("", "32768")];
        assert!(filter(&req_binding("", "32768"), vec![&pending]).is_err());
    }

    #[test]
    fn different_addresses_do_not_clash_unless_one_is_all_interfaces() {
        let one = holding("one", vec![bind("10.0.0.1", "80")], vec![]);
        assert!(filter(&req_binding("10.0.0.2", "80"), vec![&one]).is_ok());
        assert!(filter(&req_binding("10.0.0.1", "80"), vec![&one]).is_err());
        assert!(filter(&req_binding("0.0.0.0", "80"), vec![&one]).is_err());
        assert!(filter(&req_binding("::", "80"), vec![&one]).is_err());
        let all = holding("all", vec![bind("", "80")], vec![]);
        assert!(filter(&req_binding("10.0.0.2", "80"), vec![&all]).is_err());
    }

    #[test]
    fn request_without_host_port_never_clashes() {
        let busy = holding("busy", vec![bind("", "80")], vec![]);
        assert!(filter(&req_binding("", ""), vec![&busy]).is_ok());
    }

    #[test]
    fn host_mode_compares_exposed_ports_of_host_containers() {
        let mut host = node("host");
        let mut c = container("h", "h");
        c.network_mode = "host".into();
        c.exposed_ports = vec!["80/tcp".into()];
        host.containers.push(c.clone());
        let mut bridge = node("bridge");
        c.network_mode = "bridge".into();
        bridge.containers.push(c);
        let req = Request {
            network_mode: "host".into(),
            exposed_ports: vec!["80/tcp".into()],
            ..Default::default()
        };
        assert_eq!(
            names(&filter(&req, vec![&host, &bridge]).unwrap()),
            ["bridge"]
        );
        assert_eq!(
            filter(&req, vec![&host]).unwrap_err().to_string(),
            "unable to find a node with port 80/tcp available in the Host mode"
        );
        assert_eq!(describe(&req), ["port 80/tcp (Host mode)"]);
        assert_eq!(describe(&req_binding("", "80")), ["port 80 (Bridge mode)"]);
    }
}
