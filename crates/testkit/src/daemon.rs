//! Real `swarmd` processes for end-to-end tests.
//!
//! Every node of a test cluster is a separate `swarmd` process with its own data root, API
//! socket and loopback address (docs/DESIGN.md §7 "Several nodes on one machine"). [`Daemon`] owns
//! one such process: it starts it, knows when its API is up, runs the docker CLI against it,
//! and can stop it gracefully, crash it and start it again on the same state, which is what
//! restart and recovery tests need.

use std::ffi::OsString;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::thread;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tempfile::TempDir;

use crate::cmd::{CmdOutput, DEFAULT_CMD_TIMEOUT, LOG_TAIL_LINES, docker_cli, run_inner};
use crate::engine::isolate_cli;
use crate::http::{HttpResponse, unix_http};
use crate::process::ServerProcess;

/// How a node runs its tasks (`swarmd --executor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Executor {
    /// Tasks are containers on the host's Docker Engine (needs [`crate::engine_available`]).
    Docker,
    /// Tasks are plain processes; needs nothing but the swarmd binary, hence the default.
    #[default]
    Process,
}

impl Executor {
    /// The `--executor` flag value.
    pub fn as_str(self) -> &'static str {
        match self {
            Executor::Docker => "docker",
            Executor::Process => "process",
        }
    }
}

/// Options for a [`Daemon`]; made by [`Daemon::builder`]. Cloneable so several nodes of a
/// cluster can start from one template.
#[derive(Debug, Clone)]
pub struct DaemonBuilder {
    bin: PathBuf,
    executor: Executor,
    node_addr: IpAddr,
    hostname: Option<String>,
    netns: Option<String>,
    log_level: String,
    data_root: Option<PathBuf>,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    start_timeout: Duration,
    stop_timeout: Duration,
    cmd_timeout: Duration,
}

impl DaemonBuilder {
    /// `--executor` (default [`Executor::Process`]).
    pub fn executor(mut self, executor: Executor) -> Self {
        self.executor = executor;
        self
    }

    /// `--node-addr`, the address the node's data plane and published ports bind to (default
    /// 127.0.0.1). Give each node of a cluster its own: `.node_addr([127, 0, 0, 2])`.
    pub fn node_addr(mut self, addr: impl Into<IpAddr>) -> Self {
        self.node_addr = addr.into();
        self
    }

    /// `--hostname`, the name the node reports (otherwise all nodes share the machine's).
    pub fn hostname(mut self, hostname: impl Into<String>) -> Self {
        self.hostname = Some(hostname.into());
        self
    }

    /// Runs the daemon inside the named network namespace (`/run/netns/NAME`, entered with
    /// `nsenter --net`, which then execs swarmd: the pid stays the daemon's), e.g. a
    /// [`crate::Machine`]'s. Its API socket is a path, so the test reaches it from anywhere.
    pub fn netns(mut self, name: impl Into<String>) -> Self {
        self.netns = Some(name.into());
        self
    }

    /// `--log-level` (default `debug`: the log is only read when a test fails).
    pub fn log_level(mut self, level: impl Into<String>) -> Self {
        self.log_level = level.into();
        self
    }

    /// `--data-root`. By default each Daemon gets a fresh temporary directory, removed when the
    /// Daemon is dropped; a directory given here is created if missing and never removed.
    pub fn data_root(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_root = Some(dir.into());
        self
    }

    /// One more command-line argument, appended after the standard ones.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// More command-line arguments, appended after the standard ones.
    pub fn args<I, A>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = A>,
        A: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// An environment variable for the daemon process (e.g. `RUST_LOG`).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// How long [`start`](Self::start) and [`Daemon::restart`] wait for `GET /_ping` to
    /// answer before giving up (default 30 s).
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// How long [`Daemon::sigterm`] waits for the process to exit (default 30 s).
    pub fn stop_timeout(mut self, timeout: Duration) -> Self {
        self.stop_timeout = timeout;
        self
    }

    /// Time limit for each [`Daemon::docker`] command (default [`DEFAULT_CMD_TIMEOUT`]).
    pub fn cmd_timeout(mut self, timeout: Duration) -> Self {
        self.cmd_timeout = timeout;
        self
    }

