//! Lost writes of a grow-only set: objects created under unique names.
//!
//! Every create the API acknowledged must be in the final read, taken once the cluster has
//! healed; a create of unknown outcome may be there or not. A name in the final read that
//! no client ever tried to create is reported too (it came from nowhere).

use std::collections::BTreeSet;

/// What the set check found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SetReport {
    /// Acknowledged creates.
    pub acknowledged: usize,
    /// Creates of unknown outcome that turned out to have happened.
    pub unknown_present: usize,
    /// Acknowledged but missing from the final read.
    pub lost: Vec<String>,
    /// In the final read but never attempted.
    pub unexpected: Vec<String>,
}

/// Compares the creates attempted with the final read.
pub fn check_set(
    acknowledged: &BTreeSet<String>,
    unknown: &BTreeSet<String>,
    final_read: &BTreeSet<String>,
) -> SetReport {
    SetReport {
        acknowledged: acknowledged.len(),
        unknown_present: unknown.intersection(final_read).count(),
        lost: acknowledged.difference(final_read).cloned().collect(),
        unexpected: final_read
            .iter()
            .filter(|n| !acknowledged.contains(*n) && !unknown.contains(*n))
            .cloned()
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn acknowledged_creates_missing_from_the_final_read_are_lost() {
        let r = check_set(
            &set(&["a", "b", "c"]),
            &set(&["u1", "u2"]),
            &set(&["a", "c", "u2"]),
        );
        assert_eq!(r.lost, vec!["b".to_string()]);
        assert_eq!(r.acknowledged, 3);
        assert_eq!(r.unknown_present, 1);
        assert!(r.unexpected.is_empty());
    }

    #[test]
    fn names_nobody_created_are_reported() {
        let r = check_set(&set(&["a"]), &set(&[]), &set(&["a", "ghost"]));
        assert_eq!(r.unexpected, vec!["ghost".to_string()]);
        assert!(r.lost.is_empty());
    }
}
