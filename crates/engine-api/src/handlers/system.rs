//! `/_ping`, `/version`, `/info`.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, Method, header};
use axum::response::Response;
use swarmd_types::models::LocalNodeState;

use super::json_ok;
use crate::backend::{LocalEngine, SwarmStatus};
use crate::convert;
use crate::router::AppState;

/// The `Swarm` header of `/_ping`: the CLI uses it to hide or show swarm commands.
pub fn swarm_header(status: &SwarmStatus) -> &'static str {
    match status.local_node_state {
        LocalNodeState::ACTIVE if status.control_available => "active/manager",
        LocalNodeState::ACTIVE => "active/worker",
        LocalNodeState::PENDING => "pending",
        LocalNodeState::ERROR => "error",
        LocalNodeState::LOCKED => "locked",
        LocalNodeState::INACTIVE | LocalNodeState::EMPTY => "inactive",
    }
}

/// `GET`/`HEAD /_ping`. `Builder-Version` is "1" (the classic builder): with "2" the CLI
/// insists on the buildx plugin, which stock installs (and this machine) may lack, while
/// `/build` is forwarded to the engine either way.
pub async fn ping(State(st): State<AppState>, method: Method) -> Response {
    let status = st.backend.swarm_status();
    let mut resp = if method == Method::HEAD {
        let mut r = Response::new(Body::empty());
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        r
    } else {
        Response::new(Body::from("OK"))
    };
    let h = resp.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert("builder-version", HeaderValue::from_static("1"));
    h.insert("swarm", HeaderValue::from_static(swarm_header(&status)));
    resp
}

pub async fn version(State(st): State<AppState>) -> Response {
    json_ok(&convert::system_version(&st.backend.daemon_info()))
}

pub async fn info(State(st): State<AppState>) -> Response {
    let daemon = st.backend.daemon_info();
    let status = st.backend.swarm_status();
    let mut info = convert::system_info(&daemon, &status, swarmd_types::timefmt::now());
    if matches!(st.backend.local_engine(), LocalEngine::Processes) {
        info.warnings
            .get_or_insert_with(Vec::new)
            .push("WARNING: no Docker Engine: tasks run as host processes".into());
    }
    json_ok(&info)
}
