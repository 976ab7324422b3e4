//! `/images/...`: pulls, loads and imports go to every engine, the other calls to the
//! engines that have the image.

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::Value;
use swarmd_engine_api::ApiError;
use swarmd_engine_api::engine_path::EnginePath;
use swarmd_engine_api::version::RequestVersion;

use super::containers::{engine_error, forward, prune};
use super::fanout_stream::{Broadcast, merged, untagged};
use super::path::image_path;
use super::state::ClassicState;
use super::{json, lists, path_after, request_version};
use crate::pool::EngineSnapshot;

/// The largest image tarball `docker load` may send; it is held in memory to be sent to
/// every engine.
const MAX_LOAD: usize = 1 << 30;

pub async fn images(State(st): State<ClassicState>, req: Request) -> Response {
    route(&st, req)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn route(st: &ClassicState, req: Request) -> Result<Response, ApiError> {
    let version = request_version(&req);
    let rest = path_after(&req, "/images/");
    let method = req.method().clone();
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    match (rest.as_str(), &method) {
        ("json", &Method::GET) => return lists::images(st, req.uri(), &version).await,
        ("create", &Method::POST) | ("load", &Method::POST) => {
            return broadcast(st, req, &version).await;
        }
        ("prune", &Method::POST) => {
            return prune(st, "images", "ImagesDeleted", req.uri(), &version).await;
        }
        ("search", &Method::GET) => {
            let Some(any) = st.healthy_engines().into_iter().next() else {
                return Err(no_engine());
            };
            return forward(st, &any.addr, req, &pq, &version).await;
        }
        _ => {}
    }
    let (name, action) = image_path(&rest);
    let having = engines_having(st, &name, &version).await;
    if having.is_empty() {
        return Err(ApiError::not_found(format!("No such image: {name}")));
    }
    match (&method, action) {
        (&Method::DELETE, None) => remove(st, &having, &name, &pq, &version).await,
        (&Method::POST, Some("tag")) => tag(st, &having, &pq, &version).await,
        _ => forward(st, &having[0].addr, req, &pq, &version).await,
    }
}

/// The engines where `GET /images/{name}/json` answers 200.
async fn engines_having(
    st: &ClassicState,
    name: &str,
    version: &RequestVersion,
) -> Vec<EngineSnapshot> {
    let path = EnginePath::new(["images", name, "json"]).build();
    st.fan_out(Method::GET, &path, Bytes::new(), version)
        .await
        .into_iter()
        .filter(|a| matches!(a.result, Ok((StatusCode::OK, _))))
        .map(|a| a.engine)
        .collect()
}

/// `docker rmi` on every engine holding the image; the deletions listed together.
async fn remove(
    st: &ClassicState,
    having: &[EngineSnapshot],
    name: &str,
    pq: &str,
    version: &RequestVersion,
) -> Result<Response, ApiError> {
    let mut all: Vec<Value> = Vec::new();
    for e in having {
        let (status, body) = st
            .call(&e.addr, Method::DELETE, pq, Bytes::new(), version)
            .await?;
        if !status.is_success() {
            return Err(engine_error(status, &body));
        }
        if let Ok(Value::Array(list)) = serde_json::from_slice::<Value>(&body) {
            all.extend(list);
        }
    }
    tracing::info!(image = name, engines = having.len(), "image removed");
    Ok(json(StatusCode::OK, &all))
}

/// `docker tag` wherever the image is.
async fn tag(
    st: &ClassicState,
    having: &[EngineSnapshot],
    pq: &str,
    version: &RequestVersion,
) -> Result<Response, ApiError> {
    for e in having {
        let (status, body) = st
            .call(&e.addr, Method::POST, pq, Bytes::new(), version)
            .await?;
        if !status.is_success() {
            return Err(engine_error(status, &body));
        }
    }
    Ok(super::containers::empty(StatusCode::CREATED))
}

/// `POST /images/create|load|prune`: every healthy engine, the progress merged.
pub async fn broadcast(
    st: &ClassicState,
    req: Request,
    version: &RequestVersion,
) -> Result<Response, ApiError> {
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, MAX_LOAD)
        .await
        .map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?;
    let b = Broadcast::new(&parts.method, &parts.headers, pq, body);
    merged(st, st.healthy_engines(), &b, version, untagged).await
}

fn no_engine() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "No healthy node available in the cluster",
    )
}
