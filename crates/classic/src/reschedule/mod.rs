//! Classic Swarm's watchdog (issue 16 item 5): containers run with
//! `-e reschedule:on-node-failure` are recreated on another engine when theirs is flagged
//! unhealthy (same config, name and Swarm ID; started if they were running), and the
//! stale copies a returning engine brings back are removed.
//!
//! `policy`, `plan` and `body` decide, free of I/O; `task` watches the pool and acts.
//!
//! The decisions are levels, not edges: every pass reads the whole pool, so a watchdog
//! started after an engine was flagged unhealthy, or one that missed a change, moves
//! what is left to move. A manager restarted while an engine is down cannot, though:
//! it never listed that engine's containers (classic could not either).
//!
//! `swarmd manage` runs it beside the API, sharing the API's scheduling lock and
//! scheduler:
//!
//! ```text
//! tokio::spawn(reschedule::run(
//!     Watchdog {
//!         pool: pool.clone(),
//!         scheduler,                 // the one api::app builds from the options
//!         schedule_lock,             // the ClassicState's, not a new one
//!         timeout: ENGINE_CALL_TIMEOUT,
//!         interval: options.refresh.min,
//!     },
//!     cancel.clone(),
//! ));
//! ```

pub mod body;
pub mod plan;
pub mod policy;
mod task;

pub use task::{Watchdog, run, run_while_primary};

#[cfg(test)]
mod live_tests;
