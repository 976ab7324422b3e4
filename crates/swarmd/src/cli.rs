//! Command-line flags, in dockerd's spelling where dockerd has one.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

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
#[command(
    name = "swarmd",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,

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

    /// While this node is a manager, serve the classic Swarm API (`swarmd manage`'s) here
    /// over the swarm's own nodes: tcp://ADDR:PORT or unix://PATH (repeatable).
    #[arg(long = "pool-host")]
    pub pool_hosts: Vec<String>,

    /// The pool API's scheduling strategy: spread, binpack or random (default spread).
    #[arg(long = "pool-strategy")]
    pub pool_strategy: Option<String>,

    /// The pool API's filters (repeatable; default all: health, port, containerslots,
    /// dependency, affinity, constraint, whitelist).
    #[arg(long = "pool-filter")]
    pub pool_filters: Vec<String>,

    /// The pool API's cluster options: swarm.overcommit=RATIO, swarm.createretry=N
    /// (repeatable).
    #[arg(long = "pool-cluster-opt")]
    pub pool_cluster_opts: Vec<String>,

    /// Log level (error, warn, info, debug, trace) or a tracing filter.
    #[arg(short = 'l', long, default_value = "info")]
    pub log_level: String,
}

impl Args {
    /// What the node needs of these flags.
    pub fn node_config(&self) -> swarmd_node::NodeConfig {
        swarmd_node::NodeConfig {
            data_root: self.data_root.clone(),
            executor: match self.executor {
                ExecutorKind::Auto => swarmd_node::ExecutorKind::Auto,
                ExecutorKind::Docker => swarmd_node::ExecutorKind::Docker,
                ExecutorKind::Process => swarmd_node::ExecutorKind::Process,
            },
            engine_socket: self.engine_socket(),
            node_addr: self.node_addr,
            hostname: self.hostname.clone(),
            userland_mesh: self.userland_mesh,
        }
    }

    /// The pool API's options (`--pool-*`), checked with `swarmd manage`'s rules and words.
    /// Its engines are the swarm's nodes, given to the pool as they come and go.
    pub fn pool_options(&self) -> anyhow::Result<swarmd_classic::options::ManageOptions> {
        let args = swarmd_classic::options::ManageArgs {
            discovery: None,
            hosts: self.pool_hosts.clone(),
            strategy: self.pool_strategy.clone(),
            filters: self.pool_filters.clone(),
            heartbeat: None,
            refresh_min: None,
            refresh_max: None,
            failure_retry: None,
            cluster_opts: self.pool_cluster_opts.clone(),
            tls: false,
            tlsverify: false,
            tlscacert: None,
            tlscert: None,
            tlskey: None,
        };
        let members = tokio::sync::watch::channel(Vec::new()).1;
        Ok(swarmd_classic::options::ManageOptions::with_discovery(
            &args,
            swarmd_classic::discovery::Discovery::Members(members),
        )?)
    }

    /// The engine socket path from `--engine-host`.
    fn engine_socket(&self) -> Option<String> {
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

/// Other ways to run swarmd than a swarm-mode node.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Classic Swarm: serve one virtual Docker host over a pool of Docker Engines.
    Manage(ManageCli),
}

/// `swarmd manage`, with classic Swarm's flags (`swarm manage --help`).
#[derive(Debug, Clone, clap::Args)]
pub struct ManageCli {
    /// The engines: nodes://HOST:PORT,..., a bare HOST:PORT,... list, file://PATH (re-read
    /// every heartbeat) or unix://PATH.
    #[arg(env = "SWARM_DISCOVERY")]
    pub discovery: Option<String>,

    /// Where the Docker API listens: tcp://ADDR:PORT or unix://PATH (repeatable; default
    /// tcp://127.0.0.1:2375).
    #[arg(short = 'H', long = "host", env = "SWARM_HOST")]
    pub hosts: Vec<String>,

    /// Scheduling strategy: spread, binpack or random.
    #[arg(long, env = "SWARM_STRATEGY")]
    pub strategy: Option<String>,

    /// Filters to apply (repeatable; default all: health, port, containerslots,
    /// dependency, affinity, constraint, whitelist).
    #[arg(short = 'f', long = "filter", env = "SWARM_FILTER")]
    pub filters: Vec<String>,

    /// How often a file:// discovery is re-read (Go duration, default 60s).
    #[arg(long)]
    pub heartbeat: Option<String>,

    /// Shortest wait between two refreshes of an engine (default 30s).
    #[arg(long = "engine-refresh-min-interval")]
    pub engine_refresh_min_interval: Option<String>,

