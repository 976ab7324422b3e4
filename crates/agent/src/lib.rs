//! The agent: the node-side half of the swarm (docs/DESIGN.md §5).
//!
//! It holds a session with the dispatcher (heartbeats, assignments, batched status
//! reports), reconciles its running tasks with the assignment set (the worker), drives each
//! task through its states with a [`runner`] and runs them with an [`exec::Executor`]
//! (docker or host processes).
//!
//! Layout of the work, all supervised by [`Agent::run`]:
//!
//! ```text
//! session loop ──assignments──▶ worker ──spawns──▶ runner per task ──▶ Controller
//!      ▲                          │  ▲                  │
//!      └─ "session invalid" ──┐   │  └── status ────────┘
//!                          reporter ◀── persisted status (local redb)
//! ```
//!
//! Stopping the agent (cancelling its token) ends all of this WITHOUT stopping the tasks:
//! a restarted swarmd re-adopts running containers and processes.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard_stubs::models::ContainerSummary;
use futures::StreamExt;
pub use swarmd_crypto::DataKey;
use swarmd_types::NodeDescription;
use swarmd_types::dispatcher::{
    AssignmentsMessage, DispatchError, DispatchStream, DispatcherApi, LogSubscription, PublishLogs,
    PublishedLine, SessionMessage, SessionRequest,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

mod db;
pub mod exec;
pub mod health;
mod reporter;
pub mod runner;
mod worker;

pub use exec::{
    Controller, ExecError, Executor, ExitStatus, LogEntry, LogOptions, LogStream, LogStreamBox,
    RuntimeStatus, TaskRuntime,
};

use reporter::SessionCtx;
use runner::Backoff;

/// Heartbeat period when the dispatcher gives none (Docker's default).
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);
/// A session that lasted this long resets the reconnect backoff.
const STABLE_SESSION: Duration = Duration::from_secs(30);

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The local state (db, state dir) is unusable.
    #[error("agent state: {0}")]
    State(String),
    /// The dispatcher said this node is no longer part of the swarm.
    #[error("node {0} was removed from the swarm")]
    NodeRemoved(String),
    /// One of the agent's own components ended unexpectedly.
    #[error("agent component failed: {0}")]
    Internal(String),
}

/// How the agent is set up.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub node_id: String,
    /// Overrides the hostname the executor reports (`--hostname`), so several nodes on
    /// one machine can be told apart.
    pub hostname: Option<String>,
    /// The node's data-plane address (`--node-addr`); published ports bind here.
    pub node_addr: String,
    /// The agent's own directory (local db; the process executor's task dirs live in the
    /// directory it is given, usually the same one).
    pub state_dir: PathBuf,
    /// How long status updates are collected before one report.
    pub status_batch_window: Duration,
    /// At most this many updates per report.
    pub status_batch_max: usize,
    /// Reconnect backoff bounds.
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// The node's data key: the local task db is sealed with it (encryption at rest).
    pub data_key: DataKey,
}

impl AgentConfig {
    /// A config with the defaults: 100 ms / 256 updates per report, reconnect backoff
    /// from 100 ms to 5 s.
    pub fn new(
        node_id: impl Into<String>,
        node_addr: impl Into<String>,
        state_dir: impl Into<PathBuf>,
        data_key: DataKey,
    ) -> Self {
        AgentConfig {
            data_key,
            node_id: node_id.into(),
            hostname: None,
            node_addr: node_addr.into(),
            state_dir: state_dir.into(),
            status_batch_window: Duration::from_millis(100),
            status_batch_max: 256,
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
        }
    }
}

/// Controllers of the tasks the worker runs, shared with the API side (logs, status).
pub(crate) type Registry = Arc<Mutex<HashMap<String, Arc<dyn Controller>>>>;

pub(crate) fn registry_insert(r: &Registry, id: &str, c: Arc<dyn Controller>) {
    r.lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id.to_string(), c);
}

pub(crate) fn registry_remove(r: &Registry, id: &str) {
    r.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
}

fn registry_get(r: &Registry, id: &str) -> Option<Arc<dyn Controller>> {
    r.lock().unwrap_or_else(|e| e.into_inner()).get(id).cloned()
}

/// The agent. Cheap to clone: the composition root runs one clone and gives others to
/// the API layer (task logs, `docker ps`).
#[derive(Clone)]
pub struct Agent {
    inner: Arc<Inner>,
}

struct Inner {
    config: AgentConfig,
    executor: Arc<dyn Executor>,
    registry: Registry,
    /// The node as it last described itself to the dispatcher (hostname, platform): the
    /// worker expands service templates (`{{.Node.Hostname}}`) with it.
    description: watch::Sender<Option<NodeDescription>>,
}

