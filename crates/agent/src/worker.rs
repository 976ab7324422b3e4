//! The worker: makes the set of tasks this node runs equal to its assignment set.
//!
//! The session hands it the dispatcher's `AssignmentsMessage`s; [`plan`] (pure) turns one
//! message plus the local view into [`WorkerAction`]s, and the worker loop applies them:
//! it starts a runner per new task, moves desired states forward, withdraws tasks that are
//! no longer assigned (shutdown, then remove) and re-sends statuses the manager has not
//! seen. Runner status updates come back here to be persisted in the local db before they
//! are handed to the reporter, so a restarted agent resumes from what it last reported.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bollard_stubs::models::TaskState;
use swarmd_types::dispatcher::{
    Assignment, AssignmentAction, AssignmentsKind, AssignmentsMessage, TaskStatusUpdate,
};
use swarmd_types::{NodeDescription, Task};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::db::TaskDb;
use crate::exec::files::Dependencies;
use crate::exec::template::TemplateContext;
use crate::exec::{Executor, TaskRuntime};
use crate::runner::{self, RunnerCtx, RunnerExit};
use crate::{AgentError, Registry};

/// One decision of the worker.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum WorkerAction {
    /// A task we do not run yet: start a runner for it.
    Start(Box<Task>),
    /// Move a task's desired state forward.
    SetDesired { task_id: String, desired: TaskState },
    /// The task is no longer assigned to this node: shut it down and remove it.
    Withdraw { task_id: String },
    /// The manager's copy of the status is behind ours: send ours again.
    Report(Box<TaskStatusUpdate>),
    /// A container/process of this node that no assignment and no local record knows:
    /// shut it down and remove it, without reporting anything.
    RemoveOrphan { task_id: String },
}

/// Decides what to do with one assignments message.
///
/// `local(id)` returns the task as this node knows it (desired state, and `status` = our
/// last reported status); `local_ids` lists every local task. `executor_tasks` is the
/// executor's inventory, given on the first complete set after startup to find orphans.
pub(crate) fn plan<'a>(
    local: impl Fn(&str) -> Option<&'a Task>,
    local_ids: impl Iterator<Item = &'a str>,
    msg: &AssignmentsMessage,
    executor_tasks: Option<&[String]>,
) -> Vec<WorkerAction> {
    let mut actions = Vec::new();
    let mut assigned: HashSet<&str> = HashSet::new();
    for change in &msg.changes {
        let Assignment::Task(task) = &change.assignment else {
            // Secrets and configs are not delivered to tasks yet.
            continue;
        };
        match (change.action, msg.kind) {
            (AssignmentAction::Update, _) => {
                assigned.insert(task.id.as_str());
                match local(&task.id) {
                    None => actions.push(WorkerAction::Start(Box::new(task.clone()))),
                    Some(mine) => {
                        if task.desired_state > mine.desired_state {
                            actions.push(WorkerAction::SetDesired {
                                task_id: task.id.clone(),
                                desired: task.desired_state,
                            });
                        }
                        if mine.status.state > task.status.state {
                            actions.push(WorkerAction::Report(Box::new(TaskStatusUpdate {
                                task_id: task.id.clone(),
                                status: mine.status.clone(),
                            })));
                        }
                    }
                }
            }
            (AssignmentAction::Remove, AssignmentsKind::Incremental) => {
                if local(&task.id).is_some() {
                    actions.push(WorkerAction::Withdraw {
                        task_id: task.id.clone(),
                    });
                }
            }
            // A removal inside a complete set means "not in the set", handled below.
            (AssignmentAction::Remove, AssignmentsKind::Complete) => {}
        }
    }
    if msg.kind == AssignmentsKind::Complete {
        let mut gone: Vec<&str> = local_ids.filter(|id| !assigned.contains(id)).collect();
        gone.sort_unstable();
        for id in &gone {
            actions.push(WorkerAction::Withdraw {
                task_id: id.to_string(),
            });
        }
        if let Some(inventory) = executor_tasks {
            let mut orphans: Vec<&String> = inventory
                .iter()
                .filter(|id| !assigned.contains(id.as_str()) && local(id).is_none())
                .collect();
            orphans.sort_unstable();
            orphans.dedup();
            for id in orphans {
                actions.push(WorkerAction::RemoveOrphan {
                    task_id: id.clone(),
                });
            }
        }
    }
    actions
}

