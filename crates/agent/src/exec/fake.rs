//! `FakeExecutor`: an in-memory executor for unit tests of the runner and worker loops, and
//! (feature `fake`) for other crates' in-process tests of whole nodes.
//!
//! Tasks "run" until told otherwise. A spec whose command is `["exit", "N"]` exits with N
//! right after start; image `missing:latest` fails prepare with "No such image".

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard_stubs::models::ContainerSummary;
use swarmd_types::NodeDescription;
use tokio::sync::watch;

use super::{
    Controller, ExecError, Executor, ExitStatus, LogOptions, LogStreamBox, RuntimeStatus,
    TaskRuntime, hex_id_for,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FakeState {
    Created,
    Running,
    Exited(i64),
    Removed,
}

/// In-memory executor; see the module docs.
#[derive(Default)]
pub struct FakeExecutor {
    tasks: Arc<Mutex<HashMap<String, watch::Sender<FakeState>>>>,
}

impl FakeExecutor {
    fn sender(&self, id: &str) -> watch::Sender<FakeState> {
        self.tasks
            .lock()
            .unwrap()
            .entry(id.to_string())
            .or_insert_with(|| watch::Sender::new(FakeState::Removed))
            .clone()
    }

    pub fn state(&self, id: &str) -> FakeState {
        *self.sender(id).borrow()
    }

    pub fn is_running(&self, id: &str) -> bool {
        self.state(id) == FakeState::Running
    }

    /// Simulates the task's process exiting (or being killed) behind the agent's back.
    pub fn exit(&self, id: &str, code: i64) {
        self.sender(id).send_replace(FakeState::Exited(code));
    }

    pub async fn wait_removed(&self, id: &str) {
        let mut rx = self.sender(id).subscribe();
        let res = tokio::time::timeout(
            Duration::from_secs(10),
            rx.wait_for(|s| *s == FakeState::Removed),
        )
        .await;
        assert!(res.is_ok(), "task {id} was not removed");
    }
}

#[async_trait::async_trait]
impl Executor for FakeExecutor {
    async fn describe(&self) -> Result<NodeDescription, ExecError> {
        Ok(NodeDescription {
            hostname: "fake".into(),
            executor: "fake".into(),
            ..Default::default()
        })
    }

    fn controller(&self, rt: &TaskRuntime) -> Arc<dyn Controller> {
        Arc::new(FakeController {
            rt: rt.clone(),
            state: self.sender(&rt.task_id),
        })
    }

    async fn list_tasks(&self) -> Result<Vec<String>, ExecError> {
        Ok(self
            .tasks
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, s)| *s.borrow() != FakeState::Removed)
            .map(|(id, _)| id.clone())
            .collect())
    }

    async fn containers(&self) -> Result<Vec<ContainerSummary>, ExecError> {
        Ok(Vec::new())
    }
}

struct FakeController {
    rt: TaskRuntime,
    state: watch::Sender<FakeState>,
}

#[async_trait::async_trait]
impl Controller for FakeController {
    async fn prepare(&self) -> Result<(), ExecError> {
        if self.rt.image() == "missing:latest" {
            return Err(ExecError::NoSuchImage(self.rt.image()));
        }
        self.state.send_if_modified(|s| {
            if *s == FakeState::Removed {
                *s = FakeState::Created;
                true
            } else {
                false
            }
        });
        Ok(())
    }

    async fn start(&self) -> Result<(), ExecError> {
        let exit = match self.rt.spec.command.as_deref() {
            Some([cmd, code]) if cmd == "exit" => code.parse::<i64>().ok(),
            _ => None,
        };
        self.state.send_if_modified(|s| {
            if *s == FakeState::Created {
                *s = exit.map_or(FakeState::Running, FakeState::Exited);
                true
            } else {
                false
            }
        });
        Ok(())
    }

    async fn wait(&self) -> Result<ExitStatus, ExecError> {
        let mut rx = self.state.subscribe();
        let s = *rx
            .wait_for(|s| !matches!(s, FakeState::Running))
            .await
            .map_err(|_| ExecError::Io("fake dropped".into()))?;
        match s {
            FakeState::Exited(code) => Ok(ExitStatus { code }),
            FakeState::Created => Err(ExecError::NotStarted(self.rt.task_id.clone())),
            _ => Err(ExecError::NotFound(self.rt.task_id.clone())),
        }
    }

    async fn shutdown(&self, _grace: Duration) -> Result<(), ExecError> {
        self.state.send_if_modified(|s| {
            if *s == FakeState::Running {
                *s = FakeState::Exited(143);
                true
            } else {
                false
            }
        });
        Ok(())
    }

    async fn terminate(&self) -> Result<(), ExecError> {
        self.state.send_if_modified(|s| {
            if *s == FakeState::Running {
                *s = FakeState::Exited(137);
                true
            } else {
                false
            }
        });
        Ok(())
    }

    async fn remove(&self) -> Result<(), ExecError> {
        self.state.send_replace(FakeState::Removed);
        Ok(())
    }

    async fn status(&self) -> Result<RuntimeStatus, ExecError> {
        let s = *self.state.borrow();
        Ok(RuntimeStatus {
            exists: s != FakeState::Removed,
            running: s == FakeState::Running,
            exit_code: match s {
                FakeState::Exited(c) => Some(c),
                _ => None,
            },
            pid: (s == FakeState::Running).then_some(4242),
            container_id: Some(hex_id_for(&self.rt.task_id)),
            ports: Vec::new(),
        })
    }

    async fn logs(&self, _opts: LogOptions) -> Result<LogStreamBox, ExecError> {
        Ok(Box::pin(futures::stream::empty()))
    }
}
