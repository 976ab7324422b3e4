//! One swarm node as a library: inactive until `swarm init` or `swarm join`, then a manager
//! (Raft, the manager components, the cluster port) or a worker, each with a local agent;
//! back to inactive on `swarm leave`. [`NodeBackend`] serves the Docker Engine API over it.
//!
//! The swarmd binary builds a [`NodeConfig`] from its flags and starts a [`SwarmNode`];
//! tests start several in one process (see `tests/`), on the agent's fake executor.

mod autolock;
pub mod backend;
pub mod cluster;
pub mod config;
mod dataplane;
pub mod engines;
mod follow;
pub mod node;
mod raft_glue;
mod raft_spec;
mod store_watch;
mod sysinfo;

pub use backend::NodeBackend;
pub use config::{ExecChoice, ExecutorKind, NodeConfig};
pub use node::SwarmNode;
