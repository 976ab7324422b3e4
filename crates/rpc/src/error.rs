//! Errors across the wire: typed errors ⇄ gRPC status, in one place.
//!
//! A service error travels as a gRPC status whose code suits the variant (so generic gRPC
//! tooling and retries see something sensible) plus the binary trailer
//! [`ERROR_TRAILER`] holding the serde_json of the typed error, so the client rebuilds the
//! exact variant. A status *without* the trailer did not come from the service: it came
//! from the transport (connect, TLS, timeout, reset) or from the authorizer, and the client
//! maps it by what that says about the call (e.g. for a proposal: certainly not applied,
//! or outcome unknown).

use std::error::Error as _;

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use swarmd_store::{ProposeError, StoreError};
use swarmd_types::dispatcher::DispatchError;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Status};

use crate::tls::ConnectFailed;

/// Binary trailer carrying the JSON of the typed service error.
pub const ERROR_TRAILER: &str = "swarmd-error-bin";

/// A status for `err` carrying its JSON in [`ERROR_TRAILER`].
fn typed_status<E: Serialize>(code: Code, message: String, err: &E) -> Status {
    let mut md = MetadataMap::new();
    match serde_json::to_vec(err) {
        Ok(json) => {
            md.insert_bin(ERROR_TRAILER, MetadataValue::from_bytes(&json));
        }
        // Cannot happen for these plain enums; the code and message still go out.
        Err(e) => tracing::warn!(error = %e, "encoding an rpc error failed"),
    }
    Status::with_metadata(code, message, md)
}

