//! The process executor: runs each task's `Command ++ Args` as a host process.
//!
//! It exists so a swarm can run on machines without Docker, and so tests and scale runs
//! get a fast executor. Everything a task needs lives in its own directory,
//! `<state dir>/tasks/<task id>/`:
//!
//! | file          | written by  | content                                                  |
//! |---------------|-------------|----------------------------------------------------------|
//! | `task.json`   | prepare     | name, image, command, labels, bound ports                 |
//! | `proc.json`   | start       | pid, process start time (`/proc/<pid>/stat` field 22)     |
//! | `exit.json`   | exit        | exit code (absent when it could not be observed)          |
//! | `stdout.raw`, `stderr.raw` | the process | its raw output (the files *are* its stdout/stderr) |
//! | `log.jsonl`   | collector   | one JSON line per output line: time, stream, text         |
//! | `offsets.json`| collector   | how far the raw files have been turned into `log.jsonl`   |
//!
//! Tasks must survive a `kill -9` of swarmd so the next agent can re-adopt them (like
//! containers survive because the engine holds them). Hence: the process gets its own
//! session (`setsid`), no `PR_SET_PDEATHSIG`, and its stdout/stderr are regular files
//! rather than pipes — a pipe would break (SIGPIPE) when swarmd exits. A collector task
//! tails the raw files into `log.jsonl` with timestamps; after a restart it resumes from
//! `offsets.json`, so even an adopted process's output keeps being captured (lines written
//! while no agent ran get the time they were collected).
//!
//! Re-adoption: `proc.json` records the pid and its start time; a later agent adopts the
//! pid only if a live (non-zombie) process with that pid has the same start time. An
//! adopted process is not our child, so when it ends its exit code is unknown and `wait`
//! reports [`ExecError::ExitUnknown`].

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bollard_stubs::models::{
    ContainerSummary, ContainerSummaryStateEnum, PortSummary, PortSummaryTypeEnum,
};
use bytes::Bytes;
use futures::StreamExt;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::{Gid, Group, Pid, Uid, User};
use serde::{Deserialize, Serialize};
use swarmd_types::NodeDescription;

use crate::health::{Check, Health, Monitor};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{
    BoundPort, Controller, ExecError, Executor, ExitStatus, LogEntry, LogOptions, LogStream,
    LogStreamBox, Protocol, RuntimeStatus, TaskRuntime, entry_matches, files, filter_entries,
    hex_id_for, human_duration, process_spec, unix_now, unix_seconds,
};

const TASK_FILE: &str = "task.json";
const PROC_FILE: &str = "proc.json";
const EXIT_FILE: &str = "exit.json";
const OFFSETS_FILE: &str = "offsets.json";
const LOG_FILE: &str = "log.jsonl";
const STDOUT_RAW: &str = "stdout.raw";
const STDERR_RAW: &str = "stderr.raw";

/// How often an adopted process (not our child) is checked for liveness.
const LIVENESS_POLL: Duration = Duration::from_millis(200);
/// Collector polling bounds: fast while output flows, backing off when idle.
const COLLECT_MIN: Duration = Duration::from_millis(50);
const COLLECT_MAX: Duration = Duration::from_millis(1000);
/// At most this much raw output is turned into log lines per collector pass and stream.
const COLLECT_CHUNK: usize = 1 << 20;
/// Docker splits log lines longer than this.
const MAX_LINE: usize = 16 * 1024;
/// How long to wait for a process to die after SIGKILL before giving up.
const KILL_WAIT: Duration = Duration::from_secs(10);
/// PATH for tasks when the agent itself has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs tasks as host processes. Cheap to clone handles are not needed: share it in an
/// `Arc<dyn Executor>`.
pub struct ProcessExecutor {
    inner: Arc<Inner>,
}

struct Inner {
    tasks_dir: PathBuf,
    /// One shared live state per task, so several controllers for the same task (the
    /// runner's and an API log request's) agree on exit status and run one collector.
    procs: Mutex<HashMap<String, Arc<TaskProc>>>,
    /// Exit watchers and log collectors.
    tracker: TaskTracker,
    /// Parent of every task's token; replaced by `close` so the executor stays usable.
    cancel: Mutex<CancellationToken>,
}

impl ProcessExecutor {
    /// An executor keeping its task directories under `<state_dir>/tasks`.
    pub fn new(state_dir: impl AsRef<Path>) -> Self {
        ProcessExecutor {
            inner: Arc::new(Inner {
                tasks_dir: state_dir.as_ref().join("tasks"),
                procs: Mutex::new(HashMap::new()),
                tracker: TaskTracker::new(),
                cancel: Mutex::new(CancellationToken::new()),
            }),
        }
    }
}

impl Inner {
    fn proc_for(&self, task_id: &str) -> Result<Arc<TaskProc>, ExecError> {
        if !valid_task_id(task_id) {
            return Err(ExecError::InvalidSpec(format!(
                "invalid task id {task_id:?}"
            )));
        }
        let mut procs = lock(&self.procs);
        let p = procs.entry(task_id.to_string()).or_insert_with(|| {
            Arc::new(TaskProc {
                task_id: task_id.to_string(),
                dir: self.tasks_dir.join(task_id),
                state: Mutex::new(ProcState::default()),
                exit_tx: watch::Sender::new(None),
                log_tick: watch::Sender::new(0),
                cancel: lock(&self.cancel).child_token(),
                op_lock: tokio::sync::Mutex::new(()),
            })
        });
        Ok(p.clone())
    }

    fn forget(&self, p: &Arc<TaskProc>) {
        let mut procs = lock(&self.procs);
        if procs.get(&p.task_id).is_some_and(|q| Arc::ptr_eq(p, q)) {
            procs.remove(&p.task_id);
        }
    }
}

/// Task IDs become directory names: allow only what swarm IDs are made of.
fn valid_task_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[async_trait::async_trait]
impl Executor for ProcessExecutor {
    async fn describe(&self) -> Result<NodeDescription, ExecError> {
        let hostname = fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "localhost".to_string());
        let ncpu = std::thread::available_parallelism()
            .map(|n| n.get() as i64)
            .unwrap_or(1);
        Ok(NodeDescription {
            hostname,
            os: std::env::consts::OS.to_string(),
            architecture: std::env::consts::ARCH.to_string(),
            nano_cpus: ncpu * 1_000_000_000,
            memory_bytes: mem_total_bytes().unwrap_or(0),
            engine_version: env!("CARGO_PKG_VERSION").to_string(),
            engine_labels: HashMap::new(),
            executor: "process".to_string(),
            tls_info: None,
        })
    }

    fn controller(&self, rt: &TaskRuntime) -> Arc<dyn Controller> {
        Arc::new(ProcessController {
            rt: rt.clone(),
            exec: self.inner.clone(),
        })
    }

    async fn list_tasks(&self) -> Result<Vec<String>, ExecError> {
        let dir = self.inner.tasks_dir.clone();
        blocking(move || list_task_dirs(&dir)).await
    }

    async fn containers(&self) -> Result<Vec<ContainerSummary>, ExecError> {
        let mut out = Vec::new();
        for id in self.list_tasks().await? {
            let Ok(p) = self.inner.proc_for(&id) else {
                continue;
            };
            p.ensure_loaded(&self.inner);
            p.refresh_exit();
            if let Some(c) = p.summary() {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// Stops the exit watchers and log collectors, leaving the processes running. The
    /// executor stays usable: task state is reloaded from disk on next use (the same path
    /// a restarted swarmd takes), so an agent can be restarted on the same executor.
    async fn close(&self) {
        let old = std::mem::replace(&mut *lock(&self.inner.cancel), CancellationToken::new());
        old.cancel();
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
        self.inner.tracker.reopen();
        lock(&self.inner.procs).clear();
    }
}

fn list_task_dirs(dir: &Path) -> Result<Vec<String>, ExecError> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ExecError::io(format!("reading {}", dir.display()), e)),
    };
    let mut ids = Vec::new();
    for entry in rd.flatten() {
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let p = entry.path();
        if valid_task_id(&name) && (p.join(TASK_FILE).exists() || p.join(PROC_FILE).exists()) {
            ids.push(name);
        }
    }
    ids.sort();
    Ok(ids)
}

