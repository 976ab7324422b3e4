//! The dispatcher: the manager's side of agent sessions.
//!
//! It implements [`DispatcherApi`]: sessions with heartbeats (a node that misses them is
//! marked down), the node's assignments (the complete set on connect, then incremental
//! changes from store events) and task status reports, which are batched into Raft writes
//! and only ever move a task's state forward. On one node the agent calls it in-process;
//! the gRPC service of the multi-node build wraps the same object.

mod assignments;
pub mod discovery;
pub mod ingress;
pub mod logs;
#[cfg(test)]
mod test_support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use swarmd_store::{EventAction, EventBatch, ProposeError, Store};
use swarmd_types::dispatcher::{
    AssignmentsMessage, BrokerSubscription, DiscoveryTable, DispatchError, DispatchStream,
    DispatcherApi, IngressTable, LogSubscription, PublishLogs, PublishedLine, SessionMessage,
    SessionRequest, TaskStatusUpdate,
};
use swarmd_types::models::TaskState;
use swarmd_types::{Node, NodeState, Object, Role, ids};

use crate::membership::RaftMembership;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Missed heartbeat periods before a node is marked down (swarmkit's grace).
const HEARTBEAT_GRACE: u32 = 3;
/// Heartbeat periods a node whose session connection dropped has to come back (to this
/// or, after a failover, another leader) before it is marked down. Shorter than the grace
/// for silent nodes: a dropped connection is a strong sign the node died, so its tasks
/// move sooner, while a restarting daemon still has two periods (10 s by default).
const DISCONNECT_GRACE: u32 = 2;
/// The heartbeat monitor looks at least this often.
const MONITOR_TICK: Duration = Duration::from_millis(200);
/// The data plane's tables are recomputed at most this often (each is a walk over the
/// services' tasks; under load commits come every few milliseconds).
const NET_TABLES_INTERVAL: Duration = Duration::from_millis(100);
/// Most status updates folded into one Raft entry.
const MAX_STATUS_BATCH: usize = swarmd_store::MAX_ACTIONS_PER_ENTRY;
/// How long the batcher waits for more updates before writing.
const STATUS_BATCH_WINDOW: Duration = Duration::from_millis(20);
/// Status entries in Raft at once. One at a time capped status writes at one entry per
/// commit latency: with a million placements queued in the log ahead of it, nodes' reports
/// waited past their deadline (BENCHMARKS.md, "Scale simulation").
const STATUS_WRITES_IN_FLIGHT: usize = 4;

struct Session {
    node_id: String,
    last_heartbeat: Instant,
    /// When the session's stream was dropped (the node went away or hung up).
    disconnected: Option<Instant>,
    closed: CancellationToken,
}

type Sessions = Arc<Mutex<HashMap<String, Session>>>;

/// Lives inside a session's stream: when the transport drops the stream (the node's
/// connection is gone), the session is marked disconnected.
struct DisconnectGuard {
    sessions: Sessions,
    session_id: String,
}

impl Drop for DisconnectGuard {
    fn drop(&mut self) {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = sessions.get_mut(&self.session_id) {
            s.disconnected = Some(Instant::now());
        }
    }
}

type StatusJob = (
    String,
    Vec<TaskStatusUpdate>,
    oneshot::Sender<Result<(), DispatchError>>,
);

/// The dispatcher of one manager.
pub struct Dispatcher {
    store: Store,
    sessions: Sessions,
    status_tx: mpsc::Sender<StatusJob>,
    status_rx: Mutex<Option<mpsc::Receiver<StatusJob>>>,
    tracker: TaskTracker,
    cancel: CancellationToken,
    /// Sessions are served only while this manager leads (agents follow the leader).
    leading: AtomicBool,
    /// When leadership was gained: nodes get a heartbeat grace period from then.
    lead_since: Mutex<Instant>,
    /// Where the leader is, for refusing sessions with a hint.
    raft: Arc<dyn RaftMembership>,
    logs: logs::LogBroker,
    /// The data plane's tables as of the last store change, shared by every session.
    net_tables: watch::Sender<Arc<NetTables>>,
    /// Routes each store commit to the assignment streams of the nodes it concerns.
    fanout: Arc<assignments::Fanout>,
    /// Bumped when a commit changed node objects (or the watch lagged): session streams
    /// wait on it instead of each looking at every commit.
    nodes_changed: watch::Sender<u64>,
    /// The heartbeat period in nanoseconds as the monitor last read it (0: not yet), so a
    /// heartbeat answers without taking the store's lock, which a big apply holds.
    period_ns: AtomicU64,
}

/// What every node's data plane follows: the routing mesh's table and the discovery table.
/// Both are pure functions of the store, computed once per change for all sessions.
#[derive(Debug, Default, PartialEq)]
struct NetTables {
    ingress: IngressTable,
    discovery: DiscoveryTable,
}

/// Whether a commit can change the data plane's tables, and whether it changed a node
/// object (sessions carry their node and the manager set).
///
/// The tables list tasks that are RUNNING and meant to stay so. A task event with an
/// observed state before RUNNING and a desired state up to RUNNING (the allocator, the
/// scheduler, an agent on the way) leaves it out before and after, as states only move
/// forward: it is the one kind skipped, and the most frequent under load. Secrets and
/// configs are not read.
fn net_relevant(batch: &EventBatch) -> (bool, bool) {
    let EventBatch::Commit { events, .. } = batch else {
        return (true, true);
    };
    let (mut net, mut nodes) = (false, false);
    for e in events {
        match &e.object {
            Object::Task(t) => {
                net |= e.action == EventAction::Removed
                    || t.status.state >= TaskState::RUNNING
                    || t.desired_state > TaskState::RUNNING
            }
            Object::Secret(_) | Object::Config(_) => {}
            // A root rotation changes the roots sessions carry.
            Object::Node(_) | Object::Cluster(_) => {
                net = true;
                nodes = true;
            }
            _ => net = true,
        }
        if net && nodes {
            break;
        }
    }
    (net, nodes)
}

fn unavailable(e: ProposeError) -> DispatchError {
    match e {
        ProposeError::NotLeader { leader_addr } => DispatchError::NotLeader { leader_addr },
        other => DispatchError::Unavailable(other.to_string()),
    }
}

impl Dispatcher {
    pub fn new(
        store: Store,
        raft: Arc<dyn RaftMembership>,
        cancel: CancellationToken,
    ) -> Arc<Self> {
        let (status_tx, status_rx) = mpsc::channel(1024);
        let fanout = assignments::Fanout::new(store.memory());
        Arc::new(Dispatcher {
            store,
            sessions: Arc::new(Mutex::new(HashMap::new())),
            status_tx,
            status_rx: Mutex::new(Some(status_rx)),
            tracker: TaskTracker::new(),
            cancel,
            leading: AtomicBool::new(false),
            lead_since: Mutex::new(Instant::now()),
            raft,
            logs: logs::LogBroker::default(),
            net_tables: watch::channel(Arc::default()).0,
            fanout,
            nodes_changed: watch::channel(0).0,
            period_ns: AtomicU64::new(0),
        })
    }

    /// Called as leadership comes and goes. Either way every open session ends: on losing
    /// leadership the agents must move to the new leader, and a new leader starts from a
    /// clean slate, giving every node a heartbeat period's grace to reconnect.
    pub fn set_leading(&self, leading: bool) {
        *self.lead_since.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        self.leading.store(leading, Ordering::SeqCst);
        let mut sessions = self.sessions();
        for s in sessions.values() {
            s.closed.cancel();
        }
        sessions.clear();
        tracing::info!(leading, "dispatcher leadership changed");
    }

    fn check_leading(&self) -> Result<(), DispatchError> {
        if self.leading.load(Ordering::SeqCst) {
            return Ok(());
        }
        Err(DispatchError::NotLeader {
            leader_addr: self.raft.leader().map(|(_, addr)| addr),
        })
    }

    /// The cluster addresses of the managers, given to agents for reconnecting.
    fn manager_addrs(&self) -> Vec<String> {
        self.store.view(|t| manager_addrs(&t.nodes))
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The heartbeat period from the cluster spec (Docker's default 5 s).
    pub fn heartbeat_period(&self) -> Duration {
        self.store.view(|t| {
            t.cluster()
                .and_then(|c| c.spec.dispatcher.as_ref())
                .and_then(|d| d.heartbeat_period)
                .filter(|p| *p > 0)
                .map(|p| Duration::from_nanos(p as u64))
                .unwrap_or(Duration::from_secs(5))
        })
    }

    fn session_node(&self, session_id: &str) -> Result<(String, CancellationToken), DispatchError> {
        self.sessions()
            .get(session_id)
            .map(|s| (s.node_id.clone(), s.closed.clone()))
            .ok_or(DispatchError::SessionInvalid)
    }

    /// The output of tasks on other nodes, asked of their agents (`service logs`).
    pub fn subscribe_logs(
        &self,
        tasks_by_node: std::collections::BTreeMap<String, Vec<String>>,
        template: LogSubscription,
    ) -> DispatchStream<PublishedLine> {
        self.logs.subscribe(tasks_by_node, template)
    }

    /// Starts the background work: the status batcher and the heartbeat monitor.
    pub fn start(self: &Arc<Self>) {
        let rx = self
            .status_rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(rx) = rx {
            let me = self.clone();
            self.tracker
                .spawn(async move { me.status_batcher(rx).await });
        }
        let me = self.clone();
        self.tracker
            .spawn(async move { me.heartbeat_monitor().await });
        let me = self.clone();
        self.tracker
            .spawn(async move { me.net_tables_tracker().await });
        self.tracker
            .spawn(self.fanout.clone().run(self.cancel.clone()));
    }

    /// Keeps the data plane's tables current, once for all sessions: recomputed when a commit
    /// touched something they read (see [`net_relevant`]), at most once per
    /// [`NET_TABLES_INTERVAL`] (commits in between are folded into the next recompute, so a
    /// change is never lost, only delayed), and published only when they differ. Also tells
    /// the session streams when node objects changed, so they need not each look at every
    /// commit.
    async fn net_tables_tracker(&self) {
        let mut events = self.store.memory().watch();
        let mut dirty = true;
        let mut next_at = Instant::now();
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = tokio::time::sleep_until(next_at), if dirty => {
                    dirty = false;
                    let table = self.store.view(|t| NetTables {
                        ingress: ingress::table(t),
                        discovery: discovery::table(t),
                    });
                    self.net_tables.send_if_modified(|cur| {
                        if **cur == table {
                            return false;
                        }
                        *cur = Arc::new(table);
                        true
                    });
                    next_at = Instant::now() + NET_TABLES_INTERVAL;
                }
                ev = events.recv() => {
                    let (net, nodes) = match ev {
                        Ok(batch) => net_relevant(&batch),
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => (true, true),
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    };
                    dirty |= net;
                    if nodes {
                        self.nodes_changed.send_modify(|g| *g += 1);
                    }
                }
            }
        }
    }

    /// Stops background work and closes every session.
    pub async fn stop(&self) {
        self.cancel.cancel();
        for s in self.sessions().values() {
            s.closed.cancel();
        }
        self.tracker.close();
        self.tracker.wait().await;
    }

    /// Folds reports into Raft entries: a batch is written once it holds
    /// [`MAX_STATUS_BATCH`] updates or its first report has waited [`STATUS_BATCH_WINDOW`],
    /// with up to [`STATUS_WRITES_IN_FLIGHT`] entries in Raft at once; while all are in
    /// flight, reports gather into the next batch. Each caller is answered once its entry
    /// committed (or failed).
    async fn status_batcher(&self, mut rx: mpsc::Receiver<StatusJob>) {
        use futures::stream::FuturesUnordered;
        let mut writing = FuturesUnordered::new();
        let mut jobs: Vec<StatusJob> = Vec::new();
        let mut count = 0usize;
        // When the oldest gathered report's window ends.
        let mut deadline: Option<Instant> = None;
        let mut closed = false;
        loop {
            let slot_free = writing.len() < STATUS_WRITES_IN_FLIGHT;
            let due = count >= MAX_STATUS_BATCH
                || closed
                || deadline.is_some_and(|d| Instant::now() >= d);
            if slot_free && !jobs.is_empty() && due {
                let batch = std::mem::take(&mut jobs);
                count = 0;
                deadline = None;
                writing.push(async move {
                    let result = self.write_statuses(&batch).await;
                    for (_, _, reply) in batch {
                        let _ = reply.send(result.clone());
                    }
                });
                continue;
            }
            if closed && jobs.is_empty() && writing.is_empty() {
                return;
            }
            let timer = deadline.filter(|_| slot_free && !jobs.is_empty());
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                job = rx.recv(), if !closed && count < MAX_STATUS_BATCH => match job {
                    Some(j) => {
                        count += j.1.len();
                        jobs.push(j);
                        deadline.get_or_insert_with(|| Instant::now() + STATUS_BATCH_WINDOW);
                    }
                    None => closed = true,
                },
                _ = tokio::time::sleep_until(timer.unwrap_or_else(Instant::now)), if timer.is_some() => {}
                Some(()) = writing.next(), if !writing.is_empty() => {}
            }
        }
    }

    /// Applies status reports: only for tasks on the reporting node, only forward.
    async fn write_statuses(&self, jobs: &[StatusJob]) -> Result<(), DispatchError> {
        self.store
            .update(|t, tx| {
                // The last report of each task, with the task (looked up once).
                let mut latest: HashMap<&str, (&swarmd_types::Task, &TaskStatusUpdate)> =
                    HashMap::new();
                for (node_id, updates, _) in jobs {
                    for u in updates {
                        let Some(task) = t.tasks.get(&u.task_id) else {
                            continue;
                        };
                        if &task.node_id != node_id {
                            tracing::warn!(task = %u.task_id, node = %node_id, "status report for a task of another node ignored");
                            continue;
                        }
                        latest.insert(&u.task_id, (task, u));
                    }
                }
                for (id, (task, u)) in latest {
                    if u.status.state < task.status.state {
                        tracing::debug!(task = %id, from = %task.status.state, to = %u.status.state, "backward status report ignored");
                        continue;
                    }
                    if task.status == u.status {
                        continue;
                    }
                    let mut task = task.clone();
                    task.status = u.status.clone();
                    tx.update(task);
                }
                Ok::<_, ProposeError>(())
            })
            .await
            .map_err(unavailable)
    }

    async fn heartbeat_monitor(&self) {
        loop {
            let period = self.heartbeat_period();
            self.period_ns
                .store(period.as_nanos() as u64, Ordering::Relaxed);
            let grace = period * HEARTBEAT_GRACE;
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = tokio::time::sleep((period / 2).min(MONITOR_TICK)) => {}
            }
            if !self.leading.load(Ordering::SeqCst) {
                continue;
            }
            let started = *self.lead_since.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let mut expired = HashSet::new();
            let live_nodes: HashSet<String> = {
                let mut sessions = self.sessions();
                sessions.retain(|_, s| {
                    let hung_up = s
                        .disconnected
                        .is_some_and(|d| now.duration_since(d) > period * DISCONNECT_GRACE);
                    if hung_up || now.duration_since(s.last_heartbeat) > grace {
                        s.closed.cancel();
                        expired.insert(s.node_id.clone());
                        false
                    } else {
                        true
                    }
                });
                sessions.values().map(|s| s.node_id.clone()).collect()
            };
            // Nodes marked ready that never opened a session here since we started.
            let stale_after_start = now.duration_since(started) > grace;
            let silent = |n: &Node| {
                n.status.state == NodeState::Ready
                    && !live_nodes.contains(&n.id)
                    && (expired.contains(&n.id) || stale_after_start)
            };
            // Looked at under the read lock first: most ticks find nothing to write.
            if !self.store.view(|t| t.nodes.values().any(&silent)) {
                continue;
            }
            let res = self
                .store
                .update(|t, tx| {
                    for n in t.nodes.values() {
                        if silent(n) {
                            let mut n = n.clone();
                            n.status.state = NodeState::Down;
                            n.status.message = "heartbeat failure".into();
                            tx.update(n);
                        }
                    }
                    Ok::<_, ProposeError>(())
                })
                .await;
            if let Err(e) = res {
                tracing::debug!(error = %e, "could not mark nodes down");
            }
        }
    }
}

