//! Running commands (mostly the docker CLI) with a time limit and failure reports that carry
//! everything needed to debug them.

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// How long a command may run before it is killed. Generous (a `docker service create` waits
/// for convergence), but bounded so a hung daemon fails the test instead of hanging CI.
pub const DEFAULT_CMD_TIMEOUT: Duration = Duration::from_secs(120);

/// How many lines of the daemon log a failure report includes.
pub(crate) const LOG_TAIL_LINES: usize = 60;

/// The docker CLI to run: `$SWARMD_TEST_DOCKER_CLI` if set (to test against another CLI
/// version), else `docker` from `PATH`.
pub fn docker_cli() -> OsString {
    std::env::var_os("SWARMD_TEST_DOCKER_CLI").unwrap_or_else(|| "docker".into())
}

/// The outcome of a finished (or timed-out) command.
#[derive(Debug, Clone)]
pub struct CmdOutput {
    /// Exit status; a command killed for exceeding its time limit shows SIGKILL.
    pub status: ExitStatus,
    /// Everything written to stdout (lossily decoded as UTF-8).
    pub stdout: String,
    /// Everything written to stderr (lossily decoded as UTF-8).
    pub stderr: String,
    /// True if the command was killed because it exceeded its time limit.
    pub timed_out: bool,
    /// The command line, for failure messages.
    command: String,
    /// Log of the daemon the command talked to, whose tail goes into failure messages.
    daemon_log: Option<PathBuf>,
}

impl CmdOutput {
    /// True if the command exited with status 0 (and was not killed for taking too long).
    pub fn success(&self) -> bool {
        self.status.success() && !self.timed_out
    }

    /// The exit code, if the command exited normally.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// The command line that produced this output.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// Asserts that the command succeeded and returns the output for chaining; otherwise panics
    /// with the command, its stdout and stderr, and the tail of the daemon log.
    #[track_caller]
    pub fn ok(self) -> Self {
        if !self.success() {
            panic!("{}", self.report("command failed"));
        }
        self
    }

    /// Asserts that the command failed (non-zero exit), for tests of error paths; panics with
    /// the full report if it succeeded. A timeout is not an expected failure and panics too.
    #[track_caller]
    pub fn fail(self) -> Self {
        if self.status.success() || self.timed_out {
            panic!(
                "{}",
                self.report("command was expected to fail but did not")
            );
        }
        self
    }

    /// Stdout without surrounding whitespace, e.g. an ID printed by `docker service create -q`.
    pub fn stdout_trimmed(&self) -> &str {
        self.stdout.trim()
    }

    /// The non-empty lines of stdout, each without trailing whitespace (`docker ... -q` lists).
    pub fn lines(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .map(str::trim_end)
            .filter(|l| !l.trim().is_empty())
            .collect()
    }

    /// Stdout parsed as JSON (`docker inspect`, `--format '{{json .}}'`); panics with the full
    /// report if it is not valid JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        match serde_json::from_str(&self.stdout) {
            Ok(v) => v,
            Err(e) => panic!("{}", self.report(&format!("stdout is not JSON ({e})"))),
        }
    }

    /// A multi-line description of this command and its outcome, headed by `what`.
    pub fn report(&self, what: &str) -> String {
        let mut s = format!("{what}: {}\n", self.command);
        if self.timed_out {
            s.push_str("status: killed after exceeding its time limit\n");
        } else {
            let _ = writeln!(s, "status: {}", self.status);
        }
        let _ = write!(
            s,
            "--- stdout ---\n{}\n--- stderr ---\n{}\n",
            self.stdout.trim_end(),
            self.stderr.trim_end()
        );
        if let Some(log) = &self.daemon_log {
            s.push_str(&log_tail_section(log, LOG_TAIL_LINES));
        }
        s
    }
}

/// The last `n` lines of a daemon log, formatted for a failure message.
pub(crate) fn log_tail_section(log: &Path, n: usize) -> String {
    match std::fs::read(log) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(n)..];
            format!(
                "--- daemon log ({} of {} lines of {}) ---\n{}\n",
                tail.len(),
                lines.len(),
                log.display(),
                tail.join("\n")
            )
        }
        Err(e) => format!("--- daemon log {}: unreadable: {e} ---\n", log.display()),
    }
}

/// Runs `cmd` to completion (stdin empty, time limit [`DEFAULT_CMD_TIMEOUT`]) and captures its
/// output. Panics only if the program cannot be started at all.
#[track_caller]
pub fn run(cmd: Command) -> CmdOutput {
    run_with(cmd, None, DEFAULT_CMD_TIMEOUT)
}

/// Like [`run`], with `stdin` fed to the command (e.g. `docker secret create NAME -`) and an
/// explicit time limit, after which the command is killed and reported as timed out.
#[track_caller]
pub fn run_with(cmd: Command, stdin: Option<&[u8]>, timeout: Duration) -> CmdOutput {
    run_inner(cmd, stdin, timeout, None)
}