/// How a session ended.
enum SessionEnd {
    Cancelled,
    Broken(String),
    Fatal(AgentError),
}

impl Agent {
    /// Creates the agent; makes sure the state dir exists.
    pub fn new(config: AgentConfig, executor: Arc<dyn Executor>) -> Result<Self, AgentError> {
        std::fs::create_dir_all(&config.state_dir).map_err(|e| {
            AgentError::State(format!("creating {}: {e}", config.state_dir.display()))
        })?;
        Ok(Agent {
            inner: Arc::new(Inner {
                config,
                executor,
                registry: Registry::default(),
                description: watch::Sender::new(None),
            }),
        })
    }

    pub fn config(&self) -> &AgentConfig {
        &self.inner.config
    }

    pub fn executor(&self) -> &Arc<dyn Executor> {
        &self.inner.executor
    }

    /// What this node reports about itself (the executor's view, hostname overridden).
    pub async fn describe(&self) -> Result<NodeDescription, ExecError> {
        let mut d = self.inner.executor.describe().await?;
        if let Some(h) = self
            .inner
            .config
            .hostname
            .as_ref()
            .filter(|h| !h.is_empty())
        {
            d.hostname = h.clone();
        }
        Ok(d)
    }

    /// The output of a task on this node (running, exited, or left by an earlier agent).
    pub async fn task_logs(
        &self,
        task_id: &str,
        opts: LogOptions,
    ) -> Result<LogStreamBox, ExecError> {
        self.controller_for(task_id).logs(opts).await
    }

    /// What the executor observes about a task on this node.
    pub async fn task_status(&self, task_id: &str) -> Result<RuntimeStatus, ExecError> {
        self.controller_for(task_id).status().await
    }

    /// The node's tasks presented as containers (`docker ps`).
    pub async fn containers(&self) -> Result<Vec<ContainerSummary>, ExecError> {
        self.inner.executor.containers().await
    }

    fn controller_for(&self, task_id: &str) -> Arc<dyn Controller> {
        registry_get(&self.inner.registry, task_id).unwrap_or_else(|| {
            let rt = TaskRuntime::for_existing(task_id, &self.inner.config.node_addr);
            self.inner.executor.controller(&rt)
        })
    }

