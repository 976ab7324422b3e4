//! The process side of a test server with a Docker API on a unix socket: a swarmd node
//! ([`crate::Daemon`]) or a classic manager ([`crate::ClassicManager`]). Both are started
//! with their output appended to one log file across restarts, count as up once
//! `GET /_ping` answers, and get crashed, stopped and reaped the same way; only their
//! command lines differ, so this is the one place that does the rest.

use std::fs::OpenOptions;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::cmd::{LOG_TAIL_LINES, describe, log_tail_section};
use crate::http::unix_http;

/// One server process (and its successors after restarts); see the module doc.
pub(crate) struct ServerProcess {
    /// The program as messages name it (the swarmd binary, even when run through nsenter).
    bin: String,
    socket: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
    last_exit: Option<ExitStatus>,
    /// How many times it was started (the log's `=== swarmd-testkit: start #N` markers).
    starts: u32,
}

impl ServerProcess {
    /// A process not started yet, serving on `socket`, logging to `log_path`.
    pub(crate) fn new(bin: &Path, socket: PathBuf, log_path: PathBuf) -> ServerProcess {
        ServerProcess {
            bin: bin.display().to_string(),
            socket,
            log_path,
            child: None,
            last_exit: None,
            starts: 0,
        }
    }

    pub(crate) fn socket(&self) -> &Path {
        &self.socket
    }

    pub(crate) fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last `lines` lines of the log, formatted for a failure message.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        log_tail_section(&self.log_path, lines)
    }

    /// The process id, if started and not yet reaped.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process still runs (reaping it if it has exited).
    pub(crate) fn is_running(&mut self) -> bool {
        let Some(child) = self.child.as_mut() else {
            return false;
        };
        match child.try_wait() {
            Ok(Some(status)) => {
                self.last_exit = Some(status);
                self.child = None;
                false
            }
            Ok(None) | Err(_) => true,
        }
    }

    /// How the process last exited, once it has.
    pub(crate) fn exit_status(&self) -> Option<ExitStatus> {
        self.last_exit
    }

    /// One `GET /_ping`: Ok if the API answers 200.
    pub(crate) fn ping(&self) -> anyhow::Result<()> {
        let resp = unix_http(&self.socket, "GET", "/_ping", None, Duration::from_secs(2))
            .with_context(|| format!("GET /_ping on {}", self.socket.display()))?;
        if resp.status != 200 {
            bail!("GET /_ping answered {}: {}", resp.status, resp.text());
        }
        Ok(())
    }

    /// SIGTERM, then waits up to `timeout` for the exit, whose status it returns. One that
    /// does not exit in time is killed and reported with the log tail: a server that
    /// ignores SIGTERM is a bug.
    pub(crate) fn sigterm(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let Some(pid) = self.pid() else {
            bail!("{} on {} is not running", self.bin, self.socket.display())
        };
        // The child is not reaped yet, so its pid cannot have been reused.
        kill(Pid::from_raw(pid as i32), Signal::SIGTERM).context("sending SIGTERM")?;
        self.wait_exit(timeout).inspect_err(|_| self.kill9())
    }

    /// Waits up to `timeout` for the process to exit on its own; left alone on timeout.
    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if !self.is_running() {
                return self.last_exit.context("the process was never started");
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} on {} did not exit within {timeout:?}\n{}",
                    self.bin,
                    self.socket.display(),
                    self.log_tail(LOG_TAIL_LINES)
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL (a crash: no shutdown code runs) and reap; nothing if not running.
    pub(crate) fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            self.last_exit = child.wait().ok();
        }
    }

    /// Starts `cmd` with stdout and stderr appended to the log (after a start marker) and
    /// waits up to `timeout` for `GET /_ping`. On failure (the process exits, or does not
    /// answer in time and is killed) the error says which, with the log tail.
    pub(crate) fn launch(&mut self, mut cmd: Command, timeout: Duration) -> anyhow::Result<()> {
        self.starts += 1;
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
        // Output goes to a file, never to the test's pipes: a server holding the test
        // runner's stdout would make nextest report it as leaked.
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = spawn_retrying(&mut cmd).with_context(|| format!("starting {}", self.bin))?;
        self.child = Some(child);
        self.wait_ready(timeout)
    }

    fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let last_error = match self.ping() {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if !self.is_running() {
                bail!(
                    "{} exited ({}) before its API answered on {}\n{}",
                    self.bin,
                    self.last_exit
                        .map_or("status unknown".into(), |s| s.to_string()),
                    self.socket.display(),
                    self.log_tail(LOG_TAIL_LINES)
                );
            }
            if Instant::now() >= deadline {
                self.kill9();
                bail!(
                    "{} did not answer GET /_ping on {} within {timeout:?} (last error: {last_error:#}); \
                     killed it\n{}",
                    self.bin,
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
