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

mod members;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use swarmd_classic::api::Manager;
use swarmd_classic::discovery::Discovery;
use swarmd_classic::options::ManageOptions;
use swarmd_classic::pool::{Pool, PoolConfig};
use swarmd_classic::replication::role;
use swarmd_classic::reschedule::Watchdog;
use swarmd_classic::view::ManagerRole;
use swarmd_engine_api::dial::LEADER_POOL;
use swarmd_engine_api::{ApiApp, ApiError, Listener};
use swarmd_node::SwarmNode;
use swarmd_node::node::ManagerParts;
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
        tracker.spawn(members::follow(mgr.clone(), members_tx, cancel.clone()));
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
        tracker.spawn(swarmd_classic::reschedule::run_while_primary(
            watchdog,
            role.clone(),
            cancel.clone(),
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
