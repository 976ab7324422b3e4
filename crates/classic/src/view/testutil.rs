//! Builders shared by the view tests.

use std::collections::HashMap;

use super::EngineRef;
use crate::scheduler::model::{Container, Image, Node};

pub fn engine(name: &str, ip: &str) -> EngineRef {
    EngineRef {
        id: format!("ID-{name}|{ip}:2375"),
        name: name.to_string(),
        addr: format!("{ip}:2375"),
        ip: ip.to_string(),
    }
}

pub fn node(name: &str, ip: &str) -> Node {
    let e = engine(name, ip);
    Node {
        id: e.id,
        name: e.name,
        addr: e.addr,
        cpus: 2,
        memory: 2 << 30,
        health: 100,
        ..Default::default()
    }
}

pub fn container(id: &str, name: &str, state: &str) -> Container {
    Container {
        id: id.to_string(),
        names: vec![format!("/{name}")],
        state: state.to_string(),
        ..Default::default()
    }
}

pub fn image(id: &str, tags: &[&str]) -> Image {
    Image {
        id: id.to_string(),
        repo_tags: tags.iter().map(|t| t.to_string()).collect(),
    }
}

pub fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