fn mem_total_bytes() -> Option<i64> {
    let s = fs::read_to_string("/proc/meminfo").ok()?;
    let line = s.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Runs a blocking closure on the blocking pool (file I/O must not stall the runtime).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ExecError> + Send + 'static,
) -> Result<T, ExecError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ExecError::Io(format!("blocking task failed: {e}")))?
}

/// What prepare records about the task (the "container" the process executor presents).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TaskMeta {
    task_id: String,
    name: String,
    image: String,
    command: Vec<String>,
    labels: HashMap<String, String>,
    node_addr: String,
    created: f64,
    ports: Vec<BoundPort>,
}

/// Identity of a started process; written right after spawn.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct PidRecord {
    pid: i32,
    /// Field 22 of `/proc/<pid>/stat` (clock ticks since boot): tells the original process
    /// from a later one that reused its pid.
    start_time: u64,
    started_at: f64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct ExitRecord {
    /// `None`: the process ended while it was not our child.
    code: Option<i64>,
    finished_at: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    Code(i64),
    Unknown,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Collector {
    #[default]
    NotStarted,
    Running,
    Done,
}

#[derive(Debug, Default)]
struct ProcState {
    loaded: bool,
    record: Option<PidRecord>,
    /// True while an exit watcher of this executor holds the `Child`; then the watcher
    /// (not /proc polling) decides the exit, so a zombie is never mistaken for "unknown".
    own_child: bool,
    collector: Collector,
    finished_at: Option<f64>,
}

/// The live state of one task, shared by all its controllers.
struct TaskProc {
    task_id: String,
    dir: PathBuf,
    state: Mutex<ProcState>,
    exit_tx: watch::Sender<Option<Exit>>,
    /// Bumped whenever the collector appended lines, to wake `logs --follow` readers.
    log_tick: watch::Sender<u64>,
    /// Cancelled on remove (and with the executor): stops the collector and exit watcher.
    cancel: CancellationToken,
    /// Serializes prepare/start/remove of the task.
    op_lock: tokio::sync::Mutex<()>,
}

impl TaskProc {
    /// Loads the on-disk records once: adopts a live process, or notes that a recorded
    /// one is gone. Starts the collector for any process that ever ran.
    fn ensure_loaded(self: &Arc<Self>, exec: &Inner) {
        let has_record = {
            let mut st = lock(&self.state);
            if st.loaded {
                return;
            }
            st.loaded = true;
            st.record = read_json::<PidRecord>(&self.dir.join(PROC_FILE));
            if let Some(rec) = st.record {
                if let Some(exit) = read_json::<ExitRecord>(&self.dir.join(EXIT_FILE)) {
                    st.finished_at = Some(exit.finished_at);
                    self.exit_tx.send_replace(Some(exit_of(exit)));
                } else if !is_alive(&rec) {
                    let exit = ExitRecord {
                        code: None,
                        finished_at: unix_now(),
                    };
                    let _ = write_json(&self.dir.join(EXIT_FILE), &exit);
                    st.finished_at = Some(exit.finished_at);
                    self.exit_tx.send_replace(Some(Exit::Unknown));
                } else {
                    tracing::info!(task.id = %self.task_id, pid = rec.pid, "adopted running process");
                }
            }
            st.record.is_some()
        };
        if has_record {
            self.ensure_collector(exec);
        }
    }

    /// For processes that are not our child: notices that they are gone.
    fn refresh_exit(&self) {
        let mut st = lock(&self.state);
        if st.own_child || self.exit_tx.borrow().is_some() {
            return;
        }
        let Some(rec) = st.record else {
            return;
        };
        if is_alive(&rec) {
            return;
        }
        let exit = read_json::<ExitRecord>(&self.dir.join(EXIT_FILE)).unwrap_or_else(|| {
            let exit = ExitRecord {
                code: None,
                finished_at: unix_now(),
            };
            let _ = write_json(&self.dir.join(EXIT_FILE), &exit);
            exit
        });
        st.finished_at = Some(exit.finished_at);
        self.exit_tx.send_replace(Some(exit_of(exit)));
    }

    fn record(&self) -> Option<PidRecord> {
        lock(&self.state).record
    }

    fn exit(&self) -> Option<Exit> {
        *self.exit_tx.borrow()
    }

    /// Waits until the process has exited (the exit watcher or /proc polling says so).
    async fn wait_exit(&self) -> Exit {
        let mut rx = self.exit_tx.subscribe();
        loop {
            self.refresh_exit();
            if let Some(e) = *rx.borrow_and_update() {
                return e;
            }
            tokio::select! {
                _ = rx.changed() => {}
                _ = tokio::time::sleep(LIVENESS_POLL) => {}
            }
        }
    }

    /// Whether every byte the process wrote has reached `log.jsonl` and no more will come.
    fn output_finished(&self) -> bool {
        let st = lock(&self.state);
        match st.record {
            None => true,
            Some(_) => self.exit_tx.borrow().is_some() && st.collector != Collector::Running,
        }
    }

    /// Signals the task's process group, after checking the process is still the one we
    /// started (pid reuse). Returns whether a signal was delivered.
    fn signal(&self, sig: Signal) -> bool {
        let st = lock(&self.state);
        let Some(rec) = st.record else {
            return false;
        };
        // Our own child cannot be reused before we reap it; an adopted pid must match.
        let leader_ok = st.own_child || is_alive(&rec);
        let exited = self.exit_tx.borrow().is_some();
        if !leader_ok && !exited {
            return false;
        }
        // After the leader exited, the group id stays reserved while members remain, so
        // signalling it only reaches the task's own stragglers.
        match killpg(Pid::from_raw(rec.pid), sig) {
            Ok(()) => true,
            Err(nix::errno::Errno::ESRCH) => false,
            Err(e) => {
                tracing::warn!(task.id = %self.task_id, pid = rec.pid, error = %e, "signalling process group failed");
                false
            }
        }
    }

    fn ensure_collector(self: &Arc<Self>, exec: &Inner) {
        {
            let mut st = lock(&self.state);
            if st.collector != Collector::NotStarted {
                return;
            }
            st.collector = Collector::Running;
        }
        let this = self.clone();
        exec.tracker.spawn(async move { this.collect().await });
    }

    /// Tails the raw output files into `log.jsonl` until the process has exited and all its
    /// output is collected (or until cancelled, leaving the rest for the next agent).
    async fn collect(self: Arc<Self>) {
        let mut cursor = LogCursor::load(&self.dir);
        let mut delay = COLLECT_MIN;
        let mut exit_rx = self.exit_tx.subscribe();
        loop {
            self.refresh_exit();
            let exited = exit_rx.borrow_and_update().is_some();
            let dir = self.dir.clone();
            let res = tokio::task::spawn_blocking(move || {
                let n = cursor.drain(&dir, exited);
                (cursor, n)
            })
            .await;
            let n = match res {
                Ok((c, n)) => {
                    cursor = c;
                    n
                }
                Err(e) => {
                    tracing::warn!(task.id = %self.task_id, error = %e, "log collector failed");
                    break;
                }
            };
            match n {
                Ok(0) => delay = (delay * 2).min(COLLECT_MAX),
                Ok(_) => {
                    self.log_tick.send_modify(|v| *v += 1);
                    delay = COLLECT_MIN;
                }
                Err(e) => {
                    // The task dir is gone (removed) or unwritable: nothing left to do.
                    tracing::debug!(task.id = %self.task_id, error = %e, "log collector stopped");
                    break;
                }
            }
            if exited {
                break;
            }
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
                _ = exit_rx.changed() => {}
            }
        }
        lock(&self.state).collector = Collector::Done;
        self.log_tick.send_modify(|v| *v += 1);
    }

    /// The task presented as a Docker container.
    fn summary(&self) -> Option<ContainerSummary> {
        let meta = read_json::<TaskMeta>(&self.dir.join(TASK_FILE))?;
        let (record, finished_at) = {
            let st = lock(&self.state);
            (st.record, st.finished_at)
        };
        let now = unix_now();
        let ago = |t: f64| human_duration(Duration::from_secs_f64((now - t).max(0.0)));
        let (state, status) = match (record, self.exit()) {
            (None, _) => (ContainerSummaryStateEnum::CREATED, "Created".to_string()),
            (Some(rec), None) => (
                ContainerSummaryStateEnum::RUNNING,
                format!("Up {}", ago(rec.started_at)),
            ),
            (Some(_), Some(exit)) => {
                let code = match exit {
                    Exit::Code(c) => c.to_string(),
                    Exit::Unknown => "unknown".to_string(),
                };
                let when = finished_at.map(|t| format!(" {} ago", ago(t)));
                (
                    ContainerSummaryStateEnum::EXITED,
                    format!("Exited ({code}){}", when.unwrap_or_default()),
                )
            }
        };
        let ports = meta
            .ports
            .iter()
            .map(|p| PortSummary {
                ip: Some(p.host_ip.clone()),
                private_port: p.target,
                public_port: Some(p.host_port),
                typ: Some(match p.protocol {
                    Protocol::Tcp => PortSummaryTypeEnum::TCP,
                    Protocol::Udp => PortSummaryTypeEnum::UDP,
                    Protocol::Sctp => PortSummaryTypeEnum::SCTP,
                }),
            })
            .collect();
        Some(ContainerSummary {
            id: Some(hex_id_for(&meta.task_id)),
            names: Some(vec![format!("/{}", meta.name)]),
            image: Some(meta.image.clone()),
            command: Some(shell_join(&meta.command)),
            created: Some(meta.created as i64),
            ports: Some(ports),
            labels: Some(meta.labels.clone()),
            state: Some(state),
            status: Some(status),
            ..Default::default()
        })
    }
}

