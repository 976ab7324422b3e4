//! swarmd's fault harness (issue 19): operations through the Docker API, recorded as a
//! history while faults are injected, then checked.
//!
//! [`check`] holds the checkers, pure functions over a recorded history: linearizability
//! of registers (a Wing–Gong–Lowe search with a cache of visited states, as Porcupine
//! does) and lost acknowledged writes of a set.

pub mod check;
pub mod lab;
pub mod nemesis;
pub mod report;
pub mod workload;
