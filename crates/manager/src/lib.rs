//! The manager: control operations, orchestrators, allocator, scheduler, dispatcher and
//! the task reaper, over the replicated store.
//!
//! Control and the dispatcher serve callers on every manager; the reconcilers
//! (orchestrator, allocator, scheduler, reaper) run only on the Raft leader, started and
//! stopped by [`Manager`] as leadership comes and goes.

pub mod allocator;
pub mod ca;
pub mod ca_rotation;
pub mod control;
pub mod dispatcher;
pub mod ipam;
pub mod membership;
pub mod orchestrator;
pub mod reconcile;
pub mod scheduler;

use std::collections::HashMap;
use std::sync::Arc;

use swarmd_store::{ProposeError, Store};
use swarmd_types::{Kind, Object, timefmt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use control::{Control, ControlError, InitParams};
pub use dispatcher::Dispatcher;
pub use membership::{RaftMember, RaftMembership};

use orchestrator::Change;

/// One manager's components.
pub struct Manager {
    store: Store,
    control: Control,
    dispatcher: Arc<Dispatcher>,
    raft: Arc<dyn RaftMembership>,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl Manager {
    pub fn new(store: Store, raft: Arc<dyn RaftMembership>) -> Self {
        let cancel = CancellationToken::new();
        Manager {
            control: Control::new(store.clone()),
            dispatcher: Dispatcher::new(store.clone(), raft.clone(), cancel.child_token()),
            store,
            raft,
            cancel,
            tracker: TaskTracker::new(),
        }
    }

    /// The Raft side of this manager (membership, leader).
    pub fn raft(&self) -> &Arc<dyn RaftMembership> {
        &self.raft
    }

    pub fn control(&self) -> &Control {
        &self.control
    }

    pub fn dispatcher(&self) -> Arc<Dispatcher> {
        self.dispatcher.clone()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Starts the dispatcher and runs the reconcilers whenever `leader` says this manager
    /// leads.
    pub fn start(&self, mut leader: watch::Receiver<bool>) {
        self.dispatcher.start();
        let store = self.store.clone();
        let cancel = self.cancel.clone();
        let dispatcher = self.dispatcher.clone();
        let raft = self.raft.clone();
        self.tracker.spawn(async move {
            loop {
                // Wait until we lead.
                while !*leader.borrow_and_update() {
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        r = leader.changed() => if r.is_err() { return },
                    }
                }
                tracing::info!("became leader: starting reconcilers");
                dispatcher.set_leading(true);
                let term = cancel.child_token();
                let set = TaskTracker::new();
                spawn_reconcilers(&set, &store, &raft, &term);
                set.close();
                // Run until leadership is lost, we stop, or a reconciler dies.
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = set.wait() => { tracing::error!("a reconciler stopped; restarting the set"); break }
                        r = leader.changed() => {
                            if r.is_err() || !*leader.borrow() { break }
                        }
                    }
                }
                dispatcher.set_leading(false);
                term.cancel();
                set.wait().await;
                tracing::info!("reconcilers stopped");
                if cancel.is_cancelled() {
                    return;
                }
            }
        });
    }

    /// Stops every component.
    pub async fn stop(&self) {
        self.cancel.cancel();
        self.dispatcher.stop().await;
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// Reaper passes start at least this far apart. Deleting history is not urgent, and a pass
/// over a service of 100,000 tasks takes a while: while `service create` commits its tasks in
/// 50 entries, a pass per entry was the top of the leader's profile.
const REAPER_PACE: std::time::Duration = std::time::Duration::from_secs(1);

fn spawn_reconcilers(
    set: &TaskTracker,
    store: &Store,
    raft: &Arc<dyn RaftMembership>,
    cancel: &CancellationToken,
) {
    let s = store.clone();
    let r = raft.clone();
    let adding = membership::InFlight::default();
    set.spawn(reconcile::run_loop(
        "membership",
        store.clone(),
        cancel.clone(),
        |e| matches!(e.object, Object::Node(_)),
        move || {
            let (s, r, adding) = (s.clone(), r.clone(), adding.clone());
            async move { membership::reconcile(&s, &r, &adding).await }
        },
    ));
    let s = store.clone();
    set.spawn(reconcile::run_loop(
        "root rotation",
        store.clone(),
        cancel.clone(),
        |e| matches!(e.object, Object::Node(_) | Object::Cluster(_)),
        move || {
            let s = s.clone();
            async move { ca_rotation::reconcile(&s).await }
        },
    ));
    let s = store.clone();
    set.spawn(reconcile::run_scoped(
        "orchestrator",
        store.clone(),
        cancel.clone(),
        std::time::Duration::ZERO,
        orchestrator::touch,
        move |scope| {
            let s = s.clone();
            async move { orchestrate(&s, scope).await.map_err(|e| e.to_string()) }
        },
    ));
    let s = store.clone();
    set.spawn(reconcile::run_loop(
        "allocator",
        store.clone(),
        cancel.clone(),
        |e| matches!(e.object, Object::Task(_) | Object::Service(_)),
        move || {
            let s = s.clone();
            async move {
                allocator::allocate(&s)
                    .await
                    .map(|p| p.again.then_some(std::time::Duration::ZERO))
                    .map_err(|e| e.to_string())
            }
        },
    ));
    let s = store.clone();
    set.spawn(reconcile::run_loop(
        "scheduler",
        store.clone(),
        cancel.clone(),
        |e| matches!(e.object, Object::Task(_) | Object::Node(_)),
        move || {
            let s = s.clone();
            async move {
                scheduler::run_scheduler(&s)
                    .await
                    .map(|p| p.again.then_some(std::time::Duration::ZERO))
                    .map_err(|e| e.to_string())
            }
        },
    ));
    let s = store.clone();
    set.spawn(reconcile::run_scoped(
        "task-reaper",
        store.clone(),
        cancel.clone(),
        REAPER_PACE,
        orchestrator::reaper::touch,
        move |scope| {
            let s = s.clone();
            async move {
                reap(&s, scope)
                    .await
                    .map(|(_, rejected)| (rejected > 0).then_some(std::time::Duration::ZERO))
                    .map_err(|e| e.to_string())
            }
        },
    ));
}

/// One orchestrator pass over the services in `scope`; returns when to wake for restart
/// delays.
///
/// A plan larger than one Raft entry (100,000 new tasks for a `service create`) is
/// committed in entries of [`swarmd_store::MAX_ACTIONS_PER_ENTRY`]; the service and task updates go
/// before creations, so a slot never holds a new task while the shutdown of its old one waits in
/// a later entry. If an entry is rejected the pass runs again at once.
async fn orchestrate(
    store: &Store,
    scope: reconcile::Scope,
) -> Result<Option<std::time::Duration>, ProposeError> {
    let (wake, rejected) = store
        .update_chunked(|t, tx| {
            let now = timefmt::parse(&timefmt::now()).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
            let plan = orchestrator::reconcile_scope(t, &scope, now);
            // One action per object per entry: the last decision wins. Indexed by position
            // (no copy of the changes: a pass can hold 100,000 of them).
            let n = plan.changes.len();
            let mut keep = vec![false; n];
            {
                let mut last: HashMap<(bool, &str), usize> = HashMap::with_capacity(n);
                for (i, c) in plan.changes.iter().enumerate() {
                    let key = match c {
                        Change::Create(t) | Change::Update(t) => (false, t.id.as_str()),
                        Change::UpdateService(s) => (true, s.id.as_str()),
                    };
                    last.insert(key, i);
                }
                for &i in last.values() {
                    keep[i] = true;
                }
            }
            let class = |c: &Change| match c {
                Change::UpdateService(_) => 0u8,
                Change::Update(_) => 1,
                Change::Create(_) => 2,
            };
            let mut order: Vec<(u8, usize)> = (0..n)
                .filter(|&i| keep[i])
                .map(|i| (class(&plan.changes[i]), i))
                .collect();
            order.sort_unstable();
            let mut changes: Vec<Option<Change>> = plan.changes.into_iter().map(Some).collect();
            // Per service: whether its new tasks wait for the allocator.
            let mut allocating: HashMap<String, bool> = HashMap::new();
            for (_, i) in order {
                match changes[i].take() {
                    Some(Change::Create(mut task)) => {
                        let needs = match allocating.get(&task.service_id) {
                            Some(n) => *n,
                            None => {
                                let n = allocator::needs_allocation(t, &task.service_id);
                                allocating.insert(task.service_id.clone(), n);
                                n
                            }
                        };
                        allocator::pending_at_creation(&mut task, needs);
                        task.log_driver = orchestrator::log_driver(&task, t);
                        tx.create(task)
                    }
                    Some(Change::Update(t)) => tx.update(t),
                    Some(Change::UpdateService(s)) => tx.update(s),
                    None => {}
                }
            }
            Ok::<_, ProposeError>(plan.wake_after)
        })
        .await?;
    Ok(if rejected > 0 {
        Some(std::time::Duration::ZERO)
    } else {
        wake
    })
}

/// One reaper pass over the tasks of the services in `scope`: how many tasks it removed, and
/// how many entries were rejected.
async fn reap(store: &Store, scope: reconcile::Scope) -> Result<(usize, usize), ProposeError> {
    store
        .update_chunked(|t, tx| {
            let ids = orchestrator::reaper::reap_scope(t, &scope);
            for id in &ids {
                tx.remove(Kind::Task, id.clone());
            }
            Ok(ids.len())
        })
        .await
}