fn exit_of(r: ExitRecord) -> Exit {
    match r.code {
        Some(c) => Exit::Code(c),
        None => Exit::Unknown,
    }
}

/// Joins argv for display (`docker ps` COMMAND column).
fn shell_join(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '\'' || c == '"') {
                format!("'{}'", a.replace('\'', "'\\''"))
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// State and start time of a process from `/proc/<pid>/stat`.
fn proc_stat(pid: i32) -> Option<(char, u64)> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    let rest = &s[s.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    // Field 3 is `fields[0]`, so field 22 (starttime) is `fields[19]`.
    let start: u64 = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

/// Whether the recorded process still runs (not a zombie, same start time).
fn is_alive(rec: &PidRecord) -> bool {
    match proc_stat(rec.pid) {
        Some((state, start)) => start == rec.start_time && state != 'Z' && state != 'X',
        None => false,
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    let data = fs::read(path).ok()?;
    match serde_json::from_slice(&data) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable record");
            None
        }
    }
}

/// Writes a record atomically (temp file + rename), so a crash never leaves half a record.
fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), ExecError> {
    let data = serde_json::to_vec(value).map_err(|e| ExecError::io("encoding record", e))?;
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, data).map_err(|e| ExecError::io(format!("writing {}", tmp.display()), e))?;
    fs::rename(&tmp, path).map_err(|e| ExecError::io(format!("writing {}", path.display()), e))
}

/// Turns the raw output files into timestamped `log.jsonl` lines, remembering how far it got.
struct LogCursor {
    /// Per stream (stdout, stderr): bytes of the raw file already turned into lines.
    consumed: [u64; 2],
    /// Bytes read after `consumed` that do not end in a newline yet.
    partial: [Vec<u8>; 2],
}

#[derive(Default, Serialize, Deserialize)]
struct Offsets {
    stdout: u64,
    stderr: u64,
}

/// One line of `log.jsonl`. Text lines are stored as JSON strings; lines that are not
/// UTF-8 are stored hex-encoded in `x`.
#[derive(Serialize, Deserialize)]
struct LogRecord {
    t: String,
    s: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    l: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    x: Option<String>,
}

impl LogRecord {
    fn new(stream: LogStream, t: &str, line: &[u8]) -> Self {
        let (l, x) = match std::str::from_utf8(line) {
            Ok(s) => (Some(s.to_string()), None),
            Err(_) => (None, Some(hex::encode(line))),
        };
        LogRecord {
            t: t.to_string(),
            s: stream.as_str().to_string(),
            l,
            x,
        }
    }

    fn into_entry(self) -> Option<LogEntry> {
        let stream = match self.s.as_str() {
            "stdout" => LogStream::Stdout,
            "stderr" => LogStream::Stderr,
            _ => return None,
        };
        let line = match (self.l, self.x) {
            (Some(l), _) => Bytes::from(l),
            (None, Some(x)) => Bytes::from(hex::decode(x).ok()?),
            (None, None) => Bytes::new(),
        };
        Some(LogEntry {
            stream,
            timestamp: self.t,
            line,
        })
    }
}

impl LogCursor {
    fn load(dir: &Path) -> Self {
        let o = read_json::<Offsets>(&dir.join(OFFSETS_FILE)).unwrap_or_default();
        LogCursor {
            consumed: [o.stdout, o.stderr],
            partial: [Vec::new(), Vec::new()],
        }
    }

