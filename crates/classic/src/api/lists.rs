//! Listings merged over the pool: every healthy engine asked at once, each answer tagged
//! with its engine the way classic showed it.

use axum::http::{Method, StatusCode, Uri};
use axum::response::Response;
use bytes::Bytes;
use serde_json::Value;
use swarmd_engine_api::ApiError;
use swarmd_engine_api::engine_path::EnginePath;
use swarmd_engine_api::filters::{Filters, parse_filters};

use swarmd_engine_api::query::QueryParams;
use swarmd_engine_api::version::RequestVersion;

use super::json;
use super::state::{Answer, ClassicState};
use crate::discovery::EngineAddr;
use crate::engine::names::{aggregated_names, local_resource_name, published_ip};
use crate::pool::EngineSnapshot;

/// The client's query with the `node` filter taken out (the engines do not know it).
pub struct SplitQuery {
    pub forwarded: String,
    pub nodes: Vec<String>,
}

pub fn split_node_filter(raw: &str) -> Result<SplitQuery, ApiError> {
    let q = QueryParams::parse(raw);
    let mut nodes = Vec::new();
    let mut path = EnginePath::new(["x"]);
    for (k, v) in &q.0 {
        if k == "filters" {
            let mut f = parse_filters(v).map_err(|e| ApiError::bad_request(e.to_string()))?;
            nodes = f.take("node");
            if !f.is_empty() {
                path = path.query("filters", &filters_json(&f));
            }
        } else {
            path = path.query(k, v);
        }
    }
    let built = path.build();
    let forwarded = built
        .split_once('?')
        .map(|(_, q)| q.to_owned())
        .unwrap_or_default();
    Ok(SplitQuery { forwarded, nodes })
}

fn filters_json(f: &Filters) -> String {
    serde_json::to_string(f).unwrap_or_default()
}

/// Whether an engine passes a `node` filter (by name or ID; no filter passes all).
pub fn node_matches(nodes: &[String], engine: &EngineSnapshot) -> bool {
    nodes.is_empty()
        || nodes
            .iter()
            .any(|n| *n == engine.node.name || *n == engine.node.id)
}

/// The IP clients reach an engine at (its discovery host).
pub fn engine_ip(addr: &EngineAddr) -> String {
    match addr {
        EngineAddr::Tcp { host, .. } => host.clone(),
        EngineAddr::Unix(_) => "127.0.0.1".to_owned(),
    }
}

/// `GET /containers/json`.
pub async fn containers(
    st: &ClassicState,
    uri: &Uri,
    version: &RequestVersion,
) -> Result<Response, ApiError> {
    let split = split_node_filter(uri.query().unwrap_or_default())?;
    let q = QueryParams::parse(uri.query().unwrap_or_default());
    let limit = q
        .get("limit")
        .and_then(|l| l.parse::<i64>().ok())
        .filter(|l| *l > 0)
        .or_else(|| q.bool("latest").then_some(1));
    let path = format!("/containers/json?{}", split.forwarded);
    let answers = st.fan_out(Method::GET, &path, Bytes::new(), version).await;
    let mut all: Vec<Value> = Vec::new();
    for (engine, list) in ok_lists(answers) {
        if !node_matches(&split.nodes, &engine) {
            continue;
        }
        let ip = engine_ip(&engine.addr);
        for mut c in list {
            tag_container(&mut c, &engine.node.name, &ip);
            all.push(c);
        }
    }
    all.sort_by_key(|c| std::cmp::Reverse(c.get("Created").and_then(Value::as_i64).unwrap_or(0)));
    if let Some(l) = limit {
        all.truncate(usize::try_from(l).unwrap_or(usize::MAX));
    }
    Ok(json(StatusCode::OK, &all))
}

/// One listed container as the virtual host shows it.
fn tag_container(c: &mut Value, node: &str, ip: &str) {
    if let Some(names) = c.get("Names").and_then(Value::as_array) {
        let names: Vec<String> = names
            .iter()
            .filter_map(|n| n.as_str().map(str::to_owned))
            .collect();
        c["Names"] = Value::from(aggregated_names(node, &names));
    }
    if let Some(ports) = c.get_mut("Ports").and_then(Value::as_array_mut) {
        for p in ports {
            if let Some(pip) = p.get("IP").and_then(Value::as_str) {
                let shown = published_ip(pip, ip);
                p["IP"] = Value::from(shown);
            }
        }
    }
}

