//! Container names as the virtual host shows them: classic's aggregated `docker ps`
//! prefixes each name with its engine's name, so `/web` on `node1` lists as
//! `/node1/web` and containers of the same name on two engines stay apart. Local-scope
//! networks and local-driver volumes are shown the same way, `<node>/<name>`, and a port
//! published on all interfaces shows the engine's IP, which a client can reach.

use std::net::IpAddr;

/// `/<node>/<name>` for each engine-reported name (which already starts with `/`).
pub fn aggregated_names(node_name: &str, names: &[String]) -> Vec<String> {
    names
        .iter()
        .map(|n| aggregated_name(node_name, n))
        .collect()
}

/// One name; a name the engine reported without its leading `/` gets one.
pub fn aggregated_name(node_name: &str, name: &str) -> String {
    if name.starts_with('/') {
        format!("/{node_name}{name}")
    } else {
        format!("/{node_name}/{name}")
    }
}

/// A local network's or local volume's name as listed by the virtual host.
pub fn local_resource_name(node_name: &str, name: &str) -> String {
    format!("{node_name}/{name}")
}

/// The IP a published port is listed with: the engine's IP in place of an unspecified
/// address (`0.0.0.0`, `::`), anything else unchanged.
pub fn published_ip(port_ip: &str, engine_ip: &str) -> String {
    match port_ip.parse::<IpAddr>() {
        Ok(ip) if ip.is_unspecified() => engine_ip.to_string(),
        _ => port_ip.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_get_the_engine_prefix() {
        let names = vec!["/web".to_string(), "/db/alias".to_string()];
        assert_eq!(
            aggregated_names("node1", &names),
            ["/node1/web", "/node1/db/alias"]
        );
        assert_eq!(aggregated_name("node2", "web"), "/node2/web");
        assert!(aggregated_names("n", &[]).is_empty());
    }

    #[test]
    fn local_networks_and_volumes_get_the_engine_prefix() {
        assert_eq!(local_resource_name("node1", "bridge"), "node1/bridge");
        assert_eq!(local_resource_name("node1", "data"), "node1/data");
    }

    #[test]
    fn unspecified_port_ip_becomes_the_engine_ip() {
        assert_eq!(published_ip("0.0.0.0", "10.0.0.1"), "10.0.0.1");
        assert_eq!(published_ip("::", "10.0.0.1"), "10.0.0.1");
        assert_eq!(published_ip("127.0.0.1", "10.0.0.1"), "127.0.0.1");
        assert_eq!(
            published_ip("", "10.0.0.1"),
            "",
            "unpublished ports have no IP"
        );
    }
}
