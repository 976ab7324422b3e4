//! Constraint filter: node labels (engine labels plus storagedriver, kernelversion,
//! operatingsystem, ostype) must match; the key `node` matches the engine's ID or name.
//! A missing label matches as the empty string, so `key!=x` accepts unlabelled nodes.
//!
//! Over a swarm's nodes (issue 17) users write swarm mode's spelling too: `node.labels.X`
//! is label X (the swarm node's labels are merged into the node's), `node.hostname` the
//! node's name (the swarm node's hostname).

use super::{FilterError, filter_exprs};
use crate::scheduler::expr::{Expr, ExprError};
use crate::scheduler::extract;
use crate::scheduler::model::{Node, Request};

pub(super) fn filter<'a>(
    req: &Request,
    nodes: Vec<&'a Node>,
    soft: bool,
) -> Result<Vec<&'a Node>, FilterError> {
    let exprs = Expr::parse_all(&extract::constraints(req))?;
    filter_exprs(exprs, nodes, soft, accepts, FilterError::Constraint)
}

/// Swarm mode's prefix of a node label in a placement constraint.
const SWARM_LABEL_PREFIX: &str = "node.labels.";

fn accepts(e: &Expr, n: &Node) -> bool {
    match e.key.as_str() {
        "node" => e.matches(&[&n.id, &n.name]),
        "node.hostname" => e.matches(&[&n.name]),
        key => {
            let label = key.strip_prefix(SWARM_LABEL_PREFIX).unwrap_or(key);
            e.matches(&[n.label(label).unwrap_or("")])
        }
    }
}

/// Classic lists constraints without their softness.
pub(super) fn describe(req: &Request) -> Result<Vec<String>, ExprError> {
    Ok(Expr::parse_all(&extract::constraints(req))?
        .iter()
        .map(Expr::to_string)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testutil::*;

    fn pool() -> Vec<Node> {
        let mut a = node("node-1");
        a.labels.insert("region".into(), "us-east".into());
        a.os_type = "linux".into();
        let mut b = node("node-2");
        b.labels.insert("region".into(), "eu-west".into());
        b.os_type = "windows".into();
        let c = node("other");
        vec![a, b, c]
    }

    fn run(env: &[&str], soft: bool) -> Result<Vec<String>, FilterError> {
        let pool = pool();
        let got = filter(&request(env), pool.iter().collect(), soft)?;
        Ok(names(&got).into_iter().map(String::from).collect())
    }

    #[test]
    fn label_equality_glob_and_regex() {
        assert_eq!(
            run(&["constraint:region==us-east"], false).unwrap(),
            ["node-1"]
        );
        assert_eq!(
            run(&["constraint:region==*-west"], false).unwrap(),
            ["node-2"]
        );
        assert_eq!(
            run(&["constraint:region==/^eu/"], false).unwrap(),
            ["node-2"]
        );
        assert_eq!(
            run(&["constraint:ostype==linux"], false).unwrap(),
            ["node-1"]
        );
    }

    #[test]
    fn not_equal_accepts_unlabelled_nodes() {
        assert_eq!(
            run(&["constraint:region!=us-east"], false).unwrap(),
            ["node-2", "other"]
        );
    }

    #[test]
    fn node_key_matches_name_or_id() {
        assert_eq!(
            run(&["constraint:node==node-*"], false).unwrap(),
            ["node-1", "node-2"]
        );
        assert_eq!(
            run(&["constraint:node==ID-other"], false).unwrap(),
            ["other"]
        );
    }

    #[test]
    fn swarm_mode_spellings() {
        assert_eq!(
            run(&["constraint:node.labels.region==us-east"], false).unwrap(),
            ["node-1"]
        );
        assert_eq!(
            run(&["constraint:node.labels.region!=us-east"], false).unwrap(),
            ["node-2", "other"]
        );
        assert_eq!(
            run(&["constraint:node.hostname==node-2"], false).unwrap(),
            ["node-2"]
        );
        // The hostname is the name only, not the engine ID as classic's `node` key.
        assert_eq!(
            run(&["constraint:node.hostname==ID-other"], false)
                .unwrap_err()
                .to_string(),
            "unable to find a node that satisfies the constraint node.hostname==ID-other"
        );
    }

    #[test]
    fn constraints_combine_and_fail_with_the_first_unmet() {
        assert_eq!(
            run(
                &["constraint:node==node-*", "constraint:region==eu-west"],
                false
            )
            .unwrap(),
            ["node-2"]
        );
        let err = run(
            &["constraint:region==us-east", "constraint:ostype==windows"],
            false,
        );
        assert_eq!(
            err.unwrap_err().to_string(),
            "unable to find a node that satisfies the constraint ostype==windows"
        );
    }

    #[test]
    fn soft_constraints_apply_only_on_the_soft_pass() {
        let env = ["constraint:region==~mars"];
        assert_eq!(
            run(&env, true).unwrap_err().to_string(),
            "unable to find a node that satisfies the constraint region==mars"
        );
        assert_eq!(run(&env, false).unwrap().len(), 3);
        assert_eq!(
            run(&["constraint:region==~us-east"], true).unwrap(),
            ["node-1"]
        );
    }

    #[test]
    fn parse_errors_surface_and_describe_lists() {
        assert_eq!(
            run(&["constraint:region"], false).unwrap_err().to_string(),
            "One of operator ==, != is expected"
        );
        let req = request(&["constraint:region==~us-*", "constraint:node!=n1"]);
        assert_eq!(describe(&req).unwrap(), ["region==us-*", "node!=n1"]);
    }
}
