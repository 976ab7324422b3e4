//! What the scheduler sees: engines and their containers, and the container asked for.
//!
//! Plain data, filled by the manager from the engines' `/info` and `/containers/json`.
//! CPU amounts are in classic's unit, *number of CPUs* (classic turns a request's CPU
//! shares into CPUs reserved, and an engine's containers' shares back into CPUs), so that
//! reservations compare with an engine's NCPU.

use std::collections::HashMap;
use std::sync::Arc;

/// Label classic reads a container's Swarm ID from (set on every container it creates).
pub const SWARM_ID_LABEL: &str = "com.docker.swarm.id";

/// One engine of the pool.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Node {
    pub id: String,
    pub name: String,
    pub addr: String,
    /// The engine's own labels (`dockerd --label`).
    pub labels: HashMap<String, String>,
    /// The constraint keys classic derives from `/info`.
    pub storage_driver: String,
    pub kernel_version: String,
    pub operating_system: String,
    pub os_type: String,
    /// NCPU and MemTotal (bytes) as the engine reports them, before overcommit.
    pub cpus: i64,
    pub memory: i64,
    /// Classic's health indicator, 0 (unhealthy) to 100: 100 minus the share of failed
    /// refreshes out of the allowed retries; see [`Node::health_from`].
    pub health: i64,
    /// The node takes no new container (its pool member is a drained swarm node); it is
    /// still listed and its containers still reached.
    pub drained: bool,
    pub containers: Vec<Container>,
    pub images: Vec<Image>,
}

impl Node {
    /// Classic's `HealthIndicator`: 0 if the engine is not healthy or has used up its
    /// retries, else `100 - failures*100/retries`.
    pub fn health_from(healthy: bool, failures: i64, retries: i64) -> i64 {
        if !healthy || failures >= retries || retries <= 0 {
            0
        } else {
            100 - failures * 100 / retries
        }
    }

    pub fn is_healthy(&self) -> bool {
        self.health > 0
    }

    /// A label for constraints: classic adds storagedriver, kernelversion,
    /// operatingsystem and ostype to the engine labels when the engine reports them,
    /// and then an engine label cannot override them (an unreported one can stand in).
    pub fn label(&self, key: &str) -> Option<&str> {
        let special = match key {
            "storagedriver" => Some(&self.storage_driver),
            "kernelversion" => Some(&self.kernel_version),
            "operatingsystem" => Some(&self.operating_system),
            "ostype" => Some(&self.os_type),
            _ => None,
        };
        match special {
            Some(v) if !v.is_empty() => Some(v.as_str()),
            _ => self.labels.get(key).map(String::as_str),
        }
    }

    /// CPUs reserved by all containers, stopped ones included (classic counts them all).
    pub fn used_cpus(&self) -> i64 {
        self.containers.iter().map(|c| c.cpu_shares).sum()
    }

    /// Memory reserved by all containers, stopped ones included.
    pub fn used_memory(&self) -> i64 {
        self.containers.iter().map(|c| c.memory).sum()
    }

    /// NCPU plus overcommit (`overcommit_percent` of it, integer arithmetic as classic).
    pub fn total_cpus(&self, overcommit_percent: i64) -> i64 {
        self.cpus + self.cpus * overcommit_percent / 100
    }

    /// Memory plus overcommit.
    pub fn total_memory(&self, overcommit_percent: i64) -> i64 {
        self.memory + self.memory * overcommit_percent / 100
    }

    /// Classic's `Containers.Get`: exact or 12-char short ID, Swarm ID, then a unique
    /// name (`name`, `/name`, `<engine id>/name`, `<engine name>/name`), then a unique
    /// ID or Swarm ID prefix. An ambiguous name or prefix finds nothing.
    pub fn container(&self, id_or_name: &str) -> Option<&Container> {
        if id_or_name.is_empty() {
            return None;
        }
        let short = |s: &str| s.chars().take(12).collect::<String>();
        if let Some(c) = self
            .containers
            .iter()
            .find(|c| c.id == id_or_name || short(&c.id) == id_or_name)
        {
            return Some(c);
        }
        if let Some(c) = self.containers.iter().find(|c| {
            let sid = c.swarm_id();
            !sid.is_empty() && (sid == id_or_name || short(sid) == id_or_name)
        }) {
            return Some(c);
        }
        let by_name: Vec<&Container> = self
            .containers
            .iter()
            .filter(|c| {
                c.names.iter().any(|n| {
                    n == id_or_name
                        || format!("/{id_or_name}") == *n
                        || format!("{}{n}", self.id) == id_or_name
                        || format!("{}{n}", self.name) == id_or_name
                })
            })
            .collect();
        match by_name.len() {
            1 => return Some(by_name[0]),
            0 => {}
            _ => return None,
        }
        let by_prefix: Vec<&Container> = self
            .containers
            .iter()
            .filter(|c| c.id.starts_with(id_or_name))
            .chain(
                self.containers
                    .iter()
                    .filter(|c| c.swarm_id().starts_with(id_or_name)),
            )
            .collect();
        if by_prefix.len() == 1 {
            Some(by_prefix[0])
        } else {
            None
        }
    }
}

