//! Health checks: the spec's `HealthConfig` parsed, and Docker's health state machine as a
//! pure function of probe results.
//!
//! The docker executor lets the engine run the probes (it merges the image's HEALTHCHECK)
//! and only reads `State.Health.Status`; the process executor runs the probe command on
//! the host and feeds the results to [`Monitor`]. Either way a task with a check reports
//! RUNNING only once healthy, and fails when it turns unhealthy (swarmkit's controller).

use std::time::Duration;

use bollard_stubs::models::HealthConfig;

/// Docker's defaults (daemon/health.go).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_RETRIES: u32 = 3;

/// How a probe runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// `["CMD", prog, args...]`: exec'd directly.
    Exec(Vec<String>),
    /// `["CMD-SHELL", cmd]`: run with `sh -c`.
    Shell(String),
}

/// A parsed health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub probe: Probe,
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
    pub start_period: Duration,
}

fn dur(v: Option<i64>, default: Duration) -> Duration {
    match v {
        Some(n) if n > 0 => Duration::from_nanos(n as u64),
        _ => default,
    }
}

impl Check {
    /// The check a spec asks for. `None` when there is none, it is disabled (`NONE`,
    /// `--no-healthcheck`) or it only inherits the image's test (the engine handles that).
    pub fn from_spec(h: Option<&HealthConfig>) -> Option<Check> {
        let h = h?;
        let test = h.test.as_deref().unwrap_or_default();
        let probe = match test.split_first() {
            Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => Probe::Exec(rest.to_vec()),
            Some((kind, rest)) if kind == "CMD-SHELL" && !rest.is_empty() => {
                Probe::Shell(rest.join(" "))
            }
            _ => return None,
        };
        Some(Check {
            probe,
            interval: dur(h.interval, DEFAULT_INTERVAL),
            timeout: dur(h.timeout, DEFAULT_TIMEOUT),
            retries: match h.retries {
                Some(n) if n > 0 => n as u32,
                _ => DEFAULT_RETRIES,
            },
            start_period: dur(h.start_period, Duration::ZERO),
        })
    }

    /// The argv that runs the probe.
    pub fn argv(&self) -> Vec<String> {
        match &self.probe {
            Probe::Exec(v) => v.clone(),
            Probe::Shell(c) => vec!["/bin/sh".into(), "-c".into(), c.clone()],
        }
    }
}

/// Whether a spec disables health checks altogether (`--no-healthcheck`: `["NONE"]`).
pub fn disabled(h: Option<&HealthConfig>) -> bool {
    h.and_then(|h| h.test.as_deref())
        .and_then(|t| t.first())
        .is_some_and(|k| k == "NONE")
}

/// A container's health, as Docker names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Starting,
    Healthy,
    Unhealthy,
}

impl Health {
    /// Parses `State.Health.Status` of a container inspect.
    pub fn parse(s: &str) -> Option<Health> {
        match s {
            "starting" => Some(Health::Starting),
            "healthy" => Some(Health::Healthy),
            "unhealthy" => Some(Health::Unhealthy),
            _ => None,
        }
    }
}

/// Docker's health state machine: a success makes the task healthy and resets the failing
/// streak; `retries` failures in a row make it unhealthy, except that failures during the
/// start period do not count while the task has not been healthy yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Monitor {
    pub status: Health,
    pub failing_streak: u32,
}

impl Default for Monitor {
    fn default() -> Self {
        Monitor {
            status: Health::Starting,
            failing_streak: 0,
        }
    }
}

impl Monitor {
    /// Folds one probe result in; `since_start` is how long the task has been running.
    pub fn observe(&mut self, check: &Check, ok: bool, since_start: Duration) -> Health {
        if ok {
            self.failing_streak = 0;
            self.status = Health::Healthy;
        } else if self.status == Health::Starting && since_start < check.start_period {
            // Grace: the task is still starting up.
        } else {
            self.failing_streak += 1;
            if self.failing_streak >= check.retries {
                self.status = Health::Unhealthy;
            }
        }
        self.status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(test: &[&str]) -> HealthConfig {
        HealthConfig {
            test: Some(test.iter().map(|s| s.to_string()).collect()),
            interval: Some(1_000_000_000),
            retries: Some(2),
            start_period: Some(10_000_000_000),
            ..Default::default()
        }
    }

    #[test]
    fn parses_specs() {
        let c = Check::from_spec(Some(&cfg(&["CMD-SHELL", "test -f /ok"]))).unwrap();
        assert_eq!(c.argv(), vec!["/bin/sh", "-c", "test -f /ok"]);
        assert_eq!(c.interval, Duration::from_secs(1));
        assert_eq!(c.timeout, DEFAULT_TIMEOUT);
        assert_eq!(c.retries, 2);
        let c = Check::from_spec(Some(&cfg(&["CMD", "true", "x"]))).unwrap();
        assert_eq!(c.argv(), vec!["true", "x"]);
        assert_eq!(Check::from_spec(Some(&cfg(&["NONE"]))), None);
        assert_eq!(Check::from_spec(Some(&cfg(&[]))), None);
        assert_eq!(Check::from_spec(None), None);
        assert!(disabled(Some(&cfg(&["NONE"]))));
        assert!(!disabled(Some(&cfg(&["CMD", "true"]))));
        let d = Check::from_spec(Some(&HealthConfig {
            test: Some(vec!["CMD".into(), "true".into()]),
            ..Default::default()
        }))
        .unwrap();
        assert_eq!(
            (d.interval, d.retries, d.start_period),
            (DEFAULT_INTERVAL, DEFAULT_RETRIES, Duration::ZERO)
        );
    }

    #[test]
    fn retries_failures_in_a_row_make_it_unhealthy() {
        let c = Check::from_spec(Some(&cfg(&["CMD", "x"]))).unwrap();
        let mut m = Monitor::default();
        let late = Duration::from_secs(60);
        assert_eq!(m.observe(&c, false, late), Health::Starting);
        assert_eq!(m.observe(&c, true, late), Health::Healthy);
        assert_eq!(m.failing_streak, 0);
        assert_eq!(m.observe(&c, false, late), Health::Healthy);
        assert_eq!(m.observe(&c, false, late), Health::Unhealthy);
        // A success heals.
        assert_eq!(m.observe(&c, true, late), Health::Healthy);
    }

    #[test]
    fn start_period_failures_do_not_count_until_healthy() {
        let c = Check::from_spec(Some(&cfg(&["CMD", "x"]))).unwrap();
        let mut m = Monitor::default();
        for s in 0..9 {
            assert_eq!(
                m.observe(&c, false, Duration::from_secs(s)),
                Health::Starting
            );
        }
        assert_eq!(m.failing_streak, 0);
        assert_eq!(
            m.observe(&c, false, Duration::from_secs(11)),
            Health::Starting
        );
        assert_eq!(
            m.observe(&c, false, Duration::from_secs(12)),
            Health::Unhealthy
        );

        // Once healthy, failures in the start period count.
        let mut m = Monitor::default();
        m.observe(&c, true, Duration::from_secs(1));
        m.observe(&c, false, Duration::from_secs(2));
        assert_eq!(
            m.observe(&c, false, Duration::from_secs(3)),
            Health::Unhealthy
        );
    }
}
