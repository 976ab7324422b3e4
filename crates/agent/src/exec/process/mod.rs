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
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bollard_stubs::models::ContainerSummary;
use swarmd_types::NodeDescription;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Controller, ExecError, Executor, TaskRuntime};

mod controller;
mod launch;
mod logs;
mod records;
pub mod spec;
mod task;

pub use controller::ProcessController;
use task::{ProcState, TaskProc};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::{ExitStatus, LogOptions, Protocol};
    use bollard_stubs::models::TaskSpecContainerSpec;
    use bytes::Bytes;
    use futures::StreamExt;
    use records::proc_stat;

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

    /// The task's whole output, followed to its end.
    async fn followed_lines(c: &dyn Controller) -> Vec<Bytes> {
        let opts = LogOptions {
            follow: true,
            ..Default::default()
        };
        let logs: Vec<_> = c.logs(opts).await.unwrap().collect().await;
        logs.into_iter().map(|e| e.unwrap().line).collect()
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
    fn task_ids_are_directory_safe() {
        assert!(!valid_task_id("../etc"));
        assert!(!valid_task_id(""));
        assert!(valid_task_id("abc123"));
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
        let text = followed_lines(c.as_ref()).await;
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
        r.ports = vec![crate::exec::TargetPort {
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
        let text = followed_lines(c.as_ref()).await;
        assert_eq!(text[0], Bytes::from(format!("{port} {port} bar\n")));
        exec.close().await;
    }
}
