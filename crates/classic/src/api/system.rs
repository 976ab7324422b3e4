//! `/_ping`, `/version`, `/info` of the virtual host (answers built by [`crate::view`]).

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use std::sync::atomic::Ordering;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::json;
use super::state::ClassicState;
use crate::view;

/// `GET`/`HEAD /_ping`: the daemon's answer and headers (engine-api's app adds
/// `OSType`, which classic lacked, so a current CLI refused `docker run --device` through it).
pub async fn ping(method: Method) -> Response {
    swarmd_engine_api::ping_response(method == Method::HEAD, "inactive")
}

pub async fn version(State(st): State<ClassicState>) -> Response {
    json(StatusCode::OK, &view::version::version(&st.host, ""))
}

/// `GET /info`: the pool's totals and classic's per-engine block in `SystemStatus`.
pub async fn info(State(st): State<ClassicState>) -> Response {
    let engines = st.pool.engines();
    let snapshots: Vec<view::EngineSnapshot<'_>> = engines
        .iter()
        .map(|e| view::EngineSnapshot {
            node: &e.node,
            state: e.state,
            last_error: e.last_error.as_deref().unwrap_or(""),
            updated_at: e.updated_at,
            server_version: &e.server_version,
        })
        .collect();
    let now = OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default();
    let role = st.role.borrow().clone();
    json(
        StatusCode::OK,
        &view::info::info(
            &st.host,
            &role,
            &st.scheduler,
            &snapshots,
            st.event_listeners.load(Ordering::Relaxed),
            &now,
        ),
    )
}
