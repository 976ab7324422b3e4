//! A create request's body as the scheduler reads it, and as the chosen engine gets it.
//!
//! The body stays JSON end to end, so every field the client set reaches the engine
//! untouched; only what classic changes is rewritten: the Swarm expressions leave the env
//! for the labels, the Swarm ID label is added, and CpuShares (a number of CPUs to classic)
//! becomes real shares for the chosen engine.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::scheduler::cpu::cpus_to_shares;
use crate::scheduler::model::{PortBinding, Request};

/// The scheduler's request from a `POST /containers/create` body. The pre-1.19 top-level
/// `Memory`/`CpuShares` count when HostConfig does not set them, as classic's
/// `ConsolidateResourceFields` does.
pub fn request_from_body(body: &Value) -> Request {
    let host = body.get("HostConfig").unwrap_or(&Value::Null);
    let int = |v: &Value, k: &str| v.get(k).and_then(Value::as_i64).unwrap_or(0);
    let strings = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let either = |k: &str| match int(host, k) {
        0 => int(body, k),
        v => v,
    };
    Request {
        image: str_field(body, "Image"),
        env: strings(body.get("Env")),
        labels: body
            .get("Labels")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                    .collect::<HashMap<_, _>>()
            })
            .unwrap_or_default(),
        cpu_shares: either("CpuShares"),
        memory: either("Memory"),
        exposed_ports: body
            .get("ExposedPorts")
            .and_then(Value::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default(),
        port_bindings: port_bindings(host.get("PortBindings")),
        network_mode: str_field(host, "NetworkMode"),
        volumes_from: strings(host.get("VolumesFrom")),
        links: strings(host.get("Links")),
    }
}

/// Writes back what the scheduler changed (env and labels) and the shares for an engine
/// with `ncpu` CPUs.
pub fn body_for_engine(body: &Value, req: &Request, ncpu: i64) -> Value {
    let mut out = body.clone();
    let Some(obj) = out.as_object_mut() else {
        return out;
    };
    obj.insert(
        "Env".into(),
        Value::Array(req.env.iter().cloned().map(Value::String).collect()),
    );
    let labels: Map<String, Value> = req
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    obj.insert("Labels".into(), Value::Object(labels));
    if req.cpu_shares > 0 {
        let shares = Value::from(cpus_to_shares(req.cpu_shares, ncpu));
        let host = obj
            .entry("HostConfig")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(h) = host.as_object_mut() {
            h.insert("CpuShares".into(), shares);
        }
        obj.remove("CpuShares");
    }
    out
}

/// Networks a container joins that are neither built in nor another container's:
/// `HostConfig.NetworkMode` and the `NetworkingConfig.EndpointsConfig` keys.
pub fn user_networks(body: &Value) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mode = body
        .get("HostConfig")
        .map(|h| str_field(h, "NetworkMode"))
        .unwrap_or_default();
    let endpoints = body
        .get("NetworkingConfig")
        .and_then(|n| n.get("EndpointsConfig"))
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect::<Vec<_>>())
        .unwrap_or_default();
    for n in std::iter::once(mode).chain(endpoints) {
        let builtin = matches!(n.as_str(), "" | "default" | "bridge" | "host" | "none")
            || n.starts_with("container:");
        if !builtin && !out.contains(&n) {
            out.push(n);
        }
    }
    out
}

/// Classic's `<node>/<network>` in a create: the node prefix is taken off the network
/// names (the engine knows the bare name) and, when the container has no `node`
/// constraint, becomes a soft one (`node==~<node>`), as classic did for local networks.
/// Returns the constraint to add, if any.
pub fn strip_network_nodes(body: &mut Value, engine_names: &[String]) -> Option<String> {
    let split = |name: &str| -> Option<(String, String)> {
        let (node, bare) = name.split_once('/')?;
        engine_names
            .iter()
            .any(|e| e == node)
            .then(|| (node.to_owned(), bare.to_owned()))
    };
    let mut node = None;
    if let Some(host) = body.get_mut("HostConfig").and_then(Value::as_object_mut)
        && let Some((n, bare)) = host
            .get("NetworkMode")
            .and_then(Value::as_str)
            .and_then(split)
    {
        host.insert("NetworkMode".into(), Value::String(bare));
        node = Some(n);
    }
    if let Some(eps) = body
        .get_mut("NetworkingConfig")
        .and_then(|n| n.get_mut("EndpointsConfig"))
        .and_then(Value::as_object_mut)
    {
        let keys: Vec<String> = eps.keys().cloned().collect();
        for k in keys {
            if let Some((n, bare)) = split(&k)
                && let Some(v) = eps.remove(&k)
            {
                eps.insert(bare, v);
                node.get_or_insert(n);
            }
        }
    }
    node.map(|n| format!("node==~{n}"))
}

