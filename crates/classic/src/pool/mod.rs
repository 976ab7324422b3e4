//! The manager's connection to the engines of the pool (issue 16 item 2, the I/O part).
//!
//! An [`Engine`] dials one Docker Engine, reads what the scheduler needs (`/info`,
//! `/containers/json` plus inspects, `/images/json`) into its [`crate::scheduler::model::Node`]
//! through the I/O-free functions of [`crate::engine`], and keeps the engine's
//! [`crate::discovery::EngineHealth`] from the outcome of every call, as classic Swarm's
//! `cluster/engine.go` does. Every call is bounded by a timeout: one dead engine must never
//! stall the manager.
//!
//! The [`Pool`] runs one task per engine (`member.rs`: refresh, then follow the engine's
//! events until the next refresh is due) and re-reads a `file://` discovery every
//! heartbeat, or follows the members the embedding program sends (a swarm's nodes, reached
//! through its [`swarmd_engine_api::dial::Dialer`]); readers get [`EngineSnapshot`]s, never a
//! lock held across I/O.

mod engine;
mod error;
mod events;
mod member;
mod members;
mod overlay;

pub use engine::Engine;
pub use error::EngineError;
pub use member::{EngineSnapshot, PoolEvent};
pub use members::{PendingToken, Pool, PoolConfig};

#[cfg(test)]
mod tests;
