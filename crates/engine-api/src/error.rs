//! The one place where failures become HTTP answers.
//!
//! Docker clients show the `message` of a `{"message": ...}` body and branch on the status
//! code (404 → "not found" handling in the CLI, 503 → swarm state), so both the codes and the
//! texts follow the Docker daemon's (`daemon/cluster/errors.go`, `errdefs`).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::backend::BackendError;

/// `docker swarm init/join` not yet run (Docker's `errNoManager` for a node without swarm).
pub const MSG_NOT_MANAGER: &str = "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.";
/// The node is a worker.
pub const MSG_WORKER: &str = "This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. Please run this command on a manager node or promote the current node to a manager.";
/// The node is joining / its manager is starting.
pub const MSG_MANAGER_PREPARING: &str = "This node is not a swarm manager. Manager is being prepared or has trouble connecting to the cluster.";
pub const MSG_ALREADY_IN_SWARM: &str = "This node is already part of a swarm. Use \"docker swarm leave\" to leave this swarm and join another one.";
pub const MSG_NOT_IN_SWARM: &str = "This node is not part of a swarm";
pub const MSG_LOCKED: &str = "Swarm is encrypted and needs to be unlocked before it can be used. Please use \"docker swarm unlock\" to unlock it.";
pub const MSG_PAGE_NOT_FOUND: &str = "page not found";

/// An error answer: a status code and Docker's message text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    pub fn not_implemented(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_IMPLEMENTED, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// Docker's answer for a route it does not have (also used for wrong methods, as the
    /// daemon's router does).
    pub fn page_not_found() -> Self {
        Self::not_found(MSG_PAGE_NOT_FOUND)
    }

    /// `{kind} {input} not found`, the daemon's wording for swarm objects.
    pub fn object_not_found(kind: &str, input: &str) -> Self {
        Self::not_found(format!("{kind} {input} not found"))
    }

    /// `{kind} {input} is ambiguous (N matches found)`: 400, as the daemon's
    /// `ambiguousResultsError` is an invalid-parameter error.
    pub fn ambiguous(kind: &str, input: &str, matches: usize) -> Self {
        Self::bad_request(format!(
            "{kind} {input} is ambiguous ({matches} matches found)"
        ))
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl std::error::Error for ApiError {}

impl From<BackendError> for ApiError {
    fn from(err: BackendError) -> Self {
        match err {
            BackendError::NotManager => ApiError::unavailable(MSG_NOT_MANAGER),
            BackendError::AlreadyInSwarm => ApiError::unavailable(MSG_ALREADY_IN_SWARM),
            BackendError::NotInSwarm => ApiError::unavailable(MSG_NOT_IN_SWARM),
            BackendError::Locked => ApiError::unavailable(MSG_LOCKED),
            BackendError::Swarm(e) => ApiError::new(
                StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                e.to_string(),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "message": self.message });
        let mut bytes = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
        bytes.push(b'\n');
        let mut resp = (self.status, bytes).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;
    use swarmd_types::error::SwarmError;

    #[test]
    fn backend_errors_map_to_docker_codes_and_texts() {
        let e: ApiError = BackendError::from(SwarmError::not_found("service", "web")).into();
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        assert_eq!(e.message, "service web not found");

        let e: ApiError = BackendError::NotManager.into();
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            e.message
                .starts_with("This node is not a swarm manager. Use")
        );

        // The daemon's own refusals read plain, with their class's status.
        let e: ApiError = BackendError::from(SwarmError::conflict("swarm is not locked")).into();
        assert_eq!(e.status, StatusCode::CONFLICT);
        assert_eq!(e.message, "swarm is not locked");
        let e: ApiError = BackendError::from(SwarmError::unauthorized(
            "swarm could not be unlocked: invalid key provided",
        ))
        .into();
        assert_eq!(e.status, StatusCode::UNAUTHORIZED);
        let e: ApiError =
            BackendError::from(SwarmError::invalid_parameter("invalid key string")).into();
        assert_eq!(
            (e.status, e.message.as_str()),
            (StatusCode::BAD_REQUEST, "invalid key string")
        );

        // A refusal with a code answers with the code's status and Docker's rendering.
        let e: ApiError = BackendError::from(SwarmError::failed_precondition(
            "node n is not down and can't be removed",
        ))
        .into();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            e.message,
            "rpc error: code = FailedPrecondition desc = node n is not down and can't be removed"
        );
        let e: ApiError = BackendError::from(SwarmError::out_of_sequence()).into();
        assert_eq!(e.status, StatusCode::CONFLICT);
        let e: ApiError = BackendError::from(SwarmError::unimplemented("no")).into();
        assert_eq!(e.status, StatusCode::NOT_IMPLEMENTED);

        let e = ApiError::ambiguous("service", "ab", 2);
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.message, "service ab is ambiguous (2 matches found)");
    }
}
