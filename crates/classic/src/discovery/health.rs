//! One engine's health as classic Swarm tracked it, as a pure state machine.
//!
//! Classic's rules (cluster/engine.go): a discovered engine starts `Pending` and is validated
//! (connected, ID checked) with a backoff of 2^failures s + 30 s, at least every 4 h. Once
//! validated it is `Healthy` with its failure count reset. Each connection error counts a
//! failure; a healthy engine that reaches `--engine-failure-retry` failures turns `Unhealthy`
//! (and leaves scheduling). Any successful call takes an unhealthy engine back at once and
//! resets the count. The refresh loop waits `min * (1 + backoff) + rand[0, max - min)`, where
//! backoff is the failures beyond the retry count, capped at 1000.

use std::time::Duration;

/// Classic's engine states; `Display` gives classic's `Status` text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineState {
    Pending,
    Healthy,
    Unhealthy,
    Disconnected,
}

impl std::fmt::Display for EngineState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Pending => "Pending",
            Self::Healthy => "Healthy",
            Self::Unhealthy => "Unhealthy",
            Self::Disconnected => "Disconnected",
        })
    }
}

/// A state change the caller must act on (log, emit `engine_reconnect`, reschedule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Pending engine validated: start its refresh loop.
    Validated,
    /// Failure retries exhausted: "Flagging engine as unhealthy. Connect failed N times".
    Unhealthy { failures: u32 },
    /// "Engine came back to life after N retries. Hooray!": refresh now, not after the wait.
    Reconnected { after_failures: u32 },
}

/// `--engine-refresh-min-interval` / `--engine-refresh-max-interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshIntervals {
    pub min: Duration,
    pub max: Duration,
}

/// The health of one engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineHealth {
    state: EngineState,
    failures: u32,
    failure_retry: u32,
}

/// Classic's floor on the pending-engine backoff.
const MIN_FAILURE_BACKOFF: Duration = Duration::from_secs(30);
/// Classic re-validates a pending engine at least this often whatever its failures.
const VALIDATION_LIMIT: Duration = Duration::from_secs(4 * 3600);
/// Classic's cap on the refresh backoff factor.
const MAX_BACKOFF_FACTOR: u32 = 1000;

impl EngineHealth {
    /// A newly discovered engine; `failure_retry` is `--engine-failure-retry` (validated > 0).
    pub fn new(failure_retry: u32) -> Self {
        Self {
            state: EngineState::Pending,
            failures: 0,
            failure_retry: failure_retry.max(1),
        }
    }

