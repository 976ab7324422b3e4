//! `GET /containers/json` over the pool (classic's `getContainersJSON`): every engine's
//! list merged, names shown as `/<node>/<name>`, ports published on all interfaces
//! shown with the engine's IP, newest first.
//!
//! Classic filtered its own cache; swarmd forwards the call instead, so the engines apply
//! the filters they know (`id`, `name`, `label`, `status`, `exited`, `health`,
//! `ancestor`, `volume`, `network`, `publish`, `expose`, `is-task`, `isolation`) with
//! Docker's semantics, on the names they know (`name=web` matches `/node-1/web`, as in
//! classic, which matched the name without its node). The manager keeps the
//! [`MANAGER_FILTERS`]: an engine does not know `node` (it would answer 400) and can only
//! resolve `before`/`since` against its own containers. `limit` is applied over the merged
//! list; it may be forwarded only when the manager filters nothing out of an engine's
//! answer (see [`ListQuery::engine_query`]).
//!
//! Deliberate differences from classic: containers of the image `swarm` are not hidden
//! (swarmd runs no agent containers), and `before`/`since` are Docker's filters rather
//! than classic's `before` parameter.

use std::cmp::Ordering;

use bollard_stubs::models::{ContainerSummary, PortSummary};
use regex::Regex;

use super::{EngineAnswer, EngineRef};
use crate::engine::names::{aggregated_names, published_ip};
use crate::scheduler::model::Node;

/// Filter keys the router takes out of `filters` and passes in [`ListQuery`].
pub const MANAGER_FILTERS: [&str; 3] = ["node", "before", "since"];

/// Classic's Status for the containers of an engine it cannot reach.
pub const HOST_DOWN: &str = "Host Down";

/// The client's `GET /containers/json` query, as far as the manager applies it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    pub all: bool,
    /// `limit` when positive.
    pub limit: Option<usize>,
    /// `node` filter values: an engine name matches a value equal to it or a regular
    /// expression found in it (Docker's `filters.Match`, which classic used).
    pub node: Vec<String>,
    /// The `before` and `since` filters, resolved by the router with
    /// [`super::resolve::resolve_container`] and the container's `Created`.
    pub before: Option<Bound>,
    pub since: Option<Bound>,
}

/// A container a `before`/`since` filter names. Its `Created` is in the merged list when
/// no forwarded filter left it out; otherwise its engine gives it for
/// `/containers/json?all=1&filters={"id":["<id>"]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bound {
    pub id: String,
    /// Its `Created`, Unix seconds as `/containers/json` gives it.
    pub created: i64,
}

/// What the router asks each engine, on top of the filters not in [`MANAGER_FILTERS`]
/// (and `size`, passed through).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineQuery {
    pub all: bool,
    pub limit: Option<usize>,
}

/// One engine's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Listing {
    pub containers: Vec<ContainerSummary>,
    /// The engine is unhealthy and these are the containers last seen there: listed
    /// only with `all` (or `limit`, `before`, `since`), with Status "Host Down".
    pub host_down: bool,
}

impl ListQuery {
    /// Stopped containers are listed with `all`, and, as Docker and classic do, when a
    /// limit or a `before`/`since` bound is given.
    pub fn includes_stopped(&self) -> bool {
        self.all || self.limit.is_some() || self.before.is_some() || self.since.is_some()
    }

    /// What to ask each engine. The limit is forwarded only without `before`/`since`:
    /// each engine's `limit` newest hold the pool's `limit` newest unless the manager
    /// drops some of them afterwards.
    pub fn engine_query(&self) -> EngineQuery {
        let bounded = self.before.is_some() || self.since.is_some();
        EngineQuery {
            all: self.includes_stopped(),
            limit: if bounded { None } else { self.limit },
        }
    }

    /// Whether `engine` is to be asked at all (the `node` filter).
    pub fn wants_engine(&self, engine: &EngineRef) -> bool {
        node_matches(&self.node, &engine.name)
    }
}

/// Merges the engines' answers into the pool's list.
pub fn merge(query: &ListQuery, answers: &[EngineAnswer<Listing>]) -> Vec<ContainerSummary> {
    let mut out: Vec<ContainerSummary> = answers
        .iter()
        .filter(|a| query.wants_engine(&a.engine))
        .filter(|a| !a.answer.host_down || query.includes_stopped())
        .flat_map(|a| {
            a.answer
                .containers
                .iter()
                .map(|c| pool_view(c, &a.engine, a.answer.host_down))
        })
        .collect();
    out.sort_by(|a, b| key(b).cmp(&key(a)));
    if let Some(b) = &query.before {
        out.retain(|c| key(c).cmp(&(b.created, b.id.as_str())) == Ordering::Less);
    }
    if let Some(s) = &query.since {
        out.retain(|c| key(c).cmp(&(s.created, s.id.as_str())) == Ordering::Greater);
    }
    if let Some(limit) = query.limit {
        out.truncate(limit);
    }
    out
}

/// Order of the merged list, newest first: Created, then ID for containers created in
/// the same second (classic's order among those was arbitrary).
fn key(c: &ContainerSummary) -> (i64, &str) {
    (c.created.unwrap_or(0), c.id.as_deref().unwrap_or(""))
}

/// What the manager last saw of an unreachable engine's containers, as a listing with
/// `host_down` (classic kept showing them, with Status "Host Down"). Only what the
/// scheduler keeps is known: ID, names, image, labels, state; no creation time, so they
/// list after the reachable engines' containers.
pub fn cached_listing(node: &Node) -> Listing {
    let containers = node
        .containers
        .iter()
        .filter(|c| !c.id.is_empty())
        .map(|c| ContainerSummary {
            id: Some(c.id.clone()),
            names: Some(c.names.clone()),
            image: Some(c.image.clone()),
            labels: Some(c.labels.clone()),
            state: serde_json::from_value(serde_json::Value::String(c.state.clone())).ok(),
            ..Default::default()
        })
        .collect();
    Listing {
        containers,
        host_down: true,
    }
}

/// One engine's container as the pool lists it.
fn pool_view(c: &ContainerSummary, engine: &EngineRef, host_down: bool) -> ContainerSummary {
    let mut c = c.clone();
    if let Some(names) = &c.names {
        c.names = Some(aggregated_names(&engine.name, names));
    }
    if let Some(ports) = &mut c.ports {
        let mut shown: Vec<PortSummary> = Vec::with_capacity(ports.len());
        for mut p in ports.drain(..) {
            if let Some(ip) = &p.ip {
                p.ip = Some(published_ip(ip, &engine.ip));
            }
            // `0.0.0.0` and `::` both become the engine's IP: list the port once.
            if !shown.contains(&p) {
                shown.push(p);
            }
        }
        *ports = shown;
    }
    if host_down {
        c.status = Some(HOST_DOWN.to_string());
    }
    c
}

/// Docker's `filters.Match` for one key: no values match everything; a value matches
/// when equal or when, as a regular expression, it is found in `name` (values that are
/// not valid expressions match only exactly).
pub fn node_matches(values: &[String], name: &str) -> bool {
    values.is_empty()
        || values
            .iter()
            .any(|v| v == name || Regex::new(v).is_ok_and(|re| re.is_match(name)))
}

#[cfg(test)]
#[path = "containers_tests.rs"]
mod tests;