    /// One pass: reads what was appended to the raw files and appends complete lines to
    /// `log.jsonl`. With `last`, reads to the end and flushes unterminated lines too.
    /// Returns the number of lines written.
    fn drain(&mut self, dir: &Path, last: bool) -> std::io::Result<usize> {
        if !dir.exists() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "task directory removed",
            ));
        }
        let now = swarmd_types::timefmt::now();
        let mut out = Vec::new();
        let mut lines = 0;
        for (i, (stream, name)) in [
            (LogStream::Stdout, STDOUT_RAW),
            (LogStream::Stderr, STDERR_RAW),
        ]
        .into_iter()
        .enumerate()
        {
            let mut file = match File::open(dir.join(name)) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            loop {
                let pos = self.consumed[i] + self.partial[i].len() as u64;
                file.seek(SeekFrom::Start(pos))?;
                let mut buf = Vec::new();
                let n = (&mut file)
                    .take(COLLECT_CHUNK as u64)
                    .read_to_end(&mut buf)?;
                self.partial[i].extend_from_slice(&buf);
                // Emit every complete line (and over-long fragments, as Docker does).
                let mut start = 0;
                let data = std::mem::take(&mut self.partial[i]);
                while start < data.len() {
                    let end = match data[start..].iter().position(|b| *b == b'\n') {
                        Some(p) if p < MAX_LINE => start + p + 1,
                        _ if data.len() - start >= MAX_LINE => start + MAX_LINE,
                        _ => break,
                    };
                    out.push(LogRecord::new(stream, &now, &data[start..end]));
                    self.consumed[i] += (end - start) as u64;
                    start = end;
                    lines += 1;
                }
                self.partial[i] = data[start..].to_vec();
                if !(last && n == COLLECT_CHUNK) {
                    break;
                }
            }
            if last && !self.partial[i].is_empty() {
                let data = std::mem::take(&mut self.partial[i]);
                out.push(LogRecord::new(stream, &now, &data));
                self.consumed[i] += data.len() as u64;
                lines += 1;
            }
        }
        if out.is_empty() {
            return Ok(0);
        }
        let mut buf = Vec::new();
        for r in &out {
            serde_json::to_writer(&mut buf, r)?;
            buf.push(b'\n');
        }
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(LOG_FILE))?;
        log.write_all(&buf)?;
        let offsets = Offsets {
            stdout: self.consumed[0],
            stderr: self.consumed[1],
        };
        write_json(&dir.join(OFFSETS_FILE), &offsets).map_err(std::io::Error::other)?;
        Ok(lines)
    }
}

/// Reads the complete lines of `log.jsonl` from byte `offset`; returns them and the offset
/// after the last complete line.
fn read_log(dir: &Path, offset: u64) -> std::io::Result<(Vec<LogEntry>, u64)> {
    let mut file = match File::open(dir.join(LOG_FILE)) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), offset)),
        Err(e) => return Err(e),
    };
    file.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf)?;
    let Some(last_nl) = buf.iter().rposition(|b| *b == b'\n') else {
        return Ok((Vec::new(), offset));
    };
    let entries = buf[..=last_nl]
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| serde_json::from_slice::<LogRecord>(l).ok())
        .filter_map(LogRecord::into_entry)
        .collect();
    Ok((entries, offset + last_nl as u64 + 1))
}

/// How to launch the task, derived from the spec at prepare/start time.
struct LaunchPlan {
    argv: Vec<String>,
    env: Vec<(String, String)>,
    dir: Option<PathBuf>,
    user: Option<(Uid, Gid)>,
}

fn task_argv(rt: &TaskRuntime) -> Result<Vec<String>, ExecError> {
    let argv: Vec<String> = rt
        .spec
        .command
        .iter()
        .flatten()
        .chain(rt.spec.args.iter().flatten())
        .cloned()
        .collect();
    if argv.is_empty() {
        return Err(ExecError::NoCommand);
    }
    Ok(argv)
}

/// Resolves `user`, `uid`, `user:group` or `uid:gid` (Docker's `--user` forms).
fn resolve_user(spec: &str) -> Result<Option<(Uid, Gid)>, ExecError> {
    if spec.is_empty() {
        return Ok(None);
    }
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let (uid, primary_gid) = if let Ok(n) = u.parse::<u32>() {
        let uid = Uid::from_raw(n);
        let gid = User::from_uid(uid)
            .ok()
            .flatten()
            .map(|u| u.gid)
            .unwrap_or(Gid::from_raw(0));
        (uid, gid)
    } else {
        match User::from_name(u) {
            Ok(Some(user)) => (user.uid, user.gid),
            _ => {
                return Err(ExecError::InvalidSpec(format!(
                    "unable to find user {u}: no matching entries in passwd file"
                )));
            }
        }
    };
    let gid = match g {
        None | Some("") => primary_gid,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => Gid::from_raw(n),
            Err(_) => match Group::from_name(g) {
                Ok(Some(group)) => group.gid,
                _ => {
                    return Err(ExecError::InvalidSpec(format!(
                        "unable to find group {g}: no matching entries in group file"
                    )));
                }
            },
        },
    };
    Ok(Some((uid, gid)))
}

/// Parses a stop signal as Docker accepts it: `SIGTERM`, `TERM`, `15`.
fn parse_signal(s: Option<&str>) -> Result<Signal, ExecError> {
    let s = s.map(str::trim).unwrap_or_default();
    if s.is_empty() {
        return Ok(Signal::SIGTERM);
    }
    let bad = || ExecError::InvalidSpec(format!("invalid stop signal: {s}"));
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| bad());
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&name).map_err(|_| bad())
}

fn check_dir(rt: &TaskRuntime) -> Result<Option<PathBuf>, ExecError> {
    match rt.spec.dir.as_deref() {
        None | Some("") => Ok(None),
        Some(d) => {
            let p = PathBuf::from(d);
            if p.is_dir() {
                Ok(Some(p))
            } else {
                Err(ExecError::InvalidSpec(format!(
                    "working directory {d} does not exist"
                )))
            }
        }
    }
}

