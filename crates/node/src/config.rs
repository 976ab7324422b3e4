//! What a node is started with: the part of swarmd's flags the node itself needs, and the
//! executor it picks from them.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use swarmd_agent::Executor;
use swarmd_agent::exec::docker::DockerExecutor;

/// How a node is configured (the binary builds it from its flags).
#[derive(Clone)]
pub struct NodeConfig {
    /// Directory for this node's state (Raft log, agent db, task logs).
    pub data_root: PathBuf,
    /// Executor for tasks.
    pub executor: ExecutorKind,
    /// The local Docker Engine's socket path the docker executor drives (`None`: the engine
    /// host given is not a unix socket).
    pub engine_socket: Option<String>,
    /// Address this node binds its data plane and published ports to.
    pub node_addr: IpAddr,
    /// Hostname this node reports (`None`: the machine's).
    pub hostname: Option<String>,
    /// Serve published ports in user space only (no nftables fast path).
    pub userland_mesh: bool,
}

/// Which executor runs this node's tasks.
#[derive(Clone)]
pub enum ExecutorKind {
    /// Docker when an engine answers on the engine socket, else host processes.
    Auto,
    /// Containers on the local Docker Engine.
    Docker,
    /// Host processes (no Docker needed).
    Process,
    /// One the caller made, used as it is: how in-process tests run a node on the agent's
    /// fake executor. Not reachable from swarmd's flags.
    Given(Arc<dyn Executor>),
}

/// Which executor this node uses, decided once at start.
#[derive(Clone)]
pub enum ExecChoice {
    Docker {
        socket: String,
    },
    Process,
    /// [`ExecutorKind::Given`].
    Given(Arc<dyn Executor>),
}

impl ExecChoice {
    /// The executor's name in `docker info`.
    pub fn name(&self) -> &'static str {
        match self {
            ExecChoice::Docker { .. } => "docker",
            ExecChoice::Process => "process",
            ExecChoice::Given(_) => "given",
        }
    }
}

/// Decides the executor: docker when asked or (auto) when the engine answers; with it the
/// engine's version.
pub(crate) async fn choose_executor(
    config: &NodeConfig,
) -> anyhow::Result<(ExecChoice, Option<String>)> {
    let socket = config.engine_socket.clone();
    let probe = |socket: String| async move {
        let exec = tokio::time::timeout(
            Duration::from_secs(5),
            DockerExecutor::connect(&socket, "probe"),
        )
        .await
        .ok()?
        .ok()?;
        let d = exec.describe().await.ok()?;
        Some(d.engine_version)
    };
    match &config.executor {
        ExecutorKind::Process => Ok((ExecChoice::Process, None)),
        ExecutorKind::Given(e) => Ok((ExecChoice::Given(e.clone()), None)),
        ExecutorKind::Docker => {
            let socket =
                socket.context("--engine-host must be unix://PATH for the docker executor")?;
            let version = probe(socket.clone())
                .await
                .with_context(|| format!("no Docker Engine answers on unix://{socket}"))?;
            Ok((ExecChoice::Docker { socket }, Some(version)))
        }
        ExecutorKind::Auto => match socket {
            Some(socket) => match probe(socket.clone()).await {
                Some(v) => Ok((ExecChoice::Docker { socket }, Some(v))),
                None => Ok((ExecChoice::Process, None)),
            },
            None => Ok((ExecChoice::Process, None)),
        },
    }
}