#[async_trait::async_trait]
impl DispatcherApi for Dispatcher {
    async fn session(
        &self,
        req: SessionRequest,
    ) -> Result<DispatchStream<SessionMessage>, DispatchError> {
        self.check_leading()?;
        let node = self
            .store
            .update(|t, tx| {
                let Some(stored) = t.nodes.get(&req.node_id) else {
                    return Ok(Err(DispatchError::NodeRemoved(req.node_id.clone())));
                };
                let mut n = stored.clone();
                n.description = req.description.clone();
                // The CA records the certificate's TLS info; the node does not report it.
                if n.description.tls_info.is_none() {
                    n.description.tls_info = stored.description.tls_info.clone();
                }
                n.status.state = NodeState::Ready;
                n.status.message = String::new();
                if !req.addr.is_empty() {
                    n.status.addr = req.addr.clone();
                }
                // A node reconnecting as it was (after a leader change or a dropped
                // connection) costs no Raft write: 1,000 of them at once queued behind
                // each other and the load that made them reconnect.
                if n != *stored {
                    tx.update(n.clone());
                }
                Ok::<_, ProposeError>(Ok(n))
            })
            .await
            .map_err(unavailable)??;
        let session_id = ids::new_id();
        let closed = self.cancel.child_token();
        {
            let mut sessions = self.sessions();
            // One session per node: a new one replaces the old.
            sessions.retain(|_, s| {
                if s.node_id == req.node_id {
                    s.closed.cancel();
                    false
                } else {
                    true
                }
            });
            sessions.insert(
                session_id.clone(),
                Session {
                    node_id: req.node_id.clone(),
                    last_heartbeat: Instant::now(),
                    disconnected: None,
                    closed: closed.clone(),
                },
            );
        }
        tracing::info!(node = %req.node_id, session = %session_id, "agent session opened");
        // Subscribe before reading the first state, so no change falls in between.
        let nodes_rx = self.nodes_changed.subscribe();
        // The shared table (not one computed here), so a session never steps back to an
        // older table than the one it was given.
        let mut tables_rx = self.net_tables.subscribe();
        let tables = tables_rx.borrow_and_update().clone();
        let msg = SessionMessage {
            session_id,
            node,
            managers: self.manager_addrs(),
            heartbeat_period_ms: self.heartbeat_period().as_millis() as u64,
            ingress: Some(tables.ingress.clone()),
            discovery: Some(tables.discovery.clone()),
            trust_roots: self.store.view(|t| {
                t.cluster()
                    .map(|c| crate::ca_rotation::trust_roots(&c.root_ca))
            }),
        };
        let guard = DisconnectGuard {
            sessions: self.sessions.clone(),
            session_id: msg.session_id.clone(),
        };
        let updates = session_updates(self.store.clone(), nodes_rx, tables_rx, msg.clone(), closed);
        Ok(futures::stream::once(async move { Ok(msg) })
            .chain(updates)
            .map(move |m| {
                let _alive = &guard;
                m
            })
            .boxed())
    }

