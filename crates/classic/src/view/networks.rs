//! `GET /networks` over the pool (classic's `getNetworks`): a local-scope network (each
//! engine's `bridge`, `host`, `none` and its own networks) is listed once per engine as
//! `<node>/<name>`; a network of wider scope (an overlay the engines share) has one ID
//! everywhere and is listed once, with the containers every engine reports on it. The
//! router forwards every filter but `node` (the engines apply `name`, `id`, `label`,
//! `driver`, `type`, `scope` and refuse bad values in Docker's words); `node` keeps the
//! networks of the engines named exactly.

use std::collections::HashMap;

use serde_json::Value;

use super::EngineAnswer;
use crate::engine::names::local_resource_name;

/// Merges the engines' listings (each a JSON array of networks).
pub fn merge(node: &[String], answers: &[EngineAnswer<Vec<Value>>]) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    let mut shared: HashMap<String, usize> = HashMap::new();
    for a in answers {
        let accepted = node.is_empty() || node.contains(&a.engine.name);
        for net in &a.answer {
            let mut net = net.clone();
            if net.get("Scope").and_then(Value::as_str) == Some("local") {
                if accepted {
                    let name = net.get("Name").and_then(Value::as_str).unwrap_or("");
                    net["Name"] = Value::String(local_resource_name(&a.engine.name, name));
                    out.push(net);
                }
                continue;
            }
            let id = net
                .get("Id")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            match shared.get(&id) {
                Some(&i) => merge_containers(&mut out[i], &net),
                None if accepted => {
                    shared.insert(id, out.len());
                    out.push(net);
                }
                None => {}
            }
        }
    }
    out
}

/// Adds `from`'s container endpoints to `into`'s (classic's `Networks.Uniq`).
fn merge_containers(into: &mut Value, from: &Value) {
    let Some(extra) = from.get("Containers").and_then(Value::as_object) else {
        return;
    };
    if !into.get("Containers").is_some_and(Value::is_object) {
        into["Containers"] = Value::Object(Default::default());
    }
    if let Some(c) = into["Containers"].as_object_mut() {
        for (k, v) in extra {
            c.insert(k.clone(), v.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::testutil::engine;
    use serde_json::json;

    fn pool() -> Vec<EngineAnswer<Vec<Value>>> {
        vec![
            EngineAnswer {
                engine: engine("node-1", "10.0.0.1"),
                answer: vec![
                    json!({"Name": "bridge", "Id": "b1", "Scope": "local", "Driver": "bridge"}),
                    json!({"Name": "ov", "Id": "ov1", "Scope": "swarm", "Driver": "overlay",
                           "Containers": {"c1": {"Name": "web"}}}),
                ],
            },
            EngineAnswer {
                engine: engine("node-2", "10.0.0.2"),
                answer: vec![
                    json!({"Name": "bridge", "Id": "b2", "Scope": "local", "Driver": "bridge"}),
                    json!({"Name": "ov", "Id": "ov1", "Scope": "swarm", "Driver": "overlay",
                           "Containers": {"c2": {"Name": "db"}}}),
                ],
            },
        ]
    }

    fn names(list: &[Value]) -> Vec<&str> {
        list.iter().map(|n| n["Name"].as_str().unwrap()).collect()
    }

    #[test]
    fn local_networks_per_node_shared_ones_once() {
        let list = merge(&[], &pool());
        assert_eq!(names(&list), ["node-1/bridge", "ov", "node-2/bridge"]);
        assert_eq!(
            list[1]["Containers"],
            json!({"c1": {"Name": "web"}, "c2": {"Name": "db"}})
        );
        assert_eq!(list[0]["Id"], "b1", "everything else as the engine sent it");
    }

    #[test]
    fn node_filter_by_engine_name() {
        let list = merge(&["node-2".to_string()], &pool());
        assert_eq!(names(&list), ["node-2/bridge", "ov"]);
        assert!(merge(&["node".to_string()], &pool()).is_empty());
    }
}
