//! `/tasks*`.

use std::collections::HashMap;
use std::str::FromStr;

use axum::extract::{Extension, Path, State};
use axum::response::Response;
use swarmd_types::models::TaskState;
use swarmd_types::{Node, Service, Task};

use super::services::{log_response, visible_services};
use super::{json_ok, require_manager};
use crate::convert;
use crate::error::{ApiError, ApiResult};
use crate::filters::{FilterError, Filters, match_labels, parse_filters};
use crate::logs;
use crate::query::QueryParams;
use crate::resolve::{resolve_node, resolve_service, resolve_task};
use crate::router::AppState;
use crate::version::RequestVersion;
use crate::wire::{self, moby};

const TASK_FILTERS: &[&str] = &[
    "name",
    "id",
    "label",
    "service",
    "node",
    "desired-state",
    "_up-to-date",
    "runtime",
];

/// Applies `GET /tasks` filters (swarmkit's `ListTasks` after the daemon resolved
/// `service` and `node` to IDs): `name` (prefix of `service.slot.id`), `id` (prefix),
/// `label` (service labels), `service`, `node`, `desired-state`, and the CLI's hidden
/// `_up-to-date` (made from the service's current spec). `services` and `nodes` resolve
/// names; `self_id` answers `node=self`.
pub fn filter_tasks(
    tasks: Vec<Task>,
    f: &Filters,
    services: &[Service],
    nodes: &[Node],
    self_id: Option<&str>,
) -> Result<Vec<Task>, ApiError> {
    f.validate(TASK_FILTERS)?;
    let mut desired = Vec::new();
    for s in f.get("desired-state") {
        match TaskState::from_str(&s.to_ascii_lowercase()) {
            Ok(state) => desired.push(state),
            Err(()) if s.is_empty() => {}
            Err(()) => {
                return Err(FilterError::InvalidValue(format!(
                    "Invalid desired-state filter: '{s}'"
                ))
                .into());
            }
        }
    }
    let service_ids = f
        .get("service")
        .into_iter()
        .map(|s| resolve_service(s, services).map(|svc| svc.id.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    let node_ids = f
        .get("node")
        .into_iter()
        .map(|n| resolve_node(n, nodes, self_id).map(|node| node.id.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    let up_to_date = f.contains("_up-to-date");
    let spec_versions: HashMap<&str, u64> = services
        .iter()
        .map(|s| (s.id.as_str(), s.spec_version))
        .collect();
    let labels = f.label_map("label");
    Ok(tasks
        .into_iter()
        .filter(|t| {
            f.matches_prefix("name", &convert::task_full_name(t))
                && f.matches_prefix("id", &t.id)
                && match_labels(&labels, &t.service_labels)
                && (service_ids.is_empty() || service_ids.contains(&t.service_id))
                && (node_ids.is_empty() || node_ids.contains(&t.node_id))
                && (desired.is_empty() || desired.contains(&t.desired_state))
                && (!up_to_date
                    || spec_versions.get(t.service_id.as_str()) == Some(&t.spec_version))
                && f.matches_any("runtime", "container")
        })
        .collect())
}

pub async fn list(State(st): State<AppState>, q: QueryParams) -> ApiResult<Response> {
    let filters = parse_filters(q.get("filters").unwrap_or(""))?;
    let status = require_manager(&st)?;
    let tasks = st.backend.tasks().await?;
    // Only fetch what the filters need: the CLI polls this every 200 ms.
    let services = if filters.contains("service") || filters.contains("_up-to-date") {
        visible_services(&st).await?
    } else {
        Vec::new()
    };
    let nodes = if filters.contains("node") {
        st.backend.nodes().await?
    } else {
        Vec::new()
    };
    let tasks = filter_tasks(tasks, &filters, &services, &nodes, Some(&status.node_id))?;
    let networks = st.backend.networks().await?;
    let out: Vec<_> = tasks
        .iter()
        .map(|t| convert::task_with_networks(t, &networks))
        .collect();
    Ok(json_ok(&wire::list_to_wire(&moby::TASK, &out)))
}

pub async fn inspect(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    require_manager(&st)?;
    let tasks = st.backend.tasks().await?;
    let task = resolve_task(&id, &tasks)?;
    let networks = st.backend.networks().await?;
    Ok(json_ok(&wire::to_wire(
        &moby::TASK,
        &convert::task_with_networks(task, &networks),
    )))
}

pub async fn logs(
    State(st): State<AppState>,
    Extension(version): Extension<RequestVersion>,
    Path(id): Path<String>,
    q: QueryParams,
) -> ApiResult<Response> {
    let opts = logs::parse_log_options(&q)?;
    require_manager(&st)?;
    let tasks = st.backend.tasks().await?;
    let task = resolve_task(&id, &tasks)?.clone();
    let tty = task
        .spec
        .container_spec
        .as_ref()
        .and_then(|c| c.tty)
        .unwrap_or(false);
    let stream = st.backend.task_logs(vec![task], opts.clone()).await?;
    Ok(log_response(stream, opts, tty, &version, &st))
}