#[track_caller]
pub(crate) fn run_inner(
    mut cmd: Command,
    stdin: Option<&[u8]>,
    timeout: Duration,
    daemon_log: Option<&Path>,
) -> CmdOutput {
    let command = describe(&cmd);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{command}`: {e}"));

    // Feed stdin and drain stdout/stderr on their own threads: a command blocked writing a
    // full pipe would otherwise never exit.
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let input = input.to_vec();
        thread::spawn(move || {
            // A command that exits without reading all of stdin is not our error to report.
            let _ = pipe.write_all(&input);
        });
    }
    let stdout = drain(child.stdout.take().expect("stdout is piped"));
    let stderr = drain(child.stderr.take().expect("stderr is piped"));

    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                timed_out = true;
                let _ = child.kill();
                break child.wait().expect("wait for killed command");
            }
            Ok(None) => thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("waiting for `{command}`: {e}"),
        }
    };
    // Output normally ends with the process; a grandchild still holding the pipes must not
    // hang the test, so collection is bounded too.
    let collect = |rx: mpsc::Receiver<Vec<u8>>| {
        let bytes = rx.recv_timeout(Duration::from_secs(5)).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    CmdOutput {
        status,
        stdout: collect(stdout),
        stderr: collect(stderr),
        timed_out,
        command,
        daemon_log: daemon_log.map(Path::to_path_buf),
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    rx
}

/// `DOCKER_HOST=... program arg 'arg with space'`, for messages. Only DOCKER_HOST among the
/// environment is shown: it is what tells the nodes of a cluster apart.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut parts: Vec<String> = cmd
        .get_envs()
        .filter(|(k, _)| *k == "DOCKER_HOST")
        .filter_map(|(k, v)| Some(format!("{}={}", k.to_string_lossy(), quote(v?))))
        .collect();
    parts.push(quote(cmd.get_program()));
    parts.extend(cmd.get_args().map(quote));
    parts.join(" ")
}

fn quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c));
    if plain {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::panic::catch_unwind;

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(script);
        cmd
    }

    fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
        payload
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default()
    }

    #[test]
    fn captures_output_and_status() {
        let out = run(sh("printf 'a  \\n\\n b\\n'; echo oops >&2; exit 3"));
        assert!(!out.success());
        assert_eq!(out.code(), Some(3));
        assert_eq!(out.stdout, "a  \n\n b\n");
        assert_eq!(out.stderr, "oops\n");
        assert_eq!(out.lines(), vec!["a", " b"]);
        assert_eq!(out.stdout_trimmed(), "a  \n\n b");
        let out = out.fail();
        assert!(!out.timed_out);
    }

    #[test]
    fn ok_panics_with_command_stdout_stderr_and_daemon_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("swarmd.log");
        let lines: Vec<String> = (0..100).map(|i| format!("log line {i}")).collect();
        std::fs::write(&log, lines.join("\n")).unwrap();

        let out = run_inner(
            sh("echo to-stdout; echo to-stderr >&2; exit 1"),
            None,
            DEFAULT_CMD_TIMEOUT,
            Some(&log),
        );
        let text = panic_text(catch_unwind(|| out.ok()).unwrap_err());
        assert!(text.starts_with("command failed: sh -c "), "{text}");
        assert!(text.contains("exit status: 1"), "{text}");
        assert!(text.contains("--- stdout ---\nto-stdout\n"), "{text}");
        assert!(text.contains("--- stderr ---\nto-stderr\n"), "{text}");
        assert!(text.contains("log line 99"), "{text}");
        assert!(
            text.contains("log line 40") && !text.contains("log line 39"),
            "{text}"
        );
    }

    #[test]
    fn ok_and_fail_pass_through_on_the_expected_outcome() {
        assert_eq!(run(sh("echo hi")).ok().stdout_trimmed(), "hi");
        let text = panic_text(catch_unwind(|| run(sh("true")).fail()).unwrap_err());
        assert!(text.contains("expected to fail"), "{text}");
    }

    #[test]
    fn feeds_stdin() {
        let out = run_with(Command::new("cat"), Some(b"secret\n"), DEFAULT_CMD_TIMEOUT).ok();
        assert_eq!(out.stdout, "secret\n");
    }

    #[test]
    fn kills_commands_that_exceed_the_time_limit() {
        let start = Instant::now();
        let out = run_with(
            sh("echo started; exec sleep 30"),
            None,
            Duration::from_millis(300),
        );
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
        assert!(out.timed_out);
        assert!(!out.success());
        assert_eq!(out.stdout, "started\n");
        assert!(
            out.report("x")
                .contains("killed after exceeding its time limit")
        );
    }

    #[test]
    fn json_parses_stdout() {
        let out = run(sh(r#"echo '[{"ID":"abc"}]'"#));
        assert_eq!(out.json()[0]["ID"], "abc");
        let text = panic_text(catch_unwind(|| run(sh("echo nope")).json()).unwrap_err());
        assert!(text.contains("stdout is not JSON"), "{text}");
    }

    #[test]
    fn describes_commands_shell_style() {
        let mut cmd = Command::new("docker");
        cmd.env("DOCKER_HOST", "unix:///tmp/x.sock")
            .env("DOCKER_CONFIG", "/tmp/cfg")
            .args([
                "service", "create", "--name", "it's", "busybox", "sh", "-c", "echo a b",
            ]);
        assert_eq!(
            describe(&cmd),
            r"DOCKER_HOST=unix:///tmp/x.sock docker service create --name 'it'\''s' busybox sh -c 'echo a b'"
        );
    }
}
