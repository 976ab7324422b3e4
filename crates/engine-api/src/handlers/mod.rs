//! Route handlers: decode the request, call the backend, encode the answer. Filtering,
//! resolution and conversion live in their own modules so these stay thin.

pub mod local;
pub mod networks;
pub mod nodes;
pub mod secrets;
pub mod services;
pub mod swarm;
pub mod system;
pub mod tasks;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Serialize;
use swarmd_types::models::LocalNodeState;

use crate::backend::SwarmStatus;
use crate::error::{ApiError, MSG_LOCKED, MSG_MANAGER_PREPARING, MSG_NOT_MANAGER, MSG_WORKER};
use crate::router::AppState;

/// A JSON answer as the daemon writes it (`json.NewEncoder(w).Encode(v)`: one line).
pub fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(mut bytes) => {
            bytes.push(b'\n');
            let mut resp = Response::new(Body::from(bytes));
            *resp.status_mut() = status;
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp
        }
        Err(e) => axum::response::IntoResponse::into_response(ApiError::internal(format!(
            "encoding response: {e}"
        ))),
    }
}

pub fn json_ok<T: Serialize>(value: &T) -> Response {
    json_response(StatusCode::OK, value)
}

/// An empty 200 (what the daemon answers to successful updates, removals, leave, join).
pub fn empty_ok() -> Response {
    Response::new(Body::empty())
}

/// The daemon's `lockedManagerAction` check: manager-only calls fail with the 503 text
/// for the node's state before the backend is asked.
pub fn require_manager(st: &AppState) -> Result<SwarmStatus, ApiError> {
    let status = st.backend.swarm_status();
    manager_check(&status)?;
    Ok(status)
}

pub fn manager_check(status: &SwarmStatus) -> Result<(), ApiError> {
    match status.local_node_state {
        LocalNodeState::ACTIVE if status.control_available => Ok(()),
        LocalNodeState::ACTIVE => Err(ApiError::unavailable(MSG_WORKER)),
        LocalNodeState::LOCKED => Err(ApiError::unavailable(MSG_LOCKED)),
        LocalNodeState::PENDING => Err(ApiError::unavailable(MSG_MANAGER_PREPARING)),
        _ => Err(ApiError::unavailable(MSG_NOT_MANAGER)),
    }
}
