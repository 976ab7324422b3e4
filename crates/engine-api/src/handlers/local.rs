//! Container, image, exec, volume, network, build, event and distribution calls: the
//! node's own engine.
//!
//! With the docker executor they are forwarded to the engine ([`crate::proxy`]). With the
//! process executor there is no engine: `docker ps` lists the local tasks as containers and
//! lookups answer Docker's "no such ..." 404s, so `docker inspect X` falls through to swarm
//! objects as it does on a real daemon; everything else is a 501 that says why.

use std::convert::Infallible;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use swarmd_types::models::{ContainerSummary, ContainerSummaryStateEnum};

use super::json_ok;
use crate::backend::LocalEngine;
use crate::error::{ApiError, ApiResult};
use crate::query::QueryParams;
use crate::router::AppState;
use crate::timestamp::{UnixTime, parse_unix_timestamp};
use crate::version::RequestVersion;

pub async fn local(State(st): State<AppState>, req: Request) -> Response {
    let version = req
        .extensions()
        .get::<RequestVersion>()
        .cloned()
        .unwrap_or(RequestVersion { prefix: None });
    match st.backend.local_engine() {
        LocalEngine::Docker { socket_path } => st.proxy.forward(&socket_path, req, &version).await,
        LocalEngine::Processes => match processes(&st, req).await {
            Ok(resp) => resp,
            Err(e) => e.into_response(),
        },
    }
}

fn unavailable(method: &Method, path: &str) -> ApiError {
    ApiError::not_implemented(format!(
        "{method} {path} is not available: this node runs tasks as host processes and has no Docker Engine"
    ))
}

/// Whether `input` names a container: full or prefix ID, or a name (with or without `/`).
fn container_matches(c: &ContainerSummary, input: &str) -> bool {
    let id = c.id.as_deref().unwrap_or("");
    (!input.is_empty() && id.starts_with(input))
        || c.names
            .iter()
            .flatten()
            .any(|n| n == input || n.strip_prefix('/') == Some(input))
}

async fn processes(st: &AppState, req: Request) -> ApiResult<Response> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let q = QueryParams::parse(req.uri().query().unwrap_or(""));
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let get = method == Method::GET || method == Method::HEAD;
    match segs.as_slice() {
        ["containers", "json"] if get => {
            let all = q.bool("all");
            let mut containers = st.backend.local_containers().await?;
            if !all {
                containers.retain(|c| c.state == Some(ContainerSummaryStateEnum::RUNNING));
            }
            Ok(json_ok(&containers))
        }
        ["containers", "create"] => Err(unavailable(&method, &path)),
        ["containers", id, ..] => {
            let containers = st.backend.local_containers().await?;
            if containers.iter().any(|c| container_matches(c, id)) {
                Err(unavailable(&method, &path))
            } else {
                Err(ApiError::not_found(format!("No such container: {id}")))
            }
        }
        ["images", "json"] if get => Ok(json_ok(&Vec::<()>::new())),
        ["images", name @ .., "json"] if get && !name.is_empty() => Err(ApiError::not_found(
            format!("No such image: {}", name.join("/")),
        )),
        ["distribution", name @ .., "json"] if !name.is_empty() => {
            Err(ApiError::not_found(format!(
                "no registry is reachable without a Docker Engine: {}",
                name.join("/")
            )))
        }
        ["volumes"] if get => Ok(json_ok(
            &serde_json::json!({"Volumes": [], "Warnings": null}),
        )),
        ["volumes", name] if get => Err(ApiError::not_found(format!("get {name}: no such volume"))),
        ["networks"] if get => Ok(json_ok(&Vec::<()>::new())),
        ["networks", id] if get => Err(ApiError::not_found(format!("network {id} not found"))),
        ["plugins"] if get => Ok(json_ok(&Vec::<()>::new())),
        ["plugins", name @ .., "json"] if get && !name.is_empty() => Err(ApiError::not_found(
            format!("plugin \"{}\" not found", name.join("/")),
        )),
        ["system", "df"] if get => Ok(json_ok(&serde_json::json!({
            "LayersSize": 0, "Images": [], "Containers": [], "Volumes": [], "BuildCache": []
        }))),
        ["events"] if get => {
            // Nothing happens locally that the engine would report: an open, silent stream
            // (as `docker events` on an idle daemon), closed on shutdown or at `until`.
            let wait = events_wait(&q, SystemTime::now())?;
            let end = async move {
                if let Some(d) = wait {
                    tokio::time::sleep(d).await;
                }
            };
            let stream = futures::stream::pending::<Result<bytes::Bytes, Infallible>>()
                .take_until(st.cancel.clone().cancelled_owned())
                .take_until(Box::pin(end));
            let mut resp = Response::new(Body::from_stream(stream));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            Ok(resp)
        }
        _ => Err(unavailable(&method, &path)),
    }
}