    /// Runs the agent until `cancel` fires (Ok), the node is removed from the swarm, or the
    /// local state is unusable. Sessions that break are re-opened with backoff. On return
    /// every task of the agent has ended, but the containers/processes keep running.
    pub async fn run(
        self,
        dispatcher: Arc<dyn DispatcherApi>,
        cancel: CancellationToken,
    ) -> Result<(), AgentError> {
        let cfg = &self.inner.config;
        let db = db::TaskDb::open(&cfg.state_dir.join("agent.redb"), cfg.data_key.clone()).await?;
        let inner_cancel = cancel.child_token();
        let (assign_tx, assign_rx) = mpsc::channel::<AssignmentsMessage>(16);
        let (report_tx, report_rx) = mpsc::unbounded_channel();
        let (session_tx, session_rx) = watch::channel::<Option<SessionCtx>>(None);
        let (invalid_tx, mut invalid_rx) = mpsc::unbounded_channel::<String>();

        let mut components: JoinSet<(&'static str, Result<(), AgentError>)> = JoinSet::new();
        components.spawn({
            let deps = worker::WorkerDeps {
                executor: self.inner.executor.clone(),
                node_addr: cfg.node_addr.clone(),
                db,
                registry: self.inner.registry.clone(),
                node: self.inner.description.subscribe(),
                assignments: assign_rx,
                reports: report_tx,
                cancel: inner_cancel.clone(),
            };
            async move { ("worker", worker::run(deps).await) }
        });
        components.spawn({
            let deps = reporter::ReporterDeps {
                updates: report_rx,
                session: session_rx,
                invalid: invalid_tx,
                window: cfg.status_batch_window,
                max_batch: cfg.status_batch_max,
                cancel: inner_cancel.clone(),
            };
            async move {
                reporter::run(deps).await;
                ("reporter", Ok(()))
            }
        });

        tracing::info!(node.id = %cfg.node_id, node.addr = %cfg.node_addr, "agent starting");
        let mut backoff = Backoff::new(cfg.reconnect_min, cfg.reconnect_max);
        let result = loop {
            let started = tokio::time::Instant::now();
            let end = self
                .session(
                    &dispatcher,
                    &cancel,
                    &assign_tx,
                    &session_tx,
                    &mut invalid_rx,
                    &mut components,
                )
                .await;
            session_tx.send_replace(None);
            match end {
                SessionEnd::Cancelled => break Ok(()),
                SessionEnd::Fatal(e) => break Err(e),
                SessionEnd::Broken(reason) => {
                    if started.elapsed() > STABLE_SESSION {
                        backoff.reset();
                    }
                    let delay = backoff.next_delay();
                    tracing::warn!(%reason, ?delay, "dispatcher session ended; reconnecting");
                    tokio::select! {
                        _ = cancel.cancelled() => break Ok(()),
                        _ = tokio::time::sleep(delay) => {}
                        Some(done) = components.join_next() => {
                            if cancel.is_cancelled() {
                                break Ok(());
                            }
                            break Err(component_failed(done));
                        }
                    }
                }
            }
        };
        // Stop our own tasks (not the node's tasks) and wait for all of them.
        inner_cancel.cancel();
        drop(assign_tx);
        while let Some(done) = components.join_next().await {
            if let Ok((name, Err(e))) = done {
                tracing::warn!(component = name, error = %e, "agent component ended with an error");
            }
        }
        self.inner.executor.close().await;
        tracing::info!(node.id = %cfg.node_id, "agent stopped");
        result
    }

    /// Opens one session and serves it until it breaks or the agent stops.
    async fn session(
        &self,
        dispatcher: &Arc<dyn DispatcherApi>,
        cancel: &CancellationToken,
        assign_tx: &mpsc::Sender<AssignmentsMessage>,
        session_tx: &watch::Sender<Option<SessionCtx>>,
        invalid_rx: &mut mpsc::UnboundedReceiver<String>,
        components: &mut JoinSet<(&'static str, Result<(), AgentError>)>,
    ) -> SessionEnd {
        let cfg = &self.inner.config;
        let description = tokio::select! {
            _ = cancel.cancelled() => return SessionEnd::Cancelled,
            d = self.describe() => match d {
                Ok(d) => {
                    self.inner.description.send_replace(Some(d.clone()));
                    d
                }
                Err(e) => return SessionEnd::Broken(format!("describing the node: {e}")),
            },
        };
        let req = SessionRequest {
            node_id: cfg.node_id.clone(),
            description,
            addr: cfg.node_addr.clone(),
        };
        let mut stream: DispatchStream<SessionMessage> = tokio::select! {
            _ = cancel.cancelled() => return SessionEnd::Cancelled,
            r = dispatcher.session(req) => match r {
                Ok(s) => s,
                Err(e) => return dispatch_end(e),
            },
        };
        let first = tokio::select! {
            _ = cancel.cancelled() => return SessionEnd::Cancelled,
            m = stream.next() => m,
        };
        let msg = match first {
            Some(Ok(m)) => m,
            Some(Err(e)) => return dispatch_end(e),
            None => return SessionEnd::Broken("session stream ended before it opened".into()),
        };
        let session_id = msg.session_id.clone();
        let mut period = heartbeat_period(msg.heartbeat_period_ms);
        let mut assignments = tokio::select! {
            _ = cancel.cancelled() => return SessionEnd::Cancelled,
            r = dispatcher.assignments(&session_id) => match r {
                Ok(s) => s,
                Err(e) => return dispatch_end(e),
            },
        };
        // Log subscriptions from the manager's log broker; a dispatcher without them
        // leaves the session working.
        let mut log_subs: DispatchStream<LogSubscription> =
            match dispatcher.log_subscriptions(&session_id).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(error = %e, "no log subscriptions on this session");
                    Box::pin(futures::stream::pending())
                }
            };
        // Publishers of this session; dropping the set at session end aborts them.
        let mut log_publishers: JoinSet<()> = JoinSet::new();
        session_tx.send_replace(Some(SessionCtx {
            id: session_id.clone(),
            dispatcher: dispatcher.clone(),
        }));
        tracing::info!(session.id = %session_id, heartbeat = ?period, managers = ?msg.managers, "dispatcher session established");

        let mut next_heartbeat = tokio::time::Instant::now() + period;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return SessionEnd::Cancelled,
                _ = tokio::time::sleep_until(next_heartbeat) => {
                    let call = tokio::time::timeout(period.max(DEFAULT_HEARTBEAT), dispatcher.heartbeat(&session_id));
                    let res = tokio::select! {
                        _ = cancel.cancelled() => return SessionEnd::Cancelled,
                        r = call => r,
                    };
                    match res {
                        Ok(Ok(p)) => {
                            if !p.is_zero() {
                                period = p;
                            }
                            next_heartbeat = tokio::time::Instant::now() + period;
                        }
                        Ok(Err(e)) => return dispatch_end(e),
                        Err(_) => return SessionEnd::Broken("heartbeat timed out".into()),
                    }
                }
                m = stream.next() => match m {
                    Some(Ok(m)) => {
                        period = heartbeat_period(m.heartbeat_period_ms);
                        tracing::debug!(managers = ?m.managers, "session update");
                    }
                    Some(Err(e)) => return dispatch_end(e),
                    None => return SessionEnd::Broken("session stream ended".into()),
                },
                a = assignments.next() => match a {
                    Some(Ok(a)) => {
                        let sent = tokio::select! {
                            _ = cancel.cancelled() => return SessionEnd::Cancelled,
                            r = assign_tx.send(a) => r,
                        };
                        if sent.is_err() {
                            return SessionEnd::Fatal(AgentError::Internal("worker stopped".into()));
                        }
                    }
                    Some(Err(e)) => return dispatch_end(e),
                    None => return SessionEnd::Broken("assignments stream ended".into()),
                },
                sub = log_subs.next() => match sub {
                    Some(Ok(sub)) => {
                        let agent = self.clone();
                        let d = dispatcher.clone();
                        let sid = session_id.clone();
                        log_publishers.spawn(async move { agent.publish_logs(d, sid, sub).await });
                    }
                    Some(Err(e)) => tracing::debug!(error = %e, "log subscription stream failed"),
                    None => log_subs = Box::pin(futures::stream::pending()),
                },
                Some(_) = log_publishers.join_next(), if !log_publishers.is_empty() => {}
                Some(id) = invalid_rx.recv() => {
                    if id == session_id {
                        return SessionEnd::Broken("dispatcher rejected a status report".into());
                    }
                }
                Some(done) = components.join_next() => {
                    // Components also end when the agent is cancelled: not a failure.
                    if cancel.is_cancelled() {
                        return SessionEnd::Cancelled;
                    }
                    return SessionEnd::Fatal(component_failed(done));
                }
            }
        }
    }
}

