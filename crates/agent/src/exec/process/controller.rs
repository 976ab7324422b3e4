//! The controller of one process task: the executor steps (prepare, start, wait,
//! shutdown, terminate, remove) and its status and logs.

use std::fs::{self, OpenOptions};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use nix::sys::signal::Signal;

use crate::health::{Check, Health, Monitor};

use super::launch::{
    LaunchPlan, allocate_ports, check_dir, exit_code, parse_signal, resolve_user, task_argv,
};
use super::logs::{Follow, read_log};
use super::records::{
    Exit, ExitRecord, PidRecord, TaskMeta, exit_of, proc_stat, read_json, write_json,
};
use super::task::TaskProc;
use super::{
    EXIT_FILE, Inner, KILL_WAIT, PROC_FILE, STDERR_RAW, STDOUT_RAW, TASK_FILE, blocking, lock, spec,
};
use crate::exec::{
    Controller, ExecError, ExitStatus, LogOptions, LogStreamBox, RuntimeStatus, TaskRuntime, files,
    filter_entries, hex_id_for, unix_now, unix_seconds,
};

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
    pub(super) rt: TaskRuntime,
    pub(super) exec: Arc<Inner>,
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
                spec::refusal(&rt.spec, rt.resources.as_ref(), rt.log_driver.as_ref())
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
        files::remove_after_wait(&self.rt.task_id, self.wait_task().await)
    }

    async fn shutdown(&self, grace: Duration) -> Result<(), ExecError> {
        files::remove_after(&self.rt.task_id, self.stop(grace).await)
    }

    async fn terminate(&self) -> Result<(), ExecError> {
        let killed = self.proc().map(|p| {
            p.signal(Signal::SIGKILL);
        });
        files::remove_after(&self.rt.task_id, killed)
    }

    async fn remove(&self) -> Result<(), ExecError> {
        files::remove_after(&self.rt.task_id, self.remove_task().await)
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