    /// Starts the daemon and waits until its API answers `GET /_ping` with 200. On failure
    /// (the process exits, or does not answer in time and is killed) the error says which and
    /// includes the tail of the daemon's log.
    pub fn start(mut self) -> anyhow::Result<Daemon> {
        let (data_root, data_root_tmp) = match self.data_root.take() {
            Some(dir) => {
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating data root {}", dir.display()))?;
                (dir, None)
            }
            None => {
                let tmp = tempfile::Builder::new()
                    .prefix("swarmd-test-data-")
                    .tempdir()
                    .context("creating a temporary data root")?;
                (tmp.path().to_path_buf(), Some(tmp))
            }
        };
        // The socket lives in its own short directory: a unix socket path must fit in
        // sun_path (108 bytes), which a deep data root or TMPDIR could exceed.
        let short_tmp = Path::new("/tmp");
        let run_dir = tempfile::Builder::new()
            .prefix("swarmd-test-")
            .tempdir_in(if short_tmp.is_dir() {
                short_tmp.to_path_buf()
            } else {
                std::env::temp_dir()
            })
            .context("creating the daemon's run directory")?;
        let socket = run_dir.path().join("api.sock");
        if socket.as_os_str().len() >= 108 {
            bail!(
                "socket path {} is too long for a unix socket",
                socket.display()
            );
        }
        std::fs::create_dir(run_dir.path().join("docker-config"))
            .context("creating the docker CLI config directory")?;

        let mut daemon = Daemon {
            process: ServerProcess::new(&self.bin, socket, data_root.join("swarmd.log")),
            data_root,
            data_root_tmp,
            run_dir,
            cfg: self,
        };
        daemon.spawn()?;
        Ok(daemon)
    }
}

/// A running (or stopped) `swarmd` process:
/// `swarmd -H unix://<socket> --data-root <dir> --node-addr <ip> --executor <e>
/// [--hostname <name>] --log-level <level> [extra args...]`, with stdout and stderr appended
/// to `<data root>/swarmd.log`.
///
/// Dropping it kills the process (SIGKILL) if it is still running. Task processes or engine
/// containers the daemon made are not its business: the daemon's own shutdown handles the
/// former, [`crate::cleanup_engine_containers`] the latter. If the drop happens during a panic
/// (a failed test), the tail of the log is printed, and with `SWARMD_TEST_KEEP=1` the temporary
/// directories are kept for inspection.
pub struct Daemon {
    cfg: DaemonBuilder,
    data_root: PathBuf,
    /// Keeps the default data root alive (and removes it on drop).
    data_root_tmp: Option<TempDir>,
    /// Holds the API socket and the docker CLI's empty config directory.
    run_dir: TempDir,
    /// The process, its socket and its log.
    process: ServerProcess,
}

impl Daemon {
    /// Options for a daemon running the swarmd binary `bin`; tests pass
    /// `env!("CARGO_BIN_EXE_swarmd")`.
    pub fn builder(bin: impl Into<PathBuf>) -> DaemonBuilder {
        DaemonBuilder {
            bin: bin.into(),
            executor: Executor::default(),
            node_addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            hostname: None,
            netns: None,
            log_level: "debug".into(),
            data_root: None,
            args: Vec::new(),
            envs: Vec::new(),
            start_timeout: Duration::from_secs(30),
            stop_timeout: Duration::from_secs(30),
            cmd_timeout: DEFAULT_CMD_TIMEOUT,
        }
    }

    /// The API socket's path.
    pub fn socket_path(&self) -> &Path {
        self.process.socket()
    }

