//! `/containers/...`: the listing merged over the pool, a create scheduled onto one
//! engine, and every other call forwarded to the engine that holds the container.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::Value;
use swarmd_engine_api::ApiError;
use swarmd_engine_api::engine_path::EnginePath;
use swarmd_engine_api::query::QueryParams;
use swarmd_engine_api::version::RequestVersion;

use super::path::container_path;
use super::state::{ClassicState, engine_ref, upstream};
use super::{create, json, lists, path_after, request_version};
use crate::discovery::EngineAddr;
use crate::scheduler::model::Node;
use crate::view::inspect::container_inspect;
use crate::view::resolve::{ResolveError, check_name_available, resolve_healthy};

/// Every `/containers/...` request.
pub async fn containers(State(st): State<ClassicState>, req: Request) -> Response {
    route(&st, req)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn route(st: &ClassicState, req: Request) -> Result<Response, ApiError> {
    let version = request_version(&req);
    let rest = path_after(&req, "/containers/");
    let method = req.method().clone();
    match (rest.as_str(), &method) {
        ("json", &Method::GET) => return lists::containers(st, req.uri(), &version).await,
        ("create", &Method::POST) => return create::create(st, req, &version).await,
        ("prune", &Method::POST) => {
            return prune(st, "containers", "ContainersDeleted", req.uri(), &version).await;
        }
        _ => {}
    }
    let (name, action) = container_path(&rest);
    let (addr, id) = locate(st, &name, &version).await?;
    if action == Some("rename") && method == Method::POST {
        // Names are unique across the pool, not just on the container's engine.
        let q = QueryParams::parse(req.uri().query().unwrap_or_default());
        let nodes = st.pool.nodes();
        let refs: Vec<&Node> = nodes.iter().map(|(_, n)| n).collect();
        check_name_available(&refs, q.get("name").unwrap_or_default())
            .map_err(|e| ApiError::conflict(e.to_string()))?;
    }
    let mut segments = vec!["containers", id.as_str()];
    if let Some(a) = action {
        segments.extend(a.split('/'));
    }
    let mut path = EnginePath::new(segments);
    if let Some(q) = req.uri().query() {
        path = path.raw_query(q);
    }
    if method == Method::GET && action == Some("json") {
        return inspect(st, &addr, &path.build(), &version).await;
    }
    let changes = changes_container(&method, action);
    let resp = forward(st, &addr, req, &path.build(), &version).await?;
    if changes && resp.status().is_success() {
        st.pool.refresh_container(&addr, &id);
    }
    Ok(resp)
}

/// Whether a call changes what `docker ps` shows of the container (so the pool re-reads
/// it before the next listing).
fn changes_container(method: &Method, action: Option<&str>) -> bool {
    match (method, action) {
        (&Method::DELETE, None) => true,
        (&Method::POST, Some(a)) => matches!(
            a,
            "start" | "stop" | "kill" | "restart" | "pause" | "unpause" | "rename" | "update"
        ),
        _ => false,
    }
}

/// Sends `req` to the engine at `addr` under `path_and_query` (streams and upgrades
/// included).
pub async fn forward(
    st: &ClassicState,
    addr: &EngineAddr,
    mut req: Request,
    path_and_query: &str,
    version: &RequestVersion,
) -> Result<Response, ApiError> {
    *req.uri_mut() = path_and_query
        .parse::<Uri>()
        .map_err(|e| ApiError::bad_request(format!("invalid request path: {e}")))?;
    Ok(st.proxy.forward(&upstream(addr), req, version).await)
}

/// The engine and full ID of a container the client named: the pool's view first
/// (classic's lookup over the pool, refusing a container on an unhealthy engine), then,
/// for one the view does not hold yet, the engines themselves.
pub async fn locate(
    st: &ClassicState,
    name: &str,
    version: &RequestVersion,
) -> Result<(EngineAddr, String), ApiError> {
    let nodes = st.pool.nodes();
    let refs: Vec<&Node> = nodes.iter().map(|(_, n)| n).collect();
    match resolve_healthy(&refs, name) {
        Ok(found) => {
            if let Some((addr, _)) = nodes.iter().find(|(_, n)| n.addr == found.node.addr) {
                return Ok((addr.clone(), found.id().to_owned()));
            }
        }
        Err(e @ ResolveError::NotFound(_)) => tracing::debug!(error = %e, "not in the pool's view"),
        Err(e) => {
            return Err(ApiError::new(
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                e.to_string(),
            ));
        }
    }
    let path = EnginePath::new(["containers", name, "json"]).build();
    let answers = st.fan_out(Method::GET, &path, Bytes::new(), version).await;
    for a in answers {
        if let Ok((StatusCode::OK, body)) = a.result
            && let Ok(v) = serde_json::from_slice::<Value>(&body)
            && let Some(id) = v.get("Id").and_then(Value::as_str)
        {
            return Ok((a.engine.addr, id.to_owned()));
        }
    }
    Err(ApiError::not_found(format!("No such container: {name}")))
}

/// `GET /containers/{id}/json`: the engine's answer with classic's `Node` object.
async fn inspect(
    st: &ClassicState,
    addr: &EngineAddr,
    path: &str,
    version: &RequestVersion,
) -> Result<Response, ApiError> {
    let (status, body) = st
        .call(addr, Method::GET, path, Bytes::new(), version)
        .await?;
    if status != StatusCode::OK {
        return Err(engine_error(status, &body));
    }
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, format!("engine answer: {e}")))?;
    let Some(engine) = st.pool.engines().into_iter().find(|e| e.addr == *addr) else {
        return Ok(json(StatusCode::OK, &v));
    };
    Ok(json(
        StatusCode::OK,
        &container_inspect(v, &engine_ref(&engine), &engine.node),
    ))
}

/// `POST /{kind}/prune` on every engine; the reports (`deleted_key` lists and
/// `SpaceReclaimed`) added up.
pub async fn prune(
    st: &ClassicState,
    kind: &str,
    deleted_key: &str,
    uri: &Uri,
    version: &RequestVersion,
) -> Result<Response, ApiError> {
    let path = EnginePath::new([kind, "prune"])
        .raw_query(uri.query().unwrap_or_default())
        .build();
    let answers = st.fan_out(Method::POST, &path, Bytes::new(), version).await;
    let mut deleted: Vec<Value> = Vec::new();
    let mut reclaimed: u64 = 0;
    for a in answers {
        let (status, body) = a.result?;
        if !status.is_success() {
            return Err(engine_error(status, &body));
        }
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if let Some(list) = v.get(deleted_key).and_then(Value::as_array) {
            deleted.extend(list.iter().cloned());
        }
        reclaimed += v.get("SpaceReclaimed").and_then(Value::as_u64).unwrap_or(0);
    }
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({deleted_key: deleted, "SpaceReclaimed": reclaimed}),
    ))
}

/// An engine's error answer passed on with its status and message.
pub fn engine_error(status: StatusCode, body: &[u8]) -> ApiError {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned());
    ApiError::new(status, message)
}

/// A body-less response with `status`.
pub fn empty(status: StatusCode) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    r
}