/// The typed error in `status`'s trailer, if the service put one there.
fn typed_error<E: DeserializeOwned>(status: &Status) -> Option<E> {
    let value = status.metadata().get_bin(ERROR_TRAILER)?;
    let bytes = value.to_bytes().ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// True when the call failed while connecting (TCP or TLS handshake on the client side):
/// the request certainly never reached the server.
pub(crate) fn is_connect_failure(status: &Status) -> bool {
    let mut source = status.source();
    while let Some(err) = source {
        if err.is::<ConnectFailed>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// The status's message followed by its error chain: tonic's messages for transport
/// failures are terse ("transport error"); the cause (refused, TLS alert) is in the chain.
fn detail(status: &Status) -> String {
    let mut out = status.message().to_string();
    let mut source = status.source();
    while let Some(err) = source {
        let text = err.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = err.source();
    }
    out
}

/// Code and detail, for errors that keep only text.
fn describe(status: &Status) -> String {
    format!("{:?}: {}", status.code(), detail(status))
}

// --- Dispatcher --------------------------------------------------------------------------

/// The status a dispatcher handler returns for `err`.
///
/// Public so an [`Authorizer`](crate::Authorizer) can answer with a dispatcher error the
/// agent understands (e.g. `NodeRemoved` for a removed node's still-valid certificate).
pub fn dispatch_status(err: &DispatchError) -> Status {
    let code = match err {
        DispatchError::SessionInvalid => Code::NotFound,
        DispatchError::NotLeader { .. } => Code::FailedPrecondition,
        DispatchError::NodeRemoved(_) => Code::PermissionDenied,
        DispatchError::Unavailable(_) => Code::Unavailable,
    };
    typed_status(code, err.to_string(), err)
}

/// The dispatcher error a failed call means to the agent. Without a typed trailer the
/// manager could not be reached or refused us before the dispatcher ran: `Unavailable`,
/// so the agent backs off and tries again (or another manager).
pub fn dispatch_error_from_status(status: &Status) -> DispatchError {
    typed_error(status).unwrap_or_else(|| DispatchError::Unavailable(describe(status)))
}

// --- Proposals -----------------------------------------------------------------------------

/// [`ProposeError`] as it travels (the store's enum is not serde-encodable itself).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum WireProposeError {
    Store(StoreError),
    NotLeader { leader_addr: Option<String> },
    Unavailable(String),
    OutcomeUnknown(String),
}

impl From<&ProposeError> for WireProposeError {
    fn from(e: &ProposeError) -> Self {
        match e {
            ProposeError::Store(s) => WireProposeError::Store(s.clone()),
            ProposeError::NotLeader { leader_addr } => WireProposeError::NotLeader {
                leader_addr: leader_addr.clone(),
            },
            ProposeError::Unavailable(m) => WireProposeError::Unavailable(m.clone()),
            ProposeError::OutcomeUnknown(m) => WireProposeError::OutcomeUnknown(m.clone()),
        }
    }
}

impl From<WireProposeError> for ProposeError {
    fn from(e: WireProposeError) -> Self {
        match e {
            WireProposeError::Store(s) => ProposeError::Store(s),
            WireProposeError::NotLeader { leader_addr } => ProposeError::NotLeader { leader_addr },
            WireProposeError::Unavailable(m) => ProposeError::Unavailable(m),
            WireProposeError::OutcomeUnknown(m) => ProposeError::OutcomeUnknown(m),
        }
    }
}

/// The status the Propose handler returns for `err`.
pub fn propose_status(err: &ProposeError) -> Status {
    let code = match err {
        ProposeError::Store(StoreError::Exists { .. } | StoreError::NameConflict { .. }) => {
            Code::AlreadyExists
        }
        ProposeError::Store(StoreError::NotFound { .. }) => Code::NotFound,
        ProposeError::Store(StoreError::VersionConflict { .. }) => Code::Aborted,
        ProposeError::Store(StoreError::DuplicateInBatch { .. }) => Code::InvalidArgument,
        ProposeError::NotLeader { .. } => Code::FailedPrecondition,
        ProposeError::Unavailable(_) => Code::Unavailable,
        ProposeError::OutcomeUnknown(_) => Code::Unknown,
    };
    typed_status(code, err.to_string(), &WireProposeError::from(err))
}

/// What a failed Propose call means for the proposal.
///
/// Keeps "certainly not applied" apart from "outcome unknown" (design principle 8): a typed
/// trailer is the leader's own verdict; a connect failure, a refusal by the authorizer, a
/// missing Control service or a request the leader could not decode mean the proposal never
/// reached Raft (`Unavailable`); anything else (timeout, reset mid-call) may have
/// committed (`OutcomeUnknown`).
pub fn propose_error_from_status(status: &Status) -> ProposeError {
    if let Some(wire) = typed_error::<WireProposeError>(status) {
        return wire.into();
    }
    let what = describe(status);
    if is_connect_failure(status) {
        return ProposeError::Unavailable(format!("cannot reach the leader: {what}"));
    }
    match status.code() {
        Code::Unauthenticated
        | Code::PermissionDenied
        | Code::Unimplemented
        | Code::InvalidArgument => {
            ProposeError::Unavailable(format!("the leader refused the proposal: {what}"))
        }
        _ => ProposeError::OutcomeUnknown(what),
    }
}

// --- Engine tunnels ---------------------------------------------------------------------

/// Why a tunnel could not be opened or accepted (the Engines service), on either side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum TunnelError {
    /// Tunnels go through the Raft leader, and this manager is not it.
    #[error("this manager is not the swarm's leader")]
    NotLeader { leader_addr: Option<String> },
    /// The target cannot be reached now: its node is not connected, did not answer in
    /// time, has no engine, or the leader serves no pool API.
    #[error("{0}")]
    Unavailable(String),
    /// The caller may not do this (a tunnel that was not asked of it).
    #[error("{0}")]
    Refused(String),
    /// The request is malformed (no first frame, an unknown target).
    #[error("{0}")]
    Invalid(String),
}

/// The status an Engines handler returns for `err`.
pub fn tunnel_status(err: &TunnelError) -> Status {
    let code = match err {
        TunnelError::NotLeader { .. } => Code::FailedPrecondition,
        TunnelError::Unavailable(_) => Code::Unavailable,
        TunnelError::Refused(_) => Code::PermissionDenied,
        TunnelError::Invalid(_) => Code::InvalidArgument,
    };
    typed_status(code, err.to_string(), err)
}

/// The tunnel error a failed Engines call means: the service's own verdict when it sent
/// one; a refusal by the authorizer is `Refused`; anything else (connect failure, timeout,
/// reset) `Unavailable`.
pub fn tunnel_error_from_status(status: &Status) -> TunnelError {
    if let Some(e) = typed_error(status) {
        return e;
    }
    match status.code() {
        Code::Unauthenticated | Code::PermissionDenied => TunnelError::Refused(describe(status)),
        _ => TunnelError::Unavailable(describe(status)),
    }
}

// --- Raft and CA -----------------------------------------------------------------------

/// Why a Raft or CA call failed, on either side: the services return it, the clients get
/// it back. Variants map one to one onto gRPC codes, so no trailer is needed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    /// The request is malformed (undecodable payload, bad CSR).
    #[error("invalid request: {0}")]
    InvalidArgument(String),
    /// The caller could not be authenticated (no certificate, bad or rotated join token).
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// The caller is known but may not do this (worker asking for a manager certificate).
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// Not possible on this node now (not the leader, CA key not held here).
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    /// The peer cannot be reached or is shutting down; retry later or elsewhere.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The call's deadline passed before an answer.
    #[error("deadline exceeded: {0}")]
    DeadlineExceeded(String),
    /// A bug or an unexpected failure on the peer.
    #[error("internal error: {0}")]
    Internal(String),
}

