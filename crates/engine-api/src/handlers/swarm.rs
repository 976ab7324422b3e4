//! `/swarm*`: init, join, leave, inspect, update, unlock.

use axum::extract::{Extension, State};
use axum::response::Response;
use swarmd_types::models::{LocalNodeState, SwarmSpec, SwarmUnlockRequest, UnlockKeyResponse};

use super::{empty_ok, json_ok, manager_check, require_manager};
use crate::backend::SwarmUpdateFlags;
use crate::convert;
use crate::decode::JsonBody;
use crate::error::{ApiError, ApiResult};
use crate::query::QueryParams;
use crate::router::AppState;
use crate::swarm_request::{InitRequest, JoinRequest};
use crate::version::RequestVersion;
use crate::wire::{self, moby};

/// `POST /swarm/init`: answers the new node's ID as a JSON string.
pub async fn init(
    State(st): State<AppState>,
    Extension(version): Extension<RequestVersion>,
    JsonBody(mut req): JsonBody<InitRequest>,
) -> ApiResult<Response> {
    // Fields newer than the client's API version are ignored, as the daemon does.
    if !version.at_least("1.39") {
        req.default_addr_pool = None;
        req.subnet_size = None;
    }
    if !version.at_least("1.40") {
        req.data_path_port = None;
    }
    let node_id = st.backend.swarm_init(req).await?;
    Ok(json_ok(&node_id))
}

pub async fn join(
    State(st): State<AppState>,
    JsonBody(req): JsonBody<JoinRequest>,
) -> ApiResult<Response> {
    st.backend.swarm_join(req).await?;
    Ok(empty_ok())
}

pub async fn leave(State(st): State<AppState>, q: QueryParams) -> ApiResult<Response> {
    st.backend.swarm_leave(q.bool("force")).await?;
    Ok(empty_ok())
}

pub async fn inspect(State(st): State<AppState>) -> ApiResult<Response> {
    require_manager(&st)?;
    let cluster = st.backend.swarm_inspect().await?;
    Ok(json_ok(&wire::to_wire(
        &moby::SWARM,
        &convert::cluster_to_swarm(&cluster),
    )))
}

pub async fn update(
    State(st): State<AppState>,
    q: QueryParams,
    JsonBody(spec): JsonBody<SwarmSpec>,
) -> ApiResult<Response> {
    let version = q.object_version("swarm")?;
    let flags = SwarmUpdateFlags {
        rotate_worker_token: q.bool("rotateWorkerToken"),
        rotate_manager_token: q.bool("rotateManagerToken"),
        rotate_manager_unlock_key: q.bool("rotateManagerUnlockKey"),
    };
    require_manager(&st)?;
    st.backend.swarm_update(version, spec, flags).await?;
    Ok(empty_ok())
}

pub async fn unlock_key(State(st): State<AppState>) -> ApiResult<Response> {
    require_manager(&st)?;
    let key = st.backend.swarm_unlock_key().await?;
    Ok(json_ok(&UnlockKeyResponse {
        unlock_key: Some(key),
    }))
}

/// `POST /swarm/unlock`: only a locked node can be unlocked; an active manager answers
/// the daemon's 409 "swarm is not locked".
pub async fn unlock(
    State(st): State<AppState>,
    JsonBody(req): JsonBody<SwarmUnlockRequest>,
) -> ApiResult<Response> {
    let status = st.backend.swarm_status();
    if status.local_node_state != LocalNodeState::LOCKED {
        manager_check(&status)?;
        return Err(ApiError::conflict("swarm is not locked"));
    }
    st.backend
        .swarm_unlock(req.unlock_key.unwrap_or_default())
        .await?;
    Ok(empty_ok())
}
