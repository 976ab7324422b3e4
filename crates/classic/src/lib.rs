//! Classic Swarm (`swarmd manage`, issue 16): one virtual Docker host over a pool of Docker
//! Engines. The manager keeps no state of its own; it places each container on an engine
//! by a strategy and filters, with classic Swarm's documented semantics.

pub mod api;
pub mod discovery;
pub mod engine;
pub mod options;
pub mod pool;
pub mod replication;
pub mod reschedule;
pub mod scheduler;
pub mod view;
