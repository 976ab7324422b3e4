//! The pool: one supervised task per discovered engine, the discovery re-read every
//! heartbeat, and the containers being created (counted before any engine lists them).

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use swarmd_engine_api::dial::Dialer;
use tokio::sync::{Notify, broadcast, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::engine::Engine;
use super::error::EngineError;
use super::events::RefreshRequest;
use super::member::{self, EngineSnapshot, PoolEvent};
use crate::discovery::{
    Discovery, EngineAddr, EngineState, PoolMember, RefreshIntervals, diff, diff_members,
    parse_file_content,
};
use crate::scheduler::model::{Container, Node};

/// How the pool talks to its engines.
#[derive(Clone)]
pub struct PoolConfig {
    /// Bound on every call the refresh loop makes.
    pub timeout: Duration,
    pub failure_retry: u32,
    pub refresh: RefreshIntervals,
    /// `--heartbeat`: how often a `file://` discovery is re-read.
    pub heartbeat: Duration,
    /// `--tls`: engines are dialled over TLS with it (`swarmd_engine_api::tls`).
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// Opens [`EngineAddr::Dialed`] engines (`node://<ID>`, issue 17); the API's proxy is
    /// given the same one. `None` outside a swarm.
    pub dialer: Option<Arc<dyn Dialer>>,
    /// An engine that is not healthy (never answered, or given up on) is tried again after
    /// this, doubling up to 16 times it, instead of after a refresh interval (and classic's
    /// growing backoff); `None` keeps classic's. A swarm's pool knows its engines' hosts
    /// are there (the nodes' heartbeats): a joining or returning node's agent offers its
    /// engine moments after the node shows Ready, so the first try often comes too early.
    pub unhealthy_retry: Option<Duration>,
}

impl std::fmt::Debug for PoolConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolConfig")
            .field("timeout", &self.timeout)
            .field("failure_retry", &self.failure_retry)
            .field("refresh", &self.refresh)
            .field("heartbeat", &self.heartbeat)
            .field("tls", &self.tls.is_some())
            .field("dialer", &self.dialer.is_some())
            .field("unhealthy_retry", &self.unhealthy_retry)
            .finish()
    }
}

#[cfg(test)]
impl PoolConfig {
    /// Live tests' pool: short calls and refreshes, two failures flag an engine, so a lost
    /// engine is noticed within seconds.
    pub(crate) fn for_live_tests() -> Self {
        Self {
            timeout: Duration::from_secs(2),
            failure_retry: 2,
            refresh: RefreshIntervals {
                min: Duration::from_millis(500),
                max: Duration::from_secs(1),
            },
            heartbeat: Duration::from_secs(5),
            tls: None,
            dialer: None,
            unhealthy_retry: None,
        }
    }
}

/// A pending entry outlives its create by at most this long: by then the engine's events
/// or a refresh have listed the container (or it is gone).
const PENDING_TTL: Duration = Duration::from_secs(120);

/// State changes a slow subscriber may fall behind by before it misses some (it then
/// reads [`Pool::engines`] afresh, which is all a missed change would have told it).
const EVENT_BACKLOG: usize = 64;

struct Member {
    view: Arc<RwLock<EngineSnapshot>>,
    cancel: CancellationToken,
    /// Container re-reads asked for by the API, done by the engine's task.
    refresh: mpsc::UnboundedSender<RefreshRequest>,
    /// Ends the engine task's wait for its next refresh (a member's host came back).
    wake: Arc<Notify>,
}

/// How long a caller waits for requested re-reads before answering from the view as it
/// is (an engine that stopped answering must not hold `docker ps`).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(2);

/// Re-reads asked for and not yet done, and a wake-up for [`Pool::settled`].
#[derive(Default)]
struct InFlight {
    count: AtomicUsize,
    done: Notify,
}

struct Pending {
    token: u64,
    addr: EngineAddr,
    container: Container,
    since: Instant,
}

/// A container being created, held by the API until the create ends; see
/// [`Pool::add_pending`].
#[derive(Debug)]
pub struct PendingToken(u64);

