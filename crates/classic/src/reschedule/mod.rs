//! Classic Swarm's watchdog (issue 16 item 5): containers run with
//! `-e reschedule:on-node-failure` are recreated on another engine when theirs is flagged
//! unhealthy (same config, name and Swarm ID; started if they were running), and the
//! stale copies a returning engine brings back are removed.
//!
//! `policy`, `plan` and `body` decide, free of I/O; `task` watches the pool and acts.

pub mod body;
pub mod plan;
pub mod policy;
mod task;

pub use task::{Watchdog, run};

#[cfg(test)]
mod live_tests;
