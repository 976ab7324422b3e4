//! The rolling-update planner: which out-of-date slots to replace now, and what the
//! service's `UpdateStatus` becomes.
//!
//! swarmkit's updater is a goroutine per update that remembers which tasks it made, when
//! each reached RUNNING and how many failed. Here the same decisions are a pure function of
//! the store, so the orchestrator stays level-triggered and survives leader changes:
//!
//! - the tasks of this update are the tasks made from the service's current `spec_version`
//!   (every redeploying update and every rollback bumps it);
//! - a worker is busy while its new task is not yet RUNNING, or has been RUNNING for less
//!   than `Delay` (swarmkit's worker sleeps `Delay` after each slot), so at most
//!   `Parallelism` slots are in flight (0 = all at once);
//! - the first task of this update in a slot that ends on its own (complete, failed,
//!   rejected) before it has run for `Monitor` is a failure (later ones are restarts); past `MaxFailureRatio` of the slots the `FailureAction`
//!   applies: pause, continue, or roll back (a rollback is never rolled back: it pauses);
//! - the update completes once no slot is out of date, nothing is in flight and the newest
//!   task has run for `Monitor`.
//!
//! The failure ratio's denominator is the slots the update reached plus those still out of
//! date, which is swarmkit's count of slots dirty when the update started.

use std::time::Duration;

use swarmd_types::models::{
    ServiceSpecRollbackConfigFailureActionEnum as RollbackAction,
    ServiceSpecRollbackConfigOrderEnum as RollbackOrder, ServiceSpecUpdateConfigFailureActionEnum,
    ServiceSpecUpdateConfigOrderEnum, ServiceUpdateStatus, ServiceUpdateStatusStateEnum as U,
    TaskState,
};
use swarmd_types::{Service, Task, timefmt};
use time::OffsetDateTime;

/// swarmkit's default monitor period for updates and rollbacks.
pub const DEFAULT_MONITOR: Duration = Duration::from_secs(5);

/// What to do when too many tasks of an update fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureAction {
    Pause,
    Continue,
    Rollback,
}

/// Whether the replacement starts before or after the old task stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    StopFirst,
    StartFirst,
}

/// The effective update (or rollback) configuration, defaults filled as swarmkit's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// Slots replaced at once; 0 = all.
    pub parallelism: usize,
    pub delay: Duration,
    pub failure_action: FailureAction,
    pub monitor: Duration,
    pub max_failure_ratio: f64,
    pub order: Order,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            parallelism: 1,
            delay: Duration::ZERO,
            failure_action: FailureAction::Pause,
            monitor: DEFAULT_MONITOR,
            max_failure_ratio: 0.0,
            order: Order::StopFirst,
        }
    }
}

fn nanos(v: Option<i64>, default: Duration) -> Duration {
    v.map(|n| Duration::from_nanos(n.max(0) as u64))
        .unwrap_or(default)
}

/// The daemon passes `Monitor` to swarmkit only when non-zero, so 0 means the default.
fn monitor(v: Option<i64>) -> Duration {
    match v {
        Some(n) if n > 0 => Duration::from_nanos(n as u64),
        _ => DEFAULT_MONITOR,
    }
}

impl Policy {
    /// The policy in force: `RollbackConfig` while a rollback runs, else `UpdateConfig`.
    pub fn of(service: &Service) -> Self {
        let d = Policy::default();
        if rolling_back(service) {
            let Some(c) = service.spec.rollback_config.as_ref() else {
                return d;
            };
            Policy {
                // A config without Parallelism is Go's zero: all at once.
                parallelism: c.parallelism.unwrap_or(0).max(0) as usize,
                delay: nanos(c.delay, d.delay),
                failure_action: match c.failure_action {
                    Some(RollbackAction::CONTINUE) => FailureAction::Continue,
                    _ => FailureAction::Pause,
                },
                monitor: monitor(c.monitor),
                max_failure_ratio: c.max_failure_ratio.unwrap_or(0.0),
                order: match c.order {
                    Some(RollbackOrder::START_FIRST) => Order::StartFirst,
                    _ => Order::StopFirst,
                },
            }
        } else {
            let Some(c) = service.spec.update_config.as_ref() else {
                return d;
            };
            use ServiceSpecUpdateConfigFailureActionEnum as A;
            Policy {
                parallelism: c.parallelism.unwrap_or(0).max(0) as usize,
                delay: nanos(c.delay, d.delay),
                failure_action: match c.failure_action {
                    Some(A::CONTINUE) => FailureAction::Continue,
                    Some(A::ROLLBACK) => FailureAction::Rollback,
                    _ => FailureAction::Pause,
                },
                monitor: monitor(c.monitor),
                max_failure_ratio: c.max_failure_ratio.unwrap_or(0.0),
                order: match c.order {
                    Some(ServiceSpecUpdateConfigOrderEnum::START_FIRST) => Order::StartFirst,
                    _ => Order::StopFirst,
                },
            }
        }
    }
}

