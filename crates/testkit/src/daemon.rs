//! Real `swarmd` processes for end-to-end tests.
//!
//! Every node of a test cluster is a separate `swarmd` process with its own data root, API
//! socket and loopback address (DESIGN.md §7 "Several nodes on one machine"). [`Daemon`] owns
//! one such process: it starts it, knows when its API is up, runs the docker CLI against it,
//! and can stop it gracefully, crash it and start it again on the same state, which is what
//! restart and recovery tests need.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;

use crate::cmd::{
    CmdOutput, DEFAULT_CMD_TIMEOUT, LOG_TAIL_LINES, describe, docker_cli, log_tail_section,
    run_inner,
};
use crate::engine::isolate_cli;
use crate::http::{HttpResponse, unix_http};

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
            log_path: data_root.join("swarmd.log"),
            data_root,
            data_root_tmp,
            socket,
            run_dir,
            cfg: self,
            child: None,
            last_exit: None,
            starts: 0,
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
    socket: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
    last_exit: Option<ExitStatus>,
    starts: u32,
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
        &self.socket
    }

    /// `unix://<socket>`, the value for `DOCKER_HOST` or `docker -H`.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket.display())
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
        &self.log_path
    }

    /// The whole daemon log so far, for assertions and failure messages. Each start is marked
    /// by a `=== swarmd-testkit: start #N ...` line.
    pub fn log(&self) -> String {
        std::fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The last `lines` lines of the log, formatted for a failure message.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail_section(&self.log_path, lines)
    }

    /// The process id, if the process has been started and not yet reaped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is still running (reaping it if it has exited).
    pub fn is_running(&mut self) -> bool {
        let Some(child) = self.child.as_mut() else {
            return false;
        };
        match child.try_wait() {
            Ok(None) => true,
            Ok(Some(status)) => {
                self.last_exit = Some(status);
                self.child = None;
                false
            }
            Err(_) => true,
        }
    }

    /// How the process last exited, once it has.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.last_exit
    }

    /// One `GET /_ping`: Ok if the API answers 200.
    pub fn ping(&self) -> anyhow::Result<()> {
        let resp = unix_http(&self.socket, "GET", "/_ping", None, Duration::from_secs(2))
            .with_context(|| format!("GET /_ping on {}", self.socket.display()))?;
        if resp.status != 200 {
            bail!("GET /_ping answered {}: {}", resp.status, resp.text());
        }
        Ok(())
    }

    /// One raw HTTP request to the API (no docker CLI in between), for checking status codes,
    /// headers and bodies exactly. `body` is sent as JSON.
    pub fn http(&self, method: &str, path: &str, body: Option<&[u8]>) -> io::Result<HttpResponse> {
        unix_http(&self.socket, method, path, body, self.cfg.cmd_timeout)
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
            Some(&self.log_path),
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
            Some(&self.log_path),
        )
    }

    /// Sends SIGTERM and waits (up to the stop timeout) for the process to exit, returning its
    /// exit status. If it does not exit in time it is killed and an error (with the log tail)
    /// is returned: a daemon that ignores SIGTERM is a bug.
    pub fn sigterm(&mut self) -> anyhow::Result<ExitStatus> {
        let Some(pid) = self.pid() else {
            bail!("swarmd on {} is not running", self.socket.display())
        };
        // The child is not reaped yet, so its pid cannot have been reused.
        kill(Pid::from_raw(pid as i32), Signal::SIGTERM).context("sending SIGTERM")?;
        let timeout = self.cfg.stop_timeout;
        self.wait_exit(timeout).inspect_err(|_| self.kill9())
    }

    /// Waits up to `timeout` for the process to exit on its own (e.g. after a fatal error the
    /// test provoked) and returns its exit status. The process is left alone on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if !self.is_running() {
                return self.last_exit.context("the daemon was never started");
            }
            if Instant::now() >= deadline {
                bail!(
                    "swarmd on {} did not exit within {timeout:?}\n{}",
                    self.socket.display(),
                    self.log_tail(LOG_TAIL_LINES)
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process with SIGKILL (a crash: no shutdown code runs) and reaps it. Does
    /// nothing if it is not running.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            self.last_exit = child.wait().ok();
        }
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
        self.starts += 1;
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

        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("opening {}", self.log_path.display()))?;
        writeln!(
            log,
            "=== swarmd-testkit: start #{}: {} ===",
            self.starts,
            describe(&cmd)
        )?;
        // Output goes to a file, never to the test's pipes: a daemon holding the test runner's
        // stdout would make nextest report it as leaked.
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = spawn_retrying(&mut cmd)
            .with_context(|| format!("starting {}", self.cfg.bin.display()))?;
        self.child = Some(child);
        self.wait_ready()
    }

    /// Polls `GET /_ping` until it answers, the process exits, or the start timeout passes.
    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let bin = self.cfg.bin.display().to_string();
        let timeout = self.cfg.start_timeout;
        let deadline = Instant::now() + timeout;
        loop {
            let last_error = match self.ping() {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if !self.is_running() {
                bail!(
                    "{bin} exited ({}) before its API answered on {}\n{}",
                    self.last_exit
                        .map_or("status unknown".into(), |s| s.to_string()),
                    self.socket.display(),
                    self.log_tail(LOG_TAIL_LINES)
                );
            }
            if Instant::now() >= deadline {
                self.kill9();
                bail!(
                    "{bin} did not answer GET /_ping on {} within {timeout:?} (last error: {last_error:#}); \
                     killed it\n{}",
                    self.socket.display(),
                    self.log_tail(LOG_TAIL_LINES)
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `Command::spawn`, retrying briefly on ETXTBSY: an executable written by this (multi-threaded)
/// test process can be "busy" for a moment while another thread's fork still holds the write
/// descriptor, a known race for tests that generate scripts.
fn spawn_retrying(cmd: &mut Command) -> io::Result<Child> {
    let mut attempts = 0;
    loop {
        match cmd.spawn() {
            Err(e)
                if e.raw_os_error() == Some(nix::errno::Errno::ETXTBSY as i32) && attempts < 50 =>
            {
                attempts += 1;
                thread::sleep(Duration::from_millis(10));
            }
            result => return result,
        }
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
