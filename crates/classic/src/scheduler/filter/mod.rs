//! Classic's filters, each a pure function from candidate nodes to the nodes it accepts,
//! in classic's order: health, port, containerslots, dependency, affinity, constraint,
//! whitelist. [`FilterKind`] names them as `--filter` does; [`describe`] lists what a
//! filter asks of a request, for the "Unable to find a node…" message.

mod affinity;
mod constraint;
mod dependency;
mod health;
pub mod pipeline;
mod port;
mod slots;
mod whitelist;

use super::expr::{Expr, ExprError};
use super::model::{Node, Request};

/// One of classic's filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterKind {
    Health,
    Port,
    ContainerSlots,
    Dependency,
    Affinity,
    Constraint,
    Whitelist,
}

/// Why a filter accepted no node. Displays are classic's, though the pipeline replaces
/// all but [`FilterError::NoHealthyNode`] with its summary of conditions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("No healthy node available in the cluster")]
    NoHealthyNode,
    #[error("unable to find a node with port {0} available in the Host mode")]
    HostPort(String),
    #[error("unable to find a node with port {0} available")]
    BridgePort(String),
    #[error("No node with enough open slots available in the cluster")]
    NoSlots,
    #[error("Unable to find a node fulfilling all dependencies: {0}")]
    Dependency(String),
    #[error("unable to find a node that satisfies the affinity {0}")]
    Affinity(Expr),
    #[error("unable to find a node that satisfies the constraint {0}")]
    Constraint(Expr),
    #[error("unable to find a node that satisfies the whitelist {0}")]
    Whitelist(Expr),
    #[error(transparent)]
    Expr(#[from] ExprError),
}

/// A `--filter` name classic does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("filter not supported")]
pub struct FilterNotSupported;

impl FilterKind {
    /// All filters in classic's order, the default set of `swarm manage`.
    pub const ALL: [FilterKind; 7] = [
        FilterKind::Health,
        FilterKind::Port,
        FilterKind::ContainerSlots,
        FilterKind::Dependency,
        FilterKind::Affinity,
        FilterKind::Constraint,
        FilterKind::Whitelist,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FilterKind::Health => "health",
            FilterKind::Port => "port",
            FilterKind::ContainerSlots => "containerslots",
            FilterKind::Dependency => "dependency",
            FilterKind::Affinity => "affinity",
            FilterKind::Constraint => "constraint",
            FilterKind::Whitelist => "whitelist",
        }
    }

    /// Resolves `--filter` names, keeping the order given (as classic does).
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Result<Vec<FilterKind>, FilterNotSupported> {
        names
            .iter()
            .map(|n| {
                FilterKind::ALL
                    .into_iter()
                    .find(|k| k.name() == n.as_ref())
                    .ok_or(FilterNotSupported)
            })
            .collect()
    }

    /// Runs the filter. `soft` says whether soft expressions count on this pass.
    pub fn apply<'a>(
        self,
        req: &Request,
        nodes: Vec<&'a Node>,
        soft: bool,
    ) -> Result<Vec<&'a Node>, FilterError> {
        match self {
            FilterKind::Health => health::filter(nodes),
            FilterKind::Port => port::filter(req, nodes),
            FilterKind::ContainerSlots => slots::filter(nodes),
            FilterKind::Dependency => dependency::filter(req, nodes),
            FilterKind::Affinity => affinity::filter(req, nodes, soft),
            FilterKind::Constraint => constraint::filter(req, nodes, soft),
            FilterKind::Whitelist => whitelist::filter(req, nodes, soft),
        }
    }
}

/// What the filter asks of `req`, as classic's `GetFilters` lists it.
pub fn describe(kind: FilterKind, req: &Request) -> Result<Vec<String>, ExprError> {
    Ok(match kind {
        FilterKind::Health => Vec::new(),
        FilterKind::Port => port::describe(req),
        FilterKind::ContainerSlots => vec!["available container slots".to_string()],
        FilterKind::Dependency => dependency::describe(req),
        FilterKind::Affinity => affinity::describe(req)?,
        FilterKind::Constraint => constraint::describe(req)?,
        FilterKind::Whitelist => whitelist::describe(req)?,
    })
}

/// Keeps the nodes satisfying each active expression in turn; the first expression
/// that leaves no node fails with `err(expr)`. Shared by affinity, constraint and
/// whitelist, which differ only in what a node offers to match against.
fn filter_exprs(
    exprs: Vec<Expr>,
    mut nodes: Vec<&Node>,
    soft: bool,
    accepts: impl Fn(&Expr, &Node) -> bool,
    err: impl Fn(Expr) -> FilterError,
) -> Result<Vec<&Node>, FilterError> {
    for expr in exprs {
        if expr.soft && !soft {
            continue;
        }
        let kept: Vec<&Node> = nodes
            .iter()
            .copied()
            .filter(|n| accepts(&expr, n))
            .collect();
        if kept.is_empty() {
            return Err(err(expr));
        }
        nodes = kept;
    }
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_in_given_order() {
        assert_eq!(
            FilterKind::from_names(&["constraint", "health"]).unwrap(),
            vec![FilterKind::Constraint, FilterKind::Health]
        );
        let err = FilterKind::from_names(&["health", "bogus"]).unwrap_err();
        assert_eq!(err.to_string(), "filter not supported");
        let names: Vec<&str> = FilterKind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(
            names,
            [
                "health",
                "port",
                "containerslots",
                "dependency",
                "affinity",
                "constraint",
                "whitelist"
            ]
        );
    }

    #[test]
    fn slots_and_health_describe_as_classic() {
        let req = Request::default();
        assert!(describe(FilterKind::Health, &req).unwrap().is_empty());
        assert_eq!(
            describe(FilterKind::ContainerSlots, &req).unwrap(),
            vec!["available container slots"]
        );
    }
}