impl Agent {
    /// Answers one log subscription: the requested tasks' output, in batches, then a
    /// closing batch (unless following, which lasts until the subscriber goes away).
    async fn publish_logs(
        &self,
        dispatcher: Arc<dyn DispatcherApi>,
        session_id: String,
        sub: LogSubscription,
    ) {
        let opts = LogOptions {
            follow: sub.follow,
            tail: sub.tail,
            since: sub.since.and_then(swarmd_types::timefmt::since_bound),
            timestamps: true,
            stdout: sub.stdout,
            stderr: sub.stderr,
        };
        let mut streams = Vec::new();
        for task_id in &sub.task_ids {
            match self.task_logs(task_id, opts.clone()).await {
                Ok(s) => {
                    let task_id = task_id.clone();
                    streams.push(
                        s.filter_map(move |e| {
                            let line = e.ok().map(|e| PublishedLine {
                                task_id: task_id.clone(),
                                stderr: e.stream == exec::LogStream::Stderr,
                                timestamp: e.timestamp,
                                data: e.line.to_vec(),
                            });
                            futures::future::ready(line)
                        })
                        .boxed(),
                    );
                }
                Err(e) => tracing::debug!(task.id = %task_id, error = %e, "no logs for task"),
            }
        }
        let merged = if sub.follow {
            futures::stream::select_all(streams).boxed()
        } else {
            futures::stream::iter(streams).flatten().boxed()
        };
        let mut batches = merged.ready_chunks(256);
        while let Some(lines) = batches.next().await {
            let batch = PublishLogs {
                subscription_id: sub.id.clone(),
                lines,
                close: false,
            };
            if dispatcher.publish_logs(&session_id, batch).await.is_err() {
                return;
            }
        }
        let _ = dispatcher
            .publish_logs(
                &session_id,
                PublishLogs {
                    subscription_id: sub.id.clone(),
                    lines: vec![],
                    close: true,
                },
            )
            .await;
    }
}

fn heartbeat_period(ms: u64) -> Duration {
    if ms == 0 {
        DEFAULT_HEARTBEAT
    } else {
        Duration::from_millis(ms)
    }
}

fn dispatch_end(e: DispatchError) -> SessionEnd {
    match e {
        DispatchError::NodeRemoved(n) => SessionEnd::Fatal(AgentError::NodeRemoved(n)),
        other => SessionEnd::Broken(other.to_string()),
    }
}

fn component_failed(
    done: Result<(&'static str, Result<(), AgentError>), tokio::task::JoinError>,
) -> AgentError {
    match done {
        Ok((name, Ok(()))) => AgentError::Internal(format!("{name} stopped")),
        Ok((_, Err(e))) => e,
        Err(e) => AgentError::Internal(e.to_string()),
    }
}
