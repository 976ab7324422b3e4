//! Taking an object's name out of a request path, as classic's `{name:.*}` routes did.
//!
//! The docker CLI puts names in paths unescaped, so `docker logs node-1/web` asks for
//! `/containers/node-1/web/logs` and `docker rmi library/busybox:latest` for
//! `DELETE /images/library/busybox:latest`: the name is everything before a known action.

use swarmd_engine_api::engine_path::unescape_segment;

/// Actions after `/containers/{name}/`, longest first where one ends another.
const CONTAINER_ACTIONS: &[&str] = &[
    "attach/ws",
    "archive",
    "attach",
    "changes",
    "exec",
    "export",
    "json",
    "kill",
    "logs",
    "pause",
    "rename",
    "resize",
    "restart",
    "start",
    "stats",
    "stop",
    "top",
    "unpause",
    "update",
    "wait",
];

/// Actions after `/images/{name}/`.
const IMAGE_ACTIONS: &[&str] = &["get", "history", "json", "push", "tag"];

/// Actions after `/networks/{name}/` and `/volumes/{name}/`.
const NETWORK_ACTIONS: &[&str] = &["connect", "disconnect"];

/// `(name, action)` of the path after `/containers/`; a bare name has no action.
pub fn container_path(rest: &str) -> (String, Option<&'static str>) {
    split(rest, CONTAINER_ACTIONS)
}

/// `(name, action)` of the path after `/images/`.
pub fn image_path(rest: &str) -> (String, Option<&'static str>) {
    split(rest, IMAGE_ACTIONS)
}

/// `(name, action)` of the path after `/networks/`.
pub fn network_path(rest: &str) -> (String, Option<&'static str>) {
    split(rest, NETWORK_ACTIONS)
}

fn split(rest: &str, actions: &[&'static str]) -> (String, Option<&'static str>) {
    let rest = rest.trim_start_matches('/');
    for action in actions {
        if let Some(name) = rest.strip_suffix(action)
            && let Some(name) = name.strip_suffix('/')
            && !name.is_empty()
        {
            return (percent_decode(name), Some(action));
        }
    }
    (percent_decode(rest), None)
}

/// `%XX` escapes decoded (what the engine API's own handlers see).
fn percent_decode(s: &str) -> String {
    String::from_utf8_lossy(&unescape_segment(s)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_slashes_keep_them() {
        assert_eq!(
            container_path("node-1/web/logs"),
            ("node-1/web".into(), Some("logs"))
        );
        assert_eq!(container_path("abc/json"), ("abc".into(), Some("json")));
        assert_eq!(
            container_path("node-1/web/attach/ws"),
            ("node-1/web".into(), Some("attach/ws"))
        );
        assert_eq!(container_path("node-1/web"), ("node-1/web".into(), None));
        assert_eq!(container_path("web"), ("web".into(), None));
    }

    #[test]
    fn a_name_that_is_an_action_word_is_a_name() {
        assert_eq!(container_path("json"), ("json".into(), None));
        assert_eq!(container_path("logs/logs"), ("logs".into(), Some("logs")));
    }

    #[test]
    fn image_names_with_registry_and_tag() {
        assert_eq!(
            image_path("127.0.0.1:5000/busybox:latest/json"),
            ("127.0.0.1:5000/busybox:latest".into(), Some("json"))
        );
        assert_eq!(
            image_path("library/busybox:latest"),
            ("library/busybox:latest".into(), None)
        );
    }

    #[test]
    fn escapes_are_decoded() {
        assert_eq!(container_path("a%20b/json"), ("a b".into(), Some("json")));
        assert_eq!(
            network_path("n%2Fx/connect"),
            ("n/x".into(), Some("connect"))
        );
    }
}