    /// Longest wait between two refreshes of an engine (default 60s).
    #[arg(long = "engine-refresh-max-interval")]
    pub engine_refresh_max_interval: Option<String>,

    /// Failed refreshes before an engine is flagged unhealthy (default 3).
    #[arg(long = "engine-failure-retry")]
    pub engine_failure_retry: Option<i64>,

    /// Cluster options: swarm.overcommit=RATIO, swarm.createretry=N (repeatable).
    #[arg(long = "cluster-opt")]
    pub cluster_opts: Vec<String>,

    /// Serve the API over TLS.
    #[arg(long)]
    pub tls: bool,

    /// Serve the API over TLS and verify clients' certificates.
    #[arg(long)]
    pub tlsverify: bool,

    /// CA clients' certificates must be signed by.
    #[arg(long)]
    pub tlscacert: Option<String>,

    /// The API's certificate.
    #[arg(long)]
    pub tlscert: Option<String>,

    /// The API's private key.
    #[arg(long)]
    pub tlskey: Option<String>,

    /// Enable Swarm manager replication: several managers over one pool elect one
    /// primary, the others forward to it.
    #[arg(long)]
    pub replication: bool,

    /// Address of this manager (HOST:PORT) the other managers reach it at; required with
    /// --replication.
    #[arg(long = "advertise", visible_alias = "addr", env = "SWARM_ADVERTISE")]
    pub advertise: Option<String>,

    /// How long a silent primary keeps its role (Go duration, default 20s).
    #[arg(long = "replication-ttl")]
    pub replication_ttl: Option<String>,

    /// Log level (error, warn, info, debug, trace) or a tracing filter.
    #[arg(short = 'l', long, default_value = "info")]
    pub log_level: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_gets_the_flags_it_needs() {
        let args = Args::try_parse_from([
            "swarmd",
            "--data-root",
            "/tmp/n1",
            "--executor",
            "process",
            "--engine-host",
            "unix:///run/e.sock",
            "--node-addr",
            "127.0.0.5",
            "--hostname",
            "n1",
            "--userland-mesh",
        ])
        .unwrap();
        let c = args.node_config();
        assert_eq!(c.data_root, PathBuf::from("/tmp/n1"));
        assert!(matches!(c.executor, swarmd_node::ExecutorKind::Process));
        assert_eq!(c.engine_socket.as_deref(), Some("/run/e.sock"));
        assert_eq!(c.node_addr, IpAddr::from([127, 0, 0, 5]));
        assert_eq!(c.hostname.as_deref(), Some("n1"));
        assert!(c.userland_mesh);
    }

    #[test]
    fn only_a_unix_engine_host_gives_the_docker_executor_a_socket() {
        let socket = |host: &str| {
            Args::try_parse_from(["swarmd", "--engine-host", host])
                .unwrap()
                .node_config()
                .engine_socket
        };
        assert_eq!(
            socket("unix:///var/run/docker.sock").as_deref(),
            Some("/var/run/docker.sock")
        );
        assert_eq!(socket("/run/d.sock").as_deref(), Some("/run/d.sock"));
        assert_eq!(socket("tcp://127.0.0.1:2375"), None);
        let auto = Args::try_parse_from(["swarmd"]).unwrap().node_config();
        assert!(matches!(auto.executor, swarmd_node::ExecutorKind::Auto));
        assert!(!auto.userland_mesh);
    }

    /// `--pool-*` flags are checked with `swarmd manage`'s rules and words.
    #[test]
    fn pool_flags_are_checked_as_swarmd_manage_checks_them() {
        let args = Args::try_parse_from([
            "swarmd",
            "--pool-host",
            "tcp://127.0.0.1:2380",
            "--pool-strategy",
            "binpack",
            "--pool-filter",
            "constraint",
        ])
        .unwrap();
        let o = args.pool_options().unwrap();
        assert_eq!(o.strategy.to_string(), "binpack");
        assert_eq!(o.filters.len(), 1);
        let refused = |flags: &[&str]| {
            let mut argv = vec!["swarmd", "--pool-host", "tcp://127.0.0.1:2380"];
            argv.extend_from_slice(flags);
            Args::try_parse_from(argv)
                .unwrap()
                .pool_options()
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            refused(&["--pool-strategy", "best"]),
            "strategy not supported"
        );
        assert_eq!(refused(&["--pool-filter", "nope"]), "filter not supported");
        assert!(refused(&["--pool-cluster-opt", "swarm.overcommit=x"]).contains("overcommit"));
    }
}