    async fn heartbeat(&self, session_id: &str) -> Result<Duration, DispatchError> {
        self.check_leading()?;
        {
            let mut sessions = self.sessions();
            let s = sessions
                .get_mut(session_id)
                .ok_or(DispatchError::SessionInvalid)?;
            s.last_heartbeat = Instant::now();
        }
        match self.period_ns.load(Ordering::Relaxed) {
            0 => Ok(self.heartbeat_period()),
            ns => Ok(Duration::from_nanos(ns)),
        }
    }

    async fn assignments(
        &self,
        session_id: &str,
    ) -> Result<DispatchStream<AssignmentsMessage>, DispatchError> {
        let (node_id, closed) = self.session_node(session_id)?;
        Ok(assignments::stream(
            self.store.memory().clone(),
            node_id,
            closed,
            &self.tracker,
            self.fanout.clone(),
        ))
    }

    async fn log_subscriptions(
        &self,
        session_id: &str,
    ) -> Result<DispatchStream<LogSubscription>, DispatchError> {
        let (node_id, closed) = self.session_node(session_id)?;
        let rx = self.logs.register_agent(&node_id);
        Ok(tokio_stream::wrappers::ReceiverStream::new(rx)
            .map(Ok)
            .take_until(closed.cancelled_owned())
            .boxed())
    }

