//! Bounded polling. Tests wait for conditions, never for fixed times: a cluster converges
//! asynchronously, and a sleep long enough for a loaded CI machine wastes time everywhere else.

use std::fmt::Display;
use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `condition` every `interval` until it returns true; panics with `description` if that
/// does not happen within `timeout`. The condition is always checked at least once, and once
/// more at (or after) the deadline.
#[track_caller]
pub fn wait_until(
    timeout: Duration,
    interval: Duration,
    description: &str,
    mut condition: impl FnMut() -> bool,
) {
    wait_for(timeout, interval, description, || {
        if condition() {
            Ok(())
        } else {
            Err("condition still false")
        }
    })
}

/// Polls `probe` every `interval` until it returns `Ok`, and returns that value. On timeout it
/// panics with `description` and the last `Err` observed, so a failure says what the test saw
/// instead of merely that it gave up (e.g. return `Err(output.stdout)` of a `docker service ps`).
#[track_caller]
pub fn wait_for<T, E: Display>(
    timeout: Duration,
    interval: Duration,
    description: &str,
    mut probe: impl FnMut() -> Result<T, E>,
) -> T {
    let start = Instant::now();
    let deadline = start + timeout;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let last = match probe() {
            Ok(value) => return value,
            Err(e) => e,
        };
        let now = Instant::now();
        if now >= deadline {
            panic!(
                "{}",
                timeout_message(description, timeout, start, attempts, &last)
            );
        }
        std::thread::sleep(interval.min(deadline - now));
    }
}

/// Async [`wait_until`]: the condition is a future (e.g. an API call through a client), and the
/// waiting yields to the runtime instead of blocking its thread.
pub async fn wait_until_async<F, Fut>(
    timeout: Duration,
    interval: Duration,
    description: &str,
    mut condition: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_for_async(timeout, interval, description, || {
        let fut = condition();
        async move {
            if fut.await {
                Ok(())
            } else {
                Err("condition still false")
            }
        }
    })
    .await
}

/// Async [`wait_for`].
pub async fn wait_for_async<T, E, F, Fut>(
    timeout: Duration,
    interval: Duration,
    description: &str,
    mut probe: F,
) -> T
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let start = Instant::now();
    let deadline = start + timeout;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let last = match probe().await {
            Ok(value) => return value,
            Err(e) => e,
        };
        let now = Instant::now();
        if now >= deadline {
            panic!(
                "{}",
                timeout_message(description, timeout, start, attempts, &last)
            );
        }
        tokio::time::sleep(interval.min(deadline - now)).await;
    }
}

fn timeout_message(
    description: &str,
    timeout: Duration,
    start: Instant,
    attempts: u32,
    last: &dyn Display,
) -> String {
    format!(
        "timed out after {:.1?} (limit {timeout:?}, {attempts} attempts) waiting for: {description}\n\
         last observed: {last}",
        start.elapsed()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::panic::{AssertUnwindSafe, catch_unwind};

    const MS: Duration = Duration::from_millis(1);

    fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
    }

    #[test]
    fn wait_until_returns_once_the_condition_holds() {
        let mut calls = 0;
        wait_until(Duration::from_secs(5), MS, "third call", || {
            calls += 1;
            calls == 3
        });
        assert_eq!(calls, 3);
    }

    #[test]
    #[should_panic(expected = "waiting for: the moon to turn blue")]
    fn wait_until_panics_with_the_description_on_timeout() {
        wait_until(50 * MS, 10 * MS, "the moon to turn blue", || false);
    }

    #[test]
    fn wait_until_times_out_close_to_the_limit() {
        let start = Instant::now();
        let result = catch_unwind(|| wait_until(100 * MS, 30 * MS, "never", || false));
        let elapsed = start.elapsed();
        assert!(result.is_err());
        assert!(elapsed >= 100 * MS, "gave up early: {elapsed:?}");
        assert!(elapsed < Duration::from_secs(2), "overshot: {elapsed:?}");
    }

    #[test]
    fn wait_for_returns_the_value_and_reports_the_last_observation() {
        let mut n = 0;
        let v = wait_for(Duration::from_secs(5), MS, "n reaches 2", || {
            n += 1;
            if n >= 2 {
                Ok(n * 10)
            } else {
                Err(format!("n is {n}"))
            }
        });
        assert_eq!(v, 20);

        let mut n = 0;
        let err = catch_unwind(AssertUnwindSafe(|| {
            wait_for::<(), _>(30 * MS, 5 * MS, "replicas to converge", || {
                n += 1;
                Err(format!("observed {n} replicas"))
            })
        }))
        .unwrap_err();
        let text = panic_text(err);
        assert!(text.contains("waiting for: replicas to converge"), "{text}");
        assert!(
            text.contains(&format!("last observed: observed {n} replicas")),
            "{text}"
        );
    }

    #[tokio::test]
    async fn async_variants_poll_and_time_out() {
        let mut calls = 0;
        wait_until_async(Duration::from_secs(5), MS, "second call", || {
            calls += 1;
            let done = calls == 2;
            async move { done }
        })
        .await;
        assert_eq!(calls, 2);

        let v = wait_for_async(Duration::from_secs(5), MS, "a value", || async {
            Ok::<_, String>(7)
        })
        .await;
        assert_eq!(v, 7);

        let handle = tokio::spawn(async {
            wait_for_async::<(), _, _, _>(30 * MS, 5 * MS, "an async thing", || async {
                Err("still nothing")
            })
            .await
        });
        let err = handle.await.unwrap_err();
        let text = panic_text(err.into_panic());
        assert!(text.contains("waiting for: an async thing"), "{text}");
        assert!(text.contains("last observed: still nothing"), "{text}");
    }
}
