//! The election's decisions, free of I/O: who holds a majority of the locks, what a
//! primary and a replica do next. The task (`task.rs`) reads the engines and acts.

use std::collections::BTreeSet;
use std::time::Duration;

use super::lock::Lock;
use crate::discovery::EngineAddr;

/// One healthy engine's lock as read (`None`: the engine holds no lock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineLock {
    pub engine: EngineAddr,
    pub lock: Option<Lock>,
    /// Newer lock networks that lost a create race to `lock` (see
    /// [`super::lock::locks_in`]): they count for nobody.
    pub strays: Vec<Lock>,
}

/// A lock to delete: by ID on its engine, so a lock that was replaced meanwhile stays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockRef {
    pub engine: EngineAddr,
    pub id: String,
}

/// The locks of the pool at one read: `healthy` engines counted, `read` those that
/// answered. An engine that did not answer counts against every holder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LockView {
    pub healthy: usize,
    pub read: Vec<EngineLock>,
}

/// Strictly more than half of the `healthy` engines: two managers can never both hold it
/// over the same set of engines.
pub fn is_majority(held: usize, healthy: usize) -> bool {
    healthy > 0 && held * 2 > healthy
}

impl LockView {
    /// How many engines' locks `holder` holds.
    pub fn held_by(&self, holder: &str) -> usize {
        self.read
            .iter()
            .filter(|e| e.lock.as_ref().is_some_and(|l| l.holder == holder))
            .count()
    }

    /// The manager holding a majority, if any.
    pub fn majority_holder(&self) -> Option<&str> {
        self.holders()
            .into_iter()
            .find(|h| is_majority(self.held_by(h), self.healthy))
    }

    /// Every holder seen.
    pub fn holders(&self) -> BTreeSet<&str> {
        self.read
            .iter()
            .filter_map(|e| e.lock.as_ref())
            .map(|l| l.holder.as_str())
            .collect()
    }

    /// `holder`'s locks and strays, to delete.
    pub fn locks_of(&self, holder: &str) -> Vec<LockRef> {
        let mut out = self.refs(holder, |e| e.lock.iter().collect());
        out.extend(self.strays_of(holder));
        out
    }

    /// `holder`'s strays: deleted by their creator as soon as it sees them.
    pub fn strays_of(&self, holder: &str) -> Vec<LockRef> {
        self.refs(holder, |e| e.strays.iter().collect())
    }

    fn refs(&self, holder: &str, pick: impl Fn(&EngineLock) -> Vec<&Lock>) -> Vec<LockRef> {
        self.read
            .iter()
            .flat_map(|e| {
                pick(e)
                    .into_iter()
                    .filter(|l| l.holder == holder)
                    .map(|l| LockRef {
                        engine: e.engine.clone(),
                        id: l.id.clone(),
                    })
            })
            .collect()
    }

    /// Engines that answered and hold no lock: where a candidate creates one.
    pub fn free(&self) -> Vec<EngineAddr> {
        self.read
            .iter()
            .filter(|e| e.lock.is_none())
            .map(|e| e.engine.clone())
            .collect()
    }
}

/// Where a manager stands after reading the locks (a primary's check, or the count that
/// ends a candidate's round).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// `me` holds a majority: primary.
    Primary,
    /// `me` does not: release its locks (so another can win) and follow `primary` if one
    /// holds a majority.
    Lost {
        release: Vec<LockRef>,
        primary: Option<String>,
    },
}

pub fn standing(me: &str, view: &LockView) -> Standing {
    if is_majority(view.held_by(me), view.healthy) {
        return Standing::Primary;
    }
    Standing::Lost {
        release: view.locks_of(me),
        primary: view.majority_holder().map(str::to_owned),
    }
}

/// A replica's next step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaStep {
    /// Another manager holds a majority and answers as primary: forward to it.
    Follow(String),
    /// This manager's own locks (left by its previous run at the same address) already
    /// hold a majority: it is primary.
    Lead,
    /// Delete these locks (dead holders' and this manager's leftovers), then run for
    /// primary.
    Elect { release: Vec<LockRef> },
    /// Another manager is running for primary: look again at the next tick.
    Wait,
}

/// A replica's decision. `dead` are the holders that have not answered as primary for a
/// whole TTL; `undecided_for` is how long no holder has had a majority.
pub fn replica_step(
    me: &str,
    view: &LockView,
    dead: &BTreeSet<String>,
    undecided_for: Duration,
    ttl: Duration,
) -> ReplicaStep {
    if view.healthy == 0 {
        return ReplicaStep::Wait;
    }
    let mut release = view.locks_of(me);
    for h in view.holders() {
        if h != me && dead.contains(h) {
            release.extend(view.locks_of(h));
        }
    }
    match view.majority_holder() {
        Some(m) if m == me => ReplicaStep::Lead,
        Some(m) if !dead.contains(m) => ReplicaStep::Follow(m.to_owned()),
        Some(_) => ReplicaStep::Elect { release },
        None => {
            let live_rival = view
                .holders()
                .iter()
                .any(|h| *h != me && !dead.contains(*h));
            // A live rival without a majority is mid-round: it wins or releases within
            // one round. One stuck for a whole TTL is run against anyway.
            if live_rival && undecided_for < ttl {
                ReplicaStep::Wait
            } else {
                ReplicaStep::Elect { release }
            }
        }
    }
}

/// The random wait after a lost round, in `[0, ttl/3]`: two candidates that split the
/// engines between them try again at different times. `unit` is uniform in `[0, 1)`.
pub fn backoff(ttl: Duration, unit: f64) -> Duration {
    (ttl / 3).mul_f64(unit.clamp(0.0, 1.0))
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