fn str_field(v: &Value, k: &str) -> String {
    v.get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn port_bindings(v: Option<&Value>) -> Vec<PortBinding> {
    let Some(map) = v.and_then(Value::as_object) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (port, bindings) in map {
        for b in bindings.as_array().into_iter().flatten() {
            out.push(PortBinding {
                container_port: port.clone(),
                host_ip: str_field(b, "HostIp"),
                host_port: str_field(b, "HostPort"),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::extract::{CONSTRAINTS_LABEL, extract};
    use serde_json::json;

    fn body() -> Value {
        json!({
            "Image": "busybox",
            "Env": ["A=1", "constraint:node==node-1"],
            "Labels": {"l": "v"},
            "ExposedPorts": {"80/tcp": {}},
            "Tty": true,
            "HostConfig": {
                "Memory": 512,
                "CpuShares": 2,
                "PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]},
                "NetworkMode": "bridge",
                "VolumesFrom": ["data"],
                "Links": ["db:db"],
                "Privileged": true
            }
        })
    }

    #[test]
    fn reads_what_the_filters_need() {
        let r = request_from_body(&body());
        assert_eq!(r.image, "busybox");
        assert_eq!(r.env, ["A=1", "constraint:node==node-1"]);
        assert_eq!(r.labels["l"], "v");
        assert_eq!((r.cpu_shares, r.memory), (2, 512));
        assert_eq!(r.exposed_ports, ["80/tcp"]);
        assert_eq!(r.port_bindings[0].host_port, "8080");
        assert_eq!(r.network_mode, "bridge");
        assert_eq!(r.volumes_from, ["data"]);
        assert_eq!(r.links, ["db:db"]);
    }

    #[test]
    fn old_top_level_resources_count() {
        let r = request_from_body(&json!({"Image": "x", "Memory": 64, "CpuShares": 1}));
        assert_eq!((r.cpu_shares, r.memory), (1, 64));
    }

    #[test]
    fn engine_body_keeps_every_other_field() {
        let b = body();
        let mut r = request_from_body(&b);
        extract(&mut r);
        let out = body_for_engine(&b, &r, 4);
        assert_eq!(out["Env"], json!(["A=1"]));
        assert_eq!(out["Labels"]["l"], "v");
        assert_eq!(out["Labels"][CONSTRAINTS_LABEL], "[\"node==node-1\"]");
        assert_eq!(out["HostConfig"]["CpuShares"], 512, "2 CPUs of 4");
        assert_eq!(out["Tty"], true);
        assert_eq!(out["HostConfig"]["Privileged"], true);
        assert_eq!(out["HostConfig"]["Memory"], 512);
    }

    #[test]
    fn user_networks_skip_builtin_ones() {
        let b = json!({
            "HostConfig": {"NetworkMode": "proj_default"},
            "NetworkingConfig": {"EndpointsConfig": {"proj_default": {}, "back": {}}}
        });
        assert_eq!(user_networks(&b), ["proj_default", "back"]);
        for mode in ["bridge", "host", "none", "default", "container:abc"] {
            assert!(user_networks(&json!({"HostConfig": {"NetworkMode": mode}})).is_empty());
        }
    }

    #[test]
    fn node_prefixed_networks_become_a_soft_constraint() {
        let names = vec!["node-1".to_owned()];
        let mut b = json!({
            "HostConfig": {"NetworkMode": "node-1/back"},
            "NetworkingConfig": {"EndpointsConfig": {"node-1/back": {"Aliases": ["a"]}}}
        });
        assert_eq!(
            strip_network_nodes(&mut b, &names).as_deref(),
            Some("node==~node-1")
        );
        assert_eq!(b["HostConfig"]["NetworkMode"], "back");
        assert_eq!(
            b["NetworkingConfig"]["EndpointsConfig"]["back"]["Aliases"][0],
            "a"
        );
        let mut other = json!({"HostConfig": {"NetworkMode": "team/back"}});
        assert_eq!(
            strip_network_nodes(&mut other, &names),
            None,
            "not an engine name"
        );
        assert_eq!(other["HostConfig"]["NetworkMode"], "team/back");
    }

    #[test]
    fn no_cpu_request_leaves_shares_alone() {
        let b = json!({"Image": "x", "HostConfig": {"CpuShares": 0}});
        let r = request_from_body(&b);
        assert_eq!(body_for_engine(&b, &r, 4)["HostConfig"]["CpuShares"], 0);
    }
}
