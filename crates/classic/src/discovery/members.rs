//! Pool members given by the embedding program instead of a discovery URL (issue 17): a
//! swarm's managers (`--pool-host`) run the classic pool over the swarm's own nodes, and
//! tell it which nodes there are, what they are called and whether they take new work.
//!
//! Only the upstream says which engine a member is: a changed name, label set, address or
//! availability updates the member in place (no reconnect), a changed upstream is another
//! engine.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::addr::EngineAddr;

/// One engine of the pool and what the embedding program knows of its host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolMember {
    /// Where the engine is reached; [`EngineAddr::Dialed`] (`node://<ID>`) for a swarm
    /// node's engine, through the pool's dialer.
    pub upstream: EngineAddr,
    /// The host's name (a swarm node's hostname). Replaces the engine's own `/info` Name
    /// as the pool node's name: two engines on one host report the same Name, two swarm
    /// nodes never have the same ID. `None` (or empty) keeps the engine's Name.
    pub name: Option<String>,
    /// The host's labels (a swarm node's labels), merged over the engine's labels; the
    /// member's value wins on a clash.
    pub labels: BTreeMap<String, String>,
    /// The host's address, what classic's `Node.IP` and `docker info` show, and the IP of
    /// ports published on all interfaces.
    pub ip: String,
    /// False for a drained (or paused) swarm node: no new container is placed on it, while
    /// its containers stay listed and reachable.
    pub accepts_new: bool,
}

/// How the pool's members change from one list to the next.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberDiff {
    /// Engines to connect to, in the new list's order.
    pub added: Vec<PoolMember>,
    /// Engines to drop, in the old list's order.
    pub removed: Vec<EngineAddr>,
    /// Engines kept whose facts changed, with their new facts, in the new list's order.
    pub updated: Vec<PoolMember>,
}

impl MemberDiff {
    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.updated.is_empty()
    }
}

/// Diffs the current members against a new list. A repeated upstream in `new` counts
/// once, its first entry winning (as a repeated discovery entry).
pub fn diff_members(old: &[PoolMember], new: &[PoolMember]) -> MemberDiff {
    let old_by_addr: HashMap<&EngineAddr, &PoolMember> =
        old.iter().map(|m| (&m.upstream, m)).collect();
    let mut seen = HashSet::new();
    let mut out = MemberDiff::default();
    for m in new {
        if !seen.insert(&m.upstream) {
            continue;
        }
        match old_by_addr.get(&m.upstream) {
            None => out.added.push(m.clone()),
            Some(prev) if *prev != m => out.updated.push(m.clone()),
            Some(_) => {}
        }
    }
    out.removed = old
        .iter()
        .filter(|m| !seen.contains(&m.upstream))
        .map(|m| m.upstream.clone())
        .collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, name: &str, labels: &[(&str, &str)]) -> PoolMember {
        PoolMember {
            upstream: EngineAddr::Dialed(format!("node://{id}")),
            name: Some(name.into()),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ip: "10.0.0.1".into(),
            accepts_new: true,
        }
    }

    fn addr(id: &str) -> EngineAddr {
        EngineAddr::Dialed(format!("node://{id}"))
    }

    #[test]
    fn added_removed_and_unchanged() {
        let a = member("a", "alpha", &[]);
        let b = member("b", "beta", &[]);
        let c = member("c", "gamma", &[]);
        let d = diff_members(&[a.clone(), b.clone()], &[b.clone(), c.clone()]);
        assert_eq!(d.added, [c]);
        assert_eq!(d.removed, [addr("a")]);
        assert!(d.updated.is_empty());
        assert!(diff_members(&[a.clone(), b.clone()], &[b, a]).is_empty());
    }

    #[test]
    fn changed_facts_update_in_place() {
        let a = member("a", "alpha", &[("zone", "1")]);
        let relabelled = member("a", "alpha", &[("zone", "2")]);
        let renamed = member("a", "alpha2", &[("zone", "1")]);
        let mut drained = a.clone();
        drained.accepts_new = false;
        let mut moved = a.clone();
        moved.ip = "10.0.0.9".into();
        for changed in [relabelled, renamed, drained, moved] {
            let d = diff_members(std::slice::from_ref(&a), std::slice::from_ref(&changed));
            assert_eq!(d.updated, [changed]);
            assert!(d.added.is_empty() && d.removed.is_empty());
        }
    }

    #[test]
    fn another_upstream_is_another_engine() {
        let a = member("a", "alpha", &[]);
        let a2 = member("a2", "alpha", &[]);
        let d = diff_members(&[a], std::slice::from_ref(&a2));
        assert_eq!(d.added, [a2]);
        assert_eq!(d.removed, [addr("a")]);
    }

    #[test]
    fn repeated_upstream_counts_once_first_wins() {
        let first = member("a", "alpha", &[]);
        let second = member("a", "other", &[]);
        let d = diff_members(&[], &[first.clone(), second.clone()]);
        assert_eq!(d.added, std::slice::from_ref(&first));
        assert!(diff_members(std::slice::from_ref(&first), &[first.clone(), second]).is_empty());
    }

    #[test]
    fn from_and_to_empty() {
        let a = member("a", "alpha", &[]);
        assert_eq!(
            diff_members(&[], std::slice::from_ref(&a)).added,
            std::slice::from_ref(&a)
        );
        assert_eq!(diff_members(&[a], &[]).removed, [addr("a")]);
        assert!(diff_members(&[], &[]).is_empty());
    }
}
