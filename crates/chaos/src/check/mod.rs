//! Checkers over recorded histories.
//!
//! A history is a list of [`Operation`]s: who called, when it was invoked and when it
//! returned (on one clock), what it asked and what it got. An operation that timed out or
//! whose connection broke has no return: its outcome is unknown, and it may or may not have
//! taken effect, at any moment after its invocation (Jepsen's "info"). Timeouts are unknowns,
//! never failures.

mod linearizable;
pub mod register;
pub mod set;
pub mod tasks;

pub use linearizable::{Model, Verdict, check_linearizable};

use serde::{Deserialize, Serialize};

/// One operation of a history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation<I, O> {
    /// Which client called (a client has one operation in flight at a time).
    pub client: u64,
    /// When it was invoked (nanoseconds on the harness's monotonic clock).
    pub invoked: u64,
    /// When it returned, with what; `None`: unknown (timed out, connection lost).
    pub returned: Option<(u64, O)>,
    pub input: I,
}