/// The longest an `until` in the future holds an events stream open (about a century);
/// a later bound is the same in practice and keeps the timer in range.
const MAX_EVENTS_WAIT: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `GET /events`' `since`/`until`, checked as the daemon's `getEvents` checks them: each a
/// `seconds[.nanoseconds]` timestamp (its 400 quotes the name in single quotes, unlike the
/// logs routes), `until` not before `since`. The answer is how long the stream stays open:
/// `None` without `until`, zero for an `until` already past (only past events, of which a
/// node without an engine has none).
pub fn events_wait(q: &QueryParams, now: SystemTime) -> Result<Option<Duration>, ApiError> {
    let param = |key: &str| {
        parse_unix_timestamp(q.get(key).unwrap_or(""))
            .map_err(|e| ApiError::bad_request(format!("invalid value for '{key}': {e}")))
    };
    let since = param("since")?;
    let Some(until) = param("until")? else {
        return Ok(None);
    };
    if let Some(since) = since
        && until < since
    {
        return Err(ApiError::bad_request(format!(
            "`since` time ({}) cannot be after `until` time ({})",
            q.get("since").unwrap_or(""),
            q.get("until").unwrap_or("")
        )));
    }
    Ok(Some(wait_until(until, now)))
}

/// Time from `now` to `until`, zero if it has passed, at most [`MAX_EVENTS_WAIT`].
fn wait_until(until: UnixTime, now: SystemTime) -> Duration {
    let now = match now.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d,
        Err(_) => return MAX_EVENTS_WAIT,
    };
    if until.secs < 0 {
        return Duration::ZERO;
    }
    Duration::new(until.secs as u64, until.nanos)
        .saturating_sub(now)
        .min(MAX_EVENTS_WAIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait(q: &str) -> Result<Option<Duration>, String> {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        events_wait(&QueryParams::parse(q), now).map_err(|e| {
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
            e.message
        })
    }

    #[test]
    fn events_bounds_are_checked_and_saturate() {
        assert_eq!(wait(""), Ok(None));
        assert_eq!(wait("since=5"), Ok(None));
        assert_eq!(wait("until=900"), Ok(Some(Duration::ZERO)));
        assert_eq!(wait("until=-5"), Ok(Some(Duration::ZERO)));
        assert_eq!(wait("until=1000.5"), Ok(Some(Duration::from_millis(500))));
        assert_eq!(
            wait("until=9223372036854775807.999999999"),
            Ok(Some(MAX_EVENTS_WAIT))
        );
        let e = wait("since=1e300").unwrap_err();
        assert!(
            e.contains(r#"invalid value for 'since': invalid timestamp "1e300": invalid seconds "1e300": invalid syntax"#),
            "{e}"
        );
        let e = wait("until=NaN").unwrap_err();
        assert!(e.contains("invalid value for 'until'"), "{e}");
        let e = wait("since=20&until=10").unwrap_err();
        assert!(
            e.contains("`since` time (20) cannot be after `until` time (10)"),
            "{e}"
        );
    }
}
