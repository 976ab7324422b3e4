//! Faults: which to inject when (a pure, seeded plan) and how (over the [`Lab`]).
//!
//! Each fault starts, holds for a while and heals; a quiet gap follows so the cluster can
//! recover before the next one, and the gap's first successful write measures how long the
//! fault kept writes away ([`crate::report`]).

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::lab::Lab;

/// One kind of fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fault {
    /// kill -9 of a manager (the leader if `leader`), restarted when healed.
    Kill { leader: bool },
    /// SIGSTOP of a manager (the leader if `leader`), SIGCONT when healed.
    Pause { leader: bool },
    /// The leader cut off from every other node.
    IsolateLeader,
    /// The managers split in a majority and a minority (random members).
    Partition,
    /// Every manager cut from all but one "bridge" manager, which sees everyone.
    Bridge,
    /// A manager hears the others but they do not hear it (one-way).
    OneWay,
    /// A manager's wall clock jumps by this many seconds (either way).
    Clock { seconds: i64 },
    /// A manager's disk fills up.
    DiskFull,
}

impl Fault {
    /// The kind's name in the report.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Kill { leader: true } => "kill-leader",
            Fault::Kill { leader: false } => "kill",
            Fault::Pause { leader: true } => "pause-leader",
            Fault::Pause { leader: false } => "pause",
            Fault::IsolateLeader => "isolate-leader",
            Fault::Partition => "partition",
            Fault::Bridge => "bridge",
            Fault::OneWay => "one-way",
            Fault::Clock { .. } => "clock",
            Fault::DiskFull => "disk-full",
        }
    }
}

/// A planned fault: what, for how long, then how long to wait after healing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub fault: Fault,
    pub hold: Duration,
    pub quiet: Duration,
}

/// `count` faults drawn from `kinds` (all kinds when empty), seeded.
pub fn plan(seed: u64, count: usize, hold: Duration, quiet: Duration) -> Vec<Step> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..count)
        .map(|_| {
            let fault = match rng.random_range(0..10) {
                0 | 1 => Fault::Kill {
                    leader: rng.random_bool(0.7),
                },
                2 => Fault::Pause {
                    leader: rng.random_bool(0.7),
                },
                3 => Fault::IsolateLeader,
                4 | 5 => Fault::Partition,
                6 => Fault::Bridge,
                7 => Fault::OneWay,
                8 => Fault::Clock {
                    seconds: if rng.random_bool(0.5) { 1 } else { -1 } * rng.random_range(5..300),
                },
                _ => Fault::DiskFull,
            };
            // Holds vary from a half to one and a half of the nominal one.
            let jitter = rng.random_range(0.5..1.5);
            Step {
                fault,
                hold: hold.mul_f64(jitter),
                quiet,
            }
        })
        .collect()
}

/// A fault as injected: on which nodes, and when (on the clients' clock).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Injected {
    pub fault: Fault,
    pub nodes: Vec<usize>,
    pub started: u64,
    pub healed: u64,
}

/// The index (0-based) of the manager the others call leader, if any answers.
pub fn leader(lab: &Lab) -> Option<usize> {
    let nodes = lab.call("GET", "/nodes", None).ok()?;
    let name = nodes
        .as_array()?
        .iter()
        .find(|n| n["ManagerStatus"]["Leader"].as_bool() == Some(true))?["Description"]["Hostname"]
        .as_str()?
        .to_string();
    lab.nodes.iter().position(|n| n.name == name)
}

/// What to do to heal a fault.
pub enum Undo {
    Restart(usize),
    Resume(usize),
    Heal(Vec<usize>),
    Clock(usize),
    Disk(usize),
}