    async fn publish_logs(&self, session_id: &str, logs: PublishLogs) -> Result<(), DispatchError> {
        self.session_node(session_id)?;
        self.logs.publish(logs).await
    }

    async fn subscribe_logs(
        &self,
        req: BrokerSubscription,
    ) -> Result<DispatchStream<PublishedLine>, DispatchError> {
        // Agents publish only to the leader's broker.
        self.check_leading()?;
        Ok(self.logs.subscribe(req.tasks_by_node, req.template))
    }

    async fn update_task_status(
        &self,
        session_id: &str,
        updates: Vec<TaskStatusUpdate>,
    ) -> Result<(), DispatchError> {
        let (node_id, _) = self.session_node(session_id)?;
        if updates.is_empty() {
            return Ok(());
        }
        let (tx, rx) = oneshot::channel();
        self.status_tx
            .send((node_id, updates, tx))
            .await
            .map_err(|_| DispatchError::Unavailable("dispatcher is stopping".into()))?;
        rx.await
            .map_err(|_| DispatchError::Unavailable("dispatcher is stopping".into()))?
    }
}

/// Cluster addresses of the managers that have joined Raft.
fn manager_addrs(nodes: &std::collections::BTreeMap<String, Node>) -> Vec<String> {
    nodes
        .values()
        .filter(|n| n.role == Role::Manager)
        .filter_map(|n| n.manager.as_ref().map(|m| m.addr.clone()))
        .collect()
}

