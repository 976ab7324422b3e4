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
use crate::wire::{self, moby};

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
    ping_response(
        method == Method::HEAD,
        swarm_header(&st.backend.swarm_status()),
    )
}

/// The daemon's `/_ping` answer (`OK`, or empty for `HEAD`) with its headers and the
/// given `Swarm` header; `swarmd manage` answers with it too.
pub fn ping_response(head: bool, swarm: &'static str) -> Response {
    let mut resp = if head {
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
    h.insert("swarm", HeaderValue::from_static(swarm));
    resp
}

pub async fn version(State(st): State<AppState>) -> Response {
    json_ok(&wire::to_wire(
        &moby::SYSTEM_VERSION,
        &convert::system_version(&st.backend.daemon_info()),
    ))
}

pub async fn info(State(st): State<AppState>) -> Response {
    let daemon = st.backend.daemon_info();
    let status = st.backend.swarm_status();
    let mut info = convert::system_info(&daemon, &status, swarmd_types::timefmt::now());
    match st.backend.local_engine() {
        LocalEngine::Processes => {
            info.warnings
                .get_or_insert_with(Vec::new)
                .push("WARNING: no Docker Engine: tasks run as host processes".into());
        }
        LocalEngine::Docker { socket_path } => {
            // `docker ps` shows the engine's containers, so `docker info` counts them too.
            if let Some(engine) = engine_info(&st, &socket_path).await {
                let count = |k: &str| engine.get(k).and_then(serde_json::Value::as_i64);
                info.containers = count("Containers").or(info.containers);
                info.containers_running = count("ContainersRunning").or(info.containers_running);
                info.containers_paused = count("ContainersPaused").or(info.containers_paused);
                info.containers_stopped = count("ContainersStopped").or(info.containers_stopped);
                info.images = count("Images").or(info.images);
            }
        }
    }
    // The `Swarm` block is moby's `swarm.Info`, shaped as the daemon writes it.
    let swarm = info.swarm.take();
    let mut v = serde_json::to_value(&info).unwrap_or_default();
    if let (Some(o), Some(s)) = (v.as_object_mut(), swarm) {
        o.insert("Swarm".into(), wire::to_wire(&moby::SWARM_INFO, &s));
    }
    json_ok(&v)
}

/// The engine's own `/info`, or `None` if it does not answer within a second (`docker info`
/// then shows swarmd's counts rather than hang).
async fn engine_info(st: &AppState, socket: &str) -> Option<serde_json::Value> {
    let req = axum::http::Request::get("/info").body(Body::empty()).ok()?;
    let version = crate::version::RequestVersion { prefix: None };
    let resp = tokio::time::timeout(
        std::time::Duration::from_secs(1),
        st.proxy.forward(socket, req, &version),
    )
    .await
    .ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.ok()?;
    serde_json::from_slice(&body).ok()
}
