//! `/_ping`, `/version`, `/info` of the virtual host (answers built by [`crate::view`]).

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use std::sync::atomic::Ordering;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::json;
use super::state::ClassicState;
use crate::view::{self, ManagerRole};

/// `GET`/`HEAD /_ping`. The headers are what today's CLI reads (classic lacked `OSType`,
/// so a current CLI refused `docker run --device` through it; engine-api's app adds it).
pub async fn ping(method: Method) -> Response {
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
    h.insert("swarm", HeaderValue::from_static("inactive"));
    resp
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
    json(
        StatusCode::OK,
        &view::info::info(
            &st.host,
            &ManagerRole::Primary,
            &st.scheduler,
            &snapshots,
            st.event_listeners.load(Ordering::Relaxed),
            &now,
        ),
    )
}
