//! Why a reconcile pass failed. The loop logs it and retries the pass after a short backoff;
//! nothing here reaches the Docker API.

use swarmd_store::{ProposeError, StoreError};

/// Why a pass failed: writing its plan (the store's verdict or Raft's), or planning it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReconcileError {
    /// This manager lost the leadership: the reconcilers are about to stop.
    #[error("this node is not the raft leader")]
    NotLeader,
    /// No quorum, or shutting down: certainly not applied.
    #[error("the swarm does not have a leader: {0}")]
    Unavailable(String),
    /// Sent, but whether it committed is unknown: the next pass re-plans from what did.
    #[error("outcome of the change is unknown: {0}")]
    OutcomeUnknown(String),
    /// Concurrent writers changed what the plan read on every attempt.
    #[error("the store kept changing under the plan: gave up after {attempts} attempts")]
    Conflict { attempts: usize },
    /// The store refused the writes for another reason (a plan that contradicts the store).
    #[error("the store rejected the plan: {0}")]
    Rejected(StoreError),
    /// The plan could not be made (e.g. a new root CA's digest).
    #[error("planning failed: {0}")]
    Plan(String),
    /// Raft refused a membership change.
    #[error("raft membership change failed: {0}")]
    Raft(String),
}

impl ReconcileError {
    /// A short name for the failure, logged as a structured field.
    pub fn kind(&self) -> &'static str {
        match self {
            ReconcileError::NotLeader => "not_leader",
            ReconcileError::Unavailable(_) => "unavailable",
            ReconcileError::OutcomeUnknown(_) => "outcome_unknown",
            ReconcileError::Conflict { .. } => "conflict",
            ReconcileError::Rejected(_) => "rejected",
            ReconcileError::Plan(_) => "plan",
            ReconcileError::Raft(_) => "raft",
        }
    }
}

impl From<ProposeError> for ReconcileError {
    fn from(e: ProposeError) -> Self {
        match e {
            // The store retries conflicts itself; one that reaches here outlasted them (the
            // apply path counts the attempts and says so, see `reconcile::pass`).
            ProposeError::Store(StoreError::VersionConflict { .. }) => {
                ReconcileError::Conflict { attempts: 0 }
            }
            ProposeError::Store(e) => ReconcileError::Rejected(e),
            ProposeError::NotLeader { .. } => ReconcileError::NotLeader,
            ProposeError::Unavailable(m) => ReconcileError::Unavailable(m),
            ProposeError::OutcomeUnknown(m) => ReconcileError::OutcomeUnknown(m),
        }
    }
}

impl From<swarmd_pki::PkiError> for ReconcileError {
    fn from(e: swarmd_pki::PkiError) -> Self {
        ReconcileError::Plan(e.to_string())
    }
}
