//! One error vocabulary for refusals that reach the Docker API.
//!
//! Docker's daemon shows two kinds of errors: swarmkit's, which come to it over gRPC and
//! so read `rpc error: code = X desc = ...`, and its own, which are plain text. Both carry
//! a class that picks the HTTP status. [`SwarmError`] is one such refusal: a gRPC-style
//! [`Code`], the message, and which of the two kinds it is. It is rendered into Docker's
//! text once ([`std::fmt::Display`]) and mapped to the HTTP status once
//! ([`SwarmError::http_status`]), so the manager that refuses and the API that answers
//! never hand-write either.

/// gRPC's status codes, by the names Go prints them with (`codes.Code.String()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    Canceled,
    Unknown,
    InvalidArgument,
    DeadlineExceeded,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    ResourceExhausted,
    FailedPrecondition,
    Aborted,
    OutOfRange,
    Unimplemented,
    Internal,
    Unavailable,
    DataLoss,
    Unauthenticated,
}

impl Code {
    /// The name in `rpc error: code = <name> desc = ...`.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Canceled => "Canceled",
            Code::Unknown => "Unknown",
            Code::InvalidArgument => "InvalidArgument",
            Code::DeadlineExceeded => "DeadlineExceeded",
            Code::NotFound => "NotFound",
            Code::AlreadyExists => "AlreadyExists",
            Code::PermissionDenied => "PermissionDenied",
            Code::ResourceExhausted => "ResourceExhausted",
            Code::FailedPrecondition => "FailedPrecondition",
            Code::Aborted => "Aborted",
            Code::OutOfRange => "OutOfRange",
            Code::Unimplemented => "Unimplemented",
            Code::Internal => "Internal",
            Code::Unavailable => "Unavailable",
            Code::DataLoss => "DataLoss",
            Code::Unauthenticated => "Unauthenticated",
        }
    }

    /// The HTTP status Docker's daemon answers with: moby's `statusCodeFromGRPCError`
    /// (daemon/server/httpstatus). Its own plain errors use the errdefs classes these
    /// codes name (not found, invalid parameter, conflict, forbidden, ...), which map the
    /// same way.
    pub fn http_status(self) -> u16 {
        match self {
            Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => 400,
            Code::Unauthenticated => 401,
            Code::PermissionDenied => 403,
            Code::NotFound => 404,
            Code::AlreadyExists => 409,
            Code::Unimplemented => 501,
            Code::Unavailable => 503,
            Code::Canceled
            | Code::Unknown
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Aborted
            | Code::Internal
            | Code::DataLoss => 500,
        }
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Docker's words when a write finds no leader to take it (swarmkit's `lostQuorumMessage`).
pub const NO_LEADER: &str = "The swarm does not have a leader. It's possible that too few managers are online. Make sure more than half of the managers are online.";

/// Who says it in Docker, which decides how it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// swarmkit, over gRPC: `rpc error: code = X desc = msg`.
    Swarmkit,
    /// The daemon itself: the message alone.
    Daemon,
}