/// The engines of `swarmd manage` and what it knows of them. Keeps no state of its own
/// beyond that view: everything is read back from the engines.
pub struct Pool {
    config: PoolConfig,
    members: RwLock<BTreeMap<EngineAddr, Member>>,
    pending: Mutex<(u64, Vec<Pending>)>,
    tracker: TaskTracker,
    cancel: CancellationToken,
    events: broadcast::Sender<PoolEvent>,
    inflight: Arc<InFlight>,
}

impl Pool {
    /// Starts the pool: reads the discovery now (a `file://` one again every heartbeat)
    /// and keeps a task per engine until `cancel`.
    pub fn start(config: PoolConfig, discovery: Discovery, cancel: CancellationToken) -> Arc<Self> {
        let pool = Arc::new(Self {
            config,
            members: RwLock::new(BTreeMap::new()),
            pending: Mutex::new((0, Vec::new())),
            tracker: TaskTracker::new(),
            cancel,
            events: broadcast::channel(EVENT_BACKLOG).0,
            inflight: Arc::default(),
        });
        match discovery {
            // A fixed list is known now: the engines are in the pool (pending) before the
            // first request, so `docker info` never shows an empty pool at start.
            Discovery::Nodes(addrs) => pool.set_engines(&addrs),
            Discovery::File(_) => {
                let p = pool.clone();
                pool.tracker
                    .spawn(async move { p.discover(discovery).await });
            }
            Discovery::Members(mut source) => {
                // The members known now are in the pool at once, as a fixed list's.
                let now = source.borrow_and_update().clone();
                pool.set_members(&now);
                let p = pool.clone();
                pool.tracker
                    .spawn(async move { p.follow_members(source).await });
            }
        }
        pool
    }

    /// The dialer of [`EngineAddr::Dialed`] engines, for the API's proxy to reach them the
    /// same way.
    pub fn dialer(&self) -> Option<Arc<dyn Dialer>> {
        self.config.dialer.clone()
    }

    /// A new handle on the engine at `addr`, dialled as the pool dials it (TLS, dialer),
    /// for callers outside the refresh loop (the watchdog); `timeout` as in
    /// [`Engine::new`]. Nothing is dialled yet.
    pub fn engine(
        &self,
        addr: &EngineAddr,
        timeout: Duration,
        failure_retry: u32,
    ) -> Result<Engine, EngineError> {
        Engine::with_transport(
            addr.clone(),
            timeout,
            failure_retry,
            self.config.tls.clone(),
            self.config.dialer.clone(),
        )
    }

