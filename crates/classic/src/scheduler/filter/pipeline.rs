//! Running the configured filters in turn, and classic's summary when one leaves no
//! node: "Unable to find a node that satisfies the following conditions" followed by
//! what every filter up to the failing one asks of the request, one bracketed list a
//! line (Go's `%v` of a string slice), or the parse error that stopped a filter.

use super::{FilterError, FilterKind, describe};
use crate::scheduler::model::{Node, Request};

/// Why no node passed the filters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PipelineError {
    /// Classic reports the health filter's own error rather than the summary.
    #[error("No healthy node available in the cluster")]
    NoHealthyNode,
    /// The summary of conditions; starts with a newline when there is any.
    #[error("Unable to find a node that satisfies the following conditions {0}")]
    Unsatisfied(String),
}

/// Applies `filters` in order; `soft` says whether soft expressions count.
pub fn apply<'a>(
    filters: &[FilterKind],
    req: &Request,
    nodes: Vec<&'a Node>,
    soft: bool,
) -> Result<Vec<&'a Node>, PipelineError> {
    let mut candidates = nodes;
    for &kind in filters {
        candidates = match kind.apply(req, candidates, soft) {
            Ok(kept) => kept,
            Err(FilterError::NoHealthyNode) => return Err(PipelineError::NoHealthyNode),
            Err(_) => return Err(PipelineError::Unsatisfied(conditions(filters, req, kind))),
        };
    }
    Ok(candidates)
}

/// Classic's `listAllFilters`: the conditions of each filter up to and including
/// `last`; a filter that asks nothing adds no line.
fn conditions(filters: &[FilterKind], req: &Request, last: FilterKind) -> String {
    let mut out = String::new();
    for &kind in filters {
        match describe(kind, req) {
            Ok(list) if !list.is_empty() => {
                out.push_str(&format!("\n[{}]", list.join(" ")));
            }
            Ok(_) => {}
            Err(e) => {
                out.push_str(&format!("\nerror from {} filter: {e}", kind.name()));
                return out;
            }
        }
        if kind == last {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::model::PortBinding;
    use crate::scheduler::testutil::*;

    fn pool() -> Vec<Node> {
        let mut a = node("a");
        a.labels.insert("region".into(), "us".into());
        let mut b = node("b");
        b.labels.insert("region".into(), "eu".into());
        vec![a, b]
    }

    #[test]
    fn filters_narrow_in_turn() {
        let pool = pool();
        let req = request(&["constraint:region==eu"]);
        let got = apply(&FilterKind::ALL, &req, pool.iter().collect(), true).unwrap();
        assert_eq!(names(&got), ["b"]);
    }

    #[test]
    fn unhealthy_pool_reports_health_error() {
        let mut pool = pool();
        pool.iter_mut().for_each(|n| n.health = 0);
        let req = request(&["constraint:region==eu"]);
        let err = apply(&FilterKind::ALL, &req, pool.iter().collect(), true).unwrap_err();
        assert_eq!(err.to_string(), "No healthy node available in the cluster");
    }

    #[test]
    fn summary_lists_conditions_up_to_the_failing_filter() {
        let pool = pool();
        let mut req = request(&[
            "constraint:region==mars",
            "affinity:container==~db",
            "whitelist:node==a",
        ]);
        req.port_bindings = vec![PortBinding {
            container_port: "80/tcp".into(),
            host_ip: String::new(),
            host_port: "8080".into(),
        }];
        req.links = vec!["db:db".into()];
        // Dependency is left out so that the affinity on db is what is tested next.
        let filters = FilterKind::from_names(&[
            "health",
            "port",
            "containerslots",
            "affinity",
            "constraint",
            "whitelist",
        ])
        .unwrap();
        let err = apply(&filters, &req, pool.iter().collect(), false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Unable to find a node that satisfies the following conditions \n\
             [port 8080 (Bridge mode)]\n\
             [available container slots]\n\
             [container==db (soft=true)]\n\
             [region==mars]"
        );
    }

    #[test]
    fn parse_error_ends_the_summary() {
        let pool = pool();
        let req = request(&["constraint:region"]);
        let err = apply(&FilterKind::ALL, &req, pool.iter().collect(), true).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Unable to find a node that satisfies the following conditions \n\
             [available container slots]\n\
             error from constraint filter: One of operator ==, != is expected"
        );
    }
}