impl RpcError {
    pub fn code(&self) -> Code {
        match self {
            RpcError::InvalidArgument(_) => Code::InvalidArgument,
            RpcError::Unauthenticated(_) => Code::Unauthenticated,
            RpcError::PermissionDenied(_) => Code::PermissionDenied,
            RpcError::NotFound(_) => Code::NotFound,
            RpcError::FailedPrecondition(_) => Code::FailedPrecondition,
            RpcError::Unavailable(_) => Code::Unavailable,
            RpcError::DeadlineExceeded(_) => Code::DeadlineExceeded,
            RpcError::Internal(_) => Code::Internal,
        }
    }

    fn message(&self) -> &str {
        match self {
            RpcError::InvalidArgument(m)
            | RpcError::Unauthenticated(m)
            | RpcError::PermissionDenied(m)
            | RpcError::NotFound(m)
            | RpcError::FailedPrecondition(m)
            | RpcError::Unavailable(m)
            | RpcError::DeadlineExceeded(m)
            | RpcError::Internal(m) => m,
        }
    }
}

impl From<RpcError> for Status {
    fn from(e: RpcError) -> Status {
        Status::new(e.code(), e.message())
    }
}

impl From<Status> for RpcError {
    fn from(s: Status) -> RpcError {
        let m = detail(&s);
        match s.code() {
            Code::InvalidArgument | Code::OutOfRange => RpcError::InvalidArgument(m),
            Code::Unauthenticated => RpcError::Unauthenticated(m),
            Code::PermissionDenied => RpcError::PermissionDenied(m),
            Code::NotFound => RpcError::NotFound(m),
            Code::FailedPrecondition | Code::AlreadyExists | Code::Aborted => {
                RpcError::FailedPrecondition(m)
            }
            Code::Unavailable | Code::ResourceExhausted | Code::Unimplemented => {
                RpcError::Unavailable(m)
            }
            // tonic reports its own client-side deadline as Cancelled("Timeout expired").
            Code::DeadlineExceeded | Code::Cancelled => RpcError::DeadlineExceeded(m),
            Code::Internal => RpcError::Internal(m),
            code => RpcError::Internal(format!("{code:?}: {m}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmd_types::Kind;

    #[test]
    fn dispatch_errors_round_trip_through_status() {
        for err in [
            DispatchError::SessionInvalid,
            DispatchError::NotLeader {
                leader_addr: Some("10.0.0.1:2377".into()),
            },
            DispatchError::NodeRemoved("n1".into()),
            DispatchError::Unavailable("down".into()),
        ] {
            assert_eq!(dispatch_error_from_status(&dispatch_status(&err)), err);
        }
        let plain = Status::permission_denied("worker");
        assert!(matches!(
            dispatch_error_from_status(&plain),
            DispatchError::Unavailable(_)
        ));
    }

    #[test]
    fn tunnel_errors_round_trip_and_a_refusal_by_the_authorizer_is_refused() {
        for err in [
            TunnelError::NotLeader {
                leader_addr: Some("10.0.0.1:2377".into()),
            },
            TunnelError::Unavailable("node w1 is not connected".into()),
            TunnelError::Refused("not asked".into()),
            TunnelError::Invalid("bad target".into()),
        ] {
            assert_eq!(tunnel_error_from_status(&tunnel_status(&err)), err);
        }
        assert!(matches!(
            tunnel_error_from_status(&Status::permission_denied("for managers")),
            TunnelError::Refused(m) if m.contains("for managers")
        ));
        assert!(matches!(
            tunnel_error_from_status(&Status::cancelled("reset")),
            TunnelError::Unavailable(_)
        ));
    }

    #[test]
    fn propose_errors_round_trip_and_untyped_failures_are_classified() {
        for err in [
            ProposeError::Store(StoreError::NameConflict {
                kind: Kind::Service,
                name: "web".into(),
            }),
            ProposeError::NotLeader { leader_addr: None },
            ProposeError::Unavailable("no quorum".into()),
            ProposeError::OutcomeUnknown("timeout".into()),
        ] {
            assert_eq!(propose_error_from_status(&propose_status(&err)), err);
        }
        assert!(matches!(
            propose_error_from_status(&Status::permission_denied("worker")),
            ProposeError::Unavailable(_)
        ));
        assert!(matches!(
            propose_error_from_status(&Status::cancelled("Timeout expired")),
            ProposeError::OutcomeUnknown(_)
        ));
    }

    #[test]
    fn rpc_errors_round_trip_through_status() {
        for err in [
            RpcError::InvalidArgument("a".into()),
            RpcError::Unauthenticated("b".into()),
            RpcError::PermissionDenied("c".into()),
            RpcError::NotFound("d".into()),
            RpcError::FailedPrecondition("e".into()),
            RpcError::Unavailable("f".into()),
            RpcError::DeadlineExceeded("g".into()),
            RpcError::Internal("h".into()),
        ] {
            assert_eq!(RpcError::from(Status::from(err.clone())), err);
        }
    }
}
