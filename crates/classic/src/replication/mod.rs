//! Several `swarmd manage` on one pool, one primary (issue 16 item 6; classic's
//! `--replication`), with no external store: the engines are the store.
//!
//! The primary holds a lock on a strict majority of the pool's healthy engines: a
//! network named `swarmd-manage-primary`, labelled with its `--advertise` address, which
//! an engine creates only if none of that name exists (`lock.rs`). Candidates create the
//! lock on every healthy engine; one holding a majority is primary, one that does not
//! deletes the locks it made (by ID) and retries after a random backoff. Every TTL/3 the
//! primary re-reads its locks (re-creating missing ones) and steps down without a
//! majority; replicas ask the holder's `/info` whether it is primary, and after a whole
//! TTL without a yes delete its locks by ID (a lock already replaced keeps its new ID and
//! survives) and run (`decide.rs` decides, `task.rs` acts, `engines.rs` talks).
//!
//! A replica forwards every request but `/_ping` and `/info` to the primary (`forward.rs`);
//! only the primary reschedules (`gate.rs`). Limits are in docs/ARCHITECTURE.md.

pub mod config;
pub mod decide;
pub mod engines;
pub mod forward;
pub mod gate;
pub mod lock;
pub mod role;
mod task;

pub use config::{ReplicationArgs, ReplicationConfig, ReplicationError};
pub use task::{Replication, start};

#[cfg(test)]
mod live_tests;