impl LaunchPlan {
    fn build(rt: &TaskRuntime, ports: &[BoundPort]) -> Result<Self, ExecError> {
        let argv = task_argv(rt)?;
        let dir = check_dir(rt)?;
        let user = resolve_user(rt.spec.user.as_deref().unwrap_or_default())?;
        // A clean environment, as a container gets: PATH and HOME from the agent, then the
        // spec's variables, then what swarmd provides (ports, identity).
        let mut env: Vec<(String, String)> = vec![
            (
                "PATH".into(),
                std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.into()),
            ),
            (
                "HOME".into(),
                std::env::var("HOME").unwrap_or_else(|_| "/".into()),
            ),
        ];
        if let Some(h) = rt.spec.hostname.as_deref().filter(|h| !h.is_empty()) {
            env.push(("HOSTNAME".into(), h.into()));
        }
        for kv in rt.spec.env.iter().flatten() {
            if let Some((k, v)) = kv.split_once('=')
                && !k.is_empty()
            {
                env.push((k.into(), v.into()));
            }
        }
        if let Some(first) = ports.first() {
            env.push(("PORT".into(), first.host_port.to_string()));
        }
        for p in ports.iter().rev() {
            // Reverse so the first binding of a target (tcp before udp) wins below.
            env.push((format!("SWARMD_PORT_{}", p.target), p.host_port.to_string()));
        }
        if !rt.files.is_empty() {
            let (secrets, configs) = files::write(&rt.task_id, &rt.files, files::Layout::ByTarget)?;
            let (sdir, cdir) = files::dirs(&rt.task_id);
            if !secrets.is_empty() {
                env.push(("SWARMD_SECRETS_DIR".into(), sdir.to_string_lossy().into()));
            }
            if !configs.is_empty() {
                env.push(("SWARMD_CONFIGS_DIR".into(), cdir.to_string_lossy().into()));
            }
        }
        env.push(("SWARMD_NODE_ADDR".into(), rt.node_addr.clone()));
        env.push(("SWARMD_TASK_ID".into(), rt.task_id.clone()));
        env.push(("SWARMD_TASK_NAME".into(), rt.task_name.clone()));
        env.push(("SWARMD_SERVICE_NAME".into(), rt.service_name.clone()));
        // Later entries override earlier ones.
        let mut dedup: Vec<(String, String)> = Vec::new();
        for (k, v) in env {
            if let Some(e) = dedup.iter_mut().find(|(k2, _)| *k2 == k) {
                e.1 = v;
            } else {
                dedup.push((k, v));
            }
        }
        Ok(LaunchPlan {
            argv,
            env: dedup,
            dir,
            user,
        })
    }
}

/// Picks host ports for the task's targets: the fixed one for `mode=host` publications,
/// otherwise an ephemeral port found by binding port 0 on the node address. The probe
/// socket is closed before the task binds the port, so another process could take it in
/// between; the kernel hands out ephemeral ports round-robin, which makes that unlikely.
fn allocate_ports(rt: &TaskRuntime) -> Result<Vec<BoundPort>, ExecError> {
    if rt.ports.is_empty() {
        return Ok(Vec::new());
    }
    let ip = rt.node_ip()?;
    let mut out = Vec::new();
    for p in &rt.ports {
        let host_port = match (p.fixed_host_port, p.protocol) {
            (Some(h), _) => h,
            (None, Protocol::Tcp) => std::net::TcpListener::bind((ip, 0))
                .and_then(|l| l.local_addr())
                .map_err(|e| ExecError::io(format!("binding a port on {ip}"), e))?
                .port(),
            (None, Protocol::Udp) => std::net::UdpSocket::bind((ip, 0))
                .and_then(|l| l.local_addr())
                .map_err(|e| ExecError::io(format!("binding a port on {ip}"), e))?
                .port(),
            (None, Protocol::Sctp) => {
                return Err(ExecError::InvalidSpec(
                    "sctp ports are not supported by the process executor".into(),
                ));
            }
        };
        out.push(BoundPort {
            target: p.target,
            protocol: p.protocol,
            host_ip: rt.node_addr.clone(),
            host_port,
        });
    }
    Ok(out)
}

/// Exit code as a shell reports it: the code, or 128 + signal.
fn exit_code(status: std::process::ExitStatus) -> i64 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => i64::from(c),
        (None, Some(s)) => 128 + i64::from(s),
        (None, None) => 255,
    }
}

/// Runs one health probe on the host with the task's environment and working dir; a probe
/// that outlives its timeout is killed and counts as a failure.
async fn run_probe(check: &Check, plan: Option<&LaunchPlan>) -> bool {
    let argv = check.argv();
    let Some((prog, args)) = argv.split_first() else {
        return false;
    };
    let mut cmd = tokio::process::Command::new(prog);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    if let Some(plan) = plan {
        cmd.env_clear().envs(plan.env.iter().map(|(k, v)| (k, v)));
        if let Some(d) = &plan.dir {
            cmd.current_dir(d);
        }
    }
    match tokio::time::timeout(check.timeout, cmd.status()).await {
        Ok(Ok(s)) => s.success(),
        _ => false,
    }
}

/// The controller of one task run as a host process.
pub struct ProcessController {
    rt: TaskRuntime,
    exec: Arc<Inner>,
}

impl ProcessController {
    /// SIGKILL to the task's group, then waits (bounded) for the leader to exit.
    async fn kill_and_wait(&self, p: &TaskProc) -> Result<(), ExecError> {
        p.signal(Signal::SIGKILL);
        if tokio::time::timeout(KILL_WAIT, p.wait_exit())
            .await
            .is_err()
        {
            return Err(ExecError::Io(format!(
                "process of task {} did not exit after SIGKILL",
                self.rt.task_id
            )));
        }
        Ok(())
    }