/// The rest of a session stream: a new message whenever the node's role or spec, the
/// manager set (a promoted node learns it here) or the data plane's tables change, until the
/// session closes. Woken only when a commit changed node objects (`nodes`, bumped by the
/// dispatcher's tracker) or the tables changed: 1,000 sessions each looking at every commit
/// cost O(sessions) wake-ups per commit.
fn session_updates(
    store: Store,
    nodes: watch::Receiver<u64>,
    ingress: watch::Receiver<Arc<NetTables>>,
    first: SessionMessage,
    closed: CancellationToken,
) -> DispatchStream<SessionMessage> {
    futures::stream::unfold(
        (store, (nodes, ingress), first, closed, false),
        move |(store, (mut nodes, mut ingress), mut last, closed, ended)| async move {
            if ended {
                return None;
            }
            loop {
                tokio::select! {
                    _ = closed.cancelled() => return None,
                    r = nodes.changed() => if r.is_err() { return None },
                    r = ingress.changed() => if r.is_err() { return None },
                }
                let tables = ingress.borrow_and_update().clone();
                let ingress_changed = last.ingress.as_ref() != Some(&tables.ingress);
                let discovery_changed = last.discovery.as_ref() != Some(&tables.discovery);
                if ingress_changed || discovery_changed {
                    if ingress_changed {
                        last.ingress = Some(tables.ingress.clone());
                    }
                    if discovery_changed {
                        last.discovery = Some(tables.discovery.clone());
                    }
                    let msg = last.clone();
                    return Some((Ok(msg), (store, (nodes, ingress), last, closed, false)));
                }
                nodes.borrow_and_update();
                let next = store.view(|t| {
                    t.nodes.get(&last.node.id).map(|n| {
                        let roots = t
                            .cluster()
                            .map(|c| crate::ca_rotation::trust_roots(&c.root_ca));
                        (n.clone(), manager_addrs(&t.nodes), roots)
                    })
                });
                let Some((node, managers, trust_roots)) = next else {
                    let id = last.node.id.clone();
                    return Some((
                        Err(DispatchError::NodeRemoved(id)),
                        (store, (nodes, ingress), last, closed, true),
                    ));
                };
                let changed = node.role != last.node.role
                    || node.spec != last.node.spec
                    || managers != last.managers
                    || trust_roots != last.trust_roots;
                if changed {
                    last.node = node;
                    last.managers = managers;
                    last.trust_roots = trust_roots;
                    let msg = last.clone();
                    return Some((Ok(msg), (store, (nodes, ingress), last, closed, false)));
                }
            }
        },
    )
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::RaftMember;
    use std::collections::HashSet;
    use swarmd_store::{LocalProposer, MemoryStore};
    use swarmd_types::{Cluster, Node, NodeDescription};

    /// Raft as a dispatcher needs it: only the leader's address (unit tests only).
    struct FakeRaft;

    #[async_trait::async_trait]
    impl RaftMembership for FakeRaft {
        fn members(&self) -> Vec<RaftMember> {
            vec![]
        }
        fn leader(&self) -> Option<(u64, String)> {
            Some((7, "10.0.0.7:2377".into()))
        }
        fn reachable(&self) -> Option<HashSet<u64>> {
            None
        }
        async fn add_voter(&self, _: u64, _: String) -> Result<(), String> {
            Ok(())
        }
        async fn remove(&self, _: u64) -> Result<(), String> {
            Ok(())
        }
    }

    async fn setup(nodes: &[&str]) -> (Store, Arc<Dispatcher>) {
        let mem = Arc::new(MemoryStore::new());
        let store = Store::new(mem.clone(), Arc::new(LocalProposer::new(mem)));
        let mut cluster = Cluster {
            id: "c".into(),
            ..Default::default()
        };
        cluster.spec.dispatcher = Some(swarmd_types::models::SwarmSpecDispatcher {
            heartbeat_period: Some(1_000_000_000),
        });
        store
            .update(|_, tx| {
                tx.create(cluster.clone());
                for id in nodes {
                    tx.create(Node {
                        id: id.to_string(),
                        ..Default::default()
                    });
                }
                Ok::<_, ProposeError>(())
            })
            .await
            .unwrap();
        let d = Dispatcher::new(store.clone(), Arc::new(FakeRaft), CancellationToken::new());
        d.start();
        (store, d)
    }

    fn req(node: &str) -> SessionRequest {
        SessionRequest {
            node_id: node.into(),
            description: NodeDescription::default(),
            addr: String::new(),
        }
    }

    fn state(store: &Store, node: &str) -> NodeState {
        store.view(|t| t.nodes[node].status.state)
    }

    #[tokio::test(start_paused = true)]
    async fn only_the_leader_serves_sessions() {
        let (_store, d) = setup(&["n1"]).await;
        match d.session(req("n1")).await {
            Err(DispatchError::NotLeader { leader_addr }) => {
                assert_eq!(leader_addr.as_deref(), Some("10.0.0.7:2377"))
            }
            Err(e) => panic!("expected NotLeader, got {e}"),
            Ok(_) => panic!("expected NotLeader, got a session"),
        }
        d.set_leading(true);
        let mut s = d.session(req("n1")).await.unwrap();
        let first = s.next().await.unwrap().unwrap();
        // Losing leadership ends the session.
        d.set_leading(false);
        assert!(s.next().await.is_none());
        assert_eq!(
            d.heartbeat(&first.session_id).await.unwrap_err(),
            DispatchError::NotLeader {
                leader_addr: Some("10.0.0.7:2377".into())
            }
        );
        d.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_connection_is_down_after_two_periods_a_silent_one_after_three() {
        let (store, d) = setup(&["gone", "silent"]).await;
        d.set_leading(true);
        let mut gone = d.session(req("gone")).await.unwrap();
        gone.next().await.unwrap().unwrap();
        let mut silent = d.session(req("silent")).await.unwrap();
        silent.next().await.unwrap().unwrap();
        assert_eq!(state(&store, "gone"), NodeState::Ready);
        drop(gone);

        tokio::time::sleep(Duration::from_millis(1700)).await;
        assert_eq!(
            state(&store, "gone"),
            NodeState::Ready,
            "within two periods"
        );
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(state(&store, "gone"), NodeState::Down, "after two periods");
        assert_eq!(
            state(&store, "silent"),
            NodeState::Ready,
            "still within three"
        );
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert_eq!(
            state(&store, "silent"),
            NodeState::Down,
            "after three periods"
        );
        drop(silent);
        d.stop().await;
    }

    /// Every session carries the ingress table, and a change in the running tasks reaches
    /// it as a new message (here: a node with no task of the service).
    #[tokio::test]
    async fn sessions_carry_the_ingress_table_and_its_changes() {
        use swarmd_types::models::{
            EndpointPortConfig, EndpointPortConfigProtocolEnum as Proto,
            EndpointPortConfigPublishModeEnum as Mode, PortStatus, TaskState,
        };
        use swarmd_types::{Service, Task};
        let (store, d) = setup(&["n1", "n2"]).await;
        let port = |published: i64, mode: Mode| EndpointPortConfig {
            protocol: Some(Proto::TCP),
            published_port: Some(published),
            target_port: Some(80),
            publish_mode: Some(mode),
            ..Default::default()
        };
        let mut svc = Service {
            id: "web".into(),
            ..Default::default()
        };
        svc.endpoint.ports = vec![port(8080, Mode::INGRESS)];
        let mut task = Task {
            id: "t1".into(),
            service_id: "web".into(),
            node_id: "n1".into(),
            desired_state: TaskState::RUNNING,
            ..Default::default()
        };
        task.status.state = TaskState::RUNNING;
        task.status.ports = Some(PortStatus {
            ports: Some(vec![port(40001, Mode::HOST)]),
        });
        store
            .update(|t, tx| {
                let mut n = t.nodes["n1"].clone();
                n.status.state = NodeState::Ready;
                n.status.addr = "127.0.0.2".into();
                tx.update(n);
                tx.create(svc.clone());
                tx.create(task.clone());
                Ok::<_, ProposeError>(())
            })
            .await
            .unwrap();
        d.set_leading(true);
        let backends = |m: &SessionMessage| -> Vec<String> {
            let t = m.ingress.as_ref().expect("a table");
            assert!(t.ports.len() <= 1);
            t.ports
                .iter()
                .flat_map(|p| p.backends.iter().map(|b| b.addr.clone()))
                .collect()
        };
        let mut s = d.session(req("n2")).await.unwrap();
        let mut msg = s.next().await.unwrap().unwrap();
        // The shared table follows the store asynchronously: wait for it.
        while backends(&msg).is_empty() {
            msg = s.next().await.unwrap().unwrap();
        }
        assert_eq!(backends(&msg), ["127.0.0.2:40001"]);
        store
            .update(|t, tx| {
                let mut t1 = t.tasks["t1"].clone();
                t1.desired_state = TaskState::SHUTDOWN;
                tx.update(t1);
                Ok::<_, ProposeError>(())
            })
            .await
            .unwrap();
        let msg = tokio::time::timeout(Duration::from_secs(10), s.next())
            .await
            .expect("a new message")
            .unwrap()
            .unwrap();
        assert!(
            backends(&msg).is_empty(),
            "no backend once the task is to stop"
        );
        assert_eq!(
            msg.ingress.unwrap().ports.len(),
            1,
            "the port stays published"
        );
        d.stop().await;
    }

    /// Raft with a backlog: proposals wait until the test opens the gate (unit tests only).
    struct GatedProposer {
        inner: LocalProposer,
        open: watch::Sender<bool>,
        waiting: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl swarmd_store::Proposer for GatedProposer {
        async fn propose(&self, batch: swarmd_store::Batch) -> Result<u64, ProposeError> {
            self.waiting.fetch_add(1, Ordering::SeqCst);
            let _ = self.open.subscribe().wait_for(|open| *open).await;
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            self.inner.propose(batch).await
        }
    }

    /// Reports keep flowing into Raft while earlier status entries wait for their commit
    /// (several entries in flight, the rest gathered), and every caller is answered once
    /// its entry commits.
    #[tokio::test(start_paused = true)]
    async fn status_writes_are_pipelined_while_raft_is_slow() {
        use swarmd_types::Task;
        use swarmd_types::models::TaskState;
        let mem = Arc::new(MemoryStore::new());
        let gate = Arc::new(GatedProposer {
            inner: LocalProposer::new(mem.clone()),
            open: watch::channel(true).0,
            waiting: Default::default(),
        });
        let store = Store::new(mem, gate.clone());
        let n = STATUS_WRITES_IN_FLIGHT + 2;
        store
            .update(|_, tx| {
                tx.create(Cluster {
                    id: "c".into(),
                    ..Default::default()
                });
                for i in 0..n {
                    tx.create(Node {
                        id: format!("n{i}"),
                        ..Default::default()
                    });
                    let mut t = Task {
                        id: format!("t{i}"),
                        node_id: format!("n{i}"),
                        desired_state: TaskState::RUNNING,
                        ..Default::default()
                    };
                    t.status.state = TaskState::ASSIGNED;
                    tx.create(t);
                }
                Ok::<_, ProposeError>(())
            })
            .await
            .unwrap();
        let d = Dispatcher::new(store.clone(), Arc::new(FakeRaft), CancellationToken::new());
        d.start();
        d.set_leading(true);
        let mut sessions = Vec::new();
        for i in 0..n {
            let mut s = d.session(req(&format!("n{i}"))).await.unwrap();
            sessions.push((s.next().await.unwrap().unwrap().session_id, s));
        }
        gate.open.send_replace(false);
        let mut calls = Vec::new();
        for (i, (sid, _)) in sessions.iter().enumerate() {
            let (d, sid) = (d.clone(), sid.clone());
            calls.push(tokio::spawn(async move {
                let mut status = swarmd_types::TaskStatus {
                    state: TaskState::RUNNING,
                    ..Default::default()
                };
                status.message = "started".into();
                d.update_task_status(
                    &sid,
                    vec![TaskStatusUpdate {
                        task_id: format!("t{i}"),
                        status,
                    }],
                )
                .await
            }));
            // Past the batch window: each report makes an entry of its own if it may.
            tokio::time::sleep(STATUS_BATCH_WINDOW * 2).await;
        }
        assert_eq!(
            gate.waiting.load(Ordering::SeqCst),
            STATUS_WRITES_IN_FLIGHT,
            "entries in flight at once; the rest wait for a slot"
        );
        assert!(
            calls.iter().all(|c| !c.is_finished()),
            "nothing committed yet"
        );
        gate.open.send_replace(true);
        for c in calls {
            c.await.unwrap().unwrap();
        }
        store.view(|t| {
            for i in 0..n {
                assert_eq!(t.tasks[&format!("t{i}")].status.state, TaskState::RUNNING);
            }
        });
        drop(sessions);
        d.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_node_that_reconnects_in_time_stays_ready() {
        let (store, d) = setup(&["n1"]).await;
        d.set_leading(true);
        let mut s = d.session(req("n1")).await.unwrap();
        s.next().await.unwrap().unwrap();
        drop(s);
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let mut again = d.session(req("n1")).await.unwrap();
        let msg = again.next().await.unwrap().unwrap();
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(900)).await;
            d.heartbeat(&msg.session_id).await.unwrap();
        }
        assert_eq!(state(&store, "n1"), NodeState::Ready);
        d.stop().await;
    }
}