fn state_of(service: &Service) -> Option<U> {
    service.update_status.as_ref().and_then(|s| s.state)
}

/// Whether a rollback (manual or automatic) is what is running or paused.
pub fn rolling_back(service: &Service) -> bool {
    matches!(
        state_of(service),
        Some(U::ROLLBACK_STARTED | U::ROLLBACK_PAUSED)
    )
}

/// Whether a task was made from something other than the service's current spec, so an
/// update must replace it. Compares content, not only versions: after a rollback, tasks that
/// still run the restored spec are up to date.
pub fn is_dirty(service: &Service, t: &Task) -> bool {
    if t.spec_version == service.spec_version {
        return false;
    }
    let template = service.spec.task_template.clone().unwrap_or_default();
    t.spec != template || t.endpoint_ports != service.endpoint.ports
}

/// When the task reached RUNNING, as its agent reported.
fn started_at(t: &Task) -> Option<OffsetDateTime> {
    timefmt::parse(&t.status.started_at)
}

fn elapsed(now: OffsetDateTime, then: OffsetDateTime) -> Duration {
    (now - then).try_into().unwrap_or(Duration::ZERO)
}

/// A task that stopped without being asked to.
fn ended_on_its_own(t: &Task) -> bool {
    matches!(
        t.status.state,
        TaskState::COMPLETE | TaskState::FAILED | TaskState::REJECTED
    )
}

/// The planner's decision for one service.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    /// The new `UpdateStatus`, when it changes.
    pub status: Option<ServiceUpdateStatus>,
    /// Roll the spec back to `PreviousSpec` (automatic rollback).
    pub rollback: bool,
    /// How many of the out-of-date slots (in the order given) to replace now.
    pub replace: usize,
    /// Run again after this long (delay or monitor period running out).
    pub wake_after: Option<Duration>,
}

fn status(
    service: &Service,
    state: U,
    message: impl Into<String>,
    now: OffsetDateTime,
) -> ServiceUpdateStatus {
    let prev = service.update_status.clone().unwrap_or_default();
    let done = matches!(state, U::COMPLETED | U::ROLLBACK_COMPLETED);
    ServiceUpdateStatus {
        state: Some(state),
        started_at: prev.started_at.or_else(|| Some(timefmt::format(now))),
        completed_at: done.then(|| timefmt::format(now)),
        message: Some(message.into()),
    }
}

