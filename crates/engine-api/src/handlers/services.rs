//! `/services*`.

use axum::extract::{Extension, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use swarmd_types::Service;
use swarmd_types::models::{ServiceSpec, ServiceUpdateResponse};

use super::{empty_ok, json_ok, json_response, require_manager};
use crate::backend::{BackendError, ServiceUpdateOptions};
use crate::convert;
use crate::decode::JsonBody;
use crate::error::{ApiError, ApiResult};
use crate::filters::{FilterError, Filters, match_labels, parse_filters};
use crate::logs;
use crate::query::QueryParams;
use crate::resolve::resolve_service;
use crate::router::AppState;
use crate::spec;
use crate::version::RequestVersion;
use crate::wire::{self, moby};

const SERVICE_FILTERS: &[&str] = &["name", "id", "label", "mode", "runtime"];

/// The services the API shows.
pub async fn visible_services(st: &AppState) -> ApiResult<Vec<Service>> {
    Ok(st.backend.services().await?)
}

/// Applies `GET /services` filters: `id`/`name` prefixes, `label`, `mode` (exact), and
/// `runtime` (every swarmd service runs containers).
pub fn filter_services(services: Vec<Service>, f: &Filters) -> Result<Vec<Service>, FilterError> {
    f.validate(SERVICE_FILTERS)?;
    let labels = f.label_map("label");
    Ok(services
        .into_iter()
        .filter(|s| {
            f.matches_prefix("id", &s.id)
                && f.matches_prefix("name", s.spec.name.as_deref().unwrap_or(""))
                && match_labels(
                    &labels,
                    s.spec.labels.as_ref().unwrap_or(&Default::default()),
                )
                && (!f.contains("mode") || f.exact_match("mode", spec::mode_name(&s.spec)))
                && f.matches_any("runtime", "container")
        })
        .collect())
}

pub async fn list(
    State(st): State<AppState>,
    Extension(version): Extension<RequestVersion>,
    q: QueryParams,
) -> ApiResult<Response> {
    let filters = parse_filters(q.get("filters").unwrap_or(""))?;
    // `status` exists since API 1.41; older clients' value is ignored, as the daemon does.
    let with_status = version.at_least("1.41") && q.bool("status");
    require_manager(&st)?;
    let services = filter_services(visible_services(&st).await?, &filters)?;
    let (tasks, down) = if with_status {
        let down: std::collections::HashSet<String> = st
            .backend
            .nodes()
            .await?
            .into_iter()
            .filter(|n| n.status.state == swarmd_types::NodeState::Down)
            .map(|n| n.id)
            .collect();
        (st.backend.tasks().await?, down)
    } else {
        Default::default()
    };
    let out: Vec<_> = services
        .iter()
        .map(|s| {
            let status = with_status.then(|| convert::service_status(s, &tasks, &down));
            convert::service_to_docker(s, status, false)
        })
        .collect();
    Ok(json_ok(&wire::list_to_wire(&moby::SERVICE, &out)))
}

pub async fn inspect(
    State(st): State<AppState>,
    Path(id): Path<String>,
    q: QueryParams,
) -> ApiResult<Response> {
    require_manager(&st)?;
    let services = visible_services(&st).await?;
    let svc = resolve_service(&id, &services)?;
    Ok(json_ok(&wire::to_wire(
        &moby::SERVICE,
        &convert::service_to_docker(svc, None, q.bool("insertDefaults")),
    )))
}

/// A backend error as the daemon reports it: a network the swarm does not know but the
/// engine does is a local network, which services cannot use (the daemon's 403).
async fn explain(st: &AppState, version: &RequestVersion, e: BackendError) -> ApiError {
    if let BackendError::Swarm(s) = &e
        && let Some(("network", id)) = s.missing()
        && let Some(err) = super::networks::non_swarm_network_error(st, id, version).await
    {
        return err;
    }
    e.into()
}

pub async fn create(
    State(st): State<AppState>,
    Extension(version): Extension<RequestVersion>,
    JsonBody(mut spec): JsonBody<ServiceSpec>,
) -> ApiResult<Response> {
    spec::normalize_service_spec(&mut spec);
    require_manager(&st)?;
    let (id, warnings) = match st.backend.service_create(spec).await {
        Ok(r) => r,
        Err(e) => return Err(explain(&st, &version, e).await),
    };
    // The daemon writes `"Warnings": null` when there are none.
    let warnings = (!warnings.is_empty()).then_some(warnings);
    Ok(json_response(
        StatusCode::CREATED,
        &serde_json::json!({ "ID": id, "Warnings": warnings }),
    ))
}

pub async fn update(
    State(st): State<AppState>,
    Extension(req_version): Extension<RequestVersion>,
    Path(id): Path<String>,
    q: QueryParams,
    JsonBody(mut spec): JsonBody<ServiceSpec>,
) -> ApiResult<Response> {
    let version = q.object_version("service")?;
    let rollback = match q.get("rollback").unwrap_or("") {
        "" | "none" => false,
        "previous" => true,
        other => {
            return Err(ApiError::bad_request(format!(
                "unrecognized rollback option {other}"
            )));
        }
    };
    let registry_auth_from = match q.get("registryAuthFrom").unwrap_or("") {
        "" => None,
        v @ ("spec" | "previous-spec") => Some(v.to_string()),
        _ => return Err(ApiError::bad_request("unsupported registryAuthFrom value")),
    };
    spec::normalize_service_spec(&mut spec);
    require_manager(&st)?;
    let services = visible_services(&st).await?;
    let svc = resolve_service(&id, &services)?;
    let warnings = match st
        .backend
        .service_update(
            &svc.id,
            version,
            spec,
            ServiceUpdateOptions {
                rollback,
                registry_auth_from,
            },
        )
        .await
    {
        Ok(w) => w,
        Err(e) => return Err(explain(&st, &req_version, e).await),
    };
    Ok(json_ok(&ServiceUpdateResponse {
        warnings: Some(warnings),
    }))
}

pub async fn remove(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    require_manager(&st)?;
    let services = visible_services(&st).await?;
    let svc = resolve_service(&id, &services)?;
    st.backend.service_remove(&svc.id).await?;
    Ok(empty_ok())
}

/// `GET /services/{id}/logs`: the logs of every task the service has placed on a node.
pub async fn logs(
    State(st): State<AppState>,
    Extension(version): Extension<RequestVersion>,
    Path(id): Path<String>,
    q: QueryParams,
) -> ApiResult<Response> {
    let opts = logs::parse_log_options(&q)?;
    require_manager(&st)?;
    let services = visible_services(&st).await?;
    let svc = resolve_service(&id, &services)?;
    let tty = svc
        .spec
        .task_template
        .as_ref()
        .and_then(|t| t.container_spec.as_ref())
        .and_then(|c| c.tty)
        .unwrap_or(false);
    let mut tasks = st.backend.tasks().await?;
    tasks.retain(|t| t.service_id == svc.id && !t.node_id.is_empty());
    tasks.sort_by(|a, b| (a.slot, &a.meta.created_at).cmp(&(b.slot, &b.meta.created_at)));
    let stream = st.backend.task_logs(tasks, opts.clone()).await?;
    Ok(log_response(stream, opts, tty, &version, &st))
}

/// The streaming answer shared by service and task logs.
pub fn log_response(
    stream: crate::backend::LogStream,
    opts: crate::backend::LogOptions,
    tty: bool,
    version: &RequestVersion,
    st: &AppState,
) -> Response {
    let mux = !tty;
    let content_type = if mux && version.at_least("1.42") {
        logs::MEDIA_MULTIPLEXED
    } else {
        logs::MEDIA_RAW
    };
    let mut resp = Response::new(logs::log_body(stream, opts, mux, st.cancel.clone()));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}
