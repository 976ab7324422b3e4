//! `GET /events`: every engine's events merged, each naming its engine as classic did
//! ([`crate::view::events::pool_event`]). The client's `since`, `until` and `filters` go
//! to every engine (classic ignored them).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;

use super::fanout_stream::{Broadcast, merged};
use super::request_version;
use super::state::{ClassicState, engine_ref};
use crate::pool::EngineSnapshot;
use crate::view::events::pool_event;

pub async fn events(State(st): State<ClassicState>, req: Request) -> Response {
    let version = request_version(&req);
    let pq = req
        .uri()
        .path_and_query()
        .map_or("/events".to_owned(), |p| p.as_str().to_owned());
    let b = Broadcast::new(req.method(), req.headers(), pq, Bytes::new());
    match merged(&st, st.healthy_engines(), &b, &version, tag_event).await {
        Ok(r) => {
            let guard = Listener::new(st.event_listeners.clone());
            let (parts, body) = r.into_parts();
            let body = body.into_data_stream().map(move |chunk| {
                let _ = &guard;
                chunk
            });
            Response::from_parts(parts, Body::from_stream(body))
        }
        Err(e) => e.into_response(),
    }
}

/// Counts an open `/events` stream for `docker info`'s `NEventsListener`.
struct Listener(Arc<AtomicUsize>);

impl Listener {
    fn new(count: Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One event line with its engine named.
fn tag_event(engine: &EngineSnapshot, line: Bytes) -> Bytes {
    let Ok(v) = serde_json::from_slice::<Value>(&line) else {
        return line;
    };
    let mut out =
        serde_json::to_vec(&pool_event(&v, &engine_ref(engine))).unwrap_or_else(|_| line.to_vec());
    out.push(b'\n');
    Bytes::from(out)
}