/// Whether a task restored after a restart must wait for the dispatcher before its runner
/// starts: the agent keeps secrets and configs in memory only, so after a restart it has
/// none until the session's complete set arrives, and a task that still has to be
/// prepared would fail for want of its files. Tasks already running are adopted at once
/// (their files are on the tmpfs already).
fn waits_for_dependencies(task: &Task) -> bool {
    let Some(c) = task.spec.container_spec.as_ref() else {
        return false;
    };
    let refs = c.secrets.as_ref().is_some_and(|v| !v.is_empty())
        || c.configs.as_ref().is_some_and(|v| !v.is_empty());
    refs && task.status.state < TaskState::RUNNING
}

/// A task with a runner.
struct Handle {
    /// Desired state and our last reported status.
    task: Task,
    desired: watch::Sender<TaskState>,
    /// Orphan cleanups neither persist nor report.
    silent: bool,
}

/// What the worker needs from the agent.
pub(crate) struct WorkerDeps {
    pub executor: Arc<dyn Executor>,
    pub node_addr: String,
    pub db: TaskDb,
    pub registry: Registry,
    /// The node's description, for templates.
    pub node: watch::Receiver<Option<NodeDescription>>,
    pub assignments: mpsc::Receiver<AssignmentsMessage>,
    pub reports: mpsc::UnboundedSender<TaskStatusUpdate>,
    pub cancel: CancellationToken,
}

struct Worker {
    executor: Arc<dyn Executor>,
    node_addr: String,
    db: TaskDb,
    registry: Registry,
    node: watch::Receiver<Option<NodeDescription>>,
    reports: mpsc::UnboundedSender<TaskStatusUpdate>,
    cancel: CancellationToken,
    tasks: HashMap<String, Handle>,
    runners: JoinSet<(String, RunnerExit)>,
    runner_ids: HashMap<tokio::task::Id, String>,
    status_tx: mpsc::UnboundedSender<TaskStatusUpdate>,
    orphans_checked: bool,
    /// Secrets and configs delivered for this node's tasks; in memory only.
    deps: Dependencies,
    /// Restored tasks that may still have to be prepared and reference secrets or configs:
    /// their runners start once the first complete assignment set has delivered those.
    deferred: Vec<Task>,
}

/// Runs the worker until cancelled. Runners end with it, leaving their tasks running.
pub(crate) async fn run(deps: WorkerDeps) -> Result<(), AgentError> {
    let (status_tx, mut status_rx) = mpsc::unbounded_channel();
    let mut assignments = deps.assignments;
    let mut w = Worker {
        executor: deps.executor,
        node_addr: deps.node_addr,
        db: deps.db,
        registry: deps.registry,
        node: deps.node,
        reports: deps.reports,
        cancel: deps.cancel,
        tasks: HashMap::new(),
        runners: JoinSet::new(),
        runner_ids: HashMap::new(),
        status_tx,
        orphans_checked: false,
        deps: Dependencies::default(),
        deferred: Vec::new(),
    };
    // Resume every task we held before a restart: runners re-adopt their containers.
    let restored = w.db.load().await?;
    if !restored.is_empty() {
        tracing::info!(tasks = restored.len(), "resuming tasks from the local db");
    }
    for task in restored {
        if waits_for_dependencies(&task) {
            w.deferred.push(task);
            continue;
        }
        w.start(task, false);
    }
    loop {
        tokio::select! {
            biased;
            _ = w.cancel.cancelled() => break,
            msg = assignments.recv() => match msg {
                Some(msg) => w.on_assignments(msg).await,
                None => break,
            },
            Some(u) = status_rx.recv() => {
                let mut batch = vec![u];
                while let Ok(u) = status_rx.try_recv() {
                    batch.push(u);
                }
                w.on_status(batch).await;
            }
            Some(res) = w.runners.join_next_with_id(), if !w.runners.is_empty() => {
                // A runner sends its last status (SHUTDOWN) just before it ends: handle
                // queued statuses first, or they would find the task already forgotten.
                let mut batch = Vec::new();
                while let Ok(u) = status_rx.try_recv() {
                    batch.push(u);
                }
                if !batch.is_empty() {
                    w.on_status(batch).await;
                }
                w.on_runner_exit(res).await;
            }
        }
    }
    // Runners watch the same token; they return without touching their tasks.
    w.cancel.cancel();
    while w.runners.join_next().await.is_some() {}
    Ok(())
}

