//! Command-line flags, in dockerd's spelling where dockerd has one.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// Which executor runs this node's tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExecutorKind {
    /// Docker when an engine answers on `--engine-host`, else host processes.
    Auto,
    /// Containers on the local Docker Engine.
    Docker,
    /// Host processes (no Docker needed).
    Process,
}

/// swarmd: Docker Swarm, rebuilt in Rust. Drive it with the docker CLI.
#[derive(Debug, Clone, Parser)]
#[command(name = "swarmd", version, about)]
pub struct Args {
    /// Where the Docker Engine API listens: unix://PATH or tcp://ADDR:PORT (repeatable).
    #[arg(short = 'H', long = "host", default_value = "unix:///run/swarmd.sock")]
    pub hosts: Vec<String>,

    /// Directory for this node's state (Raft log, agent db, task logs).
    #[arg(long, default_value = "/var/lib/swarmd")]
    pub data_root: PathBuf,

    /// Executor for tasks.
    #[arg(long, value_enum, default_value_t = ExecutorKind::Auto)]
    pub executor: ExecutorKind,

    /// The local Docker Engine the docker executor drives.
    #[arg(long, default_value = "unix:///var/run/docker.sock")]
    pub engine_host: String,

    /// Address this node binds its data plane and published ports to.
    #[arg(long, default_value = "127.0.0.1")]
    pub node_addr: IpAddr,

    /// Hostname this node reports (several nodes on one machine need distinct names).
    #[arg(long)]
    pub hostname: Option<String>,

    /// Initialize a single-node swarm at start unless this node is already in one
    /// (the same as running `docker swarm init` against it).
    #[arg(long)]
    pub init: bool,

    /// Serve published ports in user space only: no nftables rules for the routing mesh's
    /// kernel fast path (which needs `nft` and CAP_NET_ADMIN, and falls back by itself).
    #[arg(long)]
    pub userland_mesh: bool,

    /// Log level (error, warn, info, debug, trace) or a tracing filter.
    #[arg(short = 'l', long, default_value = "info")]
    pub log_level: String,
}

impl Args {
    /// The engine socket path from `--engine-host`.
    pub fn engine_socket(&self) -> Option<String> {
        self.engine_host
            .strip_prefix("unix://")
            .map(str::to_string)
            .or_else(|| {
                self.engine_host
                    .starts_with('/')
                    .then(|| self.engine_host.clone())
            })
    }
}
