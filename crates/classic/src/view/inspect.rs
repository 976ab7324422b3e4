//! `GET /containers/{id}/json` through the pool (classic's `getContainerJSON`): the
//! engine's answer plus classic's `Node` object naming the engine, and published ports'
//! host IPs made reachable. `Name` stays the engine's (`/web`), as classic left it.

use serde_json::{Value, json};

use super::EngineRef;
use super::status::engine_labels;
use crate::engine::names::published_ip;
use crate::scheduler::model::Node;

/// Classic's `Node` object: the engine's ID, IP, address, name, NCPU and memory (as the
/// engine reports them, without overcommit) and labels (constraint keys included).
pub fn node_object(engine: &EngineRef, node: &Node) -> Value {
    json!({
        "ID": engine.id,
        "IP": engine.ip,
        "Addr": engine.addr,
        "Name": engine.name,
        "Cpus": node.cpus,
        "Memory": node.memory,
        "Labels": engine_labels(node),
    })
}

/// The engine's inspect as the pool shows it. A published port's HostIp that is empty
/// or unspecified (`0.0.0.0`, `::`) becomes the engine's IP, as classic did here (its
/// list kept an empty IP empty).
pub fn container_inspect(mut inspect: Value, engine: &EngineRef, node: &Node) -> Value {
    if let Some(ports) = inspect
        .pointer_mut("/NetworkSettings/Ports")
        .and_then(Value::as_object_mut)
    {
        for binding in ports.values_mut().filter_map(Value::as_array_mut).flatten() {
            if let Some(ip) = binding.get_mut("HostIp") {
                let current = ip.as_str().unwrap_or("");
                let shown = if current.is_empty() {
                    engine.ip.clone()
                } else {
                    published_ip(current, &engine.ip)
                };
                *ip = Value::String(shown);
            }
        }
    }
    if let Some(obj) = inspect.as_object_mut() {
        obj.insert("Node".into(), node_object(engine, node));
    }
    inspect
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::testutil::*;

    /// Trimmed from engine 20.10's inspect of `docker run -p 8080:80 -p 127.0.0.1:81:81`.
    const INSPECT: &str = r#"{
        "Id": "0123456789abcdef", "Name": "/web", "Created": "2026-12-07T14:00:00.0Z",
        "State": {"Status": "running", "Running": true},
        "Config": {"Image": "busybox", "Labels": {"com.docker.swarm.id": "5a5a"}},
        "NetworkSettings": {
            "Ports": {
                "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"},
                           {"HostIp": "::", "HostPort": "8080"}],
                "81/tcp": [{"HostIp": "127.0.0.1", "HostPort": "81"}],
                "82/tcp": [{"HostIp": "", "HostPort": "32768"}],
                "83/tcp": null
            }
        }
    }"#;

    #[test]
    fn node_object_and_reachable_host_ips() {
        let e = engine("node-1", "10.0.0.1");
        let mut n = node("node-1", "10.0.0.1");
        n.kernel_version = "6.1.0".into();
        n.labels = labels(&[("zone", "eu-1")]);
        let v = container_inspect(serde_json::from_str(INSPECT).unwrap(), &e, &n);
        assert_eq!(
            v["Node"],
            json!({
                "ID": "ID-node-1|10.0.0.1:2375", "IP": "10.0.0.1", "Addr": "10.0.0.1:2375",
                "Name": "node-1", "Cpus": 2, "Memory": 2i64 << 30,
                "Labels": {"kernelversion": "6.1.0", "zone": "eu-1"}
            })
        );
        let ports = &v["NetworkSettings"]["Ports"];
        assert_eq!(ports["80/tcp"][0]["HostIp"], "10.0.0.1");
        assert_eq!(ports["80/tcp"][1]["HostIp"], "10.0.0.1");
        assert_eq!(ports["81/tcp"][0]["HostIp"], "127.0.0.1");
        assert_eq!(ports["82/tcp"][0]["HostIp"], "10.0.0.1");
        assert_eq!(ports["83/tcp"], Value::Null);
        assert_eq!(v["Name"], "/web", "the engine's name, as classic left it");
        assert_eq!(v["Id"], "0123456789abcdef");
    }

    #[test]
    fn an_inspect_without_network_settings_still_gets_its_node() {
        let e = engine("node-1", "10.0.0.1");
        let v = container_inspect(json!({"Id": "x"}), &e, &node("node-1", "10.0.0.1"));
        assert_eq!(v["Node"]["Name"], "node-1");
    }
}