impl Worker {
    fn start(&mut self, task: Task, silent: bool) {
        let id = task.id.clone();
        if self.tasks.contains_key(&id) {
            return;
        }
        let mut rt = TaskRuntime::from_task(&task, &self.node_addr);
        let templates = TemplateContext::new(&task, self.node.borrow().as_ref());
        // Templates in the spec and in templated secrets/configs; a failure fails the task
        // when it is prepared (as Docker's "failed to expand" does).
        let spec_error = templates.expand_spec(&mut rt.spec).err();
        rt.files = self.deps.resolve(&rt.spec, &templates);
        if let Some(e) = spec_error {
            rt.files.error.get_or_insert(e);
        }
        let ctlr = self.executor.controller(&rt);
        if !silent {
            crate::registry_insert(&self.registry, &id, ctlr.clone());
        }
        let (desired_tx, desired_rx) = watch::channel(task.desired_state);
        let ctx = RunnerCtx {
            rt,
            ctlr,
            status: task.status.clone(),
            desired: desired_rx,
            updates: self.status_tx.clone(),
            cancel: self.cancel.clone(),
        };
        let rid = id.clone();
        let handle = self.runners.spawn(async move {
            let exit = runner::run(ctx).await;
            (rid, exit)
        });
        self.runner_ids.insert(handle.id(), id.clone());
        tracing::debug!(task.id = %id, desired = %task.desired_state, state = %task.status.state, silent, "runner started");
        self.tasks.insert(
            id,
            Handle {
                task,
                desired: desired_tx,
                silent,
            },
        );
    }

    /// Moves a task's desired state forward (never back); returns whether it changed.
    fn set_desired(&mut self, id: &str, desired: TaskState) -> bool {
        let Some(h) = self.tasks.get_mut(id) else {
            return false;
        };
        if desired <= h.task.desired_state {
            return false;
        }
        h.task.desired_state = desired;
        h.desired.send_if_modified(|d| {
            if desired > *d {
                *d = desired;
                true
            } else {
                false
            }
        });
        true
    }

