//! Faults: which to inject when (a pure, seeded plan) and how (over the [`Lab`]).
//!
//! Each fault starts, holds for a while and heals; a quiet gap follows so the cluster can
//! recover before the next one, and the gap's first successful write measures how long the
//! fault kept writes away ([`crate::report`]).

use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
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
    /// Several managers' wall clocks jump at once, each by its own offset.
    Clocks { seconds: Vec<i64> },
    /// A manager's disk fills up.
    DiskFull,
    /// A manager's disk (the leader's if `leader`) serves only `iops` reads and writes a
    /// second, fsyncs included.
    SlowDisk { leader: bool, iops: u64 },
    /// Two faults of different kinds at once, healed in reverse order.
    Mixed(Vec<Fault>),
}

/// Every kind's name, as [`Fault::kind`] gives it and `--counts` takes it.
pub const KINDS: [&str; 14] = [
    "kill-leader",
    "kill",
    "pause-leader",
    "pause",
    "isolate-leader",
    "partition",
    "bridge",
    "one-way",
    "clock",
    "clocks",
    "disk-full",
    "slow-disk",
    "slow-disk-leader",
    "mixed",
];

/// Whether a [`Fault::Mixed`] may combine this kind. A full disk is left out: filling a
/// disk that is also throttled would hold the harness for minutes; so are the kinds that
/// are mixes already (several clocks, two faults) and the follower's slow disk (the
/// leader's is in).
fn mixable(kind: &str) -> bool {
    !matches!(kind, "clocks" | "disk-full" | "slow-disk" | "mixed")
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
            Fault::Clocks { .. } => "clocks",
            Fault::DiskFull => "disk-full",
            Fault::SlowDisk { leader: false, .. } => "slow-disk",
            Fault::SlowDisk { leader: true, .. } => "slow-disk-leader",
            Fault::Mixed(_) => "mixed",
        }
    }

    /// A fault of kind `kind` (one of [`KINDS`]) with its parameters drawn from `rng`.
    pub fn draw(kind: &str, rng: &mut StdRng) -> Option<Fault> {
        let jump = |rng: &mut StdRng| {
            let sign = if rng.random_bool(0.5) { 1 } else { -1 };
            sign * rng.random_range(5..300)
        };
        Some(match kind {
            "kill-leader" => Fault::Kill { leader: true },
            "kill" => Fault::Kill { leader: false },
            "pause-leader" => Fault::Pause { leader: true },
            "pause" => Fault::Pause { leader: false },
            "isolate-leader" => Fault::IsolateLeader,
            "partition" => Fault::Partition,
            "bridge" => Fault::Bridge,
            "one-way" => Fault::OneWay,
            "clock" => Fault::Clock { seconds: jump(rng) },
            "clocks" => Fault::Clocks {
                seconds: (0..rng.random_range(2..=3)).map(|_| jump(rng)).collect(),
            },
            "disk-full" => Fault::DiskFull,
            "slow-disk" | "slow-disk-leader" => Fault::SlowDisk {
                leader: kind == "slow-disk-leader",
                iops: rng.random_range(10..100),
            },
            "mixed" => {
                let mut any_mixable = || loop {
                    let k = KINDS[rng.random_range(0..KINDS.len())];
                    if mixable(k) {
                        break k;
                    }
                };
                let a = any_mixable();
                let b = loop {
                    let b = any_mixable();
                    if b != a {
                        break b;
                    }
                };
                Fault::Mixed(vec![Fault::draw(a, rng)?, Fault::draw(b, rng)?])
            }
            _ => return None,
        })
    }
}

/// A planned fault: what, for how long, then how long to wait after healing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub fault: Fault,
    pub hold: Duration,
    pub quiet: Duration,
}

fn step(fault: Fault, hold: Duration, quiet: Duration, rng: &mut StdRng) -> Step {
    // Holds vary from a half to one and a half of the nominal one.
    let jitter = rng.random_range(0.5..1.5);
    Step {
        fault,
        hold: hold.mul_f64(jitter),
        quiet,
    }
}

/// `count` faults of every kind, weighted, seeded.
pub fn plan(seed: u64, count: usize, hold: Duration, quiet: Duration) -> Vec<Step> {
    // How often each of KINDS comes up, in KINDS's order: leader kills and partitions
    // twice as often; a follower's slow disk only in campaigns.
    const WEIGHTS: [u32; KINDS.len()] = [2, 1, 1, 1, 1, 2, 1, 1, 1, 1, 1, 0, 1, 1];
    let total: u32 = WEIGHTS.iter().sum();
    let mut rng = StdRng::seed_from_u64(seed);
    (0..count)
        .map(|_| {
            let mut r = rng.random_range(0..total);
            let i = WEIGHTS.iter().position(|w| {
                let hit = r < *w;
                r = r.saturating_sub(*w);
                hit
            });
            let kind = KINDS[i.expect("r < total")];
            let fault = Fault::draw(kind, &mut rng).expect("a known kind");
            step(fault, hold, quiet, &mut rng)
        })
        .collect()
}

