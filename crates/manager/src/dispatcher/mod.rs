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
mod net_tables;
mod sessions;
mod status;
#[cfg(test)]
mod test_support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use swarmd_store::{ProposeError, Store};
use swarmd_types::dispatcher::{
    AssignmentsMessage, BrokerSubscription, DispatchError, DispatchStream, DispatcherApi,
    LogSubscription, PublishLogs, PublishedLine, SessionMessage, SessionRequest, TaskStatusUpdate,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::membership::RaftMembership;
use net_tables::NetTables;
use sessions::{Session, Sessions, manager_addrs};
use status::StatusJob;

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

    /// Stops background work and closes every session.
    pub async fn stop(&self) {
        self.cancel.cancel();
        for s in self.sessions().values() {
            s.closed.cancel();
        }
        self.tracker.close();
        self.tracker.wait().await;
    }
}

#[async_trait::async_trait]
impl DispatcherApi for Dispatcher {
    async fn session(
        &self,
        req: SessionRequest,
    ) -> Result<DispatchStream<SessionMessage>, DispatchError> {
        self.open_session(req).await
    }

    async fn heartbeat(&self, session_id: &str) -> Result<Duration, DispatchError> {
        self.record_heartbeat(session_id)
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

#[cfg(test)]
mod tests {
    use super::status::{STATUS_BATCH_WINDOW, STATUS_WRITES_IN_FLIGHT};
    use super::*;
    use crate::membership::RaftMember;
    use std::collections::HashSet;
    use swarmd_store::{LocalProposer, MemoryStore};
    use swarmd_types::NodeState;
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