/// A container already on an engine (running, stopped, or pending: being created there).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Container {
    /// Empty while pending (classic's placeholder for a container under construction).
    pub id: String,
    /// As the engine lists them, with a leading `/`.
    pub names: Vec<String>,
    pub image: String,
    pub labels: HashMap<String, String>,
    /// CPUs reserved (see module docs) and memory reserved in bytes.
    pub cpu_shares: i64,
    pub memory: i64,
    /// Requested bindings (HostConfig.PortBindings); kept for stopped containers.
    pub port_bindings: Vec<PortBinding>,
    /// Bindings in effect (NetworkSettings.Ports), with dynamically allocated host ports.
    pub published: Vec<PortBinding>,
    /// `port/proto` keys of Config.ExposedPorts; what a host-network container holds.
    pub exposed_ports: Vec<String>,
    pub network_mode: String,
    pub state: String,
    /// The engine's whole inspect, kept only for containers with a reschedule policy: when
    /// their engine dies, it is the config they are recreated from elsewhere (classic kept
    /// every container's inspect for this).
    pub inspect: Option<Arc<serde_json::Value>>,
    /// The engine's last `/containers/json` entry for it: `docker ps` through the manager
    /// is answered from these (classic answered from its cache too).
    pub summary: Option<Arc<bollard_stubs::models::ContainerSummary>>,
    /// The inspect's `State`, redone on every state-changing event: `docker ps`'s Status
    /// ("Up 5 minutes") is computed from it at answer time, as classic did.
    pub state_detail: Option<Arc<bollard_stubs::models::ContainerState>>,
}

impl Container {
    pub fn swarm_id(&self) -> &str {
        self.labels.get(SWARM_ID_LABEL).map_or("", String::as_str)
    }
}

/// An image on an engine, for `affinity:image==`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Image {
    pub id: String,
    pub repo_tags: Vec<String>,
}

/// One host binding of a container port, as in Docker's PortMap.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortBinding {
    /// `80/tcp`, the container side.
    pub container_port: String,
    /// Empty means all interfaces.
    pub host_ip: String,
    /// Empty means "any port", allocated by the engine.
    pub host_port: String,
}

/// The container asked for, after [`crate::scheduler::extract`] took the Swarm
/// expressions out of its env into its labels.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Request {
    pub image: String,
    pub env: Vec<String>,
    pub labels: HashMap<String, String>,
    /// CPUs reserved (classic's unit) and memory in bytes; 0 means no reservation.
    pub cpu_shares: i64,
    pub memory: i64,
    /// `port/proto` keys of Config.ExposedPorts (used in host network mode).
    pub exposed_ports: Vec<String>,
    pub port_bindings: Vec<PortBinding>,
    pub network_mode: String,
    pub volumes_from: Vec<String>,
    pub links: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: &str, name: &str) -> Container {
        Container {
            id: id.into(),
            names: vec![format!("/{name}")],
            ..Default::default()
        }
    }

    #[test]
    fn health_indicator_follows_failures() {
        assert_eq!(Node::health_from(true, 0, 3), 100);
        assert_eq!(Node::health_from(true, 1, 3), 67);
        assert_eq!(Node::health_from(true, 3, 3), 0);
        assert_eq!(Node::health_from(false, 0, 3), 0);
    }

    #[test]
    fn special_keys_override_labels() {
        let mut n = Node {
            storage_driver: "overlay2".into(),
            ..Default::default()
        };
        n.labels.insert("storagedriver".into(), "user".into());
        n.labels.insert("zone".into(), "a".into());
        assert_eq!(n.label("storagedriver"), Some("overlay2"));
        n.labels.insert("ostype".into(), "user".into());
        assert_eq!(
            n.label("ostype"),
            Some("user"),
            "unreported: the label stands in"
        );
        assert_eq!(n.label("zone"), Some("a"));
        assert_eq!(n.label("none"), None);
    }

    #[test]
    fn overcommit_and_usage_count_stopped_containers() {
        let mut stopped = c("a", "a");
        stopped.state = "exited".into();
        stopped.cpu_shares = 1;
        stopped.memory = 100;
        let n = Node {
            cpus: 4,
            memory: 1000,
            containers: vec![stopped, c("b", "b")],
            ..Default::default()
        };
        assert_eq!(n.used_cpus(), 1);
        assert_eq!(n.used_memory(), 100);
        assert_eq!(n.total_cpus(50), 6);
        assert_eq!(n.total_memory(5), 1050);
    }

    #[test]
    fn container_lookup_by_id_name_and_prefix() {
        let n = Node {
            id: "E1".into(),
            name: "node1".into(),
            containers: vec![c("0123456789abcdef", "redis"), c("fedcba9876543210", "web")],
            ..Default::default()
        };
        assert_eq!(n.container("0123456789ab").unwrap().names[0], "/redis");
        assert_eq!(n.container("redis").unwrap().id, "0123456789abcdef");
        assert_eq!(n.container("/web").unwrap().id, "fedcba9876543210");
        assert_eq!(n.container("node1/web").unwrap().id, "fedcba9876543210");
        assert_eq!(n.container("fed").unwrap().id, "fedcba9876543210");
        assert!(n.container("nope").is_none());
        assert!(n.container("").is_none());
    }
}