    pub fn state(&self) -> EngineState {
        self.state
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Only healthy engines take containers.
    pub fn is_healthy(&self) -> bool {
        self.state == EngineState::Healthy
    }

    /// Whether a pending engine is due for validation, `since_update` after its last attempt.
    pub fn time_to_validate(&self, since_update: Duration) -> bool {
        if self.state != EngineState::Pending {
            return false;
        }
        let backoff = Duration::from_secs(1u64.checked_shl(self.failures).unwrap_or(u64::MAX))
            .saturating_add(MIN_FAILURE_BACKOFF);
        since_update > VALIDATION_LIMIT || since_update > backoff
    }

    /// Validation succeeded: pending becomes healthy, failures forgotten.
    pub fn validation_complete(&mut self) -> Option<Transition> {
        if self.state != EngineState::Pending {
            return None;
        }
        self.state = EngineState::Healthy;
        self.failures = 0;
        Some(Transition::Validated)
    }

    /// A call to the engine succeeded.
    pub fn on_success(&mut self) -> Option<Transition> {
        let after_failures = std::mem::take(&mut self.failures);
        if self.state == EngineState::Unhealthy {
            self.state = EngineState::Healthy;
            return Some(Transition::Reconnected { after_failures });
        }
        None
    }

    /// A call failed with a connection error (other errors say nothing about health).
    pub fn on_connection_error(&mut self) -> Option<Transition> {
        self.failures = self.failures.saturating_add(1);
        if self.state == EngineState::Healthy && self.failures >= self.failure_retry {
            self.state = EngineState::Unhealthy;
            return Some(Transition::Unhealthy {
                failures: self.failures,
            });
        }
        None
    }

    /// The engine's ID changed (re-installed engine): validate it again.
    pub fn revalidate(&mut self) {
        if self.state != EngineState::Disconnected {
            self.state = EngineState::Pending;
        }
    }

    /// Removed from discovery or a duplicate: stop monitoring. Final.
    pub fn disconnect(&mut self) {
        self.state = EngineState::Disconnected;
    }

    /// Classic's 0-100 health indicator: 100 after a success, lower with recent failures, 0
    /// when not healthy.
    pub fn health_indicator(&self) -> u32 {
        if self.state != EngineState::Healthy || self.failures >= self.failure_retry {
            return 0;
        }
        100 - self.failures * 100 / self.failure_retry
    }

    /// How long the refresh loop waits before the next refresh; `random` is any uniformly
    /// random number (the caller owns the RNG so this stays deterministic under test).
    pub fn refresh_wait(&self, intervals: RefreshIntervals, random: u64) -> Duration {
        let factor = self
            .failures
            .saturating_sub(self.failure_retry)
            .min(MAX_BACKOFF_FACTOR);
        let base = intervals.min.saturating_mul(1 + factor);
        let spread = intervals.max.saturating_sub(intervals.min).as_nanos();
        let jitter = match u64::try_from(spread) {
            Ok(0) => 0,
            Ok(spread) => random % spread,
            Err(_) => random,
        };
        base.saturating_add(Duration::from_nanos(jitter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy(retry: u32) -> EngineHealth {
        let mut h = EngineHealth::new(retry);
        assert_eq!(h.validation_complete(), Some(Transition::Validated));
        h
    }

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn starts_pending_then_validated() {
        let mut h = EngineHealth::new(3);
        assert_eq!(h.state(), EngineState::Pending);
        assert!(!h.is_healthy());
        h.on_connection_error();
        h.on_connection_error();
        assert_eq!(
            h.state(),
            EngineState::Pending,
            "pending failures never make it unhealthy"
        );
        assert_eq!(h.validation_complete(), Some(Transition::Validated));
        assert!(h.is_healthy());
        assert_eq!(h.failures(), 0);
        assert_eq!(h.validation_complete(), None);
    }

    #[test]
    fn unhealthy_after_failure_retry() {
        let mut h = healthy(3);
        assert_eq!(h.on_connection_error(), None);
        assert_eq!(h.on_connection_error(), None);
        assert!(h.is_healthy());
        assert_eq!(
            h.on_connection_error(),
            Some(Transition::Unhealthy { failures: 3 })
        );
        assert_eq!(h.state(), EngineState::Unhealthy);
        assert_eq!(h.on_connection_error(), None, "reported once");
    }

    #[test]
    fn success_resets_failures_of_healthy_engine() {
        let mut h = healthy(3);
        h.on_connection_error();
        h.on_connection_error();
        assert_eq!(h.on_success(), None);
        h.on_connection_error();
        h.on_connection_error();
        assert!(h.is_healthy());
    }

    #[test]
    fn returning_engine_taken_back() {
        let mut h = healthy(1);
        h.on_connection_error();
        h.on_connection_error();
        assert_eq!(
            h.on_success(),
            Some(Transition::Reconnected { after_failures: 2 })
        );
        assert!(h.is_healthy());
        assert_eq!(h.failures(), 0);
    }

    #[test]
    fn status_text() {
        let mut h = EngineHealth::new(3);
        assert_eq!(h.state().to_string(), "Pending");
        h.validation_complete();
        assert_eq!(h.state().to_string(), "Healthy");
        h.disconnect();
        assert_eq!(h.state().to_string(), "Disconnected");
        assert_eq!(EngineState::Unhealthy.to_string(), "Unhealthy");
    }

    #[test]
    fn revalidate_and_disconnect() {
        let mut h = healthy(3);
        h.revalidate();
        assert_eq!(h.state(), EngineState::Pending);
        h.disconnect();
        h.revalidate();
        assert_eq!(h.state(), EngineState::Disconnected);
        assert_eq!(h.on_success(), None);
        assert_eq!(h.state(), EngineState::Disconnected);
    }

    #[test]
    fn validation_backoff() {
        let mut h = EngineHealth::new(3);
        assert!(
            !h.time_to_validate(S(31)),
            "2^0 + 30 = 31 s, strictly more needed"
        );
        assert!(h.time_to_validate(S(32)));
        for _ in 0..3 {
            h.on_connection_error();
        }
        assert!(!h.time_to_validate(S(38)));
        assert!(h.time_to_validate(S(39)));
        for _ in 0..60 {
            h.on_connection_error();
        }
        assert!(!h.time_to_validate(S(4 * 3600)));
        assert!(
            h.time_to_validate(S(4 * 3600 + 1)),
            "validated at least every 4 h"
        );
        h.validation_complete();
        assert!(
            !h.time_to_validate(S(1_000_000)),
            "only pending engines validate"
        );
    }

    #[test]
    fn health_indicator() {
        let mut h = EngineHealth::new(4);
        assert_eq!(h.health_indicator(), 0);
        h.validation_complete();
        assert_eq!(h.health_indicator(), 100);
        h.on_connection_error();
        assert_eq!(h.health_indicator(), 75);
        h.on_connection_error();
        h.on_connection_error();
        h.on_connection_error();
        assert_eq!(h.health_indicator(), 0);
    }

    #[test]
    fn refresh_wait_between_min_and_max() {
        let iv = RefreshIntervals {
            min: S(30),
            max: S(60),
        };
        let h = healthy(3);
        assert_eq!(h.refresh_wait(iv, 0), S(30));
        assert_eq!(
            h.refresh_wait(iv, S(30).as_nanos() as u64 - 1),
            S(60) - Duration::from_nanos(1)
        );
        assert_eq!(
            h.refresh_wait(iv, S(30).as_nanos() as u64),
            S(30),
            "wraps, never reaches max"
        );
        let fixed = RefreshIntervals {
            min: S(30),
            max: S(30),
        };
        assert_eq!(h.refresh_wait(fixed, 12345), S(30));
    }

    #[test]
    fn refresh_wait_backs_off_beyond_retries() {
        let iv = RefreshIntervals {
            min: S(10),
            max: S(10),
        };
        let mut h = healthy(2);
        h.on_connection_error();
        h.on_connection_error();
        assert_eq!(
            h.refresh_wait(iv, 0),
            S(10),
            "no backoff at the retry count"
        );
        h.on_connection_error();
        assert_eq!(h.refresh_wait(iv, 0), S(20));
        for _ in 0..5000 {
            h.on_connection_error();
        }
        assert_eq!(h.refresh_wait(iv, 0), S(10 * 1001), "factor capped at 1000");
    }
}
