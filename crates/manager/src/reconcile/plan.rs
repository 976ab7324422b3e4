//! The shape every leader reconciler has: a plan made from a read view of the store (and
//! the [`Scope`] its events touched), written by the one apply path [`pass`].
//!
//! A plan is the writes to make and when to run again. [`pass`] makes it inside the store's
//! optimistic write: when a concurrent writer changed something the plan read, the plan is
//! made again over the fresh view, a bounded number of times. A plan too large for one Raft
//! entry is split; an entry rejected then makes the reconciler run again at once.

use std::time::Duration;

use swarmd_store::{Event, ReadTx, Store, WriteTx};

use super::{ReconcileError, Scope, StepResult, Touch};

/// What one pass decided.
#[derive(Debug, Default)]
pub struct Plan<T = ()> {
    /// The store writes, committed together when they fit in one entry.
    pub writes: WriteTx,
    /// Run again after this long at the latest (restart delays, a capped pass).
    pub wake: Option<Duration>,
    /// Work outside the store, done once the writes committed ([`Reconciler::then`]).
    pub then: T,
}

impl<T: Default> Plan<T> {
    /// A plan writing nothing.
    pub fn idle() -> Self {
        Plan::default()
    }
}

/// A leader-only reconciler, driven by [`super::run`].
#[async_trait::async_trait]
pub trait Reconciler: Send + Sync + 'static {
    /// What [`Plan::then`] holds: `()` for a reconciler whose only effects are store writes.
    type Then: Default + Send;
    /// For logs.
    const NAME: &'static str;
    /// Passes start at least this far apart (see [`super::run_scoped`]); zero for none.
    const PACE: Duration = Duration::ZERO;

    /// What a store event asks of it.
    fn touch(e: &Event) -> Touch<'_>;

    /// The pass's decisions over `view`. Free of effects: it may run again on a newer view.
    fn plan(&self, view: &ReadTx<'_>, scope: &Scope) -> Result<Plan<Self::Then>, ReconcileError>;

    /// Carries out the plan's work outside the store, after its writes committed; returns
    /// when to run again at the latest.
    async fn then(&self, _then: Self::Then) -> StepResult {
        Ok(None)
    }
}

