//! The live state of one task, shared by all its controllers: loading and adopting what
//! the records describe, noticing the exit, signalling, and the `docker ps` view.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard_stubs::models::{
    ContainerSummary, ContainerSummaryStateEnum, PortSummary, PortSummaryTypeEnum,
};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::records::{
    Exit, ExitRecord, PidRecord, TaskMeta, exit_of, is_alive, read_json, write_json,
};
use super::{EXIT_FILE, Inner, LIVENESS_POLL, PROC_FILE, TASK_FILE, lock};
use crate::exec::{Protocol, hex_id_for, human_duration, unix_now};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) enum Collector {
    #[default]
    NotStarted,
    Running,
    Done,
}

#[derive(Debug, Default)]
pub(super) struct ProcState {
    pub(super) loaded: bool,
    pub(super) record: Option<PidRecord>,
    /// True while an exit watcher of this executor holds the `Child`; then the watcher
    /// (not /proc polling) decides the exit, so a zombie is never mistaken for "unknown".
    pub(super) own_child: bool,
    pub(super) collector: Collector,
    pub(super) finished_at: Option<f64>,
}

/// The live state of one task, shared by all its controllers.
pub(super) struct TaskProc {
    pub(super) task_id: String,
    pub(super) dir: PathBuf,
    pub(super) state: Mutex<ProcState>,
    pub(super) exit_tx: watch::Sender<Option<Exit>>,
    /// Bumped whenever the collector appended lines, to wake `logs --follow` readers.
    pub(super) log_tick: watch::Sender<u64>,
    /// Cancelled on remove (and with the executor): stops the collector and exit watcher.
    pub(super) cancel: CancellationToken,
    /// Serializes prepare/start/remove of the task.
    pub(super) op_lock: tokio::sync::Mutex<()>,
}

impl TaskProc {
    /// Loads the on-disk records once: adopts a live process, or notes that a recorded
    /// one is gone. Starts the collector for any process that ever ran.
    pub(super) fn ensure_loaded(self: &Arc<Self>, exec: &Inner) {
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
    pub(super) fn refresh_exit(&self) {
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

    pub(super) fn record(&self) -> Option<PidRecord> {
        lock(&self.state).record
    }

    pub(super) fn exit(&self) -> Option<Exit> {
        *self.exit_tx.borrow()
    }

    /// Waits until the process has exited (the exit watcher or /proc polling says so).
    pub(super) async fn wait_exit(&self) -> Exit {
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
    pub(super) fn output_finished(&self) -> bool {
        let st = lock(&self.state);
        match st.record {
            None => true,
            Some(_) => self.exit_tx.borrow().is_some() && st.collector != Collector::Running,
        }
    }

    /// Signals the task's process group, after checking the process is still the one we
    /// started (pid reuse). Returns whether a signal was delivered.
    pub(super) fn signal(&self, sig: Signal) -> bool {
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

    /// The task presented as a Docker container.
    pub(super) fn summary(&self) -> Option<ContainerSummary> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_column_quotes_what_a_shell_would_split() {
        let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(shell_join(&argv(&["sleep", "60"])), "sleep 60");
        assert_eq!(
            shell_join(&argv(&["sh", "-c", "echo hi", ""])),
            "sh -c 'echo hi' ''"
        );
        assert_eq!(shell_join(&argv(&["echo", "it's"])), r"echo 'it'\''s'");
    }
}
