//! `GET /volumes` over the pool (classic's `getVolumes`): `{"Volumes": [...],
//! "Warnings": [...]}` with every engine's volumes; a `local`-driver volume is named
//! `<node>/<name>`, and only those are subject to the `node` filter (exact engine name).
//! Volumes of other drivers are listed as each engine reports them, once per engine, as
//! classic did. The router forwards every filter but `node`.

use serde_json::{Value, json};

use super::EngineAnswer;
use crate::engine::names::local_resource_name;

/// Merges the engines' answers (each a `/volumes` body).
pub fn merge(node: &[String], answers: &[EngineAnswer<Value>]) -> Value {
    let mut volumes = Vec::new();
    let mut warnings = Vec::new();
    for a in answers {
        let list = a.answer.get("Volumes").and_then(Value::as_array);
        for v in list.into_iter().flatten() {
            let mut v = v.clone();
            if v.get("Driver").and_then(Value::as_str) == Some("local") {
                if !(node.is_empty() || node.contains(&a.engine.name)) {
                    continue;
                }
                let name = v.get("Name").and_then(Value::as_str).unwrap_or("");
                v["Name"] = Value::String(local_resource_name(&a.engine.name, name));
            }
            volumes.push(v);
        }
        let w = a.answer.get("Warnings").and_then(Value::as_array);
        warnings.extend(w.into_iter().flatten().cloned());
    }
    json!({"Volumes": volumes, "Warnings": warnings})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::testutil::engine;

    fn pool() -> Vec<EngineAnswer<Value>> {
        vec![
            EngineAnswer {
                engine: engine("node-1", "10.0.0.1"),
                answer: json!({"Volumes": [
                    {"Name": "data", "Driver": "local", "Mountpoint": "/var/lib/docker/volumes/data/_data", "Scope": "local"},
                    {"Name": "shared", "Driver": "nfs", "Mountpoint": "/mnt", "Scope": "global"}
                ], "Warnings": null}),
            },
            EngineAnswer {
                engine: engine("node-2", "10.0.0.2"),
                answer: json!({"Volumes": [
                    {"Name": "data", "Driver": "local", "Mountpoint": "/v", "Scope": "local"}
                ], "Warnings": ["something"]}),
            },
        ]
    }

    fn names(v: &Value) -> Vec<&str> {
        v["Volumes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["Name"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn local_volumes_carry_their_node() {
        let v = merge(&[], &pool());
        assert_eq!(names(&v), ["node-1/data", "shared", "node-2/data"]);
        assert_eq!(v["Warnings"], json!(["something"]));
        assert_eq!(
            v["Volumes"][0]["Mountpoint"],
            "/var/lib/docker/volumes/data/_data"
        );
    }

    #[test]
    fn node_filter_applies_to_local_volumes_only() {
        let v = merge(&["node-2".to_string()], &pool());
        assert_eq!(names(&v), ["shared", "node-2/data"]);
    }

    #[test]
    fn an_empty_pool_answers_empty_lists() {
        assert_eq!(merge(&[], &[]), json!({"Volumes": [], "Warnings": []}));
    }
}
