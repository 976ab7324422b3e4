//! What changed between two readings of the discovery source.
//!
//! Classic re-read `file://` every heartbeat and, when the list differed, added engines new to
//! it and removed engines gone from it (`Entries.Diff`). Order changes alone add or remove
//! nothing.

use std::collections::HashSet;

use super::addr::EngineAddr;

/// Engines to connect to and engines to drop, each in the order of the list it came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineDiff {
    pub added: Vec<EngineAddr>,
    pub removed: Vec<EngineAddr>,
}

impl EngineDiff {
    /// True when the pool is unchanged.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

/// Diffs the previous engine list against the new one.
pub fn diff(old: &[EngineAddr], new: &[EngineAddr]) -> EngineDiff {
    let old_set: HashSet<&EngineAddr> = old.iter().collect();
    let new_set: HashSet<&EngineAddr> = new.iter().collect();
    EngineDiff {
        added: new
            .iter()
            .filter(|a| !old_set.contains(a))
            .cloned()
            .collect(),
        removed: old
            .iter()
            .filter(|a| !new_set.contains(a))
            .cloned()
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<EngineAddr> {
        list.iter().map(|s| EngineAddr::parse(s).unwrap()).collect()
    }

    #[test]
    fn added_and_removed() {
        let d = diff(
            &addrs(&["a:1", "b:1", "c:1"]),
            &addrs(&["b:1", "d:1", "c:1", "e:1"]),
        );
        assert_eq!(d.added, addrs(&["d:1", "e:1"]));
        assert_eq!(d.removed, addrs(&["a:1"]));
        assert!(!d.is_empty());
    }

    #[test]
    fn reorder_is_no_change() {
        assert!(diff(&addrs(&["a:1", "b:1"]), &addrs(&["b:1", "a:1"])).is_empty());
    }

    #[test]
    fn same_host_other_port_is_another_engine() {
        let d = diff(&addrs(&["a:1"]), &addrs(&["a:2"]));
        assert_eq!(d.added, addrs(&["a:2"]));
        assert_eq!(d.removed, addrs(&["a:1"]));
    }

    #[test]
    fn from_and_to_empty() {
        assert_eq!(diff(&[], &addrs(&["a:1"])).added, addrs(&["a:1"]));
        assert_eq!(diff(&addrs(&["a:1"]), &[]).removed, addrs(&["a:1"]));
        assert!(diff(&[], &[]).is_empty());
    }
}