    async fn on_assignments(&mut self, msg: AssignmentsMessage) {
        // Secrets and configs first: the tasks of this message may need them.
        if msg.kind == AssignmentsKind::Complete {
            self.deps.clear();
        }
        for change in &msg.changes {
            if matches!(change.assignment, Assignment::Task(_)) {
                continue;
            }
            let remove = change.action == AssignmentAction::Remove;
            // IDs only: the data never reaches a log.
            tracing::debug!(
                object.id = %change.assignment.id(),
                kind = if matches!(change.assignment, Assignment::Secret(_)) { "secret" } else { "config" },
                removed = remove,
                "dependency assignment"
            );
            self.deps.apply(remove, &change.assignment);
        }
        if msg.kind == AssignmentsKind::Complete {
            // Before planning: the plan then treats them as ours (kept or withdrawn).
            for task in std::mem::take(&mut self.deferred) {
                self.start(task, false);
            }
        }
        let inventory = if msg.kind == AssignmentsKind::Complete && !self.orphans_checked {
            match self.executor.list_tasks().await {
                Ok(v) => {
                    self.orphans_checked = true;
                    Some(v)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list the executor's tasks; orphan cleanup deferred");
                    None
                }
            }
        } else {
            None
        };
        let tasks = &self.tasks;
        let actions = plan(
            |id| tasks.get(id).map(|h| &h.task),
            tasks.keys().map(String::as_str),
            &msg,
            inventory.as_deref(),
        );
        tracing::debug!(kind = ?msg.kind, changes = msg.changes.len(), actions = actions.len(), "assignments");
        let mut to_put = Vec::new();
        for action in actions {
            match action {
                WorkerAction::Start(task) => {
                    tracing::info!(task.id = %task.id, service = %task.service_name, "task assigned");
                    to_put.push((*task).clone());
                    self.start(*task, false);
                }
                WorkerAction::SetDesired { task_id, desired } => {
                    tracing::info!(task.id = %task_id, desired = %desired, "desired state changed");
                    if self.set_desired(&task_id, desired)
                        && let Some(h) = self.tasks.get(&task_id)
                        && !h.silent
                    {
                        to_put.push(h.task.clone());
                    }
                }
                WorkerAction::Withdraw { task_id } => {
                    tracing::info!(task.id = %task_id, "task withdrawn");
                    if self.set_desired(&task_id, TaskState::REMOVE)
                        && let Some(h) = self.tasks.get(&task_id)
                        && !h.silent
                    {
                        to_put.push(h.task.clone());
                    }
                }
                WorkerAction::Report(update) => {
                    let _ = self.reports.send(*update);
                }
                WorkerAction::RemoveOrphan { task_id } => {
                    tracing::info!(task.id = %task_id, "removing orphaned task");
                    let task = Task {
                        id: task_id,
                        desired_state: TaskState::REMOVE,
                        ..Task::default()
                    };
                    self.start(task, true);
                }
            }
        }
        if let Err(e) = self.db.put(to_put).await {
            tracing::error!(error = %e, "persisting assignments failed");
        }
    }

    async fn on_status(&mut self, batch: Vec<TaskStatusUpdate>) {
        let mut to_put = Vec::new();
        let mut to_report = Vec::new();
        for u in batch {
            let Some(h) = self.tasks.get_mut(&u.task_id) else {
                continue;
            };
            if h.silent {
                continue;
            }
            if u.status.state <= h.task.status.state {
                tracing::error!(task.id = %u.task_id, from = %h.task.status.state, to = %u.status.state, "dropping backward status");
                continue;
            }
            h.task.status = u.status.clone();
            to_put.push(h.task.clone());
            to_report.push(u);
        }
        // Persist first: after a crash we must not report less than we already did.
        if let Err(e) = self.db.put(to_put).await {
            tracing::error!(error = %e, "persisting task status failed");
        }
        for u in to_report {
            let _ = self.reports.send(u);
        }
    }

