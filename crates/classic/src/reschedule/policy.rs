//! Which containers classic's watchdog may move: those asking for it
//! (`-e reschedule:on-node-failure`, kept by the scheduler in a label) and not pinned to
//! one engine by a hard `node==` constraint.

use std::collections::HashMap;

use crate::scheduler::extract::{CONSTRAINTS_LABEL, RESCHEDULE_LABEL, label_list};

/// The one reschedule policy classic acts on (`reschedule:off` is the default).
pub const ON_NODE_FAILURE: &str = "on-node-failure";

/// Classic's `HasReschedulePolicy("on-node-failure")`, read from the labels.
pub fn has_reschedule_policy(labels: &HashMap<String, String>) -> bool {
    label_list(labels, RESCHEDULE_LABEL)
        .iter()
        .any(|p| p == ON_NODE_FAILURE)
}

/// Classic's `HaveNodeConstraint`: a hard `node==` constraint (not the soft `node==~`)
/// names the one engine the container may live on, so it is never moved.
pub fn is_node_pinned(labels: &HashMap<String, String>) -> bool {
    label_list(labels, CONSTRAINTS_LABEL)
        .iter()
        .any(|c| c.starts_with("node==") && !c.starts_with("node==~"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn policy_is_read_from_the_label() {
        assert!(has_reschedule_policy(&labels(&[(
            RESCHEDULE_LABEL,
            r#"["on-node-failure"]"#
        )])));
        assert!(!has_reschedule_policy(&labels(&[(
            RESCHEDULE_LABEL,
            r#"["off"]"#
        )])));
        assert!(!has_reschedule_policy(&labels(&[(
            RESCHEDULE_LABEL,
            "on-node-failure"
        )])));
        assert!(!has_reschedule_policy(&labels(&[])));
    }

    #[test]
    fn only_a_hard_node_constraint_pins() {
        assert!(is_node_pinned(&labels(&[(
            CONSTRAINTS_LABEL,
            r#"["zone==a","node==node-0"]"#
        )])));
        assert!(!is_node_pinned(&labels(&[(
            CONSTRAINTS_LABEL,
            r#"["node==~node-0"]"#
        )])));
        assert!(!is_node_pinned(&labels(&[(
            CONSTRAINTS_LABEL,
            r#"["node!=node-0"]"#
        )])));
        assert!(!is_node_pinned(&labels(&[])));
    }
}
