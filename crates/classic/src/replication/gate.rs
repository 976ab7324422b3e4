//! Work only the primary does (classic: the watchdog registered on election, removed on
//! loss): started when this manager becomes primary, cancelled when it stops being one.

use std::future::Future;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::view::ManagerRole;

/// Runs `start(token)` while `role` is primary: `token` is cancelled when the role is
/// lost (or on `cancel`), and the work is awaited before it may start again, so two runs
/// never overlap. Ends on `cancel`.
pub async fn while_primary<F, Fut>(
    mut role: watch::Receiver<ManagerRole>,
    cancel: CancellationToken,
    mut start: F,
) where
    F: FnMut(CancellationToken) -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        let primary = tokio::select! {
            _ = cancel.cancelled() => return,
            r = is(&mut role, true) => r,
        };
        if !primary {
            // The election ended: nothing will ever make this manager primary.
            return;
        }
        let token = cancel.child_token();
        let work = start(token.clone());
        tokio::pin!(work);
        tokio::select! {
            _ = &mut work => {}
            _ = is(&mut role, false) => {
                token.cancel();
                work.await;
            }
        }
        if cancel.is_cancelled() {
            return;
        }
    }
}

/// Waits until the role is (`primary`) or is not primary; `false` if the election ended.
async fn is(role: &mut watch::Receiver<ManagerRole>, primary: bool) -> bool {
    role.wait_for(|r| (*r == ManagerRole::Primary) == primary)
        .await
        .is_ok()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::replication::role::unknown_primary;

    /// Waits (bounded) until `f` holds.
    async fn until(what: &str, f: impl Fn() -> bool) {
        swarmd_testkit::wait_until_async(
            Duration::from_secs(5),
            Duration::from_millis(5),
            what,
            || {
                let held = f();
                async move { held }
            },
        )
        .await;
    }

    #[tokio::test]
    async fn the_work_runs_only_while_primary() {
        let (tx, rx) = watch::channel(unknown_primary());
        let cancel = CancellationToken::new();
        let running = Arc::new(AtomicUsize::new(0));
        let started = Arc::new(AtomicUsize::new(0));
        let (r, s) = (running.clone(), started.clone());
        let gate = tokio::spawn(while_primary(rx, cancel.clone(), move |token| {
            let (r, s) = (r.clone(), s.clone());
            async move {
                s.fetch_add(1, Ordering::SeqCst);
                r.fetch_add(1, Ordering::SeqCst);
                token.cancelled().await;
                r.fetch_sub(1, Ordering::SeqCst);
            }
        }));
        tokio::task::yield_now().await;
        assert_eq!(started.load(Ordering::SeqCst), 0, "started as a replica");
        tx.send_replace(ManagerRole::Primary);
        until("the work to start", || running.load(Ordering::SeqCst) == 1).await;
        tx.send_replace(ManagerRole::Replica {
            primary: "other:1".into(),
        });
        until("the work to stop", || running.load(Ordering::SeqCst) == 0).await;
        tx.send_replace(ManagerRole::Primary);
        until("the work to start again", || {
            started.load(Ordering::SeqCst) == 2
        })
        .await;
        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(5), gate)
            .await
            .expect("gate ends on cancel")
            .unwrap();
        assert_eq!(running.load(Ordering::SeqCst), 0);
    }
}
