//! `{id}` path parameters: full ID, then exact name, then unique ID prefix.
//!
//! This is the daemon's `getService`/`getNode`/`getTask` order. Several objects with one
//! name (nodes sharing a hostname) or one prefix are ambiguous: 400 "X is ambiguous (N
//! matches found)".

use swarmd_types::{Node, Service, Task};

use crate::error::ApiError;

/// Resolves `input` among `items`: `id` gives an item's ID, `has_name` tells whether the
/// item is called `input`.
pub fn resolve<'a, T>(
    kind: &str,
    input: &str,
    items: &'a [T],
    id: impl Fn(&T) -> &str,
    has_name: impl Fn(&T, &str) -> bool,
) -> Result<&'a T, ApiError> {
    if let Some(found) = items.iter().find(|t| id(t) == input) {
        return Ok(found);
    }
    let named: Vec<&T> = items.iter().filter(|t| has_name(t, input)).collect();
    match named.len() {
        1 => return Ok(named[0]),
        n if n > 1 => return Err(ApiError::ambiguous(kind, input, n)),
        _ => {}
    }
    let prefixed: Vec<&T> = items.iter().filter(|t| id(t).starts_with(input)).collect();
    match prefixed.len() {
        0 => Err(ApiError::object_not_found(kind, input)),
        1 => Ok(prefixed[0]),
        n => Err(ApiError::ambiguous(kind, input, n)),
    }
}

/// A node's name: its spec name if set, else its hostname (swarmkit's name filter).
pub fn node_name(n: &Node) -> &str {
    match n.spec.name.as_deref() {
        Some(name) if !name.is_empty() => name,
        _ => &n.description.hostname,
    }
}

/// Resolves a node; `self_id` answers `self` (the CLI sends `/nodes/self` for
/// `docker node inspect self`) when no node is called that.
pub fn resolve_node<'a>(
    input: &str,
    nodes: &'a [Node],
    self_id: Option<&str>,
) -> Result<&'a Node, ApiError> {
    let result = resolve("node", input, nodes, |n| &n.id, |n, s| node_name(n) == s);
    match (result, self_id) {
        (Err(e), Some(me)) if input == "self" && e.status.as_u16() == 404 => {
            nodes.iter().find(|n| n.id == me).ok_or(e)
        }
        (r, _) => r,
    }
}

pub fn resolve_service<'a>(input: &str, services: &'a [Service]) -> Result<&'a Service, ApiError> {
    resolve(
        "service",
        input,
        services,
        |s| &s.id,
        |s, name| s.spec.name.as_deref() == Some(name),
    )
}

pub fn resolve_task<'a>(input: &str, tasks: &'a [Task]) -> Result<&'a Task, ApiError> {
    resolve(
        "task",
        input,
        tasks,
        |t| &t.id,
        |t, name| t.container_name() == name,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    fn svc(id: &str, name: &str) -> Service {
        let mut s = Service {
            id: id.into(),
            ..Default::default()
        };
        s.spec.name = Some(name.into());
        s
    }

    #[test]
    fn id_then_name_then_prefix() {
        let services = vec![
            svc("abc123", "web"),
            svc("abd456", "abc123x"),
            svc("web", "other"),
        ];
        // A full ID beats a name that equals it.
        assert_eq!(resolve_service("web", &services).unwrap().id, "web");
        assert_eq!(resolve_service("abc123x", &services).unwrap().id, "abd456");
        assert_eq!(resolve_service("abd", &services).unwrap().id, "abd456");
        let e = resolve_service("ab", &services).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.message, "service ab is ambiguous (2 matches found)");
        let e = resolve_service("zzz", &services).unwrap_err();
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        assert_eq!(e.message, "service zzz not found");
    }

    #[test]
    fn nodes_by_hostname_and_self() {
        let mut a = Node {
            id: "n1aaaa".into(),
            ..Default::default()
        };
        a.description.hostname = "host".into();
        let mut b = Node {
            id: "n2bbbb".into(),
            ..Default::default()
        };
        b.description.hostname = "host".into();
        let mut c = Node {
            id: "n3cccc".into(),
            ..Default::default()
        };
        c.description.hostname = "other".into();
        c.spec.name = Some("named".into());
        let nodes = vec![a, b, c];
        let e = resolve_node("host", &nodes, None).unwrap_err();
        assert_eq!(e.message, "node host is ambiguous (2 matches found)");
        assert_eq!(resolve_node("named", &nodes, None).unwrap().id, "n3cccc");
        assert!(resolve_node("other", &nodes, None).is_err());
        assert_eq!(
            resolve_node("self", &nodes, Some("n2bbbb")).unwrap().id,
            "n2bbbb"
        );
        assert_eq!(
            resolve_node("self", &nodes, None).unwrap_err().message,
            "node self not found"
        );
    }

    #[test]
    fn tasks_by_full_name() {
        let mut t = Task {
            id: "t1xyz".into(),
            service_name: "web".into(),
            slot: 2,
            ..Default::default()
        };
        t.node_id = "n1".into();
        let tasks = vec![t];
        assert_eq!(resolve_task("web.2.t1xyz", &tasks).unwrap().id, "t1xyz");
        assert_eq!(resolve_task("t1", &tasks).unwrap().id, "t1xyz");
        assert!(resolve_task("web.2", &tasks).is_err());
    }
}
