//! `/nodes*`.

use axum::extract::{Path, State};
use axum::response::Response;
use swarmd_types::models::NodeSpec;
use swarmd_types::{Node, Role};

use super::{empty_ok, json_ok, require_manager};
use crate::convert;
use crate::decode::JsonBody;
use crate::error::ApiResult;
use crate::filters::{FilterError, Filters, match_labels, parse_filters};
use crate::query::QueryParams;
use crate::resolve::{node_name, resolve_node};
use crate::router::AppState;
use crate::wire::{self, moby};

const NODE_FILTERS: &[&str] = &["name", "id", "label", "role", "membership", "node.label"];

/// Applies `GET /nodes` filters (swarmkit's `ListNodes`): `id`/`name` prefixes, `label`
/// on engine labels, `node.label` on the node's own labels, `role`, `membership`.
pub fn filter_nodes(nodes: Vec<Node>, f: &Filters) -> Result<Vec<Node>, FilterError> {
    f.validate(NODE_FILTERS)?;
    let mut roles = Vec::new();
    for r in f.get("role") {
        match r.to_ascii_lowercase().as_str() {
            "manager" => roles.push(Role::Manager),
            "worker" => roles.push(Role::Worker),
            "" => {}
            _ => {
                return Err(FilterError::InvalidValue(format!(
                    "Invalid role filter: '{r}'"
                )));
            }
        }
    }
    // Every stored node has been accepted (swarmd has no manual acceptance), so a
    // membership filter keeps all nodes if it asks for "accepted" and none otherwise.
    let mut memberships = Vec::new();
    for m in f.get("membership") {
        match m.to_ascii_lowercase().as_str() {
            "" => {}
            v @ ("accepted" | "pending") => memberships.push(v.to_string()),
            _ => {
                return Err(FilterError::InvalidValue(format!(
                    "Invalid membership filter: '{m}'"
                )));
            }
        }
    }
    let membership_ok = memberships.is_empty() || memberships.iter().any(|m| m == "accepted");
    let labels = f.label_map("label");
    let node_labels = f.label_map("node.label");
    Ok(nodes
        .into_iter()
        .filter(|n| {
            f.matches_prefix("id", &n.id)
                && f.matches_prefix("name", node_name(n))
                && match_labels(&labels, &n.description.engine_labels)
                && match_labels(
                    &node_labels,
                    n.spec.labels.as_ref().unwrap_or(&Default::default()),
                )
                && (roles.is_empty() || roles.contains(&n.role))
                && membership_ok
        })
        .collect())
}

pub async fn list(State(st): State<AppState>, q: QueryParams) -> ApiResult<Response> {
    let filters = parse_filters(q.get("filters").unwrap_or(""))?;
    let status = require_manager(&st)?;
    let nodes = filter_nodes(st.backend.nodes().await?, &filters)?;
    let raft = st.backend.raft_view().await?;
    let tls = status
        .cluster
        .as_ref()
        .map(|c| convert::tls_info(&c.root_ca));
    let out: Vec<_> = nodes
        .iter()
        .map(|n| convert::node_to_docker(n, &raft, tls.as_ref()))
        .collect();
    Ok(json_ok(&wire::list_to_wire(&moby::NODE, &out)))
}

pub async fn inspect(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let status = require_manager(&st)?;
    let nodes = st.backend.nodes().await?;
    let node = resolve_node(&id, &nodes, Some(&status.node_id))?;
    let raft = st.backend.raft_view().await?;
    let tls = status
        .cluster
        .as_ref()
        .map(|c| convert::tls_info(&c.root_ca));
    Ok(json_ok(&wire::to_wire(
        &moby::NODE,
        &convert::node_to_docker(node, &raft, tls.as_ref()),
    )))
}

pub async fn update(
    State(st): State<AppState>,
    Path(id): Path<String>,
    q: QueryParams,
    JsonBody(spec): JsonBody<NodeSpec>,
) -> ApiResult<Response> {
    let version = q.object_version("node")?;
    let status = require_manager(&st)?;
    let nodes = st.backend.nodes().await?;
    let node = resolve_node(&id, &nodes, Some(&status.node_id))?;
    st.backend.node_update(&node.id, version, spec).await?;
    Ok(empty_ok())
}

pub async fn remove(
    State(st): State<AppState>,
    Path(id): Path<String>,
    q: QueryParams,
) -> ApiResult<Response> {
    let status = require_manager(&st)?;
    let nodes = st.backend.nodes().await?;
    let node = resolve_node(&id, &nodes, Some(&status.node_id))?;
    st.backend.node_remove(&node.id, q.bool("force")).await?;
    Ok(empty_ok())
}
