//! `--pool-host` (issue 17): the classic Swarm API (`swarmd manage`'s, crates/classic) served
//! by a swarm manager over the swarm's own nodes.
//!
//! The pool's members are the store's nodes that run a Docker Engine (name: the node's
//! hostname; labels: the swarm node's labels over the engine's; no new container on a node
//! that is not Ready and Active). Each node's engine is reached through its agent over the
//! cluster's mutual TLS (`node://ID`, [`SwarmNode::engine_dialer`]): no engine listens on
//! the network. Decisions that must be made once (unique names, placement, rescheduling)
//! are the Raft leader's: a follower forwards every request but `_ping` and `info` to the
//! leader's pool (`pool://leader`), as a classic replica forwards to its primary.
//!
//! The API is bound at start; while the node is no manager it answers Docker's 503. The
//! pool, its tasks and the forwarding handler live as long as one manager membership
//! (a demotion, `swarm leave` or restart of the membership ends them; the next starts anew).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use swarmd_classic::api::Manager;
use swarmd_classic::discovery::{Discovery, EngineAddr, PoolMember};
use swarmd_classic::options::ManageOptions;
use swarmd_classic::pool::{Pool, PoolConfig};
use swarmd_classic::replication::{self, role};
use swarmd_classic::reschedule::Watchdog;
use swarmd_classic::view::ManagerRole;
use swarmd_engine_api::dial::{LEADER_POOL, NODE_SCHEME};
use swarmd_engine_api::{ApiApp, ApiError, Listener};
use swarmd_node::SwarmNode;
use swarmd_node::node::ManagerParts;
use swarmd_store::EventBatch;
use swarmd_types::models::NodeSpecAvailabilityEnum;
use swarmd_types::{Node, NodeState, Object};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Bound on each call the pool makes to an engine (as `swarmd manage`).
const ENGINE_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the node's phase is looked at (a manager membership starting or ending).
const PHASE_POLL: Duration = Duration::from_millis(500);

/// How often the rescheduler looks at the pool when no engine changes state: a node drained
/// is no engine state change, and its containers should move within seconds, as its tasks.
const WATCHDOG_INTERVAL: Duration = Duration::from_secs(2);

/// How often the members are recomputed when no store event says so (a missed event
/// batch on a lagging subscriber is caught up by this).
const MEMBERS_RESYNC: Duration = Duration::from_secs(5);

/// The pool's members: the swarm's nodes that run a Docker Engine.
pub fn members_of<'a>(nodes: impl IntoIterator<Item = &'a Node>) -> Vec<PoolMember> {
    nodes
        .into_iter()
        .filter(|n| n.description.executor == "docker")
        .map(|n| {
            let labels: BTreeMap<String, String> = n
                .spec
                .labels
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect();
            let active = matches!(
                n.spec.availability,
                None | Some(NodeSpecAvailabilityEnum::ACTIVE)
            );
            PoolMember {
                upstream: EngineAddr::Dialed(format!("{NODE_SCHEME}{}", n.id)),
                name: Some(n.description.hostname.clone()).filter(|h| !h.is_empty()),
                labels,
                ip: n.status.addr.clone(),
                accepts_new: active && n.status.state == NodeState::Ready,
            }
        })
        .collect()
}

