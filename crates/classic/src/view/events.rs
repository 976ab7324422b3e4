//! `GET /events` through the pool (classic's `normalizeEvent`): each engine's events,
//! marked with the engine they come from, in the three places classic put it: `from`
//! gains ` node:<name>` (for clients before API 1.22), the actor's attributes gain
//! `node.name`, `node.id`, `node.addr`, `node.ip`, and a `node` object carries `Name`,
//! `Id`, `Addr`, `Ip` (which interlock and other proxies of the time read).

use serde_json::{Map, Value, json};

use super::EngineRef;

/// Classic's actions for the manager's own view of an engine (`Type` `swarm`).
pub const ENGINE_CONNECT: &str = "engine_connect";
pub const ENGINE_DISCONNECT: &str = "engine_disconnect";
pub const ENGINE_RECONNECT: &str = "engine_reconnect";

/// One event an engine streamed, as the pool streams it.
pub fn pool_event(event: &Value, engine: &EngineRef) -> Value {
    let mut e = match event {
        Value::Object(o) => o.clone(),
        _ => Map::new(),
    };
    let from = e.get("from").and_then(Value::as_str).unwrap_or("");
    let from = format!("{from} node:{}", engine.name);
    e.insert("from".into(), Value::String(from));
    let actor = e
        .entry("Actor")
        .or_insert_with(|| json!({"ID": "", "Attributes": {}}));
    if !actor.is_object() {
        *actor = json!({"ID": "", "Attributes": {}});
    }
    let attrs = &mut actor["Attributes"];
    if !attrs.is_object() {
        *attrs = json!({});
    }
    if let Some(attrs) = attrs.as_object_mut() {
        for (k, v) in [
            ("node.name", &engine.name),
            ("node.id", &engine.id),
            ("node.addr", &engine.addr),
            ("node.ip", &engine.ip),
        ] {
            attrs.insert(k.into(), Value::String(v.clone()));
        }
    }
    e.insert(
        "node".into(),
        json!({"Name": engine.name, "Id": engine.id, "Addr": engine.addr, "Ip": engine.ip}),
    );
    Value::Object(e)
}

/// The event classic emitted when it connected to, lost or got back an engine
/// (`action` one of [`ENGINE_CONNECT`], [`ENGINE_DISCONNECT`], [`ENGINE_RECONNECT`]);
/// `time_nanos` is the manager's clock, Unix nanoseconds.
pub fn engine_event(engine: &EngineRef, action: &str, time_nanos: i64) -> Value {
    let raw = json!({
        "status": action,
        "from": "swarm",
        "Type": "swarm",
        "Action": action,
        "Actor": {"ID": "", "Attributes": {}},
        "time": time_nanos.div_euclid(1_000_000_000),
        "timeNano": time_nanos,
    });
    pool_event(&raw, engine)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::testutil::engine;

    /// The shape engine 20.10 streams for `docker start`.
    const START: &str = r#"{"status":"start","id":"c1","from":"busybox",
        "Type":"container","Action":"start",
        "Actor":{"ID":"c1","Attributes":{"image":"busybox","name":"web"}},
        "scope":"local","time":1796652000,"timeNano":1796652000123456789}"#;

    #[test]
    fn container_event_names_its_node_three_ways() {
        let e = engine("node-1", "10.0.0.1");
        let v = pool_event(&serde_json::from_str(START).unwrap(), &e);
        assert_eq!(v["from"], "busybox node:node-1");
        assert_eq!(
            v["Actor"]["Attributes"],
            json!({
                "image": "busybox", "name": "web", "node.name": "node-1",
                "node.id": "ID-node-1|10.0.0.1:2375", "node.addr": "10.0.0.1:2375",
                "node.ip": "10.0.0.1"
            })
        );
        assert_eq!(
            v["node"],
            json!({"Name": "node-1", "Id": "ID-node-1|10.0.0.1:2375",
                   "Addr": "10.0.0.1:2375", "Ip": "10.0.0.1"})
        );
        assert_eq!(v["status"], "start");
        assert_eq!(v["timeNano"], 1796652000123456789i64);
        let typed: bollard_stubs::models::EventMessage = serde_json::from_value(v).unwrap();
        assert_eq!(typed.action.as_deref(), Some("start"));
    }

    #[test]
    fn events_without_from_or_attributes_still_name_the_node() {
        let e = engine("node-1", "10.0.0.1");
        let v = pool_event(
            &json!({"Type": "network", "Action": "create", "Actor": {"ID": "n1"}}),
            &e,
        );
        assert_eq!(
            v["from"], " node:node-1",
            "as classic's concatenation gives"
        );
        assert_eq!(v["Actor"]["ID"], "n1");
        assert_eq!(v["Actor"]["Attributes"]["node.name"], "node-1");
    }

    #[test]
    fn engine_transitions_are_swarm_events() {
        let e = engine("node-2", "10.0.0.2");
        let v = engine_event(&e, ENGINE_DISCONNECT, 1_796_652_000_500_000_000);
        assert_eq!(v["Type"], "swarm");
        assert_eq!(v["Action"], "engine_disconnect");
        assert_eq!(v["status"], "engine_disconnect");
        assert_eq!(v["from"], "swarm node:node-2");
        assert_eq!(v["time"], 1_796_652_000);
        assert_eq!(v["Actor"]["Attributes"]["node.addr"], "10.0.0.2:2375");
        assert_eq!(v["node"]["Ip"], "10.0.0.2");
    }
}
