//! The config a moved container is recreated from, as classic's watchdog rebuilt it:
//! the last inspect's Config, HostConfig, and its networks as the create's
//! EndpointsConfig (classic's `BuildContainerConfig(info.Config, info.HostConfig,
//! {EndpointsConfig: info.NetworkSettings.Networks})`). Labels come along, so the copy
//! keeps its Swarm ID, policy and constraints.

use serde_json::{Map, Value};

use crate::scheduler::cpu::cpus_to_shares;
use crate::scheduler::model::{Container, Request};

/// Why a container cannot be recreated from its inspect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Classic's wording.
    #[error("container {0} has no name")]
    NoName(String),
    #[error("container {0} has no config to recreate it from")]
    NoConfig(String),
}

/// What the engine filled in on an endpoint when it connected the old container; the
/// new one gets its own. Only what a user can ask for (IPAMConfig, Links, Aliases,
/// DriverOpts, GwPriority) is sent again.
const ENDPOINT_STATE: &[&str] = &[
    "NetworkID",
    "EndpointID",
    "Gateway",
    "IPAddress",
    "IPPrefixLen",
    "IPv6Gateway",
    "GlobalIPv6Address",
    "GlobalIPv6PrefixLen",
    "MacAddress",
    "DNSNames",
];

/// The name to recreate under, without the leading `/`.
pub fn name_of(inspect: &Value) -> Result<String, BodyError> {
    let name = inspect.get("Name").and_then(Value::as_str).unwrap_or("");
    match name.strip_prefix('/').unwrap_or(name) {
        "" => Err(BodyError::NoName(id_of(inspect))),
        n => Ok(n.to_owned()),
    }
}

/// A `POST /containers/create` body from an inspect: Config's fields at the top,
/// HostConfig, and NetworkingConfig from the networks the container was on.
pub fn create_body(inspect: &Value) -> Result<Value, BodyError> {
    let Some(Value::Object(config)) = inspect.get("Config") else {
        return Err(BodyError::NoConfig(id_of(inspect)));
    };
    let mut body = config.clone();
    if let Some(host) = inspect.get("HostConfig") {
        body.insert("HostConfig".into(), host.clone());
    }
    let short_id: String = id_of(inspect).chars().take(12).collect();
    let endpoints: Map<String, Value> = inspect
        .pointer("/NetworkSettings/Networks")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(net, ep)| (net.clone(), endpoint_config(ep, &short_id)))
        .collect();
    if !endpoints.is_empty() {
        let mut net = Map::new();
        net.insert("EndpointsConfig".into(), Value::Object(endpoints));
        body.insert("NetworkingConfig".into(), Value::Object(net));
    }
    Ok(Value::Object(body))
}

/// An endpoint as configured, without what the engine set (see [`ENDPOINT_STATE`]) and
/// without the alias older engines add for the old container's short ID.
fn endpoint_config(ep: &Value, short_id: &str) -> Value {
    let Some(ep) = ep.as_object() else {
        return Value::Object(Map::new());
    };
    let mut out: Map<String, Value> = ep
        .iter()
        .filter(|(k, _)| !ENDPOINT_STATE.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(Value::Array(aliases)) = out.get_mut("Aliases") {
        aliases.retain(|a| a.as_str() != Some(short_id));
    }
    out.into_iter()
        .filter(|(_, v)| !v.is_null())
        .collect::<Map<_, _>>()
        .into()
}

/// The scheduler's request for a moved container: what the engine's inspect said it
/// reserves and holds (CPUs in classic's unit, as read on its old engine), and the
/// links and volumes-from the dependency filter follows.
pub fn request_for(container: &Container, body: &Value) -> Request {
    let host = body.get("HostConfig");
    let strings = |k: &str| -> Vec<String> {
        host.and_then(|h| h.get(k))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    Request {
        image: container.image.clone(),
        env: Vec::new(),
        labels: container.labels.clone(),
        cpu_shares: container.cpu_shares,
        memory: container.memory,
        exposed_ports: container.exposed_ports.clone(),
        port_bindings: container.port_bindings.clone(),
        network_mode: container.network_mode.clone(),
        volumes_from: strings("VolumesFrom"),
        links: strings("Links"),
    }
}

/// The body for the chosen engine: the CPUs reserved become that engine's shares,
/// `ceil(cpus * 1024 / NCPU)`, as classic's `Engine.CreateContainer` writes them.
pub fn for_engine(body: &Value, cpus: i64, ncpu: i64) -> Value {
    let mut out = body.clone();
    if let Some(host) = out.get_mut("HostConfig").and_then(Value::as_object_mut) {
        host.insert("CpuShares".into(), Value::from(cpus_to_shares(cpus, ncpu)));
    }
    out
}

fn id_of(inspect: &Value) -> String {
    inspect
        .get("Id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
#[path = "body_tests.rs"]
mod tests;
