//! Streams from several engines merged into one answer (pulls, loads, events).

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::{self, BoxStream};
use swarmd_engine_api::ApiError;
use swarmd_engine_api::version::RequestVersion;

use super::containers::engine_error;
use super::state::{ClassicState, upstream};
use crate::pool::EngineSnapshot;

/// A request to send to several engines: method, target, the headers worth passing on,
/// and a body every engine gets a copy of.
pub struct Broadcast {
    pub method: Method,
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Headers a broadcast keeps from the client's request.
const KEPT: &[&str] = &["x-registry-auth", "content-type", "x-registry-config"];

impl Broadcast {
    pub fn new(method: &Method, from: &HeaderMap, path_and_query: String, body: Bytes) -> Self {
        let mut headers = HeaderMap::new();
        for k in KEPT {
            if let Some(v) = from.get(*k) {
                headers.insert(*k, v.clone());
            }
        }
        Self {
            method: method.clone(),
            path_and_query,
            headers,
            body,
        }
    }

    fn request(&self) -> Result<Request, ApiError> {
        let mut b = axum::http::Request::builder()
            .method(self.method.clone())
            .uri(&self.path_and_query);
        for (k, v) in &self.headers {
            b = b.header(k, v);
        }
        b.body(Body::from(self.body.clone()))
            .map_err(|e| ApiError::internal(e.to_string()))
    }
}

/// Sends `b` to each of `engines` and merges the answers' bodies line by line, each line
/// passed through `tag` with its engine. An engine that refuses outright fails the whole
/// call only when every engine refused.
pub async fn merged(
    st: &ClassicState,
    engines: Vec<EngineSnapshot>,
    b: &Broadcast,
    version: &RequestVersion,
    tag: fn(&EngineSnapshot, Bytes) -> Bytes,
) -> Result<Response<Body>, ApiError> {
    let mut streams: Vec<BoxStream<'static, Result<Bytes, std::io::Error>>> = Vec::new();
    let mut first_error = None;
    for engine in engines {
        let resp = st
            .proxy
            .forward(&upstream(&engine.addr), b.request()?, version)
            .await;
        let status = resp.status();
        if !status.is_success() {
            let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
                .await
                .unwrap_or_default();
            tracing::warn!(engine = %engine.addr, %status, "broadcast refused");
            first_error.get_or_insert(engine_error(status, &body));
            continue;
        }
        streams.push(lines(engine, resp.into_body(), tag).boxed());
    }
    if streams.is_empty() {
        return Err(first_error.unwrap_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "No healthy node available in the cluster",
            )
        }));
    }
    let cancel = st.cancel.clone();
    let body = stream::select_all(streams).take_until(cancel.cancelled_owned());
    let mut resp = Response::new(Body::from_stream(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

/// One engine's body cut into whole lines (a JSON message each), each tagged.
fn lines(
    engine: EngineSnapshot,
    body: Body,
    tag: fn(&EngineSnapshot, Bytes) -> Bytes,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let data = body.into_data_stream();
    stream::unfold(
        (data, Vec::<u8>::new(), engine, false),
        move |(mut data, mut buf, engine, mut done)| async move {
            loop {
                if let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=pos).collect();
                    let out = tag(&engine, Bytes::from(line));
                    return Some((Ok(out), (data, buf, engine, done)));
                }
                if done {
                    if buf.is_empty() {
                        return None;
                    }
                    let mut rest = std::mem::take(&mut buf);
                    rest.push(b'\n');
                    let out = tag(&engine, Bytes::from(rest));
                    return Some((Ok(out), (data, buf, engine, done)));
                }
                match data.next().await {
                    Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                    Some(Err(e)) => {
                        tracing::debug!(engine = %engine.addr, error = %e, "engine stream broke");
                        done = true;
                    }
                    None => done = true,
                }
            }
        },
    )
}

/// No change to the line.
pub fn untagged(_: &EngineSnapshot, line: Bytes) -> Bytes {
    line
}