    /// Applies every member list `source` sends until `cancel`. A closed source leaves
    /// the pool as it is (the embedding program stopped updating it).
    async fn follow_members(self: Arc<Self>, mut source: watch::Receiver<Vec<PoolMember>>) {
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                changed = source.changed() => {
                    if changed.is_err() {
                        tracing::warn!("pool member source closed; pool unchanged from now on");
                        return;
                    }
                    let members = source.borrow_and_update().clone();
                    self.set_members(&members);
                }
            }
        }
    }

    /// TLS towards the engines (`--tls`), for the API's proxy to dial them the same way.
    pub fn engine_tls(&self) -> Option<std::sync::Arc<rustls::ClientConfig>> {
        self.config.tls.clone()
    }

    /// Waits for every engine task to end (after `cancel`).
    pub async fn stopped(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }

    async fn discover(self: Arc<Self>, discovery: Discovery) {
        loop {
            match read_discovery(&discovery).await {
                Ok(addrs) => self.set_engines(&addrs),
                // Classic kept the pool it had when the file could not be read.
                Err(e) => tracing::warn!(error = %e, "discovery unreadable; pool unchanged"),
            }
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = tokio::time::sleep(self.config.heartbeat) => {}
            }
        }
    }

    /// Makes the pool exactly `addrs`: new engines get a task, dropped ones lose theirs.
    pub fn set_engines(&self, addrs: &[EngineAddr]) {
        let Ok(mut members) = self.members.write() else {
            return;
        };
        let current: Vec<EngineAddr> = members.keys().cloned().collect();
        let change = diff(&current, addrs);
        for addr in change.removed {
            tracing::info!(engine = %addr, "engine left the discovery");
            remove(&mut members, &addr);
        }
        for addr in change.added {
            tracing::info!(engine = %addr, "engine discovered");
            self.add(&mut members, addr, None);
        }
    }

    /// Makes the pool exactly `list`: new members get a task, dropped ones lose theirs,
    /// kept ones whose facts changed get them in their view, without a reconnect.
    pub fn set_members(&self, list: &[PoolMember]) {
        let Ok(mut members) = self.members.write() else {
            return;
        };
        let current: Vec<PoolMember> = members
            .values()
            .filter_map(|m| m.view.read().ok().and_then(|v| v.member.clone()))
            .collect();
        let change = diff_members(&current, list);
        for addr in change.removed {
            tracing::info!(engine = %addr, "pool member removed");
            remove(&mut members, &addr);
        }
        for m in change.updated {
            tracing::info!(engine = %m.upstream, name = ?m.name, accepts_new = m.accepts_new, "pool member updated");
            let Some(member) = members.get(&m.upstream) else {
                continue;
            };
            if let Ok(mut v) = member.view.write() {
                // A host taking work again (a swarm node Ready again) is worth a refresh
                // now: an engine given up on waits its backoff otherwise.
                let back = m.accepts_new && !v.member.as_ref().is_some_and(|o| o.accepts_new);
                if back && v.state != EngineState::Healthy {
                    member.wake.notify_one();
                }
                v.member = Some(m);
            }
        }
        for m in change.added {
            tracing::info!(engine = %m.upstream, name = ?m.name, "pool member added");
            self.add(&mut members, m.upstream.clone(), Some(m));
        }
    }

    /// Starts the task of a new engine.
    fn add(
        &self,
        members: &mut BTreeMap<EngineAddr, Member>,
        addr: EngineAddr,
        member: Option<PoolMember>,
    ) {
        let mut snapshot = EngineSnapshot::new(addr.clone());
        snapshot.member = member;
        let view = Arc::new(RwLock::new(snapshot));
        let cancel = self.cancel.child_token();
        let (refresh, requests) = mpsc::unbounded_channel();
        let wake = Arc::new(Notify::new());
        self.tracker.spawn(member::run(
            addr.clone(),
            view.clone(),
            self.config.clone(),
            self.events.clone(),
            (requests, wake.clone()),
            cancel.clone(),
        ));
        let replaced = members.insert(
            addr,
            Member {
                view,
                cancel,
                refresh,
                wake,
            },
        );
        // Only when one pool mixes `set_engines` and `set_members` over one address.
        if let Some(old) = replaced {
            old.cancel.cancel();
        }
    }

    /// Has the engine at `addr` re-read container `id` (its task does it between events),
    /// after a call through the manager changed or removed it: [`Pool::settled`] then
    /// waits for it, so `docker ps` right after `docker stop` shows the stop.
    pub fn refresh_container(&self, addr: &EngineAddr, id: &str) {
        let Some(tx) = self
            .members
            .read()
            .ok()
            .and_then(|m| m.get(addr).map(|m| m.refresh.clone()))
        else {
            return;
        };
        let (done, answered) = oneshot::channel();
        let req = RefreshRequest {
            id: id.to_owned(),
            done,
        };
        if tx.send(req).is_err() {
            return;
        }
        self.inflight.count.fetch_add(1, Ordering::SeqCst);
        let inflight = self.inflight.clone();
        self.tracker.spawn(async move {
            let _ = tokio::time::timeout(SETTLE_TIMEOUT, answered).await;
            inflight.count.fetch_sub(1, Ordering::SeqCst);
            inflight.done.notify_waiters();
        });
    }

    /// Waits (at most [`SETTLE_TIMEOUT`]) until every re-read asked for so far is done.
    pub async fn settled(&self) {
        let deadline = tokio::time::Instant::now() + SETTLE_TIMEOUT;
        loop {
            let woken = self.inflight.done.notified();
            if self.inflight.count.load(Ordering::SeqCst) == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, woken).await.is_err() {
                return;
            }
        }
    }

    /// Every engine health change from now on (see [`PoolEvent`]).
    pub fn subscribe(&self) -> broadcast::Receiver<PoolEvent> {
        self.events.subscribe()
    }

    /// Every engine as last seen, in address order.
    pub fn engines(&self) -> Vec<EngineSnapshot> {
        let Ok(members) = self.members.read() else {
            return Vec::new();
        };
        members
            .values()
            .filter_map(|m| m.view.read().ok().map(|v| v.clone().with_member_facts()))
            .collect()
    }

    /// The scheduler's view: every engine's node with the containers being created on it
    /// added (classic's pending containers). Entries the engine now lists, or too old,
    /// are dropped here.
    ///
    /// A lost engine's container whose Swarm ID now lives on a healthy engine is left out:
    /// the watchdog moved it, and classic dropped the old copy from the lost engine's list
    /// so that names resolve to the new one.
    pub fn nodes(&self) -> Vec<(EngineAddr, Node)> {
        let engines = self.engines();
        let moved = moved_swarm_ids(&engines);
        let mut nodes: Vec<(EngineAddr, Node)> = engines
            .into_iter()
            .map(|e| {
                let mut node = e.node;
                if e.state != EngineState::Healthy {
                    node.containers.retain(|c| !moved.contains(c.swarm_id()));
                }
                (e.addr, node)
            })
            .collect();
        let Ok(mut pending) = self.pending.lock() else {
            return nodes;
        };
        pending.1.retain(|p| {
            let Some((_, node)) = nodes.iter_mut().find(|(a, _)| *a == p.addr) else {
                return false;
            };
            let listed = (!p.container.id.is_empty()
                && node.containers.iter().any(|c| c.id == p.container.id))
                || (!p.container.swarm_id().is_empty()
                    && node
                        .containers
                        .iter()
                        .any(|c| c.swarm_id() == p.container.swarm_id()));
            if listed || p.since.elapsed() > PENDING_TTL {
                return false;
            }
            node.containers.push(p.container.clone());
            true
        });
        nodes
    }

    /// Counts `container` on `addr` from now until [`Pool::end_pending`] (failed create)
    /// or until the engine lists it.
    pub fn add_pending(&self, addr: &EngineAddr, container: Container) -> PendingToken {
        let Ok(mut pending) = self.pending.lock() else {
            return PendingToken(u64::MAX);
        };
        pending.0 += 1;
        let token = pending.0;
        pending.1.push(Pending {
            token,
            addr: addr.clone(),
            container,
            since: Instant::now(),
        });
        PendingToken(token)
    }

    /// The create succeeded: the pending entry gets the engine's container ID, so the
    /// next call on it (`start` right after `create`) finds its engine at once.
    pub fn pending_created(&self, token: &PendingToken, id: &str) {
        if let Ok(mut pending) = self.pending.lock()
            && let Some(p) = pending.1.iter_mut().find(|p| p.token == token.0)
        {
            p.container.id = id.to_owned();
        }
    }

    /// The create failed: forget the pending entry.
    pub fn end_pending(&self, token: PendingToken) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.1.retain(|p| p.token != token.0);
        }
    }
}

/// Stops and forgets the engine at `addr`.
fn remove(members: &mut BTreeMap<EngineAddr, Member>, addr: &EngineAddr) {
    if let Some(m) = members.remove(addr) {
        m.cancel.cancel();
    }
}

/// The Swarm IDs of containers listed on healthy engines.
fn moved_swarm_ids(engines: &[EngineSnapshot]) -> HashSet<String> {
    engines
        .iter()
        .filter(|e| e.state == EngineState::Healthy)
        .flat_map(|e| e.node.containers.iter().map(|c| c.swarm_id().to_owned()))
        .filter(|s| !s.is_empty())
        .collect()
}

/// The engines a discovery names right now.
async fn read_discovery(discovery: &Discovery) -> Result<Vec<EngineAddr>, String> {
    match discovery {
        Discovery::Nodes(addrs) => Ok(addrs.clone()),
        Discovery::Members(source) => {
            Ok(source.borrow().iter().map(|m| m.upstream.clone()).collect())
        }
        Discovery::File(path) => {
            let content = tokio::fs::read_to_string(path)
                .await
                .map_err(|e| format!("reading {path}: {e}"))?;
            parse_file_content(&content).map_err(|e| format!("{path}: {e}"))
        }
    }
}
