//! The manager's connection to each engine of the pool (issue 16 item 2, the I/O part).
//!
//! An [`Engine`] dials one Docker Engine, reads what the scheduler needs (`/info`,
//! `/containers/json` plus inspects, `/images/json`) into its [`crate::scheduler::model::Node`]
//! through the I/O-free functions of [`crate::engine`], and keeps the engine's
//! [`crate::discovery::EngineHealth`] from the outcome of every call, as classic Swarm's
//! `cluster/engine.go` does. Every call is bounded by a timeout: one dead engine must never
//! stall the manager.

mod engine;
mod error;
mod events;

pub use engine::Engine;
pub use error::EngineError;

#[cfg(test)]
mod tests;
