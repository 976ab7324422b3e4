//! The route table and the service in front of it.
//!
//! Routes are registered without a version prefix. [`ApiApp`] strips `/v1.xx` before axum
//! routes the request (a `Router::layer` middleware would run after routing, too late to
//! change the path), rejects versions out of range with the daemon's texts, records the
//! version for handlers, and stamps every answer with the headers Docker clients look for.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Request, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use swarmd_types::{Config, Secret};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::backend::Backend;
use crate::convert::SERVER_VERSION;
use crate::error::ApiError;
use crate::handlers::{local, networks, nodes, secrets, services, swarm, system, tasks};
use crate::proxy::EngineProxy;
use crate::version::{API_VERSION, RequestVersion, check_version, split_version_prefix};

/// What every handler gets.
#[derive(Clone)]
pub(crate) struct AppState {
    pub backend: Arc<dyn Backend>,
    pub proxy: Arc<EngineProxy>,
    /// Server shutdown: streaming answers end when it fires.
    pub cancel: CancellationToken,
}

/// The route table (unprefixed paths). Only [`ApiApp`] serves it: handlers rely on the
/// [`RequestVersion`] it records.
fn routes(state: AppState) -> Router {
    // Engine paths with more than one method take any and leave the method to the engine;
    // the single-method ones are routed by method, so another method is Docker's 404
    // "page not found" on either executor (the process executor has no engine to say so).
    let local = any(local::local);
    Router::new()
        .route("/_ping", get(system::ping).head(system::ping))
        .route("/version", get(system::version))
        .route("/info", get(system::info))
        .route("/swarm", get(swarm::inspect))
        .route("/swarm/init", post(swarm::init))
        .route("/swarm/join", post(swarm::join))
        .route("/swarm/leave", post(swarm::leave))
        .route("/swarm/update", post(swarm::update))
        .route("/swarm/unlockkey", get(swarm::unlock_key))
        .route("/swarm/unlock", post(swarm::unlock))
        .route("/nodes", get(nodes::list))
        .route("/nodes/{id}", get(nodes::inspect).delete(nodes::remove))
        .route("/nodes/{id}/update", post(nodes::update))
        .route("/services", get(services::list))
        .route("/services/create", post(services::create))
        .route(
            "/services/{id}",
            get(services::inspect).delete(services::remove),
        )
        .route("/services/{id}/update", post(services::update))
        .route("/services/{id}/logs", get(services::logs))
        .route("/secrets", get(secrets::list::<Secret>))
        .route("/secrets/create", post(secrets::create::<Secret>))
        .route(
            "/secrets/{id}",
            get(secrets::inspect::<Secret>).delete(secrets::remove::<Secret>),
        )
        .route("/secrets/{id}/update", post(secrets::update::<Secret>))
        .route("/configs", get(secrets::list::<Config>))
        .route("/configs/create", post(secrets::create::<Config>))
        .route(
            "/configs/{id}",
            get(secrets::inspect::<Config>).delete(secrets::remove::<Config>),
        )
        .route("/configs/{id}/update", post(secrets::update::<Config>))
        .route("/tasks", get(tasks::list))
        .route("/tasks/{id}", get(tasks::inspect))
        .route("/tasks/{id}/logs", get(tasks::logs))
        .route("/containers/{*rest}", local.clone())
        .route("/images/{*rest}", local.clone())
        .route("/exec/{*rest}", local.clone())
        .route("/volumes", local.clone())
        .route("/volumes/{*rest}", local.clone())
        .route("/networks", get(networks::list))
        .route("/networks/create", post(networks::create))
        .route("/networks/prune", post(local::local))
        .route(
            "/networks/{id}",
            get(networks::inspect).delete(networks::remove),
        )
        .route("/networks/{id}/connect", post(local::local))
        .route("/networks/{id}/disconnect", post(local::local))
        .route("/plugins", local.clone())
        .route("/plugins/{*rest}", local.clone())
        .route("/distribution/{*rest}", local.clone())
        .route("/build", post(local::local))
        .route("/build/{*rest}", local.clone())
        .route("/commit", post(local::local))
        .route("/events", get(local::local))
        .route("/system/df", get(local::local))
        .route("/auth", post(local::local))
        .route("/session", post(local::local))
        .route("/grpc", post(local::local))
        .fallback(page_not_found)
        .method_not_allowed_fallback(page_not_found)
        .with_state(state)
}

async fn page_not_found() -> ApiError {
    ApiError::page_not_found()
}

/// The whole API as one `tower::Service`: version handling, common headers, routes.
#[derive(Clone)]
pub struct ApiApp {
    router: Router,
}

impl ApiApp {
    pub fn new(backend: Arc<dyn Backend>, tracker: TaskTracker, cancel: CancellationToken) -> Self {
        let state = AppState {
            backend,
            proxy: Arc::new(EngineProxy::new(tracker, cancel.clone())),
            cancel,
        };
        ApiApp::from_router(routes(state))
    }

    /// Another route table (`swarmd manage`'s) behind the same version handling and
    /// headers. Its handlers find the request's [`RequestVersion`] in the extensions.
    pub fn from_router(router: Router) -> Self {
        ApiApp { router }
    }
}

/// Strips the version prefix and records it; errors are the daemon's 400s.
fn prepare(req: &mut Request<Body>) -> Result<(), ApiError> {
    let path = req.uri().path().to_string();
    let mut prefix = None;
    if let Some((version, rest)) = split_version_prefix(&path) {
        check_version(version).map_err(ApiError::bad_request)?;
        prefix = Some(version.to_string());
        let rest = if rest.is_empty() { "/" } else { rest };
        let pq = match req.uri().query() {
            Some(q) => format!("{rest}?{q}"),
            None => rest.to_string(),
        };
        let mut parts = req.uri().clone().into_parts();
        parts.path_and_query = Some(
            pq.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid path: {path}")))?,
        );
        *req.uri_mut() = Uri::from_parts(parts)
            .map_err(|_| ApiError::bad_request(format!("invalid path: {path}")))?;
    }
    req.extensions_mut().insert(RequestVersion { prefix });
    Ok(())
}

/// Headers on every answer (the daemon's version and experimental middlewares).
fn stamp(headers: &mut HeaderMap) {
    headers.insert("api-version", HeaderValue::from_static(API_VERSION));
    headers.insert("ostype", HeaderValue::from_static("linux"));
    headers.insert("docker-experimental", HeaderValue::from_static("false"));
    if let Ok(v) = HeaderValue::from_str(&format!("Docker/{SERVER_VERSION} (linux)")) {
        headers.insert("server", v);
    }
}

impl tower::Service<Request<Body>> for ApiApp {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let router = self.router.clone();
        Box::pin(async move {
            let method = req.method().clone();
            let path = req.uri().path().to_string();
            let mut resp = match prepare(&mut req) {
                Err(e) => e.into_response(),
                Ok(()) => match router.oneshot(req).await {
                    Ok(r) => r,
                    Err(never) => match never {},
                },
            };
            stamp(resp.headers_mut());
            tracing::debug!(%method, %path, status = resp.status().as_u16(), "api request");
            Ok(resp)
        })
    }
}
