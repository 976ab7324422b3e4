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
pub mod tunnels;

use std::sync::Arc;

use swarmd_store::Store;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use control::{Control, ControlError, InitParams};
pub use dispatcher::Dispatcher;
pub use membership::{RaftMember, RaftMembership};

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

/// Starts every leader-only reconciler in `set`, each in its own [`reconcile::run`] loop.
fn spawn_reconcilers(
    set: &TaskTracker,
    store: &Store,
    raft: &Arc<dyn RaftMembership>,
    cancel: &CancellationToken,
) {
    let (s, c) = (store, cancel);
    for run in [
        reconcile::run(
            membership::Membership::new(raft.clone()),
            s.clone(),
            c.clone(),
        ),
        reconcile::run(ca_rotation::CompleteRotation, s.clone(), c.clone()),
        reconcile::run(orchestrator::Orchestrator::default(), s.clone(), c.clone()),
        reconcile::run(allocator::Allocator, s.clone(), c.clone()),
        reconcile::run(scheduler::Scheduler, s.clone(), c.clone()),
        reconcile::run(orchestrator::reaper::Reaper, s.clone(), c.clone()),
    ] {
        set.spawn(run);
    }
}
