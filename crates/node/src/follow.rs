//! The agent's way to the leader's dispatcher.
//!
//! Only the Raft leader serves agent sessions (it alone watches heartbeats and writes
//! task states), so every agent, a follower manager's own included, must find it. This
//! [`DispatcherApi`] opens each session where the leader is: in process when the local
//! manager leads, otherwise over mutual TLS at the leader's cluster address, taken from
//! the local Raft node, from a refusing manager's hint, or by trying the managers the last
//! session listed. Calls within a session go to where it was opened. The latest session
//! message is published, so the node learns of a promotion or demotion.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use swarmd_raft::RaftNode;
use swarmd_rpc::{RemoteDispatcher, RpcChannel};
use swarmd_types::dispatcher::{
    AssignmentsMessage, BrokerSubscription, DispatchError, DispatchStream, DispatcherApi,
    LogSubscription, PublishLogs, PublishedLine, SessionMessage, SessionRequest, TaskStatusUpdate,
};
use tokio::sync::watch;

use crate::raft_glue::manager_client_options;

/// The local manager, for nodes that are one.
pub struct LocalManager {
    pub dispatcher: Arc<dyn DispatcherApi>,
    pub raft: Arc<RaftNode>,
    /// This manager's own cluster address (never dialled: it is `dispatcher`).
    pub addr: String,
    /// Raft's leader lease (the election timeout's upper bound): how long peers keep
    /// refusing votes after they last heard from the leader.
    pub lease: Duration,
}

type Target = Arc<dyn DispatcherApi>;

/// A [`DispatcherApi`] that follows the Raft leader.
pub struct FollowingDispatcher {
    local: Option<LocalManager>,
    tls: Arc<rustls::ClientConfig>,
    heard: Arc<Heard>,
    hint: Mutex<Option<String>>,
    next: AtomicUsize,
    remotes: Mutex<HashMap<String, Target>>,
    sessions: Mutex<HashMap<String, Target>>,
    /// The Raft leader this manager found dead and is calling an election over.
    suspected: Arc<Mutex<Option<u64>>>,
    /// The cluster address of the manager the last session opened with.
    session_with: watch::Sender<Option<String>>,
}

/// What the sessions told: the managers, and the node as they record it.
struct Heard {
    managers: Mutex<Vec<String>>,
    latest: watch::Sender<Option<SessionMessage>>,
}

impl Heard {
    fn learn(&self, msg: &SessionMessage) {
        if !msg.managers.is_empty() {
            *lock(&self.managers) = msg.managers.clone();
        }
        self.latest.send_replace(Some(msg.clone()));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl FollowingDispatcher {
    pub fn new(
        local: Option<LocalManager>,
        tls: Arc<rustls::ClientConfig>,
        managers: Vec<String>,
    ) -> Arc<Self> {
        Arc::new(FollowingDispatcher {
            local,
            tls,
            heard: Arc::new(Heard {
                managers: Mutex::new(managers),
                latest: watch::channel(None).0,
            }),
            hint: Mutex::new(None),
            next: AtomicUsize::new(0),
            remotes: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            suspected: Arc::new(Mutex::new(None)),
            session_with: watch::channel(None).0,
        })
    }

    /// The Raft leader's cluster port refused this manager's agent: the leader process is
    /// most likely gone. Rather than wait out a full election timeout after the lease, call
    /// an election (with a pre-vote, so a leader that is in fact alive is not disturbed) as
    /// soon as the lease has run out on every peer.
    fn suspect_leader(&self, addr: &str) {
        let Some(l) = &self.local else { return };
        let Some((id, leader_addr)) = l.raft.leader() else {
            return;
        };
        if leader_addr != addr || id == l.raft.node_id() {
            return;
        }
        {
            let mut s = lock(&self.suspected);
            if *s == Some(id) {
                return;
            }
            *s = Some(id);
        }
        let raft = l.raft.clone();
        let suspected = self.suspected.clone();
        let wait = l.lease + Duration::from_millis(rand::random::<u64>() % 100);
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            if raft.leader().map(|(l, _)| l) == Some(id) && !raft.is_leader() {
                tracing::info!(leader = id, "raft leader unreachable; calling an election");
                if let Err(e) = raft.raft().trigger().elect(true).await {
                    tracing::warn!(error = %e, "could not call an election");
                }
            }
            *lock(&suspected) = None;
        });
    }