/// Plans one pass of a service's update.
///
/// `tasks` are all the service's tasks; `dirty_slots` how many slots still run an
/// out-of-date task with nothing replacing it; `total_slots` how many slots the service has.
pub fn plan(
    service: &Service,
    tasks: &[&Task],
    dirty_slots: usize,
    total_slots: usize,
    now: OffsetDateTime,
) -> Decision {
    let mut d = Decision::default();
    let mut state = state_of(service);
    if matches!(state, Some(U::PAUSED | U::ROLLBACK_PAUSED)) {
        // Stays paused until the user updates or rolls back the service.
        return d;
    }
    let policy = Policy::of(service);
    let active = matches!(state, Some(U::UPDATING | U::ROLLBACK_STARTED));
    if !active {
        if dirty_slots == 0 {
            return d;
        }
        // Out-of-date tasks and no update running: one starts (swarmkit's startUpdate).
        if state.is_none() || matches!(state, Some(U::COMPLETED | U::ROLLBACK_COMPLETED)) {
            let mut s = status(service, U::UPDATING, "update in progress", now);
            s.started_at = Some(timefmt::format(now));
            s.completed_at = None;
            d.status = Some(s);
            state = Some(U::UPDATING);
        }
    }

    // The tasks this update made: the first task of the current version in each slot.
    // Later ones are restarts, which swarmkit's updater neither waits for nor counts (the
    // restart supervisor makes them).
    let mut first_per_slot: std::collections::BTreeMap<(u64, &str), &Task> = Default::default();
    for t in tasks.iter().copied() {
        if t.spec_version != service.spec_version {
            continue;
        }
        let key = (t.slot, if t.slot == 0 { t.node_id.as_str() } else { "" });
        let e = first_per_slot.entry(key).or_insert(t);
        if (&t.meta.created_at, &t.id) < (&e.meta.created_at, &e.id) {
            *e = t;
        }
    }
    let first: Vec<&Task> = first_per_slot.into_values().collect();

    // Failures of this update's tasks within the monitor window.
    // The ratio's denominator is the number of slots the update set out to change, as
    // swarmkit's (its dirty slots at the start): the slots it reached plus those still out
    // of date. A rollback after a partial update only counts the slots it must undo.
    let update_slots = (first.len() + dirty_slots).min(total_slots);
    if policy.failure_action != FailureAction::Continue && update_slots > 0 {
        let mut failed: Vec<&Task> = first
            .iter()
            .copied()
            .filter(|t| ended_on_its_own(t))
            .filter(
                |t| match (started_at(t), timefmt::parse(&t.status.timestamp)) {
                    (Some(s), Some(end)) => elapsed(end, s) <= policy.monitor,
                    // Never ran (or no start time reported): an early termination.
                    _ => true,
                },
            )
            .collect();
        failed.sort_by(|a, b| (&a.status.timestamp, &a.id).cmp(&(&b.status.timestamp, &b.id)));
        let ratio = policy.max_failure_ratio;
        if let Some(k) = (1..=failed.len()).find(|k| (*k as f64) / (update_slots as f64) > ratio) {
            let culprit = &failed[k - 1].id;
            let rolling_back = state == Some(U::ROLLBACK_STARTED);
            if rolling_back {
                d.status = Some(status(
                    service,
                    U::ROLLBACK_PAUSED,
                    format!(
                        "rollback paused due to failure or early termination of task {culprit}"
                    ),
                    now,
                ));
            } else if policy.failure_action == FailureAction::Rollback
                && service.previous_spec.is_some()
            {
                d.status = Some(status(
                    service,
                    U::ROLLBACK_STARTED,
                    format!(
                        "update rolled back due to failure or early termination of task {culprit}"
                    ),
                    now,
                ));
                d.rollback = true;
            } else {
                d.status = Some(status(
                    service,
                    U::PAUSED,
                    format!("update paused due to failure or early termination of task {culprit}"),
                    now,
                ));
            }
            return d;
        }
    }

    // Slots in flight: the update's task not yet running, or running for less than the
    // delay (a task that already ended is done, as swarmkit's worker moves on once its task
    // reached RUNNING or beyond).
    let mut in_flight = 0usize;
    let mut wake: Option<Duration> = None;
    let mut newest_start: Option<OffsetDateTime> = None;
    for t in &first {
        if t.status.state < TaskState::RUNNING {
            if t.desired_state <= TaskState::RUNNING {
                in_flight += 1;
            }
            continue;
        }
        let Some(s) = started_at(t).or_else(|| timefmt::parse(&t.status.timestamp)) else {
            continue;
        };
        newest_start = newest_start.max(Some(s));
        let ran = elapsed(now, s);
        if ran < policy.delay {
            in_flight += 1;
            let left = policy.delay - ran;
            wake = Some(wake.map_or(left, |w: Duration| w.min(left)));
        }
    }

    if dirty_slots > 0 {
        d.replace = if policy.parallelism == 0 {
            dirty_slots
        } else {
            policy
                .parallelism
                .saturating_sub(in_flight)
                .min(dirty_slots)
        };
    } else if in_flight == 0 {
        // Everything replaced: complete once the newest task has run for the monitor
        // period without failing.
        let ran = newest_start.map_or(Duration::MAX, |s| elapsed(now, s));
        if ran >= policy.monitor {
            d.status = Some(if state == Some(U::ROLLBACK_STARTED) {
                status(service, U::ROLLBACK_COMPLETED, "rollback completed", now)
            } else {
                status(service, U::COMPLETED, "update completed", now)
            });
        } else {
            let left = policy.monitor - ran;
            wake = Some(wake.map_or(left, |w| w.min(left)));
        }
    }
    d.wake_after = wake;
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmd_types::TaskStatus;
    use swarmd_types::models::{
        ServiceSpec, ServiceSpecUpdateConfig, TaskSpec, TaskSpecContainerSpec,
    };

    fn at(s: u64) -> String {
        timefmt::format(OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(1_000_000 + s as i64))
    }

    fn now(s: u64) -> OffsetDateTime {
        timefmt::parse(&at(s)).unwrap()
    }

    fn spec(image: &str, cfg: ServiceSpecUpdateConfig) -> ServiceSpec {
        ServiceSpec {
            name: Some("web".into()),
            task_template: Some(TaskSpec {
                container_spec: Some(TaskSpecContainerSpec {
                    image: Some(image.into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            update_config: Some(cfg),
            ..Default::default()
        }
    }

    fn service(cfg: ServiceSpecUpdateConfig, state: Option<U>) -> Service {
        Service {
            id: "svc".into(),
            spec: spec("v2", cfg.clone()),
            previous_spec: Some(spec("v1", cfg)),
            spec_version: 2,
            update_status: state.map(|s| ServiceUpdateStatus {
                state: Some(s),
                started_at: Some(at(0)),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// A task of version `v` in `state`, started at `started` (seconds), status at `ts`.
    fn task(id: &str, v: u64, state: TaskState, started: Option<u64>, ts: u64) -> Task {
        // One slot per task: ids differ in their last character.
        let slot = id.bytes().map(u64::from).sum::<u64>();
        Task {
            id: id.into(),
            slot,
            spec_version: v,
            desired_state: TaskState::RUNNING,
            status: TaskStatus {
                state,
                timestamp: at(ts),
                started_at: started.map(at).unwrap_or_default(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn cfg(parallelism: i64, delay_s: i64) -> ServiceSpecUpdateConfig {
        ServiceSpecUpdateConfig {
            parallelism: Some(parallelism),
            delay: Some(delay_s * 1_000_000_000),
            ..Default::default()
        }
    }

    #[test]
    fn starts_an_update_and_respects_parallelism() {
        let svc = service(cfg(2, 0), None);
        let d = plan(&svc, &[], 5, 5, now(0));
        assert_eq!(d.replace, 2);
        let s = d.status.unwrap();
        assert_eq!(s.state, Some(U::UPDATING));
        assert_eq!(s.message.as_deref(), Some("update in progress"));

        // One new task still starting: one more slot may go.
        let svc = service(cfg(2, 0), Some(U::UPDATING));
        let a = task("a", 2, TaskState::STARTING, None, 1);
        let d = plan(&svc, &[&a], 4, 5, now(1));
        assert_eq!(d.replace, 1);
        assert_eq!(d.status, None);

        // Parallelism 0: every dirty slot at once.
        let svc = service(cfg(0, 0), Some(U::UPDATING));
        assert_eq!(plan(&svc, &[&a], 4, 5, now(1)).replace, 4);
    }

    #[test]
    fn delay_holds_the_next_batch() {
        let svc = service(cfg(1, 10), Some(U::UPDATING));
        let a = task("a", 2, TaskState::RUNNING, Some(3), 3);
        let d = plan(&svc, &[&a], 1, 2, now(5));
        assert_eq!(d.replace, 0);
        assert_eq!(d.wake_after, Some(Duration::from_secs(8)));
        let d = plan(&svc, &[&a], 1, 2, now(13));
        assert_eq!(d.replace, 1);
    }

    #[test]
    fn completes_after_the_monitor_period() {
        let svc = service(cfg(1, 0), Some(U::UPDATING));
        let a = task("a", 2, TaskState::RUNNING, Some(10), 10);
        let d = plan(&svc, &[&a], 0, 1, now(12));
        assert_eq!(d.status, None);
        assert_eq!(d.wake_after, Some(Duration::from_secs(3)));
        let d = plan(&svc, &[&a], 0, 1, now(15));
        let s = d.status.unwrap();
        assert_eq!(s.state, Some(U::COMPLETED));
        assert_eq!(s.message.as_deref(), Some("update completed"));
        assert!(s.completed_at.is_some());
        assert_eq!(s.started_at, Some(at(0)));

        let rb = service(cfg(1, 0), Some(U::ROLLBACK_STARTED));
        let s = plan(&rb, &[&a], 0, 1, now(20)).status.unwrap();
        assert_eq!(s.state, Some(U::ROLLBACK_COMPLETED));
        assert_eq!(s.message.as_deref(), Some("rollback completed"));
    }

    #[test]
    fn failure_within_monitor_pauses() {
        let svc = service(cfg(1, 0), Some(U::UPDATING));
        let f = task("bad", 2, TaskState::FAILED, Some(10), 12);
        let d = plan(&svc, &[&f], 3, 4, now(12));
        assert_eq!(d.replace, 0);
        let s = d.status.unwrap();
        assert_eq!(s.state, Some(U::PAUSED));
        assert_eq!(
            s.message.as_deref(),
            Some("update paused due to failure or early termination of task bad")
        );
        // A failure after the monitor window does not count.
        let late = task("late", 2, TaskState::FAILED, Some(10), 30);
        let d = plan(&svc, &[&late], 3, 4, now(30));
        assert_eq!(d.replace, 1);
        assert_eq!(d.status, None);
        // Paused stays paused.
        let paused = service(cfg(1, 0), Some(U::PAUSED));
        assert_eq!(plan(&paused, &[], 3, 4, now(40)), Decision::default());
    }

    #[test]
    fn restarts_of_a_failed_slot_do_not_count_again() {
        let mut c = cfg(1, 0);
        c.max_failure_ratio = Some(0.5);
        let svc = service(c, Some(U::UPDATING));
        let mut f1 = task("f1", 2, TaskState::FAILED, None, 1);
        f1.meta.created_at = at(1);
        let mut f1b = task("f1b", 2, TaskState::FAILED, None, 2);
        f1b.slot = f1.slot;
        f1b.meta.created_at = at(2);
        // Two failures, one slot of four: 0.25, under the ratio.
        let d = plan(&svc, &[&f1, &f1b], 2, 4, now(3));
        assert_eq!(d.status, None);
        assert_eq!(d.replace, 1);
    }

    #[test]
    fn continue_moves_on_and_completes_despite_restarts() {
        let mut c = cfg(1, 0);
        c.failure_action = Some(ServiceSpecUpdateConfigFailureActionEnum::CONTINUE);
        c.monitor = Some(1_000_000_000);
        let svc = service(c, Some(U::UPDATING));
        let mut f = task("f", 2, TaskState::FAILED, Some(1), 1);
        f.meta.created_at = at(1);
        let mut restart = task("r", 2, TaskState::STARTING, None, 2);
        restart.slot = f.slot;
        restart.meta.created_at = at(2);
        // The restart is not the update's: the next slot may go.
        assert_eq!(plan(&svc, &[&f, &restart], 1, 2, now(2)).replace, 1);
        // Nothing dirty left: completes a monitor period after the last task started.
        let s = plan(&svc, &[&f, &restart], 0, 2, now(3)).status.unwrap();
        assert_eq!(s.state, Some(U::COMPLETED));
    }

    #[test]
    fn failure_ratio_and_continue() {
        let mut c = cfg(1, 0);
        c.max_failure_ratio = Some(0.5);
        let svc = service(c.clone(), Some(U::UPDATING));
        let f1 = task("f1", 2, TaskState::FAILED, None, 1);
        let f2 = task("f2", 2, TaskState::REJECTED, None, 2);
        let f3 = task("f3", 2, TaskState::FAILED, None, 3);
        // 2 of 4 = 0.5, not above the ratio.
        assert_eq!(plan(&svc, &[&f1, &f2], 2, 4, now(3)).status, None);
        let s = plan(&svc, &[&f3, &f1, &f2], 1, 4, now(3)).status.unwrap();
        assert_eq!(s.state, Some(U::PAUSED));
        assert!(s.message.unwrap().ends_with("task f3"));

        c.failure_action = Some(ServiceSpecUpdateConfigFailureActionEnum::CONTINUE);
        let svc = service(c, Some(U::UPDATING));
        let d = plan(&svc, &[&f1, &f2, &f3], 1, 4, now(3));
        assert_eq!((d.replace, d.status), (1, None));
    }

    #[test]
    fn failure_action_rollback_and_never_rolling_back_a_rollback() {
        let mut c = cfg(1, 0);
        c.failure_action = Some(ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK);
        let svc = service(c.clone(), Some(U::UPDATING));
        let f = task("bad", 2, TaskState::FAILED, None, 1);
        let d = plan(&svc, &[&f], 1, 2, now(2));
        assert!(d.rollback);
        let s = d.status.unwrap();
        assert_eq!(s.state, Some(U::ROLLBACK_STARTED));
        assert_eq!(
            s.message.as_deref(),
            Some("update rolled back due to failure or early termination of task bad")
        );

        let rb = service(c, Some(U::ROLLBACK_STARTED));
        let d = plan(&rb, &[&f], 1, 2, now(2));
        assert!(!d.rollback);
        let s = d.status.unwrap();
        assert_eq!(s.state, Some(U::ROLLBACK_PAUSED));
        assert_eq!(
            s.message.as_deref(),
            Some("rollback paused due to failure or early termination of task bad")
        );
    }

    #[test]
    fn the_ratio_counts_only_the_slots_the_update_changes() {
        // A rollback after an update that reached one slot of three: that slot's failure
        // is 1/1 of the rollback, above a 0.5 ratio (1/3 of the service would not be).
        let mut svc = service(cfg(1, 0), Some(U::ROLLBACK_STARTED));
        svc.spec.rollback_config = Some(swarmd_types::models::ServiceSpecRollbackConfig {
            parallelism: Some(1),
            max_failure_ratio: Some(0.5),
            ..Default::default()
        });
        let f = task("f", 2, TaskState::FAILED, None, 1);
        let s = plan(&svc, &[&f], 0, 3, now(2)).status.unwrap();
        assert_eq!(s.state, Some(U::ROLLBACK_PAUSED));
    }

    #[test]
    fn rollback_uses_the_rollback_config() {
        let mut svc = service(cfg(1, 0), Some(U::ROLLBACK_STARTED));
        svc.spec.rollback_config = Some(swarmd_types::models::ServiceSpecRollbackConfig {
            parallelism: Some(0),
            order: Some(RollbackOrder::START_FIRST),
            ..Default::default()
        });
        let p = Policy::of(&svc);
        assert_eq!((p.parallelism, p.order), (0, Order::StartFirst));
        assert_eq!(plan(&svc, &[], 3, 3, now(0)).replace, 3);
    }

    #[test]
    fn api_defaults_follow_the_daemon() {
        // No UpdateConfig: swarmkit's defaults.
        let mut svc = service(cfg(1, 0), None);
        svc.spec.update_config = None;
        assert_eq!(Policy::of(&svc), Policy::default());
        // A config without Parallelism (docker-py, compose) means all at once; Monitor 0
        // is not passed on by the daemon, so the default applies.
        svc.spec.update_config = Some(ServiceSpecUpdateConfig {
            monitor: Some(0),
            ..Default::default()
        });
        let p = Policy::of(&svc);
        assert_eq!((p.parallelism, p.monitor), (0, DEFAULT_MONITOR));
    }

    #[test]
    fn dirty_compares_content() {
        let svc = service(cfg(1, 0), None);
        let mut t = task("t", 1, TaskState::RUNNING, None, 0);
        t.spec = svc
            .previous_spec
            .clone()
            .unwrap()
            .task_template
            .unwrap()
            .into();
        assert!(is_dirty(&svc, &t));
        t.spec = svc.spec.task_template.clone().unwrap().into();
        assert!(
            !is_dirty(&svc, &t),
            "same template, older version: up to date"
        );
    }

    proptest::proptest! {
        /// Never more slots in flight than the parallelism allows, never more replaced
        /// than are dirty.
        #[test]
        fn never_exceeds_parallelism(par in 0i64..5, dirty in 0usize..10, starting in 0usize..6) {
            let svc = service(cfg(par, 0), Some(U::UPDATING));
            let ts: Vec<Task> = (0..starting)
                .map(|i| task(&format!("t{i}"), 2, TaskState::STARTING, None, 1))
                .collect();
            let refs: Vec<&Task> = ts.iter().collect();
            let d = plan(&svc, &refs, dirty, 10, now(1));
            proptest::prop_assert!(d.replace <= dirty);
            if par > 0 {
                proptest::prop_assert!(d.replace + starting <= (par as usize).max(starting));
            }
        }
    }
}
