//! Classic's placement strategies: `spread` (least loaded first), `binpack` (most
//! loaded that still fits first) and `random`. They rank the nodes the filters kept.

mod weigh;

use rand::Rng;

use super::model::{Node, Request};

pub use weigh::NoResources;

/// Classic's default `swarm.overcommit=0.05`, as the whole percent it computes with.
pub const DEFAULT_OVERCOMMIT_PERCENT: i64 = 5;

/// A `--strategy` name classic does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("strategy not supported")]
pub struct StrategyNotSupported;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Classic's default.
    #[default]
    Spread,
    Binpack,
    Random,
}

impl Strategy {
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Spread => "spread",
            Strategy::Binpack => "binpack",
            Strategy::Random => "random",
        }
    }

    /// Resolves `--strategy`; `binpacking` is classic's old spelling of `binpack`.
    pub fn from_name(name: &str) -> Result<Strategy, StrategyNotSupported> {
        match name {
            "spread" => Ok(Strategy::Spread),
            "binpack" | "binpacking" => Ok(Strategy::Binpack),
            "random" => Ok(Strategy::Random),
            _ => Err(StrategyNotSupported),
        }
    }

    /// Orders `nodes` best first. Spread and binpack leave out nodes the request does
    /// not fit on and fail when none is left; random shuffles them all, unchecked,
    /// as classic's does. `rng` is only used by random.
    pub fn rank<'a, R: Rng + ?Sized>(
        self,
        req: &Request,
        nodes: Vec<&'a Node>,
        overcommit_percent: i64,
        rng: &mut R,
    ) -> Result<Vec<&'a Node>, NoResources> {
        match self {
            Strategy::Spread => {
                // Unhealthier nodes weigh less, so spread would favour them: subtract.
                let mut w = weigh::weigh(req, nodes, overcommit_percent, -10)?;
                w.sort_by_key(|w| w.cmp_key());
                Ok(w.into_iter().map(|w| w.node).collect())
            }
            Strategy::Binpack => {
                let mut w = weigh::weigh(req, nodes, overcommit_percent, 10)?;
                w.sort_by_key(|w| std::cmp::Reverse(w.cmp_key()));
                Ok(w.into_iter().map(|w| w.node).collect())
            }
            Strategy::Random => {
                let mut nodes = nodes;
                for i in (1..nodes.len()).rev() {
                    let j = rng.random_range(0..=i);
                    nodes.swap(i, j);
                }
                Ok(nodes)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::model::Container;
    use crate::scheduler::testutil::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn loaded(name: &str, cpus: i64, memory: i64, count: usize) -> Node {
        let mut n = node(name);
        n.cpus = 4;
        n.memory = 4096;
        n.containers = (0..count)
            .map(|i| Container {
                id: format!("{name}{i}"),
                cpu_shares: if i == 0 { cpus } else { 0 },
                memory: if i == 0 { memory } else { 0 },
                ..Default::default()
            })
            .collect();
        n
    }

    fn req(cpus: i64, memory: i64) -> Request {
        Request {
            cpu_shares: cpus,
            memory,
            ..Default::default()
        }
    }

    fn rank(s: Strategy, r: &Request, nodes: &[Node]) -> Result<Vec<String>, NoResources> {
        let mut rng = StdRng::seed_from_u64(7);
        let got = s.rank(r, nodes.iter().collect(), 0, &mut rng)?;
        Ok(names(&got).into_iter().map(String::from).collect())
    }

    #[test]
    fn names_and_compat_spelling() {
        assert_eq!(Strategy::from_name("binpacking"), Ok(Strategy::Binpack));
        assert_eq!(Strategy::from_name("spread"), Ok(Strategy::Spread));
        assert_eq!(Strategy::from_name("random"), Ok(Strategy::Random));
        assert_eq!(
            Strategy::from_name("roundrobin").unwrap_err().to_string(),
            "strategy not supported"
        );
        assert_eq!(Strategy::default().name(), "spread");
    }

    #[test]
    fn spread_prefers_least_loaded_binpack_most_loaded() {
        let nodes = [
            loaded("half", 2, 2048, 1),
            loaded("empty", 0, 0, 0),
            loaded("most", 3, 3072, 1),
        ];
        let r = req(1, 1024);
        assert_eq!(
            rank(Strategy::Spread, &r, &nodes).unwrap(),
            ["empty", "half", "most"]
        );
        assert_eq!(
            rank(Strategy::Binpack, &r, &nodes).unwrap(),
            ["most", "half", "empty"]
        );
    }

    #[test]
    fn ties_break_on_container_count() {
        let nodes = [loaded("many", 0, 0, 3), loaded("few", 0, 0, 1)];
        let r = req(0, 0);
        assert_eq!(rank(Strategy::Spread, &r, &nodes).unwrap(), ["few", "many"]);
        assert_eq!(
            rank(Strategy::Binpack, &r, &nodes).unwrap(),
            ["many", "few"]
        );
    }

    #[test]
    fn health_weighs_in() {
        let mut sick = loaded("sick", 0, 0, 0);
        sick.health = 50;
        let nodes = [sick, loaded("fine", 0, 0, 0)];
        let r = req(1, 1024);
        // Spread subtracts 10*health: the healthy node weighs less and comes first.
        assert_eq!(
            rank(Strategy::Spread, &r, &nodes).unwrap(),
            ["fine", "sick"]
        );
        // Binpack adds it: the healthy node weighs more and comes first too.
        assert_eq!(
            rank(Strategy::Binpack, &r, &nodes).unwrap(),
            ["fine", "sick"]
        );
    }

    #[test]
    fn no_fit_is_an_error_for_spread_and_binpack_not_random() {
        let nodes = [loaded("full", 4, 0, 1)];
        let r = req(1, 0);
        let err = rank(Strategy::Spread, &r, &nodes).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no resources available to schedule container"
        );
        assert!(rank(Strategy::Binpack, &r, &nodes).is_err());
        assert_eq!(rank(Strategy::Random, &r, &nodes).unwrap(), ["full"]);
    }

    #[test]
    fn random_is_a_permutation_driven_by_the_rng() {
        let nodes: Vec<Node> = (0..8).map(|i| node(&format!("n{i}"))).collect();
        let mut got = rank(Strategy::Random, &req(0, 0), &nodes).unwrap();
        let original: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
        assert_ne!(got, original, "seed 7 shuffles 8 nodes");
        got.sort();
        assert_eq!(got, original);
    }
}
