//! `/networks/...` and `/volumes/...`: an object named `<node>/<name>` lives on that
//! engine; one created without a node prefix is made on every engine, so containers
//! scheduled anywhere can use it (docker-compose's project network); lookups and removals
//! go to every engine that has it.

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::Value;
use swarmd_engine_api::ApiError;
use swarmd_engine_api::engine_path::EnginePath;
use swarmd_engine_api::version::RequestVersion;

use super::containers::{empty, engine_error, forward, locate, prune};
use super::path::network_path;
use super::state::ClassicState;
use super::{lists, read_json, request_version};
use crate::pool::EngineSnapshot;

/// Largest create/connect body accepted.
const MAX_BODY: usize = 1 << 20;

#[derive(Clone, Copy)]
enum Kind {
    Networks,
    Volumes,
}

impl Kind {
    fn path(self) -> &'static str {
        match self {
            Kind::Networks => "networks",
            Kind::Volumes => "volumes",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Kind::Networks => "network",
            Kind::Volumes => "volume",
        }
    }

    fn not_found(self, name: &str) -> ApiError {
        match self {
            Kind::Networks => ApiError::not_found(format!("network {name} not found")),
            Kind::Volumes => ApiError::not_found(format!("get {name}: no such volume")),
        }
    }
}

pub async fn networks(State(st): State<ClassicState>, req: Request) -> Response {
    route(&st, Kind::Networks, req)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

pub async fn volumes(State(st): State<ClassicState>, req: Request) -> Response {
    route(&st, Kind::Volumes, req)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn route(st: &ClassicState, kind: Kind, req: Request) -> Result<Response, ApiError> {
    let version = request_version(&req);
    let prefix = format!("/{}", kind.path());
    let rest = req
        .uri()
        .path()
        .strip_prefix(&prefix)
        .unwrap_or_default()
        .trim_start_matches('/')
        .to_owned();
    let method = req.method().clone();
    match (kind, rest.as_str(), &method) {
        (Kind::Networks, "", &Method::GET) => {
            return lists::networks(st, req.uri(), &version).await;
        }
        (Kind::Volumes, "", &Method::GET) => return lists::volumes(st, req.uri(), &version).await,
        (_, "create", &Method::POST) => return create(st, kind, req, &version).await,
        (Kind::Networks, "prune", &Method::POST) => {
            return prune(st, "networks", "NetworksDeleted", req.uri(), &version).await;
        }
        (Kind::Volumes, "prune", &Method::POST) => {
            return prune(st, "volumes", "VolumesDeleted", req.uri(), &version).await;
        }
        _ => {}
    }
    let (name, action) = network_path(&rest);
    if let (Kind::Networks, Some(action)) = (kind, action) {
        return connect(st, req, &name, action, &version).await;
    }
    let (engines, bare) = owners(st, kind, &name, &version).await;
    if engines.is_empty() {
        return Err(kind.not_found(&name));
    }
    let mut path = EnginePath::new([kind.path(), bare.as_str()]);
    if let Some(q) = req.uri().query() {
        path = path.raw_query(q);
    }
    let path = path.build();
    if method == Method::DELETE {
        for e in &engines {
            let (status, body) = st
                .call(&e.addr, Method::DELETE, &path, Bytes::new(), &version)
                .await?;
            if !status.is_success() {
                return Err(engine_error(status, &body));
            }
        }
        return Ok(empty(StatusCode::NO_CONTENT));
    }
    forward(st, &engines[0].addr, req, &path, &version).await
}

/// Splits `<node>/<name>` when `<node>` is an engine of the pool.
fn node_prefix(engines: &[EngineSnapshot], name: &str) -> Option<(EngineSnapshot, String)> {
    let (node, bare) = name.split_once('/')?;
    engines
        .iter()
        .find(|e| e.node.name == node || e.node.id == node)
        .map(|e| (e.clone(), bare.to_owned()))
}

/// The engines holding the object `name`, and its name there.
async fn owners(
    st: &ClassicState,
    kind: Kind,
    name: &str,
    version: &RequestVersion,
) -> (Vec<EngineSnapshot>, String) {
    let healthy = st.healthy_engines();
    let (candidates, bare) = match node_prefix(&healthy, name) {
        Some((e, bare)) => (vec![e], bare),
        None => (healthy, name.to_owned()),
    };
    let path = EnginePath::new([kind.path(), bare.as_str()]).build();
    let mut found = Vec::new();
    for e in candidates {
        if let Ok((StatusCode::OK, _)) = st
            .call(&e.addr, Method::GET, &path, Bytes::new(), version)
            .await
        {
            found.push(e);
        }
    }
    (found, bare)
}

/// `POST /{networks,volumes}/create`: on the named engine, or on every engine.
async fn create(
    st: &ClassicState,
    kind: Kind,
    req: Request,
    version: &RequestVersion,
) -> Result<Response, ApiError> {
    let mut body = read_json(req, MAX_BODY).await?;
    let name = body
        .get("Name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let healthy = st.healthy_engines();
    let targets = match node_prefix(&healthy, &name) {
        Some((e, bare)) => {
            body["Name"] = Value::from(bare);
            vec![e]
        }
        None => healthy,
    };
    if targets.is_empty() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "No healthy node available in the cluster",
        ));
    }
    let payload = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
    let path = format!("/{}/create", kind.path());
    let mut first_ok: Option<(StatusCode, Bytes)> = None;
    let mut first_err = None;
    for e in &targets {
        match st
            .call(&e.addr, Method::POST, &path, payload.clone(), version)
            .await
        {
            Ok((status, answer)) if status.is_success() => {
                first_ok.get_or_insert((status, answer));
            }
            Ok((status, answer)) => {
                tracing::warn!(engine = %e.addr, %status, what = kind.what(), "create refused");
                first_err.get_or_insert(engine_error(status, &answer));
            }
            Err(err) => {
                first_err.get_or_insert(err);
            }
        }
    }
    match (first_ok, first_err) {
        (Some((status, answer)), _) => {
            let mut resp = Response::new(axum::body::Body::from(answer));
            *resp.status_mut() = status;
            resp.headers_mut().insert(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("application/json"),
            );
            Ok(resp)
        }
        (None, Some(e)) => Err(e),
        (None, None) => Err(ApiError::internal("no engine answered")),
    }
}

/// `POST /networks/{name}/connect|disconnect`: on the engine of the container named in
/// the body.
async fn connect(
    st: &ClassicState,
    req: Request,
    network: &str,
    action: &str,
    version: &RequestVersion,
) -> Result<Response, ApiError> {
    let mut body = read_json(req, MAX_BODY).await?;
    let container = body
        .get("Container")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let (addr, id) = locate(st, &container, version).await?;
    body["Container"] = Value::from(id);
    let bare = match node_prefix(&st.healthy_engines(), network) {
        Some((_, bare)) => bare,
        None => network.to_owned(),
    };
    let path = EnginePath::new(["networks", bare.as_str(), action]).build();
    let (status, answer) = st
        .call(
            &addr,
            Method::POST,
            &path,
            Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
            version,
        )
        .await?;
    if !status.is_success() {
        return Err(engine_error(status, &answer));
    }
    Ok(empty(status))
}
