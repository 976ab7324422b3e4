//! `swarmd manage`'s Docker Engine API: one virtual Docker host over the pool.
//!
//! The route table mirrors classic Swarm's `api/router.go`: listings are merged over the
//! engines (`lists.rs`), a create is scheduled onto one engine (`create.rs`), every call
//! naming a container, exec instance, image, network or volume is forwarded to the engine
//! that holds it (streams and connection upgrades spliced by engine-api's proxy), pulls
//! and loads go to every engine, events from all engines are merged. Swarm-mode routes
//! answer Docker's 404, as classic did. Version prefixes and the common headers come from
//! engine-api's [`ApiApp`].

mod containers;
mod create;
mod create_body;
mod events;
mod exec;
mod fanout_stream;
mod images;
mod lists;
mod objects;
mod other;
mod path;
mod state;
mod system;

#[cfg(test)]
mod members_live_tests;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::{any, get, post};
use axum::{Router, middleware};
use serde::Serialize;
use swarmd_engine_api::ApiApp;
use swarmd_engine_api::ApiError;
use swarmd_engine_api::proxy::EngineProxy;
use swarmd_engine_api::version::RequestVersion;
use tokio::sync::{Mutex, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use state::{ClassicState, upstream};

use crate::options::ManageOptions;
use crate::pool::Pool;
use crate::scheduler::select::Scheduler;
use crate::view::{ManagerHost, ManagerRole};

/// What a manager's API is built from.
pub struct Manager {
    pub pool: Arc<Pool>,
    pub options: Arc<ManageOptions>,
    pub scheduler: Scheduler,
    /// Shared with the rescheduler, so a moved container and a `docker run` never take
    /// the same slot or port.
    pub schedule_lock: Arc<Mutex<()>>,
    pub hostname: String,
    /// Primary or replica (`crate::replication`); [`crate::replication::role::standalone`]
    /// without `--replication`.
    pub role: watch::Receiver<ManagerRole>,
}

/// The API of a manager; `tracker`/`cancel` are the server's (see
/// `swarmd_engine_api::serve_app`).
pub fn app(m: Manager, tracker: TaskTracker, cancel: CancellationToken) -> ApiApp {
    let proxy = EngineProxy::new(tracker, cancel.clone())
        .with_tls(m.pool.engine_tls())
        .with_dialer(m.pool.dialer());
    let st = ClassicState {
        pool: m.pool,
        proxy: Arc::new(proxy),
        scheduler: m.scheduler,
        options: m.options,
        host: Arc::new(manager_host(m.hostname)),
        event_listeners: Arc::default(),
        schedule_lock: m.schedule_lock,
        role: m.role,
        cancel,
    };
    ApiApp::from_router(routes(st))
}

/// The manager's scheduler from its options.
pub fn scheduler(options: &ManageOptions) -> Scheduler {
    Scheduler {
        strategy: options.strategy,
        filters: options.filters.clone(),
        // Classic: int64(overcommitRatio * 100).
        overcommit_percent: (options.cluster.overcommit * 100.0) as i64,
    }
}

/// The manager's own facts for `/info` and `/version`.
fn manager_host(hostname: String) -> ManagerHost {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "<unknown>".to_owned());
    let env = |k: &str| {
        std::env::var(k)
            .or_else(|_| std::env::var(k.to_uppercase()))
            .unwrap_or_default()
    };
    ManagerHost {
        hostname: if hostname.is_empty() {
            "<unknown>".to_owned()
        } else {
            hostname
        },
        kernel_version: kernel,
        os: std::env::consts::OS.to_owned(),
        arch: match std::env::consts::ARCH {
            "x86_64" => "amd64".to_owned(),
            "aarch64" => "arm64".to_owned(),
            other => other.to_owned(),
        },
        version: env!("CARGO_PKG_VERSION").to_owned(),
        git_commit: String::new(),
        api_version: swarmd_engine_api::version::API_VERSION.to_owned(),
        min_api_version: swarmd_engine_api::version::MIN_API_VERSION.to_owned(),
        debug: false,
        http_proxy: env("http_proxy"),
        https_proxy: env("https_proxy"),
        no_proxy: env("no_proxy"),
    }
}

fn routes(st: ClassicState) -> Router {
    let containers = any(containers::containers);
    Router::new()
        .route("/_ping", get(system::ping).head(system::ping))
        .route("/version", get(system::version))
        .route("/info", get(system::info))
        .route("/events", get(events::events))
        .route("/containers/{*rest}", containers)
        .route("/exec/{*rest}", any(exec::exec))
        .route("/images/{*rest}", any(images::images))
        .route("/networks", get(objects::networks))
        .route("/networks/{*rest}", any(objects::networks))
        .route("/volumes", get(objects::volumes))
        .route("/volumes/{*rest}", any(objects::volumes))
        .route("/build", post(other::build))
        .route("/commit", post(other::commit))
        .route("/auth", post(other::any_engine))
        .route("/system/df", get(other::any_engine))
        .route("/distribution/{*rest}", get(other::any_engine))
        .fallback(page_not_found)
        .method_not_allowed_fallback(page_not_found)
        .with_state(st.clone())
        // A replica forwards to the primary (a no-op on the primary).
        .layer(middleware::from_fn_with_state(
            st,
            crate::replication::forward::to_primary,
        ))
}

async fn page_not_found() -> ApiError {
    ApiError::page_not_found()
}

/// The version prefix engine-api's [`ApiApp`] recorded for this request.
fn request_version(req: &Request) -> RequestVersion {
    req.extensions()
        .get::<RequestVersion>()
        .cloned()
        .unwrap_or(RequestVersion { prefix: None })
}

/// The request path after `prefix` (`/containers/`), as sent.
fn path_after(req: &Request, prefix: &str) -> String {
    req.uri()
        .path()
        .strip_prefix(prefix)
        .unwrap_or_default()
        .to_owned()
}

/// A request body as JSON, at most `limit` bytes; Docker's 400s otherwise.
async fn read_json(req: Request, limit: usize) -> Result<serde_json::Value, ApiError> {
    let bytes = axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// A JSON answer.
fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}
