//! An engine event (one `/events` message) -> what the manager must re-read from that
//! engine to keep its view current, as classic's `Engine.handler` decides. Classic does
//! not patch its view from the event itself: it re-lists (and, when the state or
//! network settings may have changed, re-inspects) the container, so this only names
//! the refresh. A destroyed container is a soft refresh whose empty listing removes it
//! ([`crate::scheduler::model::Node::refresh_container`]).

use bollard_stubs::models::{EventMessage, EventMessageTypeEnum};

/// The refresh an event implies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refresh {
    /// Re-list the container by ID; inspect it too when `inspect`.
    Container {
        id: String,
        inspect: bool,
    },
    /// Re-list the engine's images (pull, tag, untag, delete, import, commit...).
    Images,
    Network {
        id: String,
    },
    Volume {
        id: String,
    },
    /// Re-read `/info`: a daemon reload may change labels and capacity.
    Specs,
}

/// Container actions after which classic re-inspects: the state or the network settings
/// (published ports) may have changed.
const INSPECT: &[&str] = &[
    "die",
    "kill",
    "oom",
    "pause",
    "start",
    "restart",
    "stop",
    "unpause",
    "rename",
    "update",
    "health_status",
];

/// Container actions that change nothing the manager keeps.
const IGNORED: &[&str] = &[
    "top",
    "resize",
    "export",
    "exec_create",
    "exec_start",
    "exec_detach",
    "attach",
    "detach",
    "extract-to-dir",
    "copy",
    "archive-path",
];

/// The refresh `ev` implies, or `None`. Events without a type (engines before 1.10)
/// are not handled: swarmd's pool is modern engines.
pub fn refresh_for(ev: &EventMessage) -> Option<Refresh> {
    let id = ev
        .actor
        .as_ref()
        .and_then(|a| a.id.clone())
        .unwrap_or_default();
    let action = ev.action.as_deref().unwrap_or("");
    match ev.typ? {
        EventMessageTypeEnum::IMAGE => Some(Refresh::Images),
        EventMessageTypeEnum::NETWORK => Some(Refresh::Network { id }),
        EventMessageTypeEnum::VOLUME => Some(Refresh::Volume { id }),
        EventMessageTypeEnum::DAEMON => (action == "reload").then_some(Refresh::Specs),
        EventMessageTypeEnum::CONTAINER => container_refresh(id, action),
        _ => None,
    }
}

fn container_refresh(id: String, action: &str) -> Option<Refresh> {
    // Health checks report as `health_status: healthy`; exec events as
    // `exec_start: sh -c ...` on engine 20.10. Classic only stripped the former, so it
    // soft-refreshed on every exec; an exec changes nothing it keeps, so both are cut.
    let action = action.split(':').next().unwrap_or("");
    if action == "commit" {
        return Some(Refresh::Images);
    }
    if IGNORED.contains(&action) || id.is_empty() {
        return None;
    }
    let inspect = INSPECT.contains(&action);
    Some(Refresh::Container { id, inspect })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape engine 20.10 streams, legacy `status`/`id`/`from` fields included.
    fn ev(typ: &str, action: &str, id: &str) -> EventMessage {
        serde_json::from_str(&format!(
            r#"{{"status":"{action}","id":"{id}","from":"nginx:1.25","Type":"{typ}",
            "Action":"{action}","Actor":{{"ID":"{id}","Attributes":{{"image":"nginx:1.25","name":"web"}}}},
            "scope":"local","time":1701945600,"timeNano":1701945600123456789}}"#
        ))
        .unwrap()
    }

    fn container(id: &str, inspect: bool) -> Option<Refresh> {
        Some(Refresh::Container {
            id: id.into(),
            inspect,
        })
    }

    #[test]
    fn state_changes_reinspect() {
        for a in [
            "start", "die", "stop", "kill", "oom", "pause", "unpause", "restart",
        ] {
            assert_eq!(
                refresh_for(&ev("container", a, "c1")),
                container("c1", true),
                "{a}"
            );
        }
        assert_eq!(
            refresh_for(&ev("container", "health_status: unhealthy", "c1")),
            container("c1", true)
        );
        assert_eq!(
            refresh_for(&ev("container", "rename", "c1")),
            container("c1", true)
        );
    }

    #[test]
    fn create_and_destroy_are_soft_refreshes() {
        assert_eq!(
            refresh_for(&ev("container", "create", "c1")),
            container("c1", false)
        );
        assert_eq!(
            refresh_for(&ev("container", "destroy", "c1")),
            container("c1", false)
        );
    }

    #[test]
    fn chatter_is_ignored() {
        assert_eq!(
            refresh_for(&ev("container", "exec_start: sh -c true", "c1")),
            None
        );
        assert_eq!(refresh_for(&ev("container", "attach", "c1")), None);
        assert_eq!(refresh_for(&ev("daemon", "restart", "d")), None);
        assert_eq!(refresh_for(&ev("plugin", "enable", "p")), None);
    }

    #[test]
    fn images_networks_volumes_and_reload() {
        assert_eq!(
            refresh_for(&ev("image", "pull", "nginx:1.25")),
            Some(Refresh::Images)
        );
        assert_eq!(
            refresh_for(&ev("image", "delete", "sha256:ab")),
            Some(Refresh::Images)
        );
        assert_eq!(
            refresh_for(&ev("container", "commit", "c1")),
            Some(Refresh::Images)
        );
        assert_eq!(
            refresh_for(&ev("network", "connect", "n1")),
            Some(Refresh::Network { id: "n1".into() })
        );
        assert_eq!(
            refresh_for(&ev("volume", "mount", "v1")),
            Some(Refresh::Volume { id: "v1".into() })
        );
        assert_eq!(
            refresh_for(&ev("daemon", "reload", "d")),
            Some(Refresh::Specs)
        );
    }

    #[test]
    fn untyped_legacy_events_are_not_handled() {
        let legacy: EventMessage =
            serde_json::from_str(r#"{"status":"start","id":"c1","from":"nginx","time":1}"#)
                .unwrap();
        assert_eq!(refresh_for(&legacy), None);
    }
}