    /// The last session message: the node as the managers record it, and the managers.
    pub fn latest(&self) -> watch::Receiver<Option<SessionMessage>> {
        self.heard.latest.subscribe()
    }

    /// The cluster address of the manager the agent's session is with (the leader as the
    /// agent found it; this manager's own address when it leads), as it changes.
    pub fn session_with(&self) -> watch::Receiver<Option<String>> {
        self.session_with.subscribe()
    }

    /// The managers' cluster addresses as last heard.
    pub fn managers(&self) -> Vec<String> {
        lock(&self.heard.managers).clone()
    }

    fn remote(&self, addr: &str) -> Result<Target, DispatchError> {
        let mut remotes = lock(&self.remotes);
        if let Some(r) = remotes.get(addr) {
            return Ok(r.clone());
        }
        let channel = RpcChannel::new(addr, self.tls.clone(), manager_client_options())
            .map_err(|e| DispatchError::Unavailable(format!("manager at {addr}: {e}")))?;
        let r: Target = Arc::new(RemoteDispatcher::new(channel));
        remotes.insert(addr.to_string(), r.clone());
        Ok(r)
    }

    /// Where to try next: the local manager if it leads, a leader hint, the local Raft's
    /// leader, then the known managers in turn.
    fn pick(&self) -> Result<(String, Target), DispatchError> {
        if let Some(l) = &self.local
            && l.raft.is_leader()
        {
            return Ok((l.addr.clone(), l.dispatcher.clone()));
        }
        let own = self.local.as_ref().map(|l| l.addr.as_str());
        let hint = lock(&self.hint).take();
        // A manager removed from Raft (demoted) may still name itself, or a leader it has
        // no address for: only another manager's known address is worth dialling.
        let from_raft = self
            .local
            .as_ref()
            .and_then(|l| l.raft.leader().filter(|(id, _)| *id != l.raft.node_id()))
            .map(|(_, addr)| addr);
        let addr = match hint
            .or(from_raft)
            .filter(|a| !a.is_empty() && Some(a.as_str()) != own)
        {
            Some(a) => a,
            None => {
                let managers: Vec<String> = lock(&self.heard.managers)
                    .iter()
                    .filter(|a| Some(a.as_str()) != own)
                    .cloned()
                    .collect();
                if managers.is_empty() {
                    return Err(DispatchError::Unavailable(
                        "no manager to connect to".into(),
                    ));
                }
                let i = self.next.fetch_add(1, Ordering::Relaxed) % managers.len();
                managers[i].clone()
            }
        };
        Ok((addr.clone(), self.remote(&addr)?))
    }

    fn target(&self, session_id: &str) -> Result<Target, DispatchError> {
        lock(&self.sessions)
            .get(session_id)
            .cloned()
            .ok_or(DispatchError::SessionInvalid)
    }
}

/// Bound on one attempt to open a session (a dead manager must not stall the search).
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one `session` call looks for the leader before giving up to the agent.
const SEARCH_FOR: Duration = Duration::from_secs(15);
/// Pause between attempts that found no leader.
const SEARCH_PAUSE: Duration = Duration::from_millis(100);

