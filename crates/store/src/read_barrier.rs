//! Linearizable reads: a barrier a reader passes before it reads the local replica.
//!
//! Every manager answers reads from its own replica, which can be behind the leader (a
//! follower that has not applied the last entries yet, or one cut off from the others). A
//! [`ReadBarrier`] returns once the replica holds everything committed before the call
//! began (Raft's read-index: the leader confirms with a quorum that it still leads and
//! names its commit index; the reader waits until its replica has applied that far), or
//! fails when that cannot be confirmed, so a read after it is never stale.
//!
//! [`Coalesced`] lets concurrent readers share one round: a reader joins the first round
//! that *starts* after it arrived (a round already under way may have fixed its index
//! before the reader's write-before-read was committed), so N concurrent reads cost at most
//! two rounds, not N.

use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::ProposeError;

/// See the module doc.
#[async_trait::async_trait]
pub trait ReadBarrier: Send + Sync + 'static {
    /// Returns the index the read is linearized at, once the local replica has applied it.
    async fn read_index(&self) -> Result<u64, ProposeError>;
}

/// Rounds started, and whether one is under way.
#[derive(Default)]
struct Rounds {
    started: u64,
    running: bool,
}

/// A [`ReadBarrier`] whose concurrent callers share rounds of the inner barrier (see the
/// module doc). A round runs in its own task, so a caller that gives up does not leave the
/// others waiting on a round nobody drives.
pub struct Coalesced {
    inner: Arc<dyn ReadBarrier>,
    rounds: Mutex<Rounds>,
    /// The last round finished, with its result.
    done: watch::Sender<(u64, Result<u64, ProposeError>)>,
}

impl Coalesced {
    pub fn new(inner: Arc<dyn ReadBarrier>) -> Arc<Coalesced> {
        Arc::new(Coalesced {
            inner,
            rounds: Mutex::new(Rounds::default()),
            done: watch::Sender::new((0, Ok(0))),
        })
    }

    fn rounds(&self) -> std::sync::MutexGuard<'_, Rounds> {
        self.rounds.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Passes the barrier: joins the first round that starts after this call.
    pub async fn read_index(self: &Arc<Self>) -> Result<u64, ProposeError> {
        let mut done = self.done.subscribe();
        let need = self.rounds().started + 1;
        loop {
            {
                let (round, result) = &*done.borrow_and_update();
                if *round >= need {
                    return result.clone();
                }
            }
            let start = {
                let mut r = self.rounds();
                if !r.running && r.started < need {
                    r.started = need;
                    r.running = true;
                    true
                } else {
                    false
                }
            };
            if start {
                let this = Arc::clone(self);
                tokio::spawn(async move {
                    let result = this.inner.read_index().await;
                    this.rounds().running = false;
                    let _previous = this.done.send_replace((need, result));
                });
            }
            if done.changed().await.is_err() {
                return Err(ProposeError::Unavailable("shutting down".into()));
            }
        }
    }
}

#[async_trait::async_trait]
impl ReadBarrier for Arc<Coalesced> {
    async fn read_index(&self) -> Result<u64, ProposeError> {
        Coalesced::read_index(self).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use tokio::sync::Notify;

    use super::*;

    /// A barrier whose rounds end when the test says, each returning its round number.
    #[derive(Default)]
    struct Gate {
        calls: AtomicU64,
        release: Notify,
    }

    #[async_trait::async_trait]
    impl ReadBarrier for Gate {
        async fn read_index(&self) -> Result<u64, ProposeError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            self.release.notified().await;
            Ok(n * 100)
        }
    }

    /// Waits (on tokio's paused clock) until `f` holds; panics after 10 s of it.
    async fn until(mut f: impl FnMut() -> bool) {
        for _ in 0..10_000 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("condition not reached");
    }

    #[tokio::test(start_paused = true)]
    async fn readers_arriving_during_a_round_share_the_next_one() {
        let gate = Arc::new(Gate::default());
        let c = Coalesced::new(gate.clone());
        let first = tokio::spawn({
            let c = c.clone();
            async move { c.read_index().await }
        });
        until(|| gate.calls.load(Ordering::SeqCst) == 1).await;
        // Three readers arrive while round 1 is under way: none may use round 1.
        let late: Vec<_> = (0..3)
            .map(|_| {
                let c = c.clone();
                tokio::spawn(async move { c.read_index().await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(10)).await;
        gate.release.notify_one();
        assert_eq!(first.await.unwrap(), Ok(100));
        until(|| gate.calls.load(Ordering::SeqCst) == 2).await;
        gate.release.notify_one();
        for l in late {
            assert_eq!(
                l.await.unwrap(),
                Ok(200),
                "the round that started after them"
            );
        }
        assert_eq!(
            gate.calls.load(Ordering::SeqCst),
            2,
            "one round for the three"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_that_gives_up_does_not_stall_the_others() {
        let gate = Arc::new(Gate::default());
        let c = Coalesced::new(gate.clone());
        let quitter = tokio::spawn({
            let c = c.clone();
            async move { c.read_index().await }
        });
        until(|| gate.calls.load(Ordering::SeqCst) == 1).await;
        quitter.abort();
        gate.release.notify_one();
        // The round finished without its starter; the next reader gets a fresh round.
        let next = tokio::spawn({
            let c = c.clone();
            async move { c.read_index().await }
        });
        until(|| gate.calls.load(Ordering::SeqCst) == 2).await;
        gate.release.notify_one();
        assert_eq!(next.await.unwrap(), Ok(200));
    }

    #[tokio::test]
    async fn errors_reach_every_reader_of_the_round() {
        struct Down;
        #[async_trait::async_trait]
        impl ReadBarrier for Down {
            async fn read_index(&self) -> Result<u64, ProposeError> {
                Err(ProposeError::Unavailable("no quorum".into()))
            }
        }
        let c = Coalesced::new(Arc::new(Down));
        assert_eq!(
            c.read_index().await,
            Err(ProposeError::Unavailable("no quorum".into()))
        );
    }
}