    /// Spawns the task's process (once; a process that ran already is left as it is).
    async fn start_process(&self) -> Result<(), ExecError> {
        let p = self.proc()?;
        let _g = p.op_lock.lock().await;
        if p.record().is_some() {
            return Ok(()); // running, or ran already: wait() reports how it ended
        }
        let meta = self.prepare_locked(&p).await?;
        let plan = LaunchPlan::build(&self.rt, &meta.ports)?;
        let open = |name: &str| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(p.dir.join(name))
                .map_err(|e| ExecError::io(format!("opening {name}"), e))
        };
        let (out, err) = (open(STDOUT_RAW)?, open(STDERR_RAW)?);
        let Some((program, args)) = plan.argv.split_first() else {
            return Err(ExecError::NoCommand);
        };
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .env_clear()
            .envs(plan.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .kill_on_drop(false);
        if let Some(d) = &plan.dir {
            cmd.current_dir(d);
        }
        if let Some((uid, gid)) = plan.user {
            cmd.uid(uid.as_raw()).gid(gid.as_raw());
        }
        // SAFETY: setsid is async-signal-safe and touches no memory of the parent. Its own
        // session detaches the task from swarmd's process group and terminal, so it
        // survives swarmd and can be stopped as a group.
        unsafe {
            cmd.pre_exec(|| {
                nix::unistd::setsid()
                    .map(|_| ())
                    .map_err(std::io::Error::from)
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| ExecError::io(format!("starting {program}"), e))?;
        let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) else {
            return Err(ExecError::Io("started process has no pid".into()));
        };
        // The child is not reaped before we wait on it, so its stat entry exists.
        let start_time = proc_stat(pid).map(|(_, s)| s).unwrap_or(0);
        let rec = PidRecord {
            pid,
            start_time,
            started_at: unix_now(),
        };
        if let Err(e) = write_json(&p.dir.join(PROC_FILE), &rec) {
            let _ = child.start_kill();
            return Err(e);
        }
        {
            let mut st = lock(&p.state);
            st.record = Some(rec);
            st.own_child = true;
        }
        tracing::info!(task.id = %self.rt.task_id, pid, argv = ?plan.argv, "process started");
        let watcher = p.clone();
        self.exec.tracker.spawn(async move {
            tokio::select! {
                res = child.wait() => {
                    let code = match res {
                        Ok(s) => Some(exit_code(s)),
                        Err(e) => {
                            tracing::warn!(task.id = %watcher.task_id, error = %e, "waiting for process failed");
                            None
                        }
                    };
                    let rec = ExitRecord { code, finished_at: unix_now() };
                    if let Err(e) = write_json(&watcher.dir.join(EXIT_FILE), &rec) {
                        tracing::warn!(task.id = %watcher.task_id, error = %e, "recording exit failed");
                    }
                    let mut st = lock(&watcher.state);
                    st.finished_at = Some(rec.finished_at);
                    st.own_child = false;
                    watcher.exit_tx.send_replace(Some(exit_of(rec)));
                }
                _ = watcher.cancel.cancelled() => {
                    // The agent is stopping: leave the process running for the next agent
                    // to adopt. Dropping the Child hands its reaping to tokio.
                    lock(&watcher.state).own_child = false;
                }
            }
        });
        p.ensure_collector(&self.exec);
        Ok(())
    }

    /// Probes the task every interval until it is healthy (when starting) or unhealthy,
    /// or the process exits (`None`).
    async fn probe_until(&self, p: &TaskProc, check: &Check, mut m: Monitor) -> Option<Health> {
        let target = m.status;
        let started = p.record().map(|r| r.started_at).unwrap_or_else(unix_now);
        let plan = read_json::<TaskMeta>(&p.dir.join(TASK_FILE))
            .and_then(|meta| LaunchPlan::build(&self.rt, &meta.ports).ok());
        loop {
            tokio::select! {
                _ = p.wait_exit() => return None,
                _ = tokio::time::sleep(check.interval) => {}
            }
            let ok = run_probe(check, plan.as_ref()).await;
            let since = Duration::from_secs_f64((unix_now() - started).max(0.0));
            let h = m.observe(check, ok, since);
            tracing::debug!(task.id = %self.rt.task_id, ok, health = ?h, streak = m.failing_streak, "health probe");
            if h == Health::Unhealthy || (target == Health::Starting && h == Health::Healthy) {
                return Some(h);
            }
        }
    }

    fn proc(&self) -> Result<Arc<TaskProc>, ExecError> {
        let p = self.exec.proc_for(&self.rt.task_id)?;
        p.ensure_loaded(&self.exec);
        Ok(p)
    }

    async fn prepare_locked(&self, p: &Arc<TaskProc>) -> Result<TaskMeta, ExecError> {
        let existing = read_json::<TaskMeta>(&p.dir.join(TASK_FILE));
        if p.record().is_some()
            && let Some(meta) = existing.clone()
        {
            return Ok(meta); // already started: adopt, do not re-check the spec
        }
        let rt = self.rt.clone();
        let dir = p.dir.clone();
        blocking(move || {
            if let Some(why) =
                process_spec::refusal(&rt.spec, rt.resources.as_ref(), rt.log_driver.as_ref())
            {
                return Err(ExecError::InvalidSpec(why));
            }
            let argv = task_argv(&rt)?;
            check_dir(&rt)?;
            resolve_user(rt.spec.user.as_deref().unwrap_or_default())?;
            parse_signal(rt.spec.stop_signal.as_deref())?;
            fs::create_dir_all(&dir)
                .map_err(|e| ExecError::io(format!("creating {}", dir.display()), e))?;
            let created = existing.as_ref().map_or_else(unix_now, |m| m.created);
            // Keep the ports picked by an earlier prepare: they may be reported already.
            let ports = match existing {
                Some(m) if m.ports.len() == rt.ports.len() => m.ports,
                _ => allocate_ports(&rt)?,
            };
            let meta = TaskMeta {
                task_id: rt.task_id.clone(),
                name: rt.container_name.clone(),
                image: rt.image(),
                command: argv,
                labels: rt.labels(),
                node_addr: rt.node_addr.clone(),
                created,
                ports,
            };
            write_json(&dir.join(TASK_FILE), &meta)?;
            Ok(meta)
        })
        .await
    }
}

/// The steps behind the controller's; the controller adds the file cleanup.
impl ProcessController {
    async fn wait_task(&self) -> Result<ExitStatus, ExecError> {
        let p = self.proc()?;
        if p.record().is_none() {
            return Err(ExecError::NotStarted(self.rt.task_id.clone()));
        }
        let exited = async {
            match p.wait_exit().await {
                Exit::Code(code) => Ok(ExitStatus { code }),
                Exit::Unknown => Err(ExecError::ExitUnknown),
            }
        };
        let Some(check) = Check::from_spec(self.rt.spec.health_check.as_ref()) else {
            return exited.await;
        };
        // Healthy when wait starts (start returned): keep probing while the task runs.
        let healthy = Monitor {
            status: Health::Healthy,
            failing_streak: 0,
        };
        tokio::select! {
            r = exited => r,
            h = self.probe_until(&p, &check, healthy) => {
                if h != Some(Health::Unhealthy) {
                    // The process ended while probing: report how.
                    return match p.wait_exit().await {
                        Exit::Code(code) => Ok(ExitStatus { code }),
                        Exit::Unknown => Err(ExecError::ExitUnknown),
                    };
                }
                tracing::info!(task.id = %self.rt.task_id, "task turned unhealthy; stopping it");
                self.shutdown(self.rt.stop_grace()).await?;
                let code = match p.wait_exit().await {
                    Exit::Code(c) => c,
                    Exit::Unknown => 137,
                };
                Err(ExecError::UnhealthyExit(code))
            }
        }
    }

    async fn stop(&self, grace: Duration) -> Result<(), ExecError> {
        let p = self.proc()?;
        if p.record().is_none() {
            return Ok(());
        }
        p.refresh_exit();
        if p.exit().is_none() {
            let sig = parse_signal(self.rt.spec.stop_signal.as_deref()).unwrap_or(Signal::SIGTERM);
            p.signal(sig);
            if tokio::time::timeout(grace, p.wait_exit()).await.is_err() {
                tracing::info!(task.id = %self.rt.task_id, "grace period over, sending SIGKILL");
                self.kill_and_wait(&p).await?;
            }
        }
        // The leader is gone; kill whatever it left behind in its group.
        p.signal(Signal::SIGKILL);
        Ok(())
    }

    async fn remove_task(&self) -> Result<(), ExecError> {
        let p = self.proc()?;
        let _g = p.op_lock.lock().await;
        if p.record().is_some() {
            p.refresh_exit();
            if p.exit().is_none() {
                self.kill_and_wait(&p).await?;
            }
            p.signal(Signal::SIGKILL);
        }
        p.cancel.cancel();
        let dir = p.dir.clone();
        blocking(move || match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ExecError::io(format!("removing {}", dir.display()), e)),
        })
        .await?;
        self.exec.forget(&p);
        Ok(())
    }
}

#[async_trait::async_trait]
impl Controller for ProcessController {
    async fn prepare(&self) -> Result<(), ExecError> {
        let p = self.proc()?;
        let _g = p.op_lock.lock().await;
        self.prepare_locked(&p).await.map(|_| ())
    }

    async fn start(&self) -> Result<(), ExecError> {
        self.start_process().await?;
        // As swarmkit's controller: with a health check, started means healthy.
        if let Some(check) = Check::from_spec(self.rt.spec.health_check.as_ref()) {
            let p = self.proc()?;
            if self.probe_until(&p, &check, Monitor::default()).await == Some(Health::Unhealthy) {
                tracing::info!(task.id = %self.rt.task_id, "task unhealthy before it was ever healthy");
                self.shutdown(self.rt.stop_grace()).await?;
                return Err(ExecError::Unhealthy);
            }
        }
        Ok(())
    }