    /// `unix://<socket>`, the value for `DOCKER_HOST` or `docker -H`.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket_path().display())
    }

    /// The `--data-root` directory.
    pub fn data_root(&self) -> &Path {
        &self.data_root
    }

    /// The node's `--node-addr`.
    pub fn node_addr(&self) -> IpAddr {
        self.cfg.node_addr
    }

    /// The node's `--hostname`, if one was given.
    pub fn hostname(&self) -> Option<&str> {
        self.cfg.hostname.as_deref()
    }

    /// The file receiving the daemon's stdout and stderr (across restarts).
    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// The whole daemon log so far, for assertions and failure messages. Each start is marked
    /// by a `=== swarmd-testkit: start #N ...` line.
    pub fn log(&self) -> String {
        std::fs::read(self.log_path())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The last `lines` lines of the log, formatted for a failure message.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    /// The process id, if the process has been started and not yet reaped.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Whether the process is still running (reaping it if it has exited).
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// How the process last exited, once it has.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.process.exit_status()
    }

    /// One `GET /_ping`: Ok if the API answers 200.
    pub fn ping(&self) -> anyhow::Result<()> {
        self.process.ping()
    }

    /// One raw HTTP request to the API (no docker CLI in between), for checking status codes,
    /// headers and bodies exactly. `body` is sent as JSON.
    pub fn http(&self, method: &str, path: &str, body: Option<&[u8]>) -> io::Result<HttpResponse> {
        unix_http(self.socket_path(), method, path, body, self.cfg.cmd_timeout)
    }

    /// A `docker` command aimed at this daemon (`DOCKER_HOST` set, host config isolated), for
    /// cases [`docker`](Self::docker) does not cover, e.g. streaming `service logs -f`.
    pub fn docker_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(docker_cli());
        cmd.args(args).env("DOCKER_HOST", self.docker_host());
        isolate_cli(&mut cmd, &self.run_dir.path().join("docker-config"));
        cmd
    }

    /// Runs the docker CLI against this daemon and returns its output; chain `.ok()` to assert
    /// success with a report that includes this daemon's log.
    #[track_caller]
    pub fn docker(&self, args: &[&str]) -> CmdOutput {
        run_inner(
            self.docker_command(args),
            None,
            self.cfg.cmd_timeout,
            Some(self.log_path()),
        )
    }

    /// Like [`docker`](Self::docker), with `input` on stdin (`docker secret create NAME -`,
    /// `docker stack deploy -c - NAME`).
    #[track_caller]
    pub fn docker_stdin(&self, args: &[&str], input: &[u8]) -> CmdOutput {
        run_inner(
            self.docker_command(args),
            Some(input),
            self.cfg.cmd_timeout,
            Some(self.log_path()),
        )
    }

    /// Sends SIGTERM and waits (up to the stop timeout) for the process to exit, returning its
    /// exit status. If it does not exit in time it is killed and an error (with the log tail)
    /// is returned: a daemon that ignores SIGTERM is a bug.
    pub fn sigterm(&mut self) -> anyhow::Result<ExitStatus> {
        self.process.sigterm(self.cfg.stop_timeout)
    }

    /// Waits up to `timeout` for the process to exit on its own (e.g. after a fatal error the
    /// test provoked) and returns its exit status. The process is left alone on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        self.process.wait_exit(timeout)
    }

    /// Kills the process with SIGKILL (a crash: no shutdown code runs) and reaps it. Does
    /// nothing if it is not running.
    pub fn kill9(&mut self) {
        self.process.kill9();
    }

    /// Starts the daemon again with the same options, data root and socket, and waits for its
    /// API, like [`DaemonBuilder::start`]. A still-running process is first stopped with
    /// [`sigterm`](Self::sigterm); call [`kill9`](Self::kill9) first to restart after a crash.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        if self.is_running() {
            self.sigterm()
                .context("stopping the daemon before restarting it")?;
        }
        self.spawn()
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let mut cmd = match &self.cfg.netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{ns}"))
                    .arg("--")
                    .arg(&self.cfg.bin);
                c
            }
            None => Command::new(&self.cfg.bin),
        };
        cmd.arg("-H")
            .arg(self.docker_host())
            .arg("--data-root")
            .arg(&self.data_root)
            .arg("--node-addr")
            .arg(self.cfg.node_addr.to_string())
            .arg("--executor")
            .arg(self.cfg.executor.as_str());
        if let Some(hostname) = &self.cfg.hostname {
            cmd.arg("--hostname").arg(hostname);
        }
        cmd.arg("--log-level")
            .arg(&self.cfg.log_level)
            .args(&self.cfg.args);
        if std::env::var_os("RUST_BACKTRACE").is_none() {
            cmd.env("RUST_BACKTRACE", "1");
        }
        cmd.envs(self.cfg.envs.iter().map(|(k, v)| (k, v)));
        self.process.launch(cmd, self.cfg.start_timeout)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
        if !thread::panicking() {
            return;
        }
        let name = self.cfg.hostname.as_deref().unwrap_or("swarmd");
        eprintln!(
            "--- {name} ({}, {}) at the failure ---\n{}",
            self.cfg.node_addr,
            self.docker_host(),
            self.log_tail(LOG_TAIL_LINES)
        );
        if std::env::var("SWARMD_TEST_KEEP").is_ok_and(|v| v == "1") {
            self.run_dir.disable_cleanup(true);
            if let Some(tmp) = self.data_root_tmp.as_mut() {
                tmp.disable_cleanup(true);
            }
            eprintln!(
                "SWARMD_TEST_KEEP=1: kept data root {} and run dir {}",
                self.data_root.display(),
                self.run_dir.path().display()
            );
        }
    }
}
