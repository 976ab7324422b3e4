//! The election's supervised task: every TTL/3 (and on every engine state change) a
//! primary re-reads its locks and steps down without a majority; a replica reads the
//! locks, checks the holders are alive, follows the primary or runs for primary.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use swarmd_engine_api::proxy::EngineProxy;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::config::ReplicationConfig;
use super::decide::{LockRef, LockView, ReplicaStep, Standing, backoff, replica_step, standing};
use super::engines::LockClient;
use super::role;
use crate::discovery::{EngineAddr, EngineState};
use crate::pool::{Pool, PoolEvent};
use crate::view::ManagerRole;

/// What the election needs.
pub struct Replication {
    pub pool: Arc<Pool>,
    pub config: ReplicationConfig,
    /// Bound on each engine or manager call (never more than TTL/3).
    pub timeout: Duration,
}

/// Starts the election: the role starts as a replica without primary and changes as the
/// task learns. The task ends on `cancel`, after deleting its own locks (classic's
/// `Resign`), so a replica takes over without waiting a TTL.
pub fn start(
    r: Replication,
    cancel: CancellationToken,
) -> (watch::Receiver<ManagerRole>, JoinHandle<()>) {
    let (tx, rx) = watch::channel(role::unknown_primary());
    (rx, tokio::spawn(run(r, tx, cancel)))
}

enum Next {
    /// Look again after TTL/3 or at the next engine change.
    Tick,
    /// Lost a split round: wait this long, engine changes notwithstanding.
    Backoff(Duration),
}

struct Elector {
    pool: Arc<Pool>,
    me: String,
    ttl: Duration,
    client: LockClient,
    role: watch::Sender<ManagerRole>,
    /// When each lock holder last answered as primary (first sighting counts).
    alive: HashMap<String, Instant>,
    /// Since when no holder has had a majority.
    undecided_since: Option<Instant>,
}

async fn run(r: Replication, role: watch::Sender<ManagerRole>, cancel: CancellationToken) {
    let tick = r.config.ttl / 3;
    let mut changes: Option<broadcast::Receiver<PoolEvent>> = Some(r.pool.subscribe());
    let mut e = Elector {
        me: r.config.advertise.clone(),
        ttl: r.config.ttl,
        client: LockClient {
            // Not `cancel`: resigning on shutdown still needs working connections. With
            // `--tls`, engines and the other managers are dialled with the manager's
            // certificate, as classic's replica did.
            proxy: EngineProxy::new(TaskTracker::new(), CancellationToken::new())
                .with_tls(r.pool.engine_tls()),
            timeout: r.timeout.min(tick),
        },
        pool: r.pool,
        role,
        alive: HashMap::new(),
        undecided_since: None,
    };
    tracing::info!(advertise = %e.me, ttl = ?e.ttl, "manager replication enabled");
    loop {
        let next = e.tick().await;
        let pause = match next {
            Next::Tick => tick,
            Next::Backoff(d) => d,
        };
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(pause) => {}
            r = recv(&mut changes), if matches!(next, Next::Tick) && changes.is_some() => {
                if r.is_err() {
                    changes = None;
                }
            }
        }
    }
    e.resign().await;
}

/// The next engine change; `Err` once the pool is gone.
async fn recv(changes: &mut Option<broadcast::Receiver<PoolEvent>>) -> Result<(), ()> {
    match changes {
        Some(rx) => match rx.recv().await {
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => Ok(()),
            Err(broadcast::error::RecvError::Closed) => Err(()),
        },
        None => Err(()),
    }
}

impl Elector {
    fn healthy(&self) -> Vec<EngineAddr> {
        self.pool
            .engines()
            .into_iter()
            .filter(|e| e.state == EngineState::Healthy)
            .map(|e| e.addr)
            .collect()
    }

    async fn tick(&mut self) -> Next {
        let current = self.role.borrow().clone();
        match current {
            ManagerRole::Primary => self.primary_tick().await,
            ManagerRole::Replica { .. } => self.replica_tick().await,
        }
    }