/// A fixed campaign: exactly `counts` faults of each kind, in a seeded random order.
pub fn campaign(
    seed: u64,
    counts: &[(String, usize)],
    hold: Duration,
    quiet: Duration,
) -> anyhow::Result<Vec<Step>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut kinds: Vec<&str> = Vec::new();
    for (kind, n) in counts {
        anyhow::ensure!(
            KINDS.contains(&kind.as_str()),
            "unknown fault kind {kind:?} (one of {})",
            KINDS.join(", ")
        );
        kinds.extend(std::iter::repeat_n(kind.as_str(), *n));
    }
    kinds.shuffle(&mut rng);
    Ok(kinds
        .into_iter()
        .map(|k| {
            let fault = Fault::draw(k, &mut rng).expect("checked above");
            step(fault, hold, quiet, &mut rng)
        })
        .collect())
}

/// Parses `kill-leader=100,partition=50` (kinds checked by [`campaign`]).
pub fn parse_counts(s: &str) -> Result<Vec<(String, usize)>, String> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (kind, n) = p
                .split_once('=')
                .ok_or_else(|| format!("{p:?}: expected KIND=COUNT"))?;
            let n = n.parse().map_err(|e| format!("{p:?}: {e}"))?;
            Ok((kind.to_string(), n))
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
    Clocks(Vec<usize>),
    Disk(usize),
    Unthrottle(usize),
    /// Several, healed last first.
    All(Vec<Undo>),
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
            (vec![n], Undo::Clocks(vec![n]))
        }
        Fault::Clocks { seconds } => {
            let mut hit = managers.clone();
            hit.shuffle(rng);
            hit.truncate(seconds.len());
            for (n, s) in hit.iter().zip(seconds) {
                lab.set_clock(*n, *s)?;
            }
            (hit.clone(), Undo::Clocks(hit))
        }
        Fault::DiskFull => {
            let n = pick(rng);
            lab.fill_disk(n)?;
            (vec![n], Undo::Disk(n))
        }
        Fault::SlowDisk { leader, iops } => {
            let n = leader_or_any(lab, rng, *leader);
            lab.slow_disk(n, *iops)?;
            (vec![n], Undo::Unthrottle(n))
        }
        Fault::Mixed(faults) => {
            let mut nodes = Vec::new();
            let mut undos = Vec::new();
            for f in faults {
                match inject(lab, f, rng) {
                    Ok((n, u)) => {
                        nodes.extend(n);
                        undos.push(u);
                    }
                    Err(e) => {
                        // Leave nothing half-injected behind.
                        heal(lab, Undo::All(undos))?;
                        return Err(e);
                    }
                }
            }
            nodes.sort_unstable();
            nodes.dedup();
            (nodes, Undo::All(undos))
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
        Undo::Clocks(nodes) => {
            for n in nodes {
                lab.set_clock(n, 0)?;
            }
            Ok(())
        }
        Undo::Disk(n) => lab.free_disk(n),
        Undo::Unthrottle(n) => lab.slow_disk(n, 0),
        Undo::All(undos) => {
            // Every one is tried; the first error is reported.
            let mut first = Ok(());
            for u in undos.into_iter().rev() {
                let r = heal(lab, u);
                if first.is_ok() {
                    first = r;
                }
            }
            first
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(4);

    #[test]
    fn plans_are_reproducible_and_mix_every_kind() {
        let a = plan(7, 400, S, S);
        assert_eq!(a, plan(7, 400, S, S));
        assert_ne!(a, plan(8, 400, S, S));
        let kinds: std::collections::BTreeSet<&str> = a.iter().map(|s| s.fault.kind()).collect();
        // Every kind but the unweighted follower slow disk (it comes in campaigns).
        assert_eq!(kinds.len(), KINDS.len() - 1, "{kinds:?}");
        assert!(
            a.iter()
                .all(|s| s.hold >= Duration::from_secs(2) && s.hold <= Duration::from_secs(6))
        );
    }

    #[test]
    fn every_kind_draws_a_fault_of_that_kind() {
        let mut rng = StdRng::seed_from_u64(1);
        for k in KINDS {
            assert_eq!(Fault::draw(k, &mut rng).unwrap().kind(), k);
        }
        assert_eq!(Fault::draw("meteor", &mut rng), None);
    }

    #[test]
    fn mixed_faults_are_two_different_mixable_kinds() {
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..200 {
            let Some(Fault::Mixed(v)) = Fault::draw("mixed", &mut rng) else {
                panic!("not mixed")
            };
            assert_eq!(v.len(), 2);
            assert_ne!(v[0].kind(), v[1].kind());
            assert!(v.iter().all(|f| mixable(f.kind())), "{v:?}");
        }
    }

    #[test]
    fn campaigns_have_exactly_the_counts_asked_in_a_seeded_order() {
        let counts = parse_counts("kill-leader=10,partition=5,clocks=2").unwrap();
        let c = campaign(1, &counts, S, S).unwrap();
        assert_eq!(c.len(), 17);
        let n = |k: &str| c.iter().filter(|s| s.fault.kind() == k).count();
        assert_eq!((n("kill-leader"), n("partition"), n("clocks")), (10, 5, 2));
        assert_eq!(c, campaign(1, &counts, S, S).unwrap());
        assert_ne!(
            c.iter().map(|s| s.fault.kind()).collect::<Vec<_>>(),
            campaign(2, &counts, S, S)
                .unwrap()
                .iter()
                .map(|s| s.fault.kind())
                .collect::<Vec<_>>()
        );
        let bad = parse_counts("meteor=1").unwrap();
        assert!(campaign(1, &bad, S, S).is_err());
        assert!(parse_counts("kill").is_err());
        assert!(parse_counts("kill=x").is_err());
    }
}