    async fn wait(&self) -> Result<ExitStatus, ExecError> {
        let res = self.wait_task().await;
        // The task has ended: its files go at once.
        if !matches!(res, Err(ExecError::NotStarted(_))) {
            files::remove(&self.rt.task_id);
        }
        res
    }

    async fn shutdown(&self, grace: Duration) -> Result<(), ExecError> {
        self.stop(grace).await?;
        files::remove(&self.rt.task_id);
        Ok(())
    }

    async fn terminate(&self) -> Result<(), ExecError> {
        let p = self.proc()?;
        p.signal(Signal::SIGKILL);
        files::remove(&self.rt.task_id);
        Ok(())
    }

    async fn remove(&self) -> Result<(), ExecError> {
        self.remove_task().await?;
        files::remove(&self.rt.task_id);
        Ok(())
    }

    async fn status(&self) -> Result<RuntimeStatus, ExecError> {
        let p = self.proc()?;
        p.refresh_exit();
        let meta = read_json::<TaskMeta>(&p.dir.join(TASK_FILE));
        let rec = p.record();
        let exit = p.exit();
        Ok(RuntimeStatus {
            exists: meta.is_some() || rec.is_some(),
            running: rec.is_some() && exit.is_none(),
            exit_code: match exit {
                Some(Exit::Code(c)) => Some(c),
                _ => None,
            },
            pid: rec.map(|r| i64::from(r.pid)),
            container_id: Some(hex_id_for(&self.rt.task_id)),
            ports: meta.map(|m| m.ports).unwrap_or_default(),
        })
    }

    async fn logs(&self, opts: LogOptions) -> Result<LogStreamBox, ExecError> {
        let p = self.proc()?;
        // Checked before reading, so output collected in between is not missed.
        let finished = p.output_finished();
        let dir = p.dir.clone();
        let (entries, offset) =
            blocking(move || read_log(&dir, 0).map_err(|e| ExecError::io("reading task log", e)))
                .await?;
        let first = filter_entries(entries, &opts);
        let head = futures::stream::iter(first.into_iter().map(Ok));
        if !opts.follow || finished {
            return Ok(head.boxed());
        }
        let follow = Follow {
            tick: p.log_tick.subscribe(),
            proc: p,
            offset,
            since: opts.since.map(unix_seconds),
            opts,
            done: false,
        };
        let tail = futures::stream::unfold(follow, |mut f| async move {
            if f.done {
                return None;
            }
            let batch = f.next_batch().await;
            Some((futures::stream::iter(batch), f))
        })
        .flatten();
        Ok(head.chain(tail).boxed())
    }
}

/// State of a `logs --follow` stream on a process task.
struct Follow {
    proc: Arc<TaskProc>,
    tick: watch::Receiver<u64>,
    offset: u64,
    opts: LogOptions,
    since: Option<f64>,
    done: bool,
}