/// Serves the pool API on `listeners` for as long as `cancel` is not fired.
pub async fn run(
    node: Arc<SwarmNode>,
    listeners: Vec<Listener>,
    options: ManageOptions,
    cancel: CancellationToken,
) {
    let (current_tx, current) = watch::channel::<Option<ApiApp>>(None);
    let server = tokio::spawn(swarmd_engine_api::serve_app(
        listeners,
        move |_, _| {
            ApiApp::from_router(
                axum::Router::new().fallback(move |req| dispatch(current.clone(), req)),
            )
        },
        cancel.clone(),
    ));
    let options = Arc::new(options);
    let mut running: Option<(Arc<ManagerParts>, Incarnation)> = None;
    loop {
        let mgr = node.active().and_then(|a| a.mgr.clone());
        let same = matches!((&running, &mgr), (Some((r, _)), Some(m)) if Arc::ptr_eq(r, m));
        if !same {
            if let Some((_, inc)) = running.take() {
                node.set_pool_api(None);
                current_tx.send_replace(None);
                inc.stop().await;
            }
            if let Some(m) = mgr {
                let inc = Incarnation::start(&node, &m, options.clone());
                current_tx.send_replace(Some(inc.app.clone()));
                running = Some((m, inc));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(PHASE_POLL) => {}
            _ = cancel.cancelled() => break,
        }
    }
    if let Some((_, inc)) = running.take() {
        node.set_pool_api(None);
        inc.stop().await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
}

/// Hands a request to the current pool app, or answers Docker's 503 when the node is no
/// manager.
async fn dispatch(current: watch::Receiver<Option<ApiApp>>, req: Request) -> Response {
    let app = current.borrow().clone();
    match app {
        Some(app) => match tower::ServiceExt::oneshot(app, req).await {
            Ok(r) => r,
            Err(never) => match never {},
        },
        None => ApiError::unavailable(swarmd_engine_api::error::MSG_NOT_MANAGER).into_response(),
    }
}

/// The pool of one manager membership and what runs with it.
struct Incarnation {
    app: ApiApp,
    pool: Arc<Pool>,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl Incarnation {
    fn start(node: &Arc<SwarmNode>, mgr: &Arc<ManagerParts>, options: Arc<ManageOptions>) -> Self {
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let dialer = node.engine_dialer();
        let (members_tx, members) = watch::channel(Vec::new());
        tracker.spawn(follow_members(mgr.clone(), members_tx, cancel.clone()));
        let (role_tx, role) = watch::channel(ManagerRole::Replica {
            primary: LEADER_POOL.to_owned(),
        });
        tracker.spawn(follow_leader(mgr.clone(), role_tx, cancel.clone()));
        let pool = Pool::start(
            PoolConfig {
                timeout: ENGINE_CALL_TIMEOUT,
                failure_retry: options.failure_retry,
                refresh: options.refresh,
                heartbeat: options.heartbeat,
                tls: None,
                dialer: Some(dialer),
                // A joining or returning node offers its engine moments after it shows Ready.
                unhealthy_retry: Some(Duration::from_secs(1)),
            },
            Discovery::Members(members),
            cancel.clone(),
        );
        let scheduler = swarmd_classic::api::scheduler(&options);
        let schedule_lock = Arc::new(tokio::sync::Mutex::new(()));
        let watchdog = Watchdog {
            pool: pool.clone(),
            scheduler: scheduler.clone(),
            schedule_lock: schedule_lock.clone(),
            timeout: ENGINE_CALL_TIMEOUT,
            interval: WATCHDOG_INTERVAL,
        };
        // Only the leader reschedules.
        tracker.spawn(replication::gate::while_primary(
            role.clone(),
            cancel.clone(),
            move |token| swarmd_classic::reschedule::run(watchdog.clone(), token),
        ));
        let app = swarmd_classic::api::app(
            Manager {
                pool: pool.clone(),
                options,
                scheduler,
                schedule_lock,
                hostname: node.hostname.clone(),
                role,
            },
            tracker.clone(),
            cancel.clone(),
        );
        // The leader serves the requests its followers forward on streams from them.
        let served = app.clone();
        let (t, c) = (tracker.clone(), cancel.clone());
        node.set_pool_api(Some(Arc::new(move |stream| {
            t.spawn(swarmd_engine_api::serve_stream(
                stream,
                served.clone(),
                c.clone(),
            ));
        })));
        Incarnation {
            app,
            pool,
            cancel,
            tracker,
        }
    }

    async fn stop(self) {
        self.cancel.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.pool.stopped()).await;
        self.tracker.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.tracker.wait()).await;
    }
}

/// Keeps `tx` at the store's pool members: recomputed when a batch of store events touches
/// a node (or resets the state), and every [`MEMBERS_RESYNC`] (a subscriber that lagged
/// behind missed some batches).
async fn follow_members(
    mgr: Arc<ManagerParts>,
    tx: watch::Sender<Vec<PoolMember>>,
    cancel: CancellationToken,
) {
    use tokio::sync::broadcast::error::RecvError;
    let mut events = mgr.store.memory().watch();
    loop {
        let members = mgr.store.view(|t| members_of(t.nodes.values()));
        tx.send_if_modified(|m| {
            let changed = *m != members;
            *m = members;
            changed
        });
        let resync = tokio::time::sleep(MEMBERS_RESYNC);
        tokio::pin!(resync);
        loop {
            tokio::select! {
                r = events.recv() => match r {
                    Ok(batch) if !touches_nodes(&batch) => continue,
                    Ok(_) | Err(RecvError::Lagged(_)) => break,
                    // The store is gone with the membership: its end cancels us soon.
                    Err(RecvError::Closed) => (&mut resync).await,
                },
                _ = &mut resync => break,
                _ = cancel.cancelled() => return,
            }
            break;
        }
    }
}

fn touches_nodes(batch: &EventBatch) -> bool {
    match batch {
        EventBatch::Commit { events, .. } => {
            events.iter().any(|e| matches!(e.object, Object::Node(_)))
        }
        EventBatch::Reset { .. } => true,
    }
}

/// Primary while this manager is the Raft leader; otherwise a replica forwarding to the
/// leader's pool.
async fn follow_leader(
    mgr: Arc<ManagerParts>,
    tx: watch::Sender<ManagerRole>,
    cancel: CancellationToken,
) {
    let mut leader = mgr.raft.leader_watch();
    loop {
        let new = if *leader.borrow_and_update() {
            ManagerRole::Primary
        } else {
            ManagerRole::Replica {
                primary: LEADER_POOL.to_owned(),
            }
        };
        role::set(&tx, "this manager", new);
        tokio::select! {
            r = leader.changed() => if r.is_err() { return },
            _ = cancel.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn node(id: &str, executor: &str, state: NodeState, avail: NodeSpecAvailabilityEnum) -> Node {
        let mut n = Node {
            id: id.into(),
            ..Default::default()
        };
        n.description.executor = executor.into();
        n.description.hostname = format!("host-{id}");
        n.status.state = state;
        n.status.addr = "10.0.0.7".into();
        n.spec.availability = Some(avail);
        n.spec.labels = Some(HashMap::from([("zone".to_string(), "b".to_string())]));
        n
    }

    /// Nodes with an engine are members, under their hostname, with their labels and
    /// address; only a Ready, Active node takes new containers.
    #[test]
    fn members_are_the_nodes_with_an_engine() {
        use NodeSpecAvailabilityEnum as A;
        let nodes = [
            node("a", "docker", NodeState::Ready, A::ACTIVE),
            node("p", "process", NodeState::Ready, A::ACTIVE),
            node("d", "docker", NodeState::Ready, A::DRAIN),
            node("x", "docker", NodeState::Down, A::ACTIVE),
        ];
        let members = members_of(&nodes);
        let ids: Vec<String> = members.iter().map(|m| m.upstream.to_string()).collect();
        assert_eq!(ids, ["node://a", "node://d", "node://x"]);
        let a = &members[0];
        assert_eq!(a.name.as_deref(), Some("host-a"));
        assert_eq!(a.ip, "10.0.0.7");
        assert_eq!(a.labels.get("zone").map(String::as_str), Some("b"));
        let accepts: Vec<bool> = members.iter().map(|m| m.accepts_new).collect();
        assert_eq!(accepts, [true, false, false]);
    }
}