/// Starts `fault`; returns the nodes it hit and how to undo it.
pub fn inject(
    lab: &mut Lab,
    fault: &Fault,
    rng: &mut StdRng,
) -> anyhow::Result<(Vec<usize>, Undo)> {
    let managers: Vec<usize> = (0..lab.nodes.len())
        .filter(|i| lab.nodes[*i].manager)
        .collect();
    let all: Vec<usize> = (0..lab.nodes.len()).collect();
    let pick = |rng: &mut StdRng| managers[rng.random_range(0..managers.len())];
    let leader_or_any = |lab: &Lab, rng: &mut StdRng, want: bool| {
        if want {
            leader(lab).unwrap_or_else(|| pick(rng))
        } else {
            pick(rng)
        }
    };
    // 1-based indexes for the network.
    let one = |v: &[usize]| v.iter().map(|i| i + 1).collect::<Vec<_>>();
    Ok(match fault {
        Fault::Kill { leader } => {
            let n = leader_or_any(lab, rng, *leader);
            lab.crash(n);
            (vec![n], Undo::Restart(n))
        }
        Fault::Pause { leader } => {
            let n = leader_or_any(lab, rng, *leader);
            lab.pause(n);
            (vec![n], Undo::Resume(n))
        }
        Fault::IsolateLeader => {
            let n = leader_or_any(lab, rng, true);
            let others: Vec<usize> = all.iter().copied().filter(|i| *i != n).collect();
            lab.net.cut(n + 1, &one(&others), true, true)?;
            for o in &others {
                lab.net.cut(o + 1, &[n + 1], true, true)?;
            }
            (vec![n], Undo::Heal(all.clone()))
        }
        Fault::Partition => {
            let mut shuffled = all.clone();
            for i in (1..shuffled.len()).rev() {
                shuffled.swap(i, rng.random_range(0..=i));
            }
            let minority = shuffled[..all.len() / 2].to_vec();
            let majority = shuffled[all.len() / 2..].to_vec();
            for m in &minority {
                lab.net.cut(m + 1, &one(&majority), true, true)?;
            }
            for m in &majority {
                lab.net.cut(m + 1, &one(&minority), true, true)?;
            }
            (minority, Undo::Heal(all.clone()))
        }
        Fault::Bridge => {
            let bridge = pick(rng);
            for i in &all {
                if *i == bridge {
                    continue;
                }
                let cut: Vec<usize> = all
                    .iter()
                    .copied()
                    .filter(|o| o != i && *o != bridge)
                    .collect();
                lab.net.cut(i + 1, &one(&cut), true, true)?;
            }
            (vec![bridge], Undo::Heal(all.clone()))
        }
        Fault::OneWay => {
            let n = pick(rng);
            let others: Vec<usize> = all.iter().copied().filter(|i| *i != n).collect();
            // Its packets out are dropped; it still receives.
            lab.net.cut(n + 1, &one(&others), false, true)?;
            (vec![n], Undo::Heal(vec![n]))
        }
        Fault::Clock { seconds } => {
            let n = pick(rng);
            lab.set_clock(n, *seconds)?;
            (vec![n], Undo::Clock(n))
        }
        Fault::DiskFull => {
            let n = pick(rng);
            lab.fill_disk(n)?;
            (vec![n], Undo::Disk(n))
        }
    })
}

/// Heals what [`inject`] did.
pub fn heal(lab: &mut Lab, undo: Undo) -> anyhow::Result<()> {
    match undo {
        Undo::Restart(n) => lab.restart(n),
        Undo::Resume(n) => {
            lab.resume(n);
            Ok(())
        }
        Undo::Heal(nodes) => {
            for n in nodes {
                lab.net.heal(n + 1)?;
            }
            Ok(())
        }
        Undo::Clock(n) => lab.set_clock(n, 0),
        Undo::Disk(n) => lab.free_disk(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_are_reproducible_and_mix_the_kinds() {
        let a = plan(7, 200, Duration::from_secs(4), Duration::from_secs(4));
        let b = plan(7, 200, Duration::from_secs(4), Duration::from_secs(4));
        assert_eq!(a, b);
        let kinds: std::collections::BTreeSet<&str> = a.iter().map(|s| s.fault.kind()).collect();
        assert!(kinds.len() >= 9, "{kinds:?}");
        assert!(
            a.iter()
                .all(|s| s.hold >= Duration::from_secs(2) && s.hold <= Duration::from_secs(6))
        );
        assert_ne!(
            a,
            plan(8, 200, Duration::from_secs(4), Duration::from_secs(4))
        );
    }
}
