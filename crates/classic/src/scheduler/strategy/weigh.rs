//! Classic's node weight for spread and binpack: the percentage of CPU and of memory a
//! node would have reserved with the request placed (over all its containers, stopped
//! ones included, against its overcommitted capacity), plus a health term. A resource
//! the request does not reserve scores a flat 100. Nodes the request would push over
//! 100% of either resource are left out. Ties are broken by container count.

use crate::scheduler::model::{Node, Request};

/// Nothing is left after leaving out the nodes the request does not fit on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no resources available to schedule container")]
pub struct NoResources;

pub(super) struct Weighted<'a> {
    pub node: &'a Node,
    pub weight: i64,
}

impl Weighted<'_> {
    /// Ascending order: weight, then fewer containers first.
    pub fn cmp_key(&self) -> (i64, usize) {
        (self.weight, self.node.containers.len())
    }
}

pub(super) fn weigh<'a>(
    req: &Request,
    nodes: Vec<&'a Node>,
    overcommit_percent: i64,
    health_factor: i64,
) -> Result<Vec<Weighted<'a>>, NoResources> {
    let mut out = Vec::with_capacity(nodes.len());
    for node in nodes {
        let total_cpus = node.total_cpus(overcommit_percent);
        let total_memory = node.total_memory(overcommit_percent);
        if total_memory < req.memory || total_cpus < req.cpu_shares {
            continue;
        }
        // A zero total only gets here with a zero request, which scores 100.
        let cpu = if req.cpu_shares > 0 {
            (node.used_cpus() + req.cpu_shares) * 100 / total_cpus
        } else {
            100
        };
        let memory = if req.memory > 0 {
            (node.used_memory() + req.memory) * 100 / total_memory
        } else {
            100
        };
        if cpu <= 100 && memory <= 100 {
            out.push(Weighted {
                node,
                weight: cpu + memory + health_factor * node.health,
            });
        }
    }
    if out.is_empty() {
        return Err(NoResources);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::model::Container;
    use crate::scheduler::testutil::*;

    fn with_used(cpus: i64, memory: i64, used_cpus: i64, used_mem: i64) -> Node {
        let mut n = node("n");
        n.cpus = cpus;
        n.memory = memory;
        n.health = 0;
        n.containers = vec![Container {
            id: "c".into(),
            state: "exited".into(),
            cpu_shares: used_cpus,
            memory: used_mem,
            ..Default::default()
        }];
        n
    }

    fn weight(n: &Node, cpus: i64, memory: i64, overcommit: i64) -> Result<i64, NoResources> {
        let req = Request {
            cpu_shares: cpus,
            memory,
            ..Default::default()
        };
        Ok(weigh(&req, vec![n], overcommit, 10)?[0].weight)
    }

    #[test]
    fn percentages_include_stopped_containers() {
        let n = with_used(4, 1000, 1, 250);
        assert_eq!(weight(&n, 1, 250, 0), Ok(50 + 50));
    }

    #[test]
    fn unreserved_resource_scores_100() {
        let n = with_used(4, 1000, 1, 250);
        assert_eq!(weight(&n, 0, 0, 0), Ok(200));
        assert_eq!(weight(&n, 1, 0, 0), Ok(50 + 100));
    }

    #[test]
    fn overcommit_extends_capacity() {
        // 4 CPUs with 3 used: one more fits exactly, a second only with 50% overcommit.
        let n = with_used(4, 1000, 3, 0);
        assert_eq!(weight(&n, 1, 0, 0), Ok(100 + 100));
        assert_eq!(weight(&n, 2, 0, 0), Err(NoResources));
        assert_eq!(weight(&n, 2, 0, 50), Ok(5 * 100 / 6 + 100));
    }

    #[test]
    fn request_larger_than_node_is_left_out() {
        let n = with_used(2, 1000, 0, 0);
        assert_eq!(weight(&n, 3, 0, 0), Err(NoResources));
        assert_eq!(weight(&n, 0, 1001, 0), Err(NoResources));
        assert_eq!(weight(&n, 0, 1001, 5), Ok(100 + 1001 * 100 / 1050));
    }

    #[test]
    fn health_factor_multiplies_indicator() {
        let mut n = with_used(4, 1000, 0, 0);
        n.health = 100;
        assert_eq!(weight(&n, 0, 0, 0), Ok(200 + 1000));
    }
}