/// Named constructors: `name => rpc(Code)` reads like swarmkit's error with that code,
/// `name => daemon(Code)` like the daemon's own.
macro_rules! constructors {
    ($($(#[$doc:meta])* $name:ident => $origin:ident($code:ident);)*) => {
        $(
            $(#[$doc])*
            pub fn $name(message: impl std::fmt::Display) -> Self {
                Self::$origin(Code::$code, message)
            }
        )*
    };
}

/// A refusal as Docker's daemon reports it. Build it with a named constructor: swarmkit's
/// codes ([`SwarmError::invalid_argument`], [`SwarmError::already_exists`], ...) read
/// `rpc error: ...`; the daemon's own ([`SwarmError::not_found`],
/// [`SwarmError::forbidden`], [`SwarmError::conflict`], ...) read plain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwarmError {
    code: Code,
    message: String,
    origin: Origin,
    /// What was not found, for callers that explain a missing object further.
    missing: Option<(&'static str, String)>,
    /// swarmd's answer where it deliberately differs from the code's status.
    status: Option<u16>,
}

impl SwarmError {
    fn new(code: Code, origin: Origin, message: impl Into<String>) -> Self {
        SwarmError {
            code,
            message: message.into(),
            origin,
            missing: None,
            status: None,
        }
    }

    /// A swarmkit (gRPC) error with this code.
    pub fn rpc(code: Code, message: impl std::fmt::Display) -> Self {
        Self::new(code, Origin::Swarmkit, message.to_string())
    }

    /// A plain error of the daemon's own with this code's class.
    pub fn daemon(code: Code, message: impl std::fmt::Display) -> Self {
        Self::new(code, Origin::Daemon, message.to_string())
    }

    constructors! {
        /// swarmkit's `InvalidArgument` (400).
        invalid_argument => rpc(InvalidArgument);
        /// swarmkit's `AlreadyExists` (409).
        already_exists => rpc(AlreadyExists);
        /// swarmkit's `FailedPrecondition` (400).
        failed_precondition => rpc(FailedPrecondition);
        /// swarmkit's `Unimplemented` (501).
        unimplemented => rpc(Unimplemented);
        /// A deadline passed (500), e.g. a write whose outcome is unknown.
        deadline_exceeded => rpc(DeadlineExceeded);
        /// The daemon's "not allowed" errors (403).
        forbidden => daemon(PermissionDenied);
        /// The daemon's own conflicts (409), e.g. "network with name x already exists".
        conflict => daemon(AlreadyExists);
        /// The daemon's "not available" errors (503).
        unavailable => daemon(Unavailable);
        /// The daemon's invalid parameters (400), e.g. a malformed unlock key.
        invalid_parameter => daemon(InvalidArgument);
        /// The daemon's "unauthorized" (401), e.g. a wrong unlock key.
        unauthorized => daemon(Unauthenticated);
        /// A fault of the node's own (500).
        internal => daemon(Internal);
        /// The daemon's "not implemented" (501): the node cannot do this at all.
        not_implemented => daemon(Unimplemented);
    }

    /// swarmkit's store refusing a write made against an old version. Docker answers it
    /// with a 500 (code Unknown); swarmd answers 409, as docs/STATUS.md promises, so a
    /// client can tell a stale version from a server fault.
    pub fn out_of_sequence() -> Self {
        SwarmError {
            status: Some(409),
            ..Self::rpc(Code::Unknown, "update out of sequence")
        }
    }

    /// A write with no leader to take it (swarmkit's lost-quorum error, code Unknown).
    pub fn no_leader() -> Self {
        Self::rpc(Code::Unknown, NO_LEADER)
    }

    /// `{kind} {id} not found`, the daemon's wording for a missing swarm object.
    pub fn not_found(kind: &'static str, id: impl Into<String>) -> Self {
        let id = id.into();
        SwarmError {
            missing: Some((kind, id.clone())),
            ..Self::daemon(Code::NotFound, format!("{kind} {id} not found"))
        }
    }

    pub fn code(&self) -> Code {
        self.code
    }

    /// The message without the `rpc error` framing (gRPC's `desc`).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// `(kind, id)` of the object a [`SwarmError::not_found`] is about.
    pub fn missing(&self) -> Option<(&'static str, &str)> {
        self.missing.as_ref().map(|(k, id)| (*k, id.as_str()))
    }

    /// The HTTP status of the answer.
    pub fn http_status(&self) -> u16 {
        self.status.unwrap_or_else(|| self.code.http_status())
    }
}

/// Docker's text: what the CLI prints after "Error response from daemon: ".
impl std::fmt::Display for SwarmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.origin {
            Origin::Swarmkit => {
                write!(f, "rpc error: code = {} desc = {}", self.code, self.message)
            }
            Origin::Daemon => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for SwarmError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_reads_and_answers_as_dockers() {
        let table: Vec<(SwarmError, u16, &str)> = vec![
            (
                SwarmError::invalid_argument("name must be provided"),
                400,
                "rpc error: code = InvalidArgument desc = name must be provided",
            ),
            (
                SwarmError::failed_precondition("node x is not down and can't be removed"),
                400,
                "rpc error: code = FailedPrecondition desc = node x is not down and can't be removed",
            ),
            (
                SwarmError::already_exists("secret s already exists"),
                409,
                "rpc error: code = AlreadyExists desc = secret s already exists",
            ),
            (
                SwarmError::unimplemented("renaming services is not supported"),
                501,
                "rpc error: code = Unimplemented desc = renaming services is not supported",
            ),
            (
                SwarmError::deadline_exceeded("timed out"),
                500,
                "rpc error: code = DeadlineExceeded desc = timed out",
            ),
            (
                SwarmError::out_of_sequence(),
                409,
                "rpc error: code = Unknown desc = update out of sequence",
            ),
            (
                SwarmError::no_leader(),
                500,
                "rpc error: code = Unknown desc = The swarm does not have a leader. It's possible that too few managers are online. Make sure more than half of the managers are online.",
            ),
            (
                SwarmError::not_found("service", "web"),
                404,
                "service web not found",
            ),
            (
                SwarmError::forbidden("bridge is a pre-defined network and cannot be created"),
                403,
                "bridge is a pre-defined network and cannot be created",
            ),
            (
                SwarmError::conflict("network with name n already exists"),
                409,
                "network with name n already exists",
            ),
            (SwarmError::unavailable("not now"), 503, "not now"),
            (SwarmError::internal("disk full"), 500, "disk full"),
            (SwarmError::not_implemented("no"), 501, "no"),
            (
                SwarmError::rpc(Code::Unauthenticated, "who"),
                401,
                "rpc error: code = Unauthenticated desc = who",
            ),
        ];
        for (err, status, text) in table {
            assert_eq!(err.http_status(), status, "{err}");
            assert_eq!(err.to_string(), text);
        }
    }

    #[test]
    fn a_missing_object_says_which() {
        let e = SwarmError::not_found("network", "n1");
        assert_eq!(e.code(), Code::NotFound);
        assert_eq!(e.missing(), Some(("network", "n1")));
        assert_eq!(SwarmError::internal("x").missing(), None);
    }
}