#[async_trait::async_trait]
impl DispatcherApi for FollowingDispatcher {
    async fn session(
        &self,
        req: SessionRequest,
    ) -> Result<DispatchStream<SessionMessage>, DispatchError> {
        // Keep looking for a while (an election takes a second or two) rather than
        // failing to the agent, whose backoff grows with every failure: a node that is
        // slow to find the new leader is marked down and loses its tasks.
        let deadline = tokio::time::Instant::now() + SEARCH_FOR;
        let mut last = DispatchError::Unavailable("no manager to connect to".into());
        loop {
            if tokio::time::Instant::now() >= deadline {
                return Err(last);
            }
            let (addr, target) = match self.pick() {
                Ok(t) => t,
                Err(e) => {
                    last = e;
                    tokio::time::sleep(SEARCH_PAUSE).await;
                    continue;
                }
            };
            let opened = tokio::time::timeout(OPEN_TIMEOUT, async {
                let mut stream = target.session(req.clone()).await?;
                match stream.next().await {
                    Some(Ok(first)) => Ok((first, stream)),
                    Some(Err(e)) => Err(e),
                    None => Err(DispatchError::Unavailable(
                        "session ended before it opened".into(),
                    )),
                }
            })
            .await
            .unwrap_or_else(|_| {
                Err(DispatchError::Unavailable(format!(
                    "no session from {addr} within {OPEN_TIMEOUT:?}"
                )))
            });
            match opened {
                Ok((first, rest)) => {
                    {
                        let mut sessions = lock(&self.sessions);
                        sessions.clear();
                        sessions.insert(first.session_id.clone(), target);
                    }
                    tracing::debug!(manager = %addr, session = %first.session_id, "session opened with the leader");
                    self.heard.learn(&first);
                    self.session_with.send_if_modified(|with| {
                        let moved = with.as_deref() != Some(addr.as_str());
                        *with = Some(addr.clone());
                        moved
                    });
                    let heard = self.heard.clone();
                    let rest = rest.inspect(move |m| {
                        if let Ok(m) = m {
                            heard.learn(m);
                        }
                    });
                    return Ok(futures::stream::once(async move { Ok(first) })
                        .chain(rest)
                        .boxed());
                }
                Err(DispatchError::NotLeader { leader_addr }) => {
                    tracing::debug!(manager = %addr, leader = ?leader_addr, "not the leader; following");
                    // A hint back to where we just were means no leader yet: pause.
                    if leader_addr.as_deref() == Some(addr.as_str()) || leader_addr.is_none() {
                        tokio::time::sleep(SEARCH_PAUSE).await;
                    }
                    *lock(&self.hint) = leader_addr.clone();
                    last = DispatchError::NotLeader { leader_addr };
                }
                Err(e @ DispatchError::Unavailable(_)) => {
                    tracing::debug!(manager = %addr, error = %e, "manager unavailable; trying another");
                    self.suspect_leader(&addr);
                    last = e;
                    tokio::time::sleep(SEARCH_PAUSE).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn heartbeat(&self, session_id: &str) -> Result<Duration, DispatchError> {
        self.target(session_id)?.heartbeat(session_id).await
    }

    async fn assignments(
        &self,
        session_id: &str,
    ) -> Result<DispatchStream<AssignmentsMessage>, DispatchError> {
        self.target(session_id)?.assignments(session_id).await
    }

    async fn update_task_status(
        &self,
        session_id: &str,
        updates: Vec<TaskStatusUpdate>,
    ) -> Result<(), DispatchError> {
        self.target(session_id)?
            .update_task_status(session_id, updates)
            .await
    }

    async fn log_subscriptions(
        &self,
        session_id: &str,
    ) -> Result<DispatchStream<LogSubscription>, DispatchError> {
        self.target(session_id)?.log_subscriptions(session_id).await
    }

    async fn publish_logs(&self, session_id: &str, logs: PublishLogs) -> Result<(), DispatchError> {
        self.target(session_id)?
            .publish_logs(session_id, logs)
            .await
    }

    /// The leader's log broker: in process when this manager leads, else over the network.
    async fn subscribe_logs(
        &self,
        req: BrokerSubscription,
    ) -> Result<DispatchStream<PublishedLine>, DispatchError> {
        let Some(l) = &self.local else {
            return Err(DispatchError::Unavailable(
                "only managers read other nodes' logs".into(),
            ));
        };
        if l.raft.is_leader() {
            return l.dispatcher.subscribe_logs(req).await;
        }
        let Some((_, addr)) = l.raft.leader().filter(|(id, _)| *id != l.raft.node_id()) else {
            return Err(DispatchError::Unavailable(
                "the swarm has no leader to read logs through".into(),
            ));
        };
        self.remote(&addr)?.subscribe_logs(req).await
    }
}