    async fn on_runner_exit(
        &mut self,
        res: Result<(tokio::task::Id, (String, RunnerExit)), tokio::task::JoinError>,
    ) {
        match res {
            Ok((tid, (id, exit))) => {
                self.runner_ids.remove(&tid);
                match exit {
                    RunnerExit::Removed => {
                        tracing::info!(task.id = %id, "task removed");
                        self.tasks.remove(&id);
                        crate::registry_remove(&self.registry, &id);
                        if let Err(e) = self.db.delete(vec![id]).await {
                            tracing::error!(error = %e, "forgetting removed task failed");
                        }
                    }
                    RunnerExit::Cancelled => {}
                }
            }
            Err(e) => {
                // A runner panicked: forget it so the next assignment starts a new one
                // (which re-adopts the task); keep its db record.
                let id = self.runner_ids.remove(&e.id());
                tracing::error!(task.id = ?id, error = %e, "task runner failed");
                if let Some(id) = id {
                    self.tasks.remove(&id);
                    crate::registry_remove(&self.registry, &id);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unstarted_restored_tasks_with_references_wait() {
        use bollard_stubs::models::{
            TaskSpec, TaskSpecContainerSpec, TaskSpecContainerSpecSecrets,
        };
        let mut t = Task {
            spec: TaskSpec {
                container_spec: Some(TaskSpecContainerSpec {
                    secrets: Some(vec![TaskSpecContainerSpecSecrets::default()]),
                    ..Default::default()
                }),
                ..Default::default()
            }
            .into(),
            ..Default::default()
        };
        t.status.state = TaskState::PREPARING;
        assert!(waits_for_dependencies(&t));
        t.status.state = TaskState::RUNNING;
        assert!(
            !waits_for_dependencies(&t),
            "running tasks are adopted at once"
        );
        t.status.state = TaskState::ACCEPTED;
        t.spec.container_spec = Some(TaskSpecContainerSpec::default());
        assert!(
            !waits_for_dependencies(&t),
            "no references, nothing to wait for"
        );
    }
    use crate::exec::fake::FakeExecutor;
    use swarmd_types::TaskStatus;
    use swarmd_types::dispatcher::AssignmentChange;

    fn task(id: &str, desired: TaskState, state: TaskState) -> Task {
        Task {
            id: id.into(),
            service_id: "svc".into(),
            service_name: "web".into(),
            slot: 1,
            desired_state: desired,
            status: TaskStatus {
                state,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn msg(kind: AssignmentsKind, changes: Vec<(AssignmentAction, Task)>) -> AssignmentsMessage {
        AssignmentsMessage {
            kind,
            changes: changes
                .into_iter()
                .map(|(action, t)| AssignmentChange {
                    action,
                    assignment: Assignment::Task(t),
                })
                .collect(),
        }
    }

    fn run_plan(
        local: &[Task],
        m: &AssignmentsMessage,
        inventory: Option<&[String]>,
    ) -> Vec<WorkerAction> {
        let map: HashMap<String, Task> = local.iter().map(|t| (t.id.clone(), t.clone())).collect();
        plan(
            |id| map.get(id),
            map.keys().map(String::as_str),
            m,
            inventory,
        )
    }

    use AssignmentAction::{Remove, Update};
    use TaskState as S;

    #[test]
    fn complete_set_starts_new_and_withdraws_missing() {
        let local = vec![
            task("a", S::RUNNING, S::RUNNING),
            task("b", S::RUNNING, S::RUNNING),
        ];
        let m = msg(
            AssignmentsKind::Complete,
            vec![
                (Update, task("a", S::RUNNING, S::RUNNING)),
                (Update, task("c", S::RUNNING, S::ASSIGNED)),
            ],
        );
        assert_eq!(
            run_plan(&local, &m, None),
            vec![
                WorkerAction::Start(Box::new(task("c", S::RUNNING, S::ASSIGNED))),
                WorkerAction::Withdraw {
                    task_id: "b".into()
                },
            ]
        );
    }

    #[test]
    fn empty_complete_set_withdraws_everything() {
        let local = vec![
            task("b", S::RUNNING, S::RUNNING),
            task("a", S::SHUTDOWN, S::SHUTDOWN),
        ];
        let m = msg(AssignmentsKind::Complete, vec![]);
        assert_eq!(
            run_plan(&local, &m, None),
            vec![
                WorkerAction::Withdraw {
                    task_id: "a".into()
                },
                WorkerAction::Withdraw {
                    task_id: "b".into()
                },
            ]
        );
    }

    #[test]
    fn incremental_updates_and_removals() {
        let local = vec![
            task("a", S::RUNNING, S::RUNNING),
            task("b", S::RUNNING, S::RUNNING),
        ];
        let m = msg(
            AssignmentsKind::Incremental,
            vec![
                (Update, task("a", S::SHUTDOWN, S::RUNNING)),
                (Remove, task("b", S::RUNNING, S::RUNNING)),
                (Remove, task("zzz", S::RUNNING, S::RUNNING)),
                (Update, task("d", S::RUNNING, S::ASSIGNED)),
            ],
        );
        assert_eq!(
            run_plan(&local, &m, None),
            vec![
                WorkerAction::SetDesired {
                    task_id: "a".into(),
                    desired: S::SHUTDOWN
                },
                WorkerAction::Withdraw {
                    task_id: "b".into()
                },
                WorkerAction::Start(Box::new(task("d", S::RUNNING, S::ASSIGNED))),
            ]
        );
        // Incremental messages never withdraw tasks they do not mention.
        let m = msg(AssignmentsKind::Incremental, vec![]);
        assert!(run_plan(&local, &m, None).is_empty());
    }

    #[test]
    fn desired_state_never_moves_back() {
        let local = vec![task("a", S::SHUTDOWN, S::SHUTDOWN)];
        let m = msg(
            AssignmentsKind::Incremental,
            vec![(Update, task("a", S::RUNNING, S::SHUTDOWN))],
        );
        assert!(run_plan(&local, &m, None).is_empty());
    }

    #[test]
    fn resends_status_the_manager_has_not_seen() {
        let mut mine = task("a", S::RUNNING, S::RUNNING);
        mine.status.message = "started".into();
        let m = msg(
            AssignmentsKind::Complete,
            vec![(Update, task("a", S::RUNNING, S::STARTING))],
        );
        assert_eq!(
            run_plan(std::slice::from_ref(&mine), &m, None),
            vec![WorkerAction::Report(Box::new(TaskStatusUpdate {
                task_id: "a".into(),
                status: mine.status.clone(),
            }))]
        );
    }

    #[test]
    fn orphans_are_removed_only_when_unknown() {
        let local = vec![task("a", S::RUNNING, S::RUNNING)];
        let m = msg(
            AssignmentsKind::Complete,
            vec![
                (Update, task("a", S::RUNNING, S::RUNNING)),
                (Update, task("n", S::RUNNING, S::ASSIGNED)),
            ],
        );
        let inventory = vec!["a".to_string(), "n".to_string(), "old".to_string()];
        assert_eq!(
            run_plan(&local, &m, Some(&inventory)),
            vec![
                WorkerAction::Start(Box::new(task("n", S::RUNNING, S::ASSIGNED))),
                WorkerAction::RemoveOrphan {
                    task_id: "old".into()
                },
            ]
        );
    }

    /// The worker loop end to end with the fake executor: assign, run, withdraw, remove.
    #[tokio::test]
    async fn worker_runs_and_withdraws_tasks() {
        let dir = tempfile::tempdir().unwrap();
        let exec = Arc::new(FakeExecutor::default());
        let db = TaskDb::open(&dir.path().join("db"), swarmd_crypto::DataKey::generate())
            .await
            .unwrap();
        let (assign_tx, assign_rx) = mpsc::channel(4);
        let (report_tx, mut report_rx) = mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        let worker = tokio::spawn(run(WorkerDeps {
            executor: exec.clone(),
            node_addr: "127.0.0.1".into(),
            db: db.clone(),
            registry: Registry::default(),
            node: watch::channel(None).1,
            assignments: assign_rx,
            reports: report_tx,
            cancel: cancel.clone(),
        }));
        assign_tx
            .send(msg(
                AssignmentsKind::Complete,
                vec![(Update, task("t1", S::RUNNING, S::ASSIGNED))],
            ))
            .await
            .unwrap();
        let mut states = Vec::new();
        while states.last() != Some(&S::RUNNING) {
            let u = report_rx.recv().await.unwrap();
            states.push(u.status.state);
        }
        assert_eq!(
            states,
            vec![S::ACCEPTED, S::PREPARING, S::READY, S::STARTING, S::RUNNING]
        );
        assert!(exec.is_running("t1"));
        assign_tx
            .send(msg(AssignmentsKind::Complete, vec![]))
            .await
            .unwrap();
        let u = report_rx.recv().await.unwrap();
        assert_eq!(u.status.state, S::SHUTDOWN);
        exec.wait_removed("t1").await;
        // The removed task is forgotten by the local db.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while !db.load().await.unwrap().is_empty() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "task never forgotten"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        cancel.cancel();
        worker.await.unwrap().unwrap();
    }
}
