//! What a pool member's host facts change in the view of its engine: the host's name
//! replaces the engine's, the host's labels go over the engine's, a drained host takes no
//! new container. Applied when the view is read, so a member's facts change without
//! touching (or reconnecting) its engine.

use crate::discovery::PoolMember;
use crate::scheduler::model::Node;

/// `node` (the engine's own view) as the member's facts make it.
pub(super) fn apply(node: &mut Node, member: &PoolMember) {
    if let Some(name) = member.name.as_deref().filter(|n| !n.is_empty()) {
        node.name = name.to_owned();
    }
    node.labels.extend(
        member
            .labels
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    node.drained = !member.accepts_new;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::EngineAddr;

    fn engine_node() -> Node {
        Node {
            name: "host-1".into(),
            labels: [("zone", "engine"), ("disk", "ssd")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            storage_driver: "overlay2".into(),
            ..Node::default()
        }
    }

    fn member(name: Option<&str>, labels: &[(&str, &str)], accepts_new: bool) -> PoolMember {
        PoolMember {
            upstream: EngineAddr::Dialed("node://a".into()),
            name: name.map(str::to_owned),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ip: "10.0.0.1".into(),
            accepts_new,
        }
    }

    #[test]
    fn member_name_replaces_the_engine_name() {
        let mut n = engine_node();
        apply(&mut n, &member(Some("swarm-node-1"), &[], true));
        assert_eq!(n.name, "swarm-node-1");
        for none in [None, Some("")] {
            let mut n = engine_node();
            apply(&mut n, &member(none, &[], true));
            assert_eq!(n.name, "host-1", "{none:?} keeps the engine's Name");
        }
    }

    #[test]
    fn member_labels_merge_over_the_engine_labels() {
        let mut n = engine_node();
        apply(
            &mut n,
            &member(
                None,
                &[("zone", "b"), ("rack", "7"), ("storagedriver", "x")],
                true,
            ),
        );
        assert_eq!(n.label("zone"), Some("b"), "the member wins a clash");
        assert_eq!(n.label("disk"), Some("ssd"), "engine labels stay");
        assert_eq!(n.label("rack"), Some("7"));
        // As an engine label, it cannot override what the engine reports.
        assert_eq!(n.label("storagedriver"), Some("overlay2"));
    }

    #[test]
    fn accepts_new_false_drains_the_node() {
        let mut n = engine_node();
        apply(&mut n, &member(None, &[], false));
        assert!(n.drained);
        apply(&mut n, &member(None, &[], true));
        assert!(!n.drained);
    }
}