/// One pass of `r` over `scope`: plan, write (re-planning on a version conflict), then
/// [`Reconciler::then`]. Returns when to run again at the latest.
pub async fn pass<R: Reconciler + ?Sized>(r: &R, store: &Store, scope: &Scope) -> StepResult {
    let mut attempts = 0;
    let written = store
        .update_chunked(|view, tx| {
            attempts += 1;
            let Plan { writes, wake, then } = r.plan(view, scope)?;
            *tx = writes;
            Ok::<_, ReconcileError>((wake, then))
        })
        .await;
    let ((wake, then), rejected) = written.map_err(|e| match e {
        ReconcileError::Conflict { .. } => ReconcileError::Conflict { attempts },
        e => e,
    })?;
    let after = r.then(then).await?;
    // An entry of a split plan was rejected: the rest committed, decide again at once.
    let wake = if rejected > 0 {
        Some(Duration::ZERO)
    } else {
        wake
    };
    Ok(match (wake, after) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::testing::store_with;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    use swarmd_store::{
        Batch, LocalProposer, MAX_ACTIONS_PER_ENTRY, MemoryStore, ProposeError, Proposer,
    };
    use swarmd_types::{Kind, Object, Task};

    /// Raft as seen by a writer that races others: before each of the first `races`
    /// proposals another writer updates task "t", so a plan read from the view before it
    /// no longer applies.
    struct Racing {
        mem: Arc<MemoryStore>,
        local: LocalProposer,
        races: usize,
        proposed: AtomicUsize,
        /// The index (the task's version) of the other writer's last write.
        raced_at: AtomicU64,
    }

    #[async_trait::async_trait]
    impl Proposer for Racing {
        async fn propose(&self, batch: Batch) -> Result<u64, ProposeError> {
            if self.proposed.fetch_add(1, Ordering::SeqCst) < self.races {
                let mut t = self.mem.view(|v| v.tasks["t"].clone());
                t.status.message = "the other writer".into();
                let at = self.local.propose(racer(t)).await?;
                self.raced_at.store(at, Ordering::SeqCst);
            }
            self.local.propose(batch).await
        }
    }

    fn racer(t: Task) -> Batch {
        let mut tx = WriteTx::default();
        tx.update(t);
        Batch {
            actions: tx.into_actions(),
            proposed_at: String::new(),
        }
    }

    /// A store holding task "t", whose writers race `races` times.
    async fn store(races: usize) -> (Store, Arc<Racing>) {
        let seeded = store_with(vec![Object::from(Task {
            id: "t".into(),
            ..Default::default()
        })])
        .await;
        let mem = seeded.memory().clone();
        let racing = Arc::new(Racing {
            local: LocalProposer::new(mem.clone()),
            mem: mem.clone(),
            races,
            proposed: AtomicUsize::new(0),
            raced_at: AtomicU64::new(0),
        });
        (Store::new(mem, racing.clone()), racing)
    }

    /// A reconciler planning with a function; counts its plans.
    struct Planner<F> {
        plan: F,
        plans: AtomicUsize,
    }

    fn planner<F: Fn(&ReadTx<'_>) -> Plan + Send + Sync + 'static>(plan: F) -> Planner<F> {
        Planner {
            plan,
            plans: AtomicUsize::new(0),
        }
    }

    impl<F: Fn(&ReadTx<'_>) -> Plan + Send + Sync + 'static> Reconciler for Planner<F> {
        type Then = ();
        const NAME: &'static str = "test";
        fn touch(_: &Event) -> Touch<'_> {
            Touch::All
        }
        fn plan(&self, view: &ReadTx<'_>, _: &Scope) -> Result<Plan, ReconcileError> {
            self.plans.fetch_add(1, Ordering::SeqCst);
            Ok((self.plan)(view))
        }
    }

    /// Marks task "t" with the version it planned from.
    fn marker() -> Planner<impl Fn(&ReadTx<'_>) -> Plan + Send + Sync + 'static> {
        planner(|view| {
            let mut t = view.tasks["t"].clone();
            t.status.err = format!("planned at version {}", t.meta.version);
            let mut plan = Plan::idle();
            plan.writes.update(t);
            plan.wake = Some(Duration::from_secs(7));
            plan
        })
    }

    fn task(s: &Store) -> Task {
        match s.view(|v| v.get(Kind::Task, "t")) {
            Some(Object::Task(t)) => t,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_version_conflict_re_plans_over_the_fresh_view() {
        let (s, racing) = store(2).await;
        let m = marker();
        let wake = pass(&m, &s, &Scope::All).await.unwrap();
        assert_eq!(wake, Some(Duration::from_secs(7)));
        assert_eq!(
            m.plans.load(Ordering::SeqCst),
            3,
            "planned again after each race"
        );
        let t = task(&s);
        assert_eq!(
            t.status.message, "the other writer",
            "the racer's write stands"
        );
        // Planned from the racer's last write, committed over it.
        let raced_at = racing.raced_at.load(Ordering::SeqCst);
        assert_eq!(t.status.err, format!("planned at version {raced_at}"));
        assert!(t.meta.version > raced_at);
        assert_eq!(racing.proposed.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_plan_that_always_conflicts_gives_up_after_bounded_attempts() {
        let (s, racing) = store(usize::MAX).await;
        let m = marker();
        let err = pass(&m, &s, &Scope::All).await.unwrap_err();
        let plans = m.plans.load(Ordering::SeqCst);
        assert!(plans > 1, "retried");
        assert_eq!(err, ReconcileError::Conflict { attempts: plans });
        assert_eq!(racing.proposed.load(Ordering::SeqCst), plans);
        assert_eq!(task(&s).status.err, "", "none of its writes committed");
    }

    #[tokio::test]
    async fn store_errors_keep_their_kind() {
        struct Lost;
        #[async_trait::async_trait]
        impl Proposer for Lost {
            async fn propose(&self, _: Batch) -> Result<u64, ProposeError> {
                Err(ProposeError::NotLeader { leader_addr: None })
            }
        }
        let (s, _) = store(0).await;
        let s = Store::new(s.memory().clone(), Arc::new(Lost));
        let err = pass(&marker(), &s, &Scope::All).await.unwrap_err();
        assert_eq!(err, ReconcileError::NotLeader);
        assert_eq!(err.kind(), "not_leader");
    }

    /// A plan split over entries commits what the store accepts; an entry rejected makes
    /// the reconciler run again at once (its plan asked for no wake-up).
    #[tokio::test]
    async fn a_rejected_entry_of_a_split_plan_runs_the_pass_again_at_once() {
        // Creates "t" (which exists) and one entry's worth of new tasks, once.
        let creator = planner(|view| {
            let mut plan = Plan::idle();
            if view.tasks.len() > 1 {
                return plan;
            }
            for i in 0..=MAX_ACTIONS_PER_ENTRY {
                let id = if i == 0 {
                    "t".into()
                } else {
                    format!("new-{i}")
                };
                plan.writes.create(Task {
                    id,
                    ..Default::default()
                });
            }
            plan
        });
        let (s, _) = store(0).await;
        assert_eq!(
            pass(&creator, &s, &Scope::All).await.unwrap(),
            Some(Duration::ZERO)
        );
        // The first entry (with "t") was rejected whole; the second committed.
        assert_eq!(s.view(|v| v.tasks.len()), 2);
        assert_eq!(pass(&creator, &s, &Scope::All).await.unwrap(), None);
    }
}
