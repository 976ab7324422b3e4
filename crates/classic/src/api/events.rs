//! `GET /events`: every engine's events merged, each naming its engine as classic did.

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::Value;

use super::fanout_stream::{Broadcast, merged};
use super::lists::engine_ip;
use super::request_version;
use super::state::ClassicState;
use crate::pool::EngineSnapshot;

pub async fn events(State(st): State<ClassicState>, req: Request) -> Response {
    let version = request_version(&req);
    let pq = req
        .uri()
        .path_and_query()
        .map_or("/events".to_owned(), |p| p.as_str().to_owned());
    let b = Broadcast::from_parts(&req, pq, Bytes::new());
    match merged(&st, st.healthy_engines(), &b, &version, tag_event).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// Adds classic's `node` object (Name, Id, Addr, Ip) to one event line.
pub fn tag_event(engine: &EngineSnapshot, line: Bytes) -> Bytes {
    let Ok(mut v) = serde_json::from_slice::<Value>(&line) else {
        return line;
    };
    if let Some(obj) = v.as_object_mut() {
        obj.insert(
            "node".into(),
            serde_json::json!({
                "Name": engine.node.name,
                "Id": engine.node.id,
                "Addr": engine.addr.to_string(),
                "Ip": engine_ip(&engine.addr),
            }),
        );
    }
    let mut out = serde_json::to_vec(&v).unwrap_or_else(|_| line.to_vec());
    out.push(b'\n');
    Bytes::from(out)
}
