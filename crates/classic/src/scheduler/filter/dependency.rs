//! Dependency filter: a container using `--volumes-from`, `--link` or
//! `--net=container:` goes to the engine holding all those containers.

use super::FilterError;
use crate::scheduler::model::{Node, Request};

/// The container names/IDs `req` depends on (`name:alias` keeps the name).
fn before_colon(s: &str) -> &str {
    s.split(':').next().unwrap_or_default()
}

fn dependencies(req: &Request) -> Vec<&str> {
    let mut deps: Vec<&str> = req.volumes_from.iter().map(|s| before_colon(s)).collect();
    deps.extend(req.links.iter().map(|s| before_colon(s)));
    if let Some(c) = req.network_mode.strip_prefix("container:") {
        deps.push(c);
    }
    deps
}

pub(super) fn filter<'a>(
    req: &Request,
    nodes: Vec<&'a Node>,
) -> Result<Vec<&'a Node>, FilterError> {
    if nodes.is_empty() {
        return Ok(nodes);
    }
    let deps = dependencies(req);
    let kept: Vec<&Node> = nodes
        .into_iter()
        .filter(|n| deps.iter().all(|d| n.container(d).is_some()))
        .collect();
    if kept.is_empty() {
        return Err(FilterError::Dependency(describe(req).join(" ")));
    }
    Ok(kept)
}

pub(super) fn describe(req: &Request) -> Vec<String> {
    let mut out: Vec<String> = req
        .volumes_from
        .iter()
        .map(|v| format!("--volumes-from={v}"))
        .collect();
    out.extend(req.links.iter().map(|l| format!("--link={l}")));
    if req.network_mode.starts_with("container:") {
        out.push(format!("--net={}", req.network_mode));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testutil::*;

    fn nodes() -> (Node, Node) {
        let mut a = node("a");
        a.containers = vec![container("aaaa", "db"), container("bbbb", "data")];
        let mut b = node("b");
        b.containers = vec![container("cccc", "db")];
        (a, b)
    }

    #[test]
    fn all_dependencies_must_be_on_the_node() {
        let (a, b) = nodes();
        let req = Request {
            volumes_from: vec!["data:ro".into()],
            links: vec!["db:database".into()],
            ..Default::default()
        };
        assert_eq!(names(&filter(&req, vec![&a, &b]).unwrap()), ["a"]);
        let net = Request {
            network_mode: "container:cccc".into(),
            ..Default::default()
        };
        assert_eq!(names(&filter(&net, vec![&a, &b]).unwrap()), ["b"]);
        let none = Request::default();
        assert_eq!(names(&filter(&none, vec![&a, &b]).unwrap()), ["a", "b"]);
    }

    #[test]
    fn error_lists_dependencies() {
        let (a, b) = nodes();
        let req = Request {
            volumes_from: vec!["data".into()],
            links: vec!["web:w".into()],
            network_mode: "container:db".into(),
            ..Default::default()
        };
        assert_eq!(
            filter(&req, vec![&a, &b]).unwrap_err().to_string(),
            "Unable to find a node fulfilling all dependencies: \
             --volumes-from=data --link=web:w --net=container:db"
        );
        assert!(filter(&req, vec![]).unwrap().is_empty());
    }
}
