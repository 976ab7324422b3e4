//! Container references across the pool: which engine holds the container a path names,
//! and whether a name is free for a create or rename. Classic looked names up over all
//! engines at once (`Containers.Get`), so a name used on two engines names nothing, and
//! refused a name used anywhere in the pool, pending creates included.
//!
//! [`Node::container`] answers the same question for one engine; it cannot be applied
//! engine by engine here, because its stages (ID, Swarm ID, name, prefix) must be tried
//! over the whole pool in turn: an exact ID on one engine wins over a name on another.

use crate::scheduler::model::{Container, Node};

/// A container found in the pool.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Resolved<'a> {
    pub node: &'a Node,
    pub container: &'a Container,
}

impl Resolved<'_> {
    /// The full ID to put in the path forwarded to the engine.
    pub fn id(&self) -> &str {
        &self.container.id
    }
}

/// Why a reference names no usable container. Display is classic's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("No such container: {0}")]
    NotFound(String),
    /// Classic found nothing for a name or prefix matching several containers and said
    /// so in the same words; the candidates (`/<node>/<name>` or IDs) are for the log.
    #[error("No such container: {reference}")]
    Ambiguous {
        reference: String,
        candidates: Vec<String>,
    },
    #[error("Container {reference} running on unhealthy node {node}")]
    UnhealthyNode { reference: String, node: String },
}

impl ResolveError {
    /// The HTTP status classic answered with.
    pub fn status(&self) -> u16 {
        match self {
            Self::NotFound(_) | Self::Ambiguous { .. } => 404,
            Self::UnhealthyNode { .. } => 500,
        }
    }
}

/// Classic's refusal of a name already used in the pool (HTTP 409).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "Conflict: The name {0} is already assigned. You have to delete (or rename) that container to be able to assign {0} to a container again."
)]
pub struct NameConflict(pub String);

/// Classic's `Containers.Get` over the pool: the exact or 12-character ID, then the
/// Swarm ID (`com.docker.swarm.id`, exact or short), then a name (`web`, `/web`,
/// `<node>/web`, `<engine id>/web`) that only one container has, then an ID or Swarm ID
/// prefix only one container has. Pending creates (no ID yet) are not found.
pub fn resolve_container<'a>(
    nodes: &[&'a Node],
    reference: &str,
) -> Result<Resolved<'a>, ResolveError> {
    let not_found = || ResolveError::NotFound(reference.to_string());
    if reference.is_empty() {
        return Err(not_found());
    }
    let all: Vec<Resolved<'a>> = nodes
        .iter()
        .flat_map(|&node| {
            node.containers
                .iter()
                .filter(|c| !c.id.is_empty())
                .map(move |container| Resolved { node, container })
        })
        .collect();
    let short = |s: &str| s.chars().take(12).collect::<String>();
    let full_or_short = |s: &str| !s.is_empty() && (s == reference || short(s) == reference);

    if let Some(r) = all.iter().find(|r| full_or_short(&r.container.id)) {
        return Ok(*r);
    }
    if let Some(r) = all.iter().find(|r| full_or_short(r.container.swarm_id())) {
        return Ok(*r);
    }
    let by_name: Vec<Resolved<'a>> = all
        .iter()
        .filter(|r| {
            r.container.names.iter().any(|n| {
                n == reference
                    || n.strip_prefix('/') == Some(reference)
                    || format!("{}{n}", r.node.id) == reference
                    || format!("{}{n}", r.node.name) == reference
            })
        })
        .copied()
        .collect();
    if let Some(r) = unique(by_name, reference)? {
        return Ok(r);
    }
    let by_prefix: Vec<Resolved<'a>> = all
        .iter()
        .filter(|r| {
            r.container.id.starts_with(reference) || r.container.swarm_id().starts_with(reference)
        })
        .copied()
        .collect();
    unique(by_prefix, reference)?.ok_or_else(not_found)
}

/// [`resolve_container`], refusing a container whose engine is not healthy, as classic
/// did for every call it forwarded to a container's engine.
pub fn resolve_healthy<'a>(
    nodes: &[&'a Node],
    reference: &str,
) -> Result<Resolved<'a>, ResolveError> {
    let r = resolve_container(nodes, reference)?;
    if !r.node.is_healthy() {
        return Err(ResolveError::UnhealthyNode {
            reference: reference.to_string(),
            node: r.node.name.clone(),
        });
    }
    Ok(r)
}

/// Classic's `checkNameUniqueness` for a create or rename to `name` (empty: the engine
/// picks one, always free). Pending creates count, so two concurrent creates of one
/// name cannot both pass.
pub fn check_name_available(nodes: &[&Node], name: &str) -> Result<(), NameConflict> {
    if name.is_empty() {
        return Ok(());
    }
    let slashed = format!("/{name}");
    let taken = nodes
        .iter()
        .flat_map(|n| &n.containers)
        .flat_map(|c| &c.names)
        .any(|n| *n == name || *n == slashed);
    if taken {
        Err(NameConflict(name.to_string()))
    } else {
        Ok(())
    }
}

/// One candidate, none, or the ambiguity error.
fn unique<'a>(
    candidates: Vec<Resolved<'a>>,
    reference: &str,
) -> Result<Option<Resolved<'a>>, ResolveError> {
    match candidates.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        many => Err(ResolveError::Ambiguous {
            reference: reference.to_string(),
            candidates: many
                .iter()
                .map(|r| match r.container.names.first() {
                    Some(n) => crate::engine::names::aggregated_name(&r.node.name, n),
                    None => r.container.id.clone(),
                })
                .collect(),
        }),
    }
}

#[cfg(test)]
#[path = "resolve_tests.rs"]
mod tests;