    /// The primary keeps a lock on every healthy engine it can (an engine that joined or
    /// lost its lock to a prune gets one again) and steps down without a majority.
    async fn primary_tick(&mut self) -> Next {
        let engines = self.healthy();
        let mut view = self.client.read_all(&engines).await;
        let free = view.free();
        if !free.is_empty() {
            self.client.create_all(&free, &self.me).await;
            view = self.client.read_all(&engines).await;
        }
        self.sweep(&view).await;
        if let Standing::Lost { release, primary } = standing(&self.me, &view) {
            tracing::warn!(
                held = view.held_by(&self.me),
                healthy = view.healthy,
                "primary lock no longer held on a majority of the healthy engines: stepping down"
            );
            self.client.remove_all(&release).await;
            self.undecided_since = None;
            self.set(ManagerRole::Replica {
                primary: primary.unwrap_or_default(),
            });
        }
        Next::Tick
    }

    async fn replica_tick(&mut self) -> Next {
        let engines = self.healthy();
        let view = self.client.read_all(&engines).await;
        self.sweep(&view).await;
        let now = Instant::now();
        let dead = self.check_holders(view.holders(), now).await;
        if view.majority_holder().is_some() {
            self.undecided_since = None;
        }
        let undecided_for = now - *self.undecided_since.get_or_insert(now);
        match replica_step(&self.me, &view, &dead, undecided_for, self.ttl) {
            ReplicaStep::Follow(primary) => self.set(ManagerRole::Replica { primary }),
            ReplicaStep::Lead => self.set(ManagerRole::Primary),
            ReplicaStep::Wait => {}
            ReplicaStep::Elect { release } => return self.elect(&engines, &release).await,
        }
        Next::Tick
    }

    /// Asks every other holder whether it is primary; returns those silent for a TTL.
    async fn check_holders(&mut self, holders: BTreeSet<&str>, now: Instant) -> BTreeSet<String> {
        let others: Vec<String> = holders
            .into_iter()
            .filter(|h| *h != self.me)
            .map(str::to_owned)
            .collect();
        self.alive.retain(|h, _| others.contains(h));
        let client = &self.client;
        let answers = futures::future::join_all(others.iter().map(|h| client.is_primary(h))).await;
        let mut dead = BTreeSet::new();
        for (h, primary) in others.into_iter().zip(answers) {
            let seen = self.alive.entry(h.clone()).or_insert(now);
            if primary {
                *seen = now;
            } else if now.duration_since(*seen) >= self.ttl {
                tracing::warn!(primary = %h, ttl = ?self.ttl, "primary silent for a whole TTL");
                dead.insert(h);
            }
        }
        dead
    }

    /// One round: release `release`, lock every free engine, count.
    async fn elect(&mut self, engines: &[EngineAddr], release: &[LockRef]) -> Next {
        // Requests wait for the outcome instead of going to a dead primary.
        self.set(role::unknown_primary());
        self.client.remove_all(release).await;
        let view = self.client.read_all(engines).await;
        self.client.create_all(&view.free(), &self.me).await;
        let view = self.client.read_all(engines).await;
        match standing(&self.me, &view) {
            Standing::Primary => {
                self.undecided_since = None;
                self.alive.clear();
                self.set(ManagerRole::Primary);
                Next::Tick
            }
            Standing::Lost { release, primary } => {
                self.client.remove_all(&release).await;
                match primary {
                    Some(primary) => {
                        self.set(ManagerRole::Replica { primary });
                        Next::Tick
                    }
                    None => {
                        let wait = backoff(self.ttl, rand::rng().random::<f64>());
                        tracing::debug!(?wait, "no majority this round; trying again");
                        Next::Backoff(wait)
                    }
                }
            }
        }
    }

    /// Deletes this manager's strays (creates that lost a race on an engine).
    async fn sweep(&self, view: &LockView) {
        let strays = view.strays_of(&self.me);
        if !strays.is_empty() {
            tracing::debug!(count = strays.len(), "removing stray primary locks");
            self.client.remove_all(&strays).await;
        }
    }

    /// Deletes this manager's locks (on shutdown).
    async fn resign(&self) {
        let view = self.client.read_all(&self.healthy()).await;
        let mine = view.locks_of(&self.me);
        if !mine.is_empty() {
            tracing::info!(advertise = %self.me, "resigning the primary role");
            self.client.remove_all(&mine).await;
        }
    }

    fn set(&self, new: ManagerRole) {
        role::set(&self.role, &self.me, new);
    }
}
