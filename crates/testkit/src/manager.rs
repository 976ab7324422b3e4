//! A real `swarmd manage` process (classic Swarm's manager) for end-to-end tests.
//!
//! Classic Swarm keeps no state of its own: everything it shows is read back from the
//! engines of its pool. So its tests need a manager they can crash (`kill -9`), stop and
//! start again over the same engines ([`crate::EnginePool`]), and real clients to drive it:
//! the docker CLI ([`ClassicManager::docker`]), docker-compose and docker-py
//! ([`ClassicManager::command`], which points any program at the manager through
//! `DOCKER_HOST`), and raw HTTP for what the clients hide ([`ClassicManager::http`]).
//!
//! ```no_run
//! use swarmd_testkit::{ClassicManager, EnginePool};
//!
//! let pool = EnginePool::start(&[&[("zone", "a")], &[("zone", "b")]]).unwrap();
//! let manager = ClassicManager::builder("target/debug/swarmd")
//!     .args(["--strategy", "binpack"])
//!     .start(&pool.addrs().join(","))
//!     .unwrap();
//! manager.docker(&["run", "-d", "-e", "constraint:zone==b", "busybox", "sleep", "1d"]).ok();
//! ```

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::thread;
use std::time::Duration;

use anyhow::Context as _;
use tempfile::TempDir;

use crate::cmd::{CmdOutput, DEFAULT_CMD_TIMEOUT, LOG_TAIL_LINES, docker_cli, run_inner};
use crate::engine::isolate_cli;
use crate::http::{HttpResponse, unix_http};
use crate::process::ServerProcess;

/// Refresh intervals short enough for a test to see an engine go and come back within
/// seconds (classic's defaults are 30 s and 60 s).
const REFRESH_ARGS: [&str; 4] = [
    "--engine-refresh-min-interval",
    "1s",
    "--engine-refresh-max-interval",
    "2s",
];

/// Options for a [`ClassicManager`]; made by [`ClassicManager::builder`].
#[derive(Debug, Clone)]
pub struct ClassicManagerBuilder {
    bin: PathBuf,
    args: Vec<OsString>,
    start_timeout: Duration,
    stop_timeout: Duration,
    cmd_timeout: Duration,
}

impl ClassicManagerBuilder {
    /// More `swarmd manage` flags (`--strategy binpack`, `--engine-failure-retry 1`, ...),
    /// placed after the standard ones and before the discovery argument.
    pub fn args<I, A>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = A>,
        A: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Starts `swarmd manage ... DISCOVERY` (e.g. `pool.addrs().join(",")`) and waits until
    /// its API answers `GET /_ping`; the error carries the log tail when it does not.
    pub fn start(self, discovery: &str) -> anyhow::Result<ClassicManager> {
        // Short: the socket path must fit in sun_path (108 bytes).
        let run_dir = tempfile::Builder::new()
            .prefix("swc-mgr-")
            .tempdir_in("/tmp")
            .context("creating the manager's run directory")?;
        std::fs::create_dir(run_dir.path().join("docker-config"))
            .context("creating the docker CLI config directory")?;
        let mut manager = ClassicManager {
            process: ServerProcess::new(
                &self.bin,
                run_dir.path().join("api.sock"),
                run_dir.path().join("manage.log"),
            ),
            run_dir,
            discovery: discovery.to_owned(),
            cfg: self,
        };
        manager.spawn()?;
        Ok(manager)
    }
}

/// A running (or stopped) `swarmd manage -H unix://<socket> --log-level debug,...
/// --engine-refresh-min-interval 1s --engine-refresh-max-interval 2s [args...] DISCOVERY`,
/// its output appended to a log file. Dropping it kills it; during a panic the log tail is
/// printed (and with `SWARMD_TEST_KEEP=1` the run directory kept).
pub struct ClassicManager {
    cfg: ClassicManagerBuilder,
    discovery: String,
    /// Holds the socket, the log and the docker CLI's empty config directory.
    run_dir: TempDir,
    /// The process, its socket and its log.
    process: ServerProcess,
}

impl ClassicManager {
    /// Options for a manager running the swarmd binary `bin`; tests pass
    /// `env!("CARGO_BIN_EXE_swarmd")`.
    pub fn builder(bin: impl Into<PathBuf>) -> ClassicManagerBuilder {
        ClassicManagerBuilder {
            bin: bin.into(),
            args: Vec::new(),
            start_timeout: Duration::from_secs(30),
            stop_timeout: Duration::from_secs(30),
            cmd_timeout: DEFAULT_CMD_TIMEOUT,
        }
    }