/// The engines that answered 200 with a JSON array.
fn ok_lists(answers: Vec<Answer>) -> Vec<(EngineSnapshot, Vec<Value>)> {
    answers
        .into_iter()
        .filter_map(|a| match a.result {
            Ok((StatusCode::OK, body)) => match serde_json::from_slice::<Value>(&body) {
                Ok(Value::Array(list)) => Some((a.engine, list)),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// `GET /images/json`: every engine's images, one entry per image ID (classic merged
/// an image present on several engines).
pub async fn images(
    st: &ClassicState,
    uri: &Uri,
    version: &RequestVersion,
) -> Result<Response, ApiError> {
    let split = split_node_filter(uri.query().unwrap_or_default())?;
    let path = format!("/images/json?{}", split.forwarded);
    let answers = st.fan_out(Method::GET, &path, Bytes::new(), version).await;
    let mut out: Vec<Value> = Vec::new();
    for (engine, list) in ok_lists(answers) {
        if !node_matches(&split.nodes, &engine) {
            continue;
        }
        for img in list {
            let id = img.get("Id").cloned();
            if out.iter().any(|o| o.get("Id") == id.as_ref()) {
                continue;
            }
            out.push(img);
        }
    }
    out.sort_by_key(|i| std::cmp::Reverse(i.get("Created").and_then(Value::as_i64).unwrap_or(0)));
    Ok(json(StatusCode::OK, &out))
}

/// `GET /networks`: local networks as `<node>/<name>`; one entry per network ID.
pub async fn networks(
    st: &ClassicState,
    uri: &Uri,
    version: &RequestVersion,
) -> Result<Response, ApiError> {
    let split = split_node_filter(uri.query().unwrap_or_default())?;
    let path = format!("/networks?{}", split.forwarded);
    let answers = st.fan_out(Method::GET, &path, Bytes::new(), version).await;
    let mut out: Vec<Value> = Vec::new();
    for (engine, list) in ok_lists(answers) {
        if !node_matches(&split.nodes, &engine) {
            continue;
        }
        for mut n in list {
            if n.get("Scope").and_then(Value::as_str) == Some("local")
                && let Some(name) = n.get("Name").and_then(Value::as_str)
            {
                n["Name"] = Value::from(local_resource_name(&engine.node.name, name));
            }
            out.push(n);
        }
    }
    Ok(json(StatusCode::OK, &out))
}

/// `GET /volumes`: local volumes as `<node>/<name>`.
pub async fn volumes(
    st: &ClassicState,
    uri: &Uri,
    version: &RequestVersion,
) -> Result<Response, ApiError> {
    let split = split_node_filter(uri.query().unwrap_or_default())?;
    let path = format!("/volumes?{}", split.forwarded);
    let answers = st.fan_out(Method::GET, &path, Bytes::new(), version).await;
    let mut volumes: Vec<Value> = Vec::new();
    let mut warnings: Vec<Value> = Vec::new();
    for a in answers {
        let engine = a.engine;
        let Ok((StatusCode::OK, body)) = a.result else {
            continue;
        };
        if !node_matches(&split.nodes, &engine) {
            continue;
        }
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        for mut vol in v
            .get("Volumes")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
        {
            if vol.get("Scope").and_then(Value::as_str) != Some("global")
                && let Some(name) = vol.get("Name").and_then(Value::as_str)
            {
                vol["Name"] = Value::from(local_resource_name(&engine.node.name, name));
            }
            volumes.push(vol);
        }
        if let Some(w) = v.get("Warnings").and_then(Value::as_array) {
            warnings.extend(w.iter().cloned());
        }
    }
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({"Volumes": volumes, "Warnings": warnings}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_filter_is_taken_out_and_the_rest_forwarded() {
        let s = split_node_filter(
            "all=1&filters=%7B%22node%22%3A%7B%22node-1%22%3Atrue%7D%2C%22status%22%3A%7B%22running%22%3Atrue%7D%7D",
        )
        .unwrap();
        assert_eq!(s.nodes, ["node-1"]);
        assert!(s.forwarded.starts_with("all=1&filters="));
        let q = QueryParams::parse(&s.forwarded);
        let f = parse_filters(q.get("filters").unwrap()).unwrap();
        assert!(!f.contains("node"));
        assert_eq!(f.get("status"), ["running"]);
    }

    #[test]
    fn only_node_filter_leaves_no_filters() {
        let s = split_node_filter("filters=%7B%22node%22%3A%5B%22n%22%5D%7D").unwrap();
        assert_eq!(s.nodes, ["n"]);
        assert_eq!(s.forwarded, "");
    }

    #[test]
    fn listed_names_and_ports_name_the_engine() {
        let mut c = serde_json::json!({
            "Names": ["/web"],
            "Ports": [{"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"}]
        });
        tag_container(&mut c, "node-1", "10.0.0.1");
        assert_eq!(c["Names"], serde_json::json!(["/node-1/web"]));
        assert_eq!(c["Ports"][0]["IP"], "10.0.0.1");
    }
}
