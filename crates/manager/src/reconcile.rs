//! The loop shared by every leader-only reconciler ([`run`]), and the shape they share
//! ([`Reconciler`]: a plan over a read view, written by one apply path, see [`plan`]).
//!
//! Level-triggered: events only mark the reconciler dirty; each pass reconciles the current
//! state of what was marked. It also runs on a periodic resync, when a step asks to be woken
//! (restart delays), and after a lagged watch. A failed pass is retried after a short backoff.
//!
//! A reconciler whose work splits by service (the orchestrator, the task reaper) can say per
//! event which service it touched ([`Touch`]); its passes then get a [`Scope`] naming only
//! those services, so an agent's status batch about 1,000 tasks of one service does not
//! make it walk the other services' tasks, and a status-only change can be skipped. Resyncs,
//! wake-ups, lagged watches, resets and failed passes always get [`Scope::All`].

mod error;
pub mod plan;
#[cfg(test)]
pub(crate) mod testing;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use swarmd_store::{Event, EventBatch, Store};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often a reconciler runs even without events.
pub const RESYNC_PERIOD: Duration = Duration::from_secs(30);
const RETRY_BACKOFF: Duration = Duration::from_millis(500);
/// A paced reconciler (see [`run_scoped`]) spends at most about 1 / (1 + this) of its
/// time in passes.
const PACE_FACTOR: u32 = 4;
/// Passes taking this long are logged (with their duration) at info level.
const SLOW_PASS: Duration = Duration::from_millis(500);

pub use error::ReconcileError;
pub use plan::{Plan, Reconciler, pass};

/// Result of one pass: when to run again at the latest, or an error to retry on.
pub type StepResult = Result<Option<Duration>, ReconcileError>;

/// What one store event asks of a scoped reconciler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Touch<'a> {
    /// Nothing this reconciler reads changed.
    None,
    /// A task of this service advanced its observed state without changing what the
    /// reconciler decides from in the usual case (e.g. ASSIGNED to RUNNING, desired
    /// RUNNING); the pass decides from the service whether that matters (an update in
    /// progress waits for it).
    Progress(&'a str),
    /// Something of this service that the reconciler decides from changed.
    Service(&'a str),
    /// Anything may have changed (a node or the cluster): reconcile everything.
    All,
}

impl Touch<'_> {
    /// For a reconciler whose passes always look at everything: [`Touch::All`] when the
    /// event is `relevant`.
    pub fn all_if(relevant: bool) -> Self {
        if relevant { Touch::All } else { Touch::None }
    }
}

/// How much of a service a scoped pass must look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Depth {
    /// Only [`Touch::Progress`] events: see [`Touch::Progress`].
    Progress,
    /// Reconcile the service.
    Full,
}

/// What a pass reconciles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    /// These services (by ID; a service that no longer exists stands for its orphaned tasks).
    Services(BTreeMap<String, Depth>),
}

impl Scope {
    /// Adds an event's touch to the scope gathered so far (`None`: nothing gathered yet).
    pub fn add(scope: &mut Option<Scope>, touch: Touch<'_>) {
        let (id, depth) = match touch {
            Touch::None => return,
            Touch::All => {
                *scope = Some(Scope::All);
                return;
            }
            Touch::Progress(id) => (id, Depth::Progress),
            Touch::Service(id) => (id, Depth::Full),
        };
        match scope.get_or_insert_with(|| Scope::Services(BTreeMap::new())) {
            Scope::All => {}
            Scope::Services(m) => match m.get_mut(id) {
                Some(d) => *d = (*d).max(depth),
                None => {
                    m.insert(id.to_string(), depth);
                }
            },
        }
    }
}

/// Runs `r` until `cancel`: a [`pass`] whenever an event touches what it reads, when it
/// asked to be woken, and on resync (see [`run_scoped`]).
pub fn run<R: Reconciler>(r: R, store: Store, cancel: CancellationToken) -> BoxFuture<'static, ()> {
    let r = Arc::new(r);
    let s = store.clone();
    run_scoped(R::NAME, store, cancel, R::PACE, R::touch, move |scope| {
        let (r, s) = (r.clone(), s.clone());
        async move { pass(&*r, &s, &scope).await }
    })
    .boxed()
}

