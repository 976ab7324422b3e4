//! Containers being created count before the engine lists them: classic adds each
//! pending container to its engine's node when it builds the scheduler's view, so two
//! concurrent `docker run -p 80:80` (e.g. `compose scale`) do not land on one engine.

use super::model::{Container, Node, Request};

/// Classic's `AddContainer` refusal. It compares the request with the engine's whole
/// capacity, not what is left, so it only refuses containers larger than the engine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not enough resources")]
pub struct NotEnoughResources;

impl Node {
    /// Adds `req`, being created under `name` (may be empty), as a pending container
    /// (no ID). Skipped when a container with the request's Swarm ID is already listed.
    /// The manager ignores the error, as classic does; the node is then unchanged.
    pub fn add_pending(
        &mut self,
        name: &str,
        req: &Request,
        overcommit_percent: i64,
    ) -> Result<(), NotEnoughResources> {
        let pending = Container {
            names: if name.is_empty() {
                Vec::new()
            } else {
                vec![format!("/{name}")]
            },
            image: req.image.clone(),
            labels: req.labels.clone(),
            cpu_shares: req.cpu_shares,
            memory: req.memory,
            port_bindings: req.port_bindings.clone(),
            ..Default::default()
        };
        if self.container(pending.swarm_id()).is_some() {
            return Ok(());
        }
        if self.total_memory(overcommit_percent) < req.memory
            || self.total_cpus(overcommit_percent) < req.cpu_shares
        {
            return Err(NotEnoughResources);
        }
        self.containers.push(pending);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::model::{PortBinding, SWARM_ID_LABEL};
    use crate::scheduler::testutil::*;

    fn req(swarm_id: &str, cpus: i64) -> Request {
        let mut r = Request {
            cpu_shares: cpus,
            memory: 100,
            port_bindings: vec![PortBinding {
                container_port: "80/tcp".into(),
                host_ip: String::new(),
                host_port: "80".into(),
            }],
            ..Default::default()
        };
        r.labels.insert(SWARM_ID_LABEL.into(), swarm_id.into());
        r
    }

    #[test]
    fn pending_container_reserves_and_holds_ports() {
        let mut n = node("a");
        n.add_pending("web", &req("s1", 1), 0).unwrap();
        assert_eq!(n.containers.len(), 1);
        let c = &n.containers[0];
        assert!(c.id.is_empty());
        assert_eq!(c.names, ["/web"]);
        assert_eq!((n.used_cpus(), n.used_memory()), (1, 100));
        assert_eq!(c.port_bindings[0].host_port, "80");
    }

    #[test]
    fn already_listed_swarm_id_is_not_added_twice() {
        let mut n = node("a");
        let mut listed = container("abc", "web");
        listed.labels.insert(SWARM_ID_LABEL.into(), "s1".into());
        n.containers.push(listed);
        n.add_pending("web", &req("s1", 1), 0).unwrap();
        assert_eq!(n.containers.len(), 1);
    }

    #[test]
    fn only_containers_larger_than_the_engine_are_refused() {
        let mut n = node("a"); // 2 CPUs
        n.add_pending("", &req("s1", 2), 0).unwrap();
        n.add_pending("", &req("s2", 2), 0).unwrap();
        assert_eq!(n.used_cpus(), 4, "capacity, not free space, is checked");
        let err = n.add_pending("", &req("s3", 3), 0).unwrap_err();
        assert_eq!(err.to_string(), "not enough resources");
        assert_eq!(n.containers.len(), 2);
        assert!(n.add_pending("", &req("s3", 3), 50).is_ok());
    }
}
