//! The watchdog's decisions, free of I/O and level-triggered: from what the pool knows
//! right now, which containers must move off lost engines and which copies are stale.
//! Called again and again (on every engine state change and on a timer), so a missed
//! change, a failed move or a restarted manager all end in the same place.

use std::collections::HashSet;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::policy::{has_reschedule_policy, is_node_pinned};
use crate::discovery::{EngineAddr, EngineState};
use crate::scheduler::model::{Container, Node};

/// One engine as the watchdog sees it: its health and its containers as last listed (a
/// lost engine keeps the list from before it went away), pending creates included.
#[derive(Debug, Clone)]
pub struct EngineView {
    pub addr: EngineAddr,
    pub state: EngineState,
    pub node: Node,
}

/// A container to recreate elsewhere: it lived on `from`, which is lost.
#[derive(Debug, Clone, PartialEq)]
pub struct Move {
    pub from: EngineAddr,
    /// Engine name, for classic's log line.
    pub from_name: String,
    pub container: Container,
}

/// An old copy on an engine that came back, superseded by the copy on `kept_on`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stale {
    pub on: EngineAddr,
    pub id: String,
    pub swarm_id: String,
    pub kept_on: String,
}

/// Classic's `engine_disconnect` handling as a level: every container with the
/// `on-node-failure` policy on an unhealthy engine, unless pinned by a hard `node==`,
/// unless its Swarm ID already lives on an engine that is not lost (moved before, or
/// being created there now). Each Swarm ID moves once, whatever copies the lost engines
/// hold. A container without a Swarm ID cannot be told from its copy and stays.
///
/// A drained engine (a drained swarm node, `--pool-host`) is left the same way, as swarm
/// mode moves a drained node's tasks: its policy containers are copied to an engine that
/// takes new work, and once the copy lives, [`stale_copies`] removes the original.
pub fn moves(engines: &[EngineView]) -> Vec<Move> {
    let leaving = |e: &EngineView| {
        e.state == EngineState::Unhealthy || (e.state == EngineState::Healthy && e.node.drained)
    };
    let alive: HashSet<&str> = engines
        .iter()
        .filter(|e| !leaving(e))
        .flat_map(|e| e.node.containers.iter().map(Container::swarm_id))
        .filter(|s| !s.is_empty())
        .collect();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for e in engines.iter().filter(|e| leaving(e)) {
        for c in &e.node.containers {
            let sid = c.swarm_id();
            if c.id.is_empty()
                || sid.is_empty()
                || !has_reschedule_policy(&c.labels)
                || is_node_pinned(&c.labels)
                || alive.contains(sid)
                || !seen.insert(sid.to_owned())
            {
                continue;
            }
            out.push(Move {
                from: e.addr.clone(),
                from_name: e.node.name.clone(),
                container: c.clone(),
            });
        }
    }
    out
}

/// Classic's `removeDuplicateContainers` as a level: on healthy engines, a container with
/// the policy whose Swarm ID also lives, created later, on another healthy engine is the
/// stale copy a lost engine brought back, and goes. Only healthy engines count: a copy
/// on a lost engine is no reason to remove a live one.
pub fn stale_copies(engines: &[EngineView]) -> Vec<Stale> {
    let healthy: Vec<&EngineView> = engines
        .iter()
        .filter(|e| e.state == EngineState::Healthy)
        .collect();
    let mut out = Vec::new();
    for e in &healthy {
        for c in &e.node.containers {
            let sid = c.swarm_id();
            if c.id.is_empty() || sid.is_empty() || !has_reschedule_policy(&c.labels) {
                continue;
            }
            let Some(created) = created(c) else { continue };
            let newer = healthy.iter().filter(|o| o.addr != e.addr).find(|o| {
                o.node
                    .containers
                    .iter()
                    .any(|k| !k.id.is_empty() && k.swarm_id() == sid && created_after(k, created))
            });
            if let Some(o) = newer {
                out.push(Stale {
                    on: e.addr.clone(),
                    id: c.id.clone(),
                    swarm_id: sid.to_owned(),
                    kept_on: o.node.name.clone(),
                });
            }
        }
    }
    out
}

/// When the engine created the container, from the kept inspect.
fn created(c: &Container) -> Option<OffsetDateTime> {
    let s = c.inspect.as_ref()?.get("Created")?.as_str()?;
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

fn created_after(c: &Container, than: OffsetDateTime) -> bool {
    created(c).is_some_and(|t| t > than)
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