/// Runs `step` with the scope the events since the last pass touched, with [`Scope::All`]
/// on the first pass, on resync, on a wake-up it asked for, after a lagged watch or a reset,
/// and to retry a failed pass.
///
/// A scoped pass's wake-up request only brings the next wake-up forward: the earlier wake-ups
/// of services it did not look at still stand.
///
/// A pass starts at least `pace` (and [`PACE_FACTOR`] times the previous pass's duration)
/// after the previous one ended (events meanwhile are gathered into the next pass), for a
/// reconciler whose work is not urgent and whose pass is costly.
pub async fn run_scoped<C, F, Fut>(
    name: &'static str,
    store: Store,
    cancel: CancellationToken,
    pace: Duration,
    classify: C,
    mut step: F,
) where
    C: Fn(&Event) -> Touch<'_>,
    F: FnMut(Scope) -> Fut,
    Fut: Future<Output = StepResult>,
{
    let mut rx = store.memory().watch();
    let mut dirty = Some(Scope::All);
    let mut wake_at = Instant::now() + RESYNC_PERIOD;
    let gather = |dirty: &mut Option<Scope>, batch: &EventBatch| match batch {
        EventBatch::Reset { .. } => *dirty = Some(Scope::All),
        EventBatch::Commit { events, .. } => {
            for e in events {
                if matches!(dirty, Some(Scope::All)) {
                    return;
                }
                Scope::add(dirty, classify(e));
            }
        }
    };
    let mut not_before = Instant::now();
    loop {
        if dirty.is_some() && Instant::now() >= not_before {
            let scope = dirty.take().unwrap_or(Scope::All);
            let full = scope == Scope::All;
            let started = Instant::now();
            let result = step(scope).await;
            let took = started.elapsed();
            // A paced reconciler rests at least `pace`, and PACE_FACTOR times its last pass
            // when that is longer: a pass over a million tasks takes most of a second, and
            // run back to back they held a core through a large `service create`.
            if !pace.is_zero() {
                not_before = Instant::now() + pace.max(took * PACE_FACTOR);
            }
            if took >= SLOW_PASS {
                tracing::info!(
                    reconciler = name,
                    full,
                    ms = took.as_millis() as u64,
                    "slow reconcile pass"
                );
            }
            let next = match result {
                Ok(w) => w.unwrap_or(RESYNC_PERIOD).min(RESYNC_PERIOD),
                Err(e) => {
                    tracing::warn!(
                        reconciler = name,
                        kind = e.kind(),
                        error = %e,
                        retry_ms = RETRY_BACKOFF.as_millis() as u64,
                        "reconcile pass failed; retrying"
                    );
                    RETRY_BACKOFF
                }
            };
            let at = Instant::now() + next;
            wake_at = if full { at } else { wake_at.min(at) };
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep_until(not_before), if dirty.is_some() => {}
            _ = tokio::time::sleep_until(wake_at) => {
                dirty = Some(Scope::All);
                // The pass (perhaps held back by `pace`) sets the next wake-up.
                wake_at = Instant::now() + RESYNC_PERIOD;
            }
            ev = rx.recv() => {
                match ev {
                    Ok(batch) => gather(&mut dirty, &batch),
                    Err(RecvError::Lagged(_)) => dirty = Some(Scope::All),
                    Err(RecvError::Closed) => return,
                }
                // Coalesce whatever else is already queued.
                loop {
                    match rx.try_recv() {
                        Ok(batch) => gather(&mut dirty, &batch),
                        Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => {
                            dirty = Some(Scope::All)
                        }
                        Err(_) => break,
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmd_store::ProposeError;
    use swarmd_types::Task;

    /// The first pass sees everything; a commit then yields a pass scoped to the service it
    /// touched, and one the classifier ignores yields none.
    #[tokio::test(start_paused = true)]
    async fn passes_get_the_scope_their_events_touched() {
        let store = testing::store_with(vec![]).await;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        fn classify(e: &Event) -> Touch<'_> {
            match &e.object {
                swarmd_types::Object::Task(t) if t.service_id != "ignored" => {
                    Touch::Service(&t.service_id)
                }
                _ => Touch::None,
            }
        }
        let run = tokio::spawn(run_scoped(
            "test",
            store.clone(),
            cancel.clone(),
            Duration::ZERO,
            classify,
            move |scope| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(scope);
                    Ok(None)
                }
            },
        ));
        assert_eq!(rx.recv().await, Some(Scope::All));
        let create = |id: &str, service: &str| {
            let t = Task {
                id: id.into(),
                service_id: service.into(),
                ..Default::default()
            };
            let store = store.clone();
            async move {
                store
                    .update(|_, tx| {
                        tx.create(t.clone());
                        Ok::<_, ProposeError>(())
                    })
                    .await
                    .unwrap()
            }
        };
        create("t0", "ignored").await;
        create("t1", "s").await;
        assert_eq!(
            rx.recv().await,
            Some(Scope::Services(BTreeMap::from([(
                "s".to_string(),
                Depth::Full
            )])))
        );
        cancel.cancel();
        run.await.unwrap();
        assert!(rx.try_recv().is_err(), "no pass for the ignored commit");
    }

    #[test]
    fn scopes_merge_to_the_deepest_touch_and_all_wins() {
        let mut s = None;
        Scope::add(&mut s, Touch::None);
        assert_eq!(s, None, "an irrelevant event marks nothing");
        Scope::add(&mut s, Touch::Progress("a"));
        Scope::add(&mut s, Touch::Service("b"));
        Scope::add(&mut s, Touch::Progress("b"));
        Scope::add(&mut s, Touch::Service("a"));
        Scope::add(&mut s, Touch::Progress("c"));
        assert_eq!(
            s,
            Some(Scope::Services(BTreeMap::from([
                ("a".to_string(), Depth::Full),
                ("b".to_string(), Depth::Full),
                ("c".to_string(), Depth::Progress),
            ])))
        );
        Scope::add(&mut s, Touch::All);
        Scope::add(&mut s, Touch::Service("d"));
        assert_eq!(s, Some(Scope::All));
    }
}
