//! What can go wrong talking to one engine, and which of it counts against its health.

use std::time::Duration;

use crate::engine::info::InfoError;

/// A failed call to an engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The address could not be turned into a client (bad socket path, bad URL).
    #[error("cannot connect to engine {addr}: {message}")]
    Client { addr: String, message: String },
    /// No answer within the call timeout: a hung engine is as unreachable as a dead one.
    #[error("engine {addr}: no answer to {call} within {timeout:?}")]
    Timeout {
        addr: String,
        call: &'static str,
        timeout: Duration,
    },
    /// The engine could not be reached or the connection broke (refused, reset, closed).
    #[error("cannot connect to engine {addr}: {message}")]
    Connection { addr: String, message: String },
    /// The engine answered, with an error status or a body we cannot read.
    #[error("engine {addr}: {call}: {message}")]
    Response {
        addr: String,
        call: &'static str,
        /// The HTTP status, 0 when the answer was unreadable.
        status: u16,
        message: String,
    },
    /// The engine answered `/info` but classic would refuse it (see [`InfoError`]).
    #[error(transparent)]
    Info(#[from] InfoError),
}

impl EngineError {
    /// Whether classic would count this as a failed connection (`--engine-failure-retry`):
    /// only an engine that does not answer is unhealthy; one that answers with an error
    /// is up.
    pub fn is_connection_error(&self) -> bool {
        matches!(self, Self::Timeout { .. } | Self::Connection { .. })
    }

    /// Whether the engine answered 404 (the object is gone).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Response { status: 404, .. })
    }

    pub(super) fn from_bollard(addr: &str, call: &'static str, e: bollard::errors::Error) -> Self {
        use bollard::errors::Error as B;
        match e {
            B::DockerResponseServerError {
                status_code,
                message,
            } => Self::Response {
                addr: addr.to_owned(),
                call,
                status: status_code,
                message,
            },
            e @ (B::JsonDataError { .. } | B::JsonSerdeError { .. }) => Self::Response {
                addr: addr.to_owned(),
                call,
                status: 0,
                message: e.to_string(),
            },
            other => Self::Connection {
                addr: addr.to_owned(),
                message: other.to_string(),
            },
        }
    }
}
