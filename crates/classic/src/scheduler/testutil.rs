//! Builders shared by the filter and strategy tests.

use crate::scheduler::extract;
use crate::scheduler::model::{Container, Node, Request};

pub fn node(name: &str) -> Node {
    Node {
        id: format!("ID-{name}"),
        name: name.to_string(),
        health: 100,
        cpus: 2,
        memory: 2048,
        ..Default::default()
    }
}

pub fn container(id: &str, name: &str) -> Container {
    Container {
        id: id.to_string(),
        names: vec![format!("/{name}")],
        ..Default::default()
    }
}

/// A request whose env holds `constraint:…`/`affinity:…` entries, extracted.
pub fn request(env: &[&str]) -> Request {
    let mut req = Request {
        env: env.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    extract::extract(&mut req);
    req
}

pub fn names<'a>(nodes: &[&'a Node]) -> Vec<&'a str> {
    nodes.iter().map(|n| n.name.as_str()).collect()
}
