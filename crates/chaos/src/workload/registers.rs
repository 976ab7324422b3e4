//! The swarm objects that serve as registers: configs and services, the value in a label
//! `v` of their spec, written with `?version=` of a read (see [`crate::check::register`]).

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Registers per kind.
pub const REGISTERS: u64 = 3;

/// Which kind of object a register is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    /// `chaos-reg-K`: a config, label `v` of its spec.
    Config,
    /// `chaos-svc-K`: a replicated service of 0 replicas (so no tasks), label `v` of its
    /// spec. Unlike a config, the manager itself may write a service (its update status),
    /// so a 409 on one does not prove the value changed; see `Kind::refusal_proves_change`.
    Service,
}

impl Kind {
    pub const ALL: [Kind; 2] = [Kind::Config, Kind::Service];

    fn collection(self) -> &'static str {
        match self {
            Kind::Config => "configs",
            Kind::Service => "services",
        }
    }

    /// The body creating register `key` at value 0.
    pub fn create_body(self, key: u64) -> Value {
        let name = RegisterId { kind: self, key }.to_string();
        match self {
            Kind::Config => json!({ "Name": name, "Labels": { "v": "0" }, "Data": "AA==" }),
            Kind::Service => json!({
                "Name": name,
                "Labels": { "v": "0" },
                "Mode": { "Replicated": { "Replicas": 0 } },
                "TaskTemplate": {
                    "ContainerSpec": { "Image": "busybox", "Args": ["sleep", "300"] }
                },
            }),
        }
    }

    /// `POST` path creating a register of this kind.
    pub fn create_path(self) -> String {
        format!("/{}/create", self.collection())
    }

    /// The whole spec of an update setting the value to `new`, from what a read returned.
    pub fn update_body(self, read: &Value, new: u64) -> Value {
        let mut spec = read["Spec"].clone();
        match self {
            // A config's update may only change its labels.
            Kind::Config => json!({ "Name": spec["Name"], "Labels": { "v": new.to_string() } }),
            Kind::Service => {
                spec["Labels"]["v"] = Value::String(new.to_string());
                spec
            }
        }
    }

    /// Whether a 409 on a compare-and-set proves another write changed the value. Nothing
    /// but the clients writes a config; the orchestrator may write a service (its version
    /// moves with no new value), so there a 409 only says the write did not happen.
    pub fn refusal_proves_change(self) -> bool {
        matches!(self, Kind::Config)
    }
}

/// One register: a kind and a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RegisterId {
    pub kind: Kind,
    pub key: u64,
}

impl RegisterId {
    /// `GET` path reading it by name.
    pub fn read_path(self) -> String {
        format!("/{}/{self}", self.kind.collection())
    }

    /// `POST` path updating object `id` at `version`.
    pub fn update_path(self, id: &str, version: u64) -> String {
        format!("/{}/{id}/update?version={version}", self.kind.collection())
    }
}

/// Its object's name.
impl fmt::Display for RegisterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            Kind::Config => write!(f, "chaos-reg-{}", self.key),
            Kind::Service => write!(f, "chaos-svc-{}", self.key),
        }
    }
}

/// A register's value and version as a read saw them.
pub fn parse_register(v: &Value) -> Option<(u64, u64)> {
    let value = v["Spec"]["Labels"]["v"].as_str()?.parse().ok()?;
    let version = v["Version"]["Index"].as_u64()?;
    Some((value, version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_update_keeps_the_whole_spec_and_sets_the_label() {
        let read = json!({
            "ID": "abc",
            "Version": { "Index": 7 },
            "Spec": Kind::Service.create_body(1),
        });
        assert_eq!(parse_register(&read), Some((0, 7)));
        let body = Kind::Service.update_body(&read, 42);
        assert_eq!(body["Labels"]["v"], "42");
        assert_eq!(body["Mode"]["Replicated"]["Replicas"], 0);
        assert_eq!(body["TaskTemplate"], read["Spec"]["TaskTemplate"]);
        let id = RegisterId {
            kind: Kind::Service,
            key: 1,
        };
        assert_eq!(id.read_path(), "/services/chaos-svc-1");
        assert_eq!(id.update_path("abc", 7), "/services/abc/update?version=7");
    }

    #[test]
    fn a_config_update_sends_name_and_labels_only() {
        let read = json!({ "Version": { "Index": 3 }, "Spec": Kind::Config.create_body(0) });
        assert_eq!(
            Kind::Config.update_body(&read, 5),
            json!({ "Name": "chaos-reg-0", "Labels": { "v": "5" } })
        );
    }
}
