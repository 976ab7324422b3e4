//! The scheduler proper: filters then strategy, tried first with soft expressions and,
//! if that finds nothing (any error, including no resources), again without them.
//! The second attempt's error is the one reported.

use rand::Rng;

use super::filter::FilterKind;
use super::filter::pipeline::{self, PipelineError};
use super::model::{Node, Request};
use super::strategy::{DEFAULT_OVERCOMMIT_PERCENT, NoResources, Strategy};

/// Why the container cannot be placed, in classic's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error(transparent)]
    Filters(#[from] PipelineError),
    /// The filters passed but left nothing, which only an empty pool does when the
    /// health filter is not configured.
    #[error("No nodes available in the cluster")]
    NoNodeAvailable,
    #[error(transparent)]
    NoResources(#[from] NoResources),
}

/// `swarm manage`'s scheduling configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scheduler {
    pub strategy: Strategy,
    pub filters: Vec<FilterKind>,
    /// Percent of NCPU and memory a node may be reserved beyond its size.
    pub overcommit_percent: i64,
}

impl Default for Scheduler {
    /// Classic's defaults: spread, every filter, 5% overcommit.
    fn default() -> Self {
        Scheduler {
            strategy: Strategy::Spread,
            filters: FilterKind::ALL.to_vec(),
            overcommit_percent: DEFAULT_OVERCOMMIT_PERCENT,
        }
    }
}

impl Scheduler {
    /// Nodes for `req`, best first. `req` must have gone through
    /// [`crate::scheduler::extract::extract`].
    pub fn select<'a, R: Rng + ?Sized>(
        &self,
        nodes: &'a [Node],
        req: &Request,
        rng: &mut R,
    ) -> Result<Vec<&'a Node>, ScheduleError> {
        self.attempt(nodes, req, true, rng)
            .or_else(|_| self.attempt(nodes, req, false, rng))
    }

    fn attempt<'a, R: Rng + ?Sized>(
        &self,
        nodes: &'a [Node],
        req: &Request,
        soft: bool,
        rng: &mut R,
    ) -> Result<Vec<&'a Node>, ScheduleError> {
        // A drained node is no candidate at all: with none left, the create gets classic's
        // no-node message, as from an empty pool.
        let open = nodes.iter().filter(|n| !n.drained).collect();
        let accepted = pipeline::apply(&self.filters, req, open, soft)?;
        if accepted.is_empty() {
            return Err(ScheduleError::NoNodeAvailable);
        }
        Ok(self
            .strategy
            .rank(req, accepted, self.overcommit_percent, rng)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testutil::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn pool() -> Vec<Node> {
        let mut a = node("a");
        a.labels.insert("disk".into(), "ssd".into());
        a.containers = vec![container("c1", "one"), container("c2", "two")];
        let b = node("b");
        vec![a, b]
    }

    fn select(s: &Scheduler, pool: &[Node], env: &[&str]) -> Result<Vec<String>, ScheduleError> {
        let mut rng = StdRng::seed_from_u64(1);
        let got = s.select(pool, &request(env), &mut rng)?;
        Ok(names(&got).into_iter().map(String::from).collect())
    }

    #[test]
    fn default_spreads_over_all_filters() {
        let s = Scheduler::default();
        assert_eq!(s.strategy, Strategy::Spread);
        assert_eq!(s.filters.len(), 7);
        assert_eq!(s.overcommit_percent, 5);
        assert_eq!(select(&s, &pool(), &[]).unwrap(), ["b", "a"]);
    }

    #[test]
    fn soft_constraint_is_honoured_when_possible() {
        let s = Scheduler::default();
        assert_eq!(
            select(&s, &pool(), &["constraint:disk==~ssd"]).unwrap(),
            ["a"]
        );
    }

    #[test]
    fn soft_constraint_is_dropped_when_nothing_fits() {
        let s = Scheduler::default();
        assert_eq!(
            select(&s, &pool(), &["constraint:disk==~nvme"]).unwrap(),
            ["b", "a"]
        );
    }

    #[test]
    fn hard_constraint_fails_with_summary() {
        let s = Scheduler::default();
        assert_eq!(
            select(&s, &pool(), &["constraint:disk==nvme"])
                .unwrap_err()
                .to_string(),
            "Unable to find a node that satisfies the following conditions \n\
             [available container slots]\n\
             [disk==nvme]"
        );
    }

    #[test]
    fn soft_expression_also_dropped_when_resources_run_out() {
        let s = Scheduler::default();
        let mut pool = pool();
        // a (the ssd node) has its 2 CPUs reserved; 5% of 2 rounds down to no overcommit.
        pool[0].containers[0].cpu_shares = 2;
        let mut rng = StdRng::seed_from_u64(1);
        let mut req = request(&["constraint:disk==~ssd"]);
        req.cpu_shares = 1;
        let got = s.select(&pool, &req, &mut rng).unwrap();
        assert_eq!(names(&got), ["b"]);
        let mut hard = request(&["constraint:disk==ssd"]);
        hard.cpu_shares = 1;
        let err = s.select(&pool, &hard, &mut rng).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no resources available to schedule container"
        );
    }

    #[test]
    fn drained_nodes_take_no_new_container() {
        let s = Scheduler::default();
        let mut pool = pool();
        pool[1].drained = true;
        assert_eq!(select(&s, &pool, &[]).unwrap(), ["a"]);
        // Even when a constraint names it.
        assert_eq!(
            select(&s, &pool, &["constraint:node==b"])
                .unwrap_err()
                .to_string(),
            "Unable to find a node that satisfies the following conditions \n\
             [available container slots]\n\
             [node==b]"
        );
        pool[0].drained = true;
        assert_eq!(
            select(&s, &pool, &[]).unwrap_err().to_string(),
            "No healthy node available in the cluster"
        );
        let without_health = Scheduler {
            filters: vec![FilterKind::Constraint],
            ..Scheduler::default()
        };
        assert_eq!(
            select(&without_health, &pool, &[]).unwrap_err().to_string(),
            "No nodes available in the cluster"
        );
    }

    #[test]
    fn empty_pool_without_health_filter() {
        let s = Scheduler {
            filters: vec![FilterKind::Constraint],
            ..Scheduler::default()
        };
        assert_eq!(
            select(&s, &[], &[]).unwrap_err().to_string(),
            "No nodes available in the cluster"
        );
        let with_health = Scheduler::default();
        assert_eq!(
            select(&with_health, &[], &[]).unwrap_err().to_string(),
            "No healthy node available in the cluster"
        );
    }
}