    /// `unix://<socket>`, the value for `DOCKER_HOST`.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket_path().display())
    }

    /// The API socket's path.
    pub fn socket_path(&self) -> &Path {
        self.process.socket()
    }

    /// The whole log so far (every start is marked by a `=== swarmd-testkit: start #N` line).
    pub fn log(&self) -> String {
        std::fs::read(self.process.log_path())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The last `lines` lines of the log, formatted for a failure message.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    /// `program` aimed at the manager: `DOCKER_HOST` set, the docker CLI's config isolated
    /// (docker-compose and docker-py read it too). Run it with [`ClassicManager::run`].
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("DOCKER_HOST", self.docker_host());
        isolate_cli(&mut cmd, &self.run_dir.path().join("docker-config"));
        cmd
    }

    /// Runs `cmd` (from [`ClassicManager::command`]) to completion, with `stdin` fed to it;
    /// a failure report includes the manager's log tail.
    #[track_caller]
    pub fn run(&self, cmd: Command, stdin: Option<&[u8]>) -> CmdOutput {
        run_inner(
            cmd,
            stdin,
            self.cfg.cmd_timeout,
            Some(self.process.log_path()),
        )
    }

    /// A `docker` command aimed at the manager, for streams (`attach`, `events -f`).
    pub fn docker_command(&self, args: &[&str]) -> Command {
        let mut cmd = self.command(docker_cli());
        cmd.args(args);
        cmd
    }

    /// Runs the docker CLI against the manager; chain `.ok()` / `.fail()`.
    #[track_caller]
    pub fn docker(&self, args: &[&str]) -> CmdOutput {
        self.run(self.docker_command(args), None)
    }

    /// Like [`ClassicManager::docker`], with `input` on stdin (`docker exec -i`).
    #[track_caller]
    pub fn docker_stdin(&self, args: &[&str], input: &[u8]) -> CmdOutput {
        self.run(self.docker_command(args), Some(input))
    }

    /// One raw HTTP request to the manager's API; `body` is sent as JSON.
    pub fn http(&self, method: &str, path: &str, body: Option<&[u8]>) -> io::Result<HttpResponse> {
        unix_http(self.socket_path(), method, path, body, self.cfg.cmd_timeout)
    }

    /// One `GET /_ping`: Ok if the API answers 200.
    pub fn ping(&self) -> anyhow::Result<()> {
        self.process.ping()
    }

    /// Whether the process still runs (reaping it if it has exited).
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// Kills the manager with SIGKILL (a crash: nothing of its shutdown runs) and reaps it.
    pub fn kill9(&mut self) {
        self.process.kill9();
    }

    /// SIGTERM, then waits (30 s) for the exit, whose status it returns; a manager that
    /// does not exit in time is killed and reported with its log tail.
    pub fn sigterm(&mut self) -> anyhow::Result<ExitStatus> {
        self.process.sigterm(self.cfg.stop_timeout)
    }

    /// Starts the manager again with the same flags, socket and discovery (first stopping a
    /// running one with SIGTERM; call [`ClassicManager::kill9`] first for a crash).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        if self.is_running() {
            self.sigterm()
                .context("stopping the manager to restart it")?;
        }
        self.spawn()
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        // A socket file left by a killed manager would make the bind fail.
        let _ = std::fs::remove_file(self.socket_path());
        let mut cmd = Command::new(&self.cfg.bin);
        cmd.arg("manage")
            .arg("-H")
            .arg(self.docker_host())
            // The manager's own debug lines; its HTTP client's would bury them.
            .args([
                "--log-level",
                "debug,bollard=info,hyper=info,hyper_util=info",
            ])
            .args(REFRESH_ARGS)
            .args(&self.cfg.args)
            .arg(&self.discovery)
            .env("RUST_BACKTRACE", "1")
            // A log file, read by people: no colour codes.
            .env("NO_COLOR", "1");
        self.process.launch(cmd, self.cfg.start_timeout)
    }
}

impl Drop for ClassicManager {
    fn drop(&mut self) {
        self.kill9();
        if !thread::panicking() {
            return;
        }
        eprintln!(
            "--- swarmd manage ({}) at the failure ---\n{}",
            self.docker_host(),
            self.log_tail(LOG_TAIL_LINES)
        );
        if std::env::var("SWARMD_TEST_KEEP").is_ok_and(|v| v == "1") {
            self.run_dir.disable_cleanup(true);
            eprintln!("SWARMD_TEST_KEEP=1: kept {}", self.run_dir.path().display());
        }
    }
}