impl Follow {
    /// The next non-empty batch of lines, or an empty batch with `done` set at the end.
    async fn next_batch(&mut self) -> Vec<Result<LogEntry, ExecError>> {
        loop {
            let finished = self.proc.output_finished() || self.proc.cancel.is_cancelled();
            self.tick.borrow_and_update();
            let dir = self.proc.dir.clone();
            let offset = self.offset;
            match blocking(move || {
                read_log(&dir, offset).map_err(|e| ExecError::io("reading task log", e))
            })
            .await
            {
                Ok((entries, off)) => {
                    self.offset = off;
                    let batch: Vec<_> = entries
                        .into_iter()
                        .filter(|e| entry_matches(e, &self.opts, self.since))
                        .map(Ok)
                        .collect();
                    if !batch.is_empty() {
                        return batch;
                    }
                }
                Err(e) => {
                    self.done = true;
                    return vec![Err(e)];
                }
            }
            if finished || !self.proc.dir.exists() {
                self.done = true;
                return Vec::new();
            }
            // Woken by the collector; the timeout covers a collector in another process.
            let _ = tokio::time::timeout(Duration::from_millis(500), self.tick.changed()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard_stubs::models::TaskSpecContainerSpec;

    fn rt(id: &str, cmd: &[&str]) -> TaskRuntime {
        let mut rt = TaskRuntime::for_existing(id, "127.0.0.1");
        rt.service_name = "svc".into();
        rt.container_name = format!("svc.1.{id}");
        rt.spec = TaskSpecContainerSpec {
            image: Some("busybox:latest".into()),
            command: Some(cmd.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        };
        rt
    }

    /// Polls the task's log until `needle` shows up (deadline 10 s).
    async fn wait_for_output(c: &dyn Controller, needle: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let entries: Vec<_> = c.logs(LogOptions::default()).await.unwrap().collect().await;
            if entries
                .iter()
                .flatten()
                .any(|e| String::from_utf8_lossy(&e.line).contains(needle))
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {needle:?} in output"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[test]
    fn parses_users_and_signals() {
        assert_eq!(resolve_user("").unwrap(), None);
        assert_eq!(
            resolve_user("1234:5678").unwrap(),
            Some((Uid::from_raw(1234), Gid::from_raw(5678)))
        );
        assert_eq!(
            resolve_user("root").unwrap(),
            Some((Uid::from_raw(0), Gid::from_raw(0)))
        );
        assert!(resolve_user("no-such-user-xyz").is_err());
        assert!(resolve_user("0:no-such-group-xyz").is_err());
        assert_eq!(parse_signal(None).unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal(Some("SIGINT")).unwrap(), Signal::SIGINT);
        assert_eq!(parse_signal(Some("hup")).unwrap(), Signal::SIGHUP);
        assert_eq!(parse_signal(Some("9")).unwrap(), Signal::SIGKILL);
        assert!(parse_signal(Some("SIGNOPE")).is_err());
        assert!(!valid_task_id("../etc"));
        assert!(valid_task_id("abc123"));
    }

    #[test]
    fn stat_parsing_of_self() {
        let me = std::process::id() as i32;
        let (state, start) = proc_stat(me).expect("own stat");
        assert!(state == 'R' || state == 'S');
        assert!(start > 0);
        assert!(is_alive(&PidRecord {
            pid: me,
            start_time: start,
            started_at: 0.0
        }));
        assert!(!is_alive(&PidRecord {
            pid: me,
            start_time: start + 1,
            started_at: 0.0
        }));
    }

    #[test]
    fn cursor_splits_lines_and_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(d.join(STDOUT_RAW), b"one\ntwo\npart").unwrap();
        fs::write(d.join(STDERR_RAW), [0xff, b'\n']).unwrap();
        let mut c = LogCursor::load(d);
        assert_eq!(c.drain(d, false).unwrap(), 3);
        // A new cursor (agent restart) resumes after the complete lines.
        let mut c2 = LogCursor::load(d);
        assert_eq!(c2.consumed, [8, 2]);
        let mut f = OpenOptions::new()
            .append(true)
            .open(d.join(STDOUT_RAW))
            .unwrap();
        f.write_all(b"ial\n").unwrap();
        assert_eq!(c2.drain(d, true).unwrap(), 1);
        let (entries, _) = read_log(d, 0).unwrap();
        let lines: Vec<_> = entries.iter().map(|e| e.line.clone()).collect();
        assert_eq!(
            lines,
            vec![
                Bytes::from_static(b"one\n"),
                Bytes::from_static(b"two\n"),
                Bytes::from_static(&[0xff, b'\n']),
                Bytes::from_static(b"partial\n"),
            ]
        );
        assert_eq!(entries[2].stream, LogStream::Stderr);
        // Drain again: nothing new, nothing duplicated.
        assert_eq!(c2.drain(d, true).unwrap(), 0);
        drop(c);
    }

    #[tokio::test]
    async fn runs_and_reports_exit() {
        let dir = tempfile::tempdir().unwrap();
        let exec = ProcessExecutor::new(dir.path());
        let c = exec.controller(&rt("t1", &["sh", "-c", "echo out; echo err >&2; exit 3"]));
        c.prepare().await.unwrap();
        c.start().await.unwrap();
        c.start().await.unwrap(); // idempotent
        assert_eq!(c.wait().await.unwrap(), ExitStatus { code: 3 });
        let st = c.status().await.unwrap();
        assert!(!st.running);
        assert_eq!(st.exit_code, Some(3));
        let logs: Vec<_> = c
            .logs(LogOptions {
                follow: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .collect()
            .await;
        let text: Vec<_> = logs.into_iter().map(|e| e.unwrap().line).collect();
        assert!(text.contains(&Bytes::from_static(b"out\n")), "{text:?}");
        assert!(text.contains(&Bytes::from_static(b"err\n")), "{text:?}");
        let cs = exec.containers().await.unwrap();
        assert_eq!(cs.len(), 1);
        assert_eq!(cs[0].names.as_ref().unwrap()[0], "/svc.1.t1");
        assert!(cs[0].status.as_ref().unwrap().starts_with("Exited (3)"));
        c.remove().await.unwrap();
        assert!(exec.containers().await.unwrap().is_empty());
        exec.close().await;
    }

    #[tokio::test]
    async fn rejects_bad_specs() {
        let dir = tempfile::tempdir().unwrap();
        let exec = ProcessExecutor::new(dir.path());
        let c = exec.controller(&rt("t2", &[]));
        assert_eq!(c.prepare().await, Err(ExecError::NoCommand));
        let mut r = rt("t3", &["true"]);
        r.spec.dir = Some("/no/such/dir".into());
        let c = exec.controller(&r);
        assert!(matches!(c.prepare().await, Err(ExecError::InvalidSpec(_))));
        let c = exec.controller(&rt("t4", &["/no/such/binary"]));
        c.prepare().await.unwrap();
        assert!(matches!(c.start().await, Err(ExecError::Io(_))));
        // A log driver or a privilege a host process cannot get is refused, not dropped.
        let mut r = rt("t5", &["true"]);
        r.log_driver = Some(bollard_stubs::models::TaskSpecLogDriver {
            name: Some("syslog".into()),
            options: None,
        });
        let c = exec.controller(&r);
        match c.prepare().await {
            Err(ExecError::InvalidSpec(m)) => assert!(m.contains("log driver \"syslog\""), "{m}"),
            other => panic!("{other:?}"),
        }
        let mut r = rt("t6", &["true"]);
        r.spec.privileges = Some(bollard_stubs::models::TaskSpecContainerSpecPrivileges {
            no_new_privileges: Some(true),
            ..Default::default()
        });
        let c = exec.controller(&r);
        assert!(matches!(c.prepare().await, Err(ExecError::InvalidSpec(_))));
        exec.close().await;
    }

    #[tokio::test]
    async fn shutdown_escalates_to_sigkill() {
        let dir = tempfile::tempdir().unwrap();
        let exec = ProcessExecutor::new(dir.path());
        let c = exec.controller(&rt(
            "t5",
            &[
                "sh",
                "-c",
                "trap '' TERM; echo ready; while true; do sleep 0.1; done",
            ],
        ));
        c.prepare().await.unwrap();
        c.start().await.unwrap();
        // Signal only once the trap is installed.
        wait_for_output(&*c, "ready").await;
        let pid = c.status().await.unwrap().pid.unwrap() as i32;
        c.shutdown(Duration::from_millis(300)).await.unwrap();
        assert!(!c.status().await.unwrap().running);
        assert_eq!(c.wait().await.unwrap().code, 128 + 9);
        assert!(proc_stat(pid).is_none_or(|(s, _)| s == 'Z'));
        exec.close().await;
    }

    #[tokio::test]
    async fn close_leaves_processes_for_adoption() {
        let dir = tempfile::tempdir().unwrap();
        let exec = ProcessExecutor::new(dir.path());
        let r = rt("t7", &["sh", "-c", "echo before; sleep 30"]);
        let c = exec.controller(&r);
        c.prepare().await.unwrap();
        c.start().await.unwrap();
        wait_for_output(&*c, "before").await;
        let pid = c.status().await.unwrap().pid;
        exec.close().await;
        // The same executor, reused (as a restarted agent would): the process is adopted.
        let c = exec.controller(&r);
        c.prepare().await.unwrap();
        c.start().await.unwrap();
        let st = c.status().await.unwrap();
        assert!(st.running);
        assert_eq!(st.pid, pid);
        assert_eq!(exec.list_tasks().await.unwrap(), vec!["t7".to_string()]);
        c.shutdown(Duration::from_secs(5)).await.unwrap();
        // Not our child any more: the exit code cannot be known.
        assert_eq!(c.wait().await, Err(ExecError::ExitUnknown));
        let cs = exec.containers().await.unwrap();
        assert_eq!(
            cs[0]
                .status
                .as_deref()
                .map(|s| s.starts_with("Exited (unknown)")),
            Some(true)
        );
        // Output written before the restart is still there, once.
        let logs: Vec<_> = c.logs(LogOptions::default()).await.unwrap().collect().await;
        assert_eq!(logs.len(), 1);
        exec.close().await;
    }

    #[tokio::test]
    async fn ports_and_env_reach_the_process() {
        let dir = tempfile::tempdir().unwrap();
        let exec = ProcessExecutor::new(dir.path());
        let mut r = rt("t6", &["sh", "-c", "echo $PORT $SWARMD_PORT_80 $FOO"]);
        r.spec.env = Some(vec!["FOO=bar".into()]);
        r.ports = vec![super::super::TargetPort {
            target: 80,
            protocol: Protocol::Tcp,
            name: None,
            fixed_host_port: None,
        }];
        let c = exec.controller(&r);
        c.prepare().await.unwrap();
        c.start().await.unwrap();
        c.wait().await.unwrap();
        let st = c.status().await.unwrap();
        let port = st.ports[0].host_port;
        assert!(port > 0);
        let logs: Vec<_> = c
            .logs(LogOptions {
                follow: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .collect()
            .await;
        let line = logs[0].as_ref().unwrap().line.clone();
        assert_eq!(line, Bytes::from(format!("{port} {port} bar\n")));
        exec.close().await;
    }
}
