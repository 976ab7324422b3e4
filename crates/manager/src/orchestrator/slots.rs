//! Per-slot reconciliation shared by the replicated and global orchestrators.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use swarmd_types::models::{
    NodeSpecAvailabilityEnum, TaskSpecRestartPolicyConditionEnum, TaskState,
};
use swarmd_types::{NodeState, Service, Task, timefmt};
use time::OffsetDateTime;

use super::{Change, Mode, Nodes, Plan, is_live, mode_of, new_task, node_keeps_tasks, update};
use crate::scheduler::constraint;

/// A replicated slot number or, for global services, the node ID.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum SlotKey {
    Slot(u64),
    Node(String),
}

/// Docker's default restart delay.
const DEFAULT_RESTART_DELAY: Duration = Duration::from_secs(5);

/// The service's restart policy with Docker's defaults filled.
pub(super) struct RestartPolicy {
    pub(super) condition: TaskSpecRestartPolicyConditionEnum,
    pub(super) delay: Duration,
    pub(super) max_attempts: u64,
    pub(super) window: Duration,
}

impl RestartPolicy {
    pub(super) fn of(service: &Service) -> Self {
        let p = service
            .spec
            .task_template
            .as_ref()
            .and_then(|t| t.restart_policy.clone())
            .unwrap_or_default();
        RestartPolicy {
            condition: match p.condition {
                None | Some(TaskSpecRestartPolicyConditionEnum::EMPTY) => {
                    TaskSpecRestartPolicyConditionEnum::ANY
                }
                Some(c) => c,
            },
            delay: p
                .delay
                .map(|d| Duration::from_nanos(d.max(0) as u64))
                .unwrap_or(DEFAULT_RESTART_DELAY),
            max_attempts: p.max_attempts.unwrap_or(0).max(0) as u64,
            window: Duration::from_nanos(p.window.unwrap_or(0).max(0) as u64),
        }
    }

    /// Whether a slot whose last task ended like `last` gets a replacement.
    fn should_restart(&self, last: &Task, attempts: u64) -> bool {
        use TaskSpecRestartPolicyConditionEnum as C;
        let restartable = match self.condition {
            C::NONE => false,
            C::ON_FAILURE => last.status.state != TaskState::COMPLETE,
            _ => true,
        };
        restartable && (self.max_attempts == 0 || attempts <= self.max_attempts)
    }
}

pub(super) fn ended_at(t: &Task) -> Option<OffsetDateTime> {
    timefmt::parse(&t.status.timestamp)
}

pub(super) fn since(now: OffsetDateTime, then: Option<OffsetDateTime>) -> Duration {
    then.map(|t| (now - t).try_into().unwrap_or(Duration::ZERO))
        .unwrap_or(Duration::MAX)
}

/// How long this leader has watched each stop-first replacement wait for the task it
/// replaces (task ID → time on the monotonic clock; a replacement not in it was just seen).
///
/// Not the time since the replacement's stored `CreatedAt`: that is a wall clock, maybe
/// another manager's, and one stepped forward ended the wait at once, with two tasks of
/// the slot running (found by `scripts/chaos --quick`: every manager's clock jumped). As
/// swarmkit's in-memory timer, the minute starts again on a new leader.
pub type Watched = HashMap<String, Duration>;

/// Reconciles one service's tasks. `tasks` are all the service's tasks (any state).
pub fn reconcile_service(
    service: &Service,
    tasks: &[&Task],
    nodes: &Nodes,
    now: OffsetDateTime,
    watched: &Watched,
) -> Plan {
    let mut plan = Plan::default();
    let Some(mode) = mode_of(service) else {
        return plan;
    };
    let policy = RestartPolicy::of(service);

    let mut slots: BTreeMap<SlotKey, Vec<&Task>> = BTreeMap::new();
    for t in tasks {
        let key = match mode {
            Mode::Global => SlotKey::Node(t.node_id.clone()),
            Mode::Replicated(_) => SlotKey::Slot(t.slot),
        };
        slots.entry(key).or_default().push(t);
    }

    let wanted: BTreeSet<SlotKey> = match mode {
        Mode::Replicated(n) => (1..=n).map(SlotKey::Slot).collect(),
        Mode::Global => eligible_nodes(service, nodes, &slots),
    };

    let mut out_of_date: Vec<&Task> = Vec::new();
    let policy_order = update::Policy::of(service).order;
    // Whether a node lost the tasks with these constraints, decided once per pass: a
    // million tasks on a thousand nodes asked a million times (two node lookups and a
    // parse of the constraints each).
    let mut lost_on: HashMap<(&str, &[String]), bool> = HashMap::new();

    for key in wanted
        .iter()
        .chain(slots.keys().filter(|k| !wanted.contains(k)))
    {
        let slot_tasks = slots.get(key).map(Vec::as_slice).unwrap_or(&[]);
        let mut live: Vec<&Task> = slot_tasks.iter().copied().filter(|t| is_live(t)).collect();

        if !wanted.contains(key) {
            // Scaled down (replicated) or node no longer eligible (global).
            let target = match mode {
                Mode::Replicated(_) => TaskState::REMOVE,
                Mode::Global => TaskState::SHUTDOWN,
            };
            for t in live {
                plan.changes.push(Change::Update(with_desired(t, target)));
            }
            continue;
        }

        // Retire live tasks that died or whose node can no longer run them.
        live.retain(|t| {
            let dead = t.status.state > TaskState::RUNNING;
            let lost = !t.node_id.is_empty()
                && *lost_on
                    .entry((&t.node_id, constraints_of(t)))
                    .or_insert_with(|| {
                        let node = nodes.get(&t.node_id);
                        !node_keeps_tasks(node) || !still_satisfies_constraints(t, node)
                    });
            if dead || lost {
                plan.changes
                    .push(Change::Update(with_desired(t, TaskState::SHUTDOWN)));
                false
            } else {
                true
            }
        });

        // More than one live task in a slot (an update or restart in progress): keep the
        // newest up-to-date task; with start-first, the old task keeps serving until its
        // replacement runs.
        if live.len() > 1 {
            live.sort_by(|a, b| (&a.meta.created_at, &a.id).cmp(&(&b.meta.created_at, &b.id)));
            let (mut clean, mut dirty): (Vec<&Task>, Vec<&Task>) =
                live.drain(..).partition(|t| !update::is_dirty(service, t));
            let keep = clean.pop();
            let mut retire: Vec<&Task> = clean;
            let keep_old = match keep {
                Some(new) => {
                    let overlap = policy_order == update::Order::StartFirst
                        && new.status.state < TaskState::RUNNING;
                    if overlap { dirty.pop() } else { None }
                }
                None => dirty.pop(),
            };
            retire.extend(dirty);
            for t in retire {
                plan.changes
                    .push(Change::Update(with_desired(t, TaskState::SHUTDOWN)));
            }
            // The kept up-to-date task first: it is the slot's task from now on.
            live.extend(keep);
            live.extend(keep_old);
        }

        let node_for_slot = match key {
            SlotKey::Node(n) => n.as_str(),
            SlotKey::Slot(_) => "",
        };
        let slot_no = match key {
            SlotKey::Slot(s) => *s,
            SlotKey::Node(_) => 0,
        };

        match live.first() {
            None => {
                // The most recent retired task decides whether and when to restart.
                let retired: Vec<&Task> = slot_tasks
                    .iter()
                    .copied()
                    .filter(|t| !live.iter().any(|l| l.id == t.id))
                    .collect();
                let last = retired.iter().copied().max_by(|a, b| {
                    (&a.status.timestamp, &a.meta.created_at)
                        .cmp(&(&b.status.timestamp, &b.meta.created_at))
                });
                match last {
                    None => plan.changes.push(Change::Create(new_task(
                        service,
                        slot_no,
                        node_for_slot,
                        TaskState::RUNNING,
                        now,
                    ))),
                    Some(last) => {
                        let attempts = retired
                            .iter()
                            .filter(|t| {
                                policy.window.is_zero() || since(now, ended_at(t)) <= policy.window
                            })
                            .count() as u64;
                        if policy.should_restart(last, attempts) {
                            // The delay applies to tasks that died; a task moved off a
                            // drained or lost node is replaced at once. (swarmkit skips the
                            // delay only for drained nodes and waits it out for lost ones;
                            // replacing at once is deliberate: the node is gone.)
                            let delay = if last.status.state > TaskState::RUNNING {
                                policy.delay
                            } else {
                                Duration::ZERO
                            };
                            let waited = since(now, ended_at(last));
                            let desired = if waited >= delay {
                                TaskState::RUNNING
                            } else {
                                plan.wake(delay - waited);
                                TaskState::READY
                            };
                            plan.changes.push(Change::Create(new_task(
                                service,
                                slot_no,
                                node_for_slot,
                                desired,
                                now,
                            )));
                        }
                    }
                }
            }
            Some(t) => {
                // A stop-first replacement starts once the task it replaces has stopped.
                if t.desired_state == TaskState::READY && replaces_an_update(service, t, slot_tasks)
                {
                    match waits_for_old(t, slot_tasks, nodes, watched) {
                        Some(left) => {
                            plan.wake(left);
                            plan.waiting.push(t.id.clone());
                        }
                        None => plan
                            .changes
                            .push(Change::Update(with_desired(t, TaskState::RUNNING))),
                    }
                } else if t.desired_state == TaskState::READY {
                    // A delayed restart becomes runnable once the delay has passed.
                    let last_end = slot_tasks
                        .iter()
                        .filter(|o| o.id != t.id)
                        .filter_map(|o| ended_at(o))
                        .max();
                    let waited = since(now, last_end);
                    if waited >= policy.delay {
                        plan.changes
                            .push(Change::Update(with_desired(t, TaskState::RUNNING)));
                    } else {
                        plan.wake(policy.delay - waited);
                    }
                }
                if update::is_dirty(service, t) {
                    out_of_date.push(t);
                }
            }
        }
    }

    rolling_update(service, tasks, &mut plan, out_of_date, wanted.len(), now);
    plan
}

/// Replaces out-of-date tasks as the update planner decides, and writes the service's
/// update status (or, on an automatic rollback, its restored spec).
fn rolling_update(
    service: &Service,
    tasks: &[&Task],
    plan: &mut Plan,
    out_of_date: Vec<&Task>,
    total_slots: usize,
    now: OffsetDateTime,
) {
    let d = update::plan(service, tasks, out_of_date.len(), total_slots, now);
    if let Some(w) = d.wake_after {
        plan.wake(w);
    }
    if let Some(status) = d.status {
        let mut s = service.clone();
        tracing::info!(
            service.id = %service.id,
            state = ?status.state,
            message = status.message.as_deref().unwrap_or(""),
            "update status changed"
        );
        s.update_status = Some(status);
        if d.rollback
            && let Some(prev) = s.previous_spec.take()
        {
            // swarmkit's rollbackUpdate: the previous spec becomes the spec, and there is
            // no previous spec any more. A new version makes its tasks distinguishable.
            s.spec = prev;
            s.spec_version += 1;
        }
        plan.changes.push(Change::UpdateService(Box::new(s)));
    }
    if d.rollback {
        return;
    }
    let order = update::Policy::of(service).order;
    for t in out_of_date.into_iter().take(d.replace) {
        // Start-first leaves the old task running; the slot logic retires it once the
        // replacement is RUNNING.
        if order == update::Order::StopFirst {
            plan.changes
                .push(Change::Update(with_desired(t, TaskState::SHUTDOWN)));
        }
        let node = if t.slot == 0 { t.node_id.as_str() } else { "" };
        // Stop-first: the replacement is prepared but waits in READY until the old task
        // has stopped (`waits_for_old`), as swarmkit's updater does.
        let desired = match order {
            update::Order::StopFirst => TaskState::READY,
            update::Order::StartFirst => TaskState::RUNNING,
        };
        plan.changes.push(Change::Create(new_task(
            service, t.slot, node, desired, now,
        )));
    }
}

/// How long swarmkit's restart supervisor waits for the old task of a stop-first update to
/// stop before starting its replacement anyway (`defaultOldTaskTimeout`).
const OLD_TASK_TIMEOUT: Duration = Duration::from_secs(60);

/// Whether READY task `t` is a stop-first update's replacement rather than a delayed
/// restart: the slot's task made just before it is of an older spec and did not end on its
/// own (one that did is restarted, after the restart delay).
fn replaces_an_update(service: &Service, t: &Task, slot_tasks: &[&Task]) -> bool {
    slot_tasks
        .iter()
        .filter(|o| (&o.meta.created_at, &o.id) < (&t.meta.created_at, &t.id))
        .max_by(|a, b| (&a.meta.created_at, &a.id).cmp(&(&b.meta.created_at, &b.id)))
        .is_some_and(|prev| {
            update::is_dirty(service, prev)
                && !matches!(
                    prev.status.state,
                    TaskState::COMPLETE | TaskState::FAILED | TaskState::REJECTED
                )
        })
}

/// While a task of the slot that is being stopped may still run (observed up to RUNNING,
/// on a node not Down), how long the replacement `t` may still wait for it; `None`: start
/// it now. swarmkit's `DelayStart` with `waitStop`: the old task past RUNNING, its node
/// down, or a minute of waiting (as [`Watched`] measures it).
fn waits_for_old(
    t: &Task,
    slot_tasks: &[&Task],
    nodes: &Nodes,
    watched: &Watched,
) -> Option<Duration> {
    let old_runs = slot_tasks.iter().any(|o| {
        o.id != t.id
            && !is_live(o)
            && o.status.state <= TaskState::RUNNING
            && nodes
                .get(&o.node_id)
                .is_some_and(|n| n.status.state != NodeState::Down)
    });
    let waited = watched.get(&t.id).copied().unwrap_or_default();
    (old_runs && waited < OLD_TASK_TIMEOUT).then(|| OLD_TASK_TIMEOUT - waited)
}

/// Nodes a global service runs on: up, not drained, constraints satisfied. Paused nodes
/// keep the task they have but get no new one.
pub(super) fn eligible_nodes(
    service: &Service,
    nodes: &Nodes,
    slots: &BTreeMap<SlotKey, Vec<&Task>>,
) -> BTreeSet<SlotKey> {
    let constraints = service
        .spec
        .task_template
        .as_ref()
        .and_then(|t| t.placement.as_ref())
        .and_then(|p| p.constraints.clone())
        .unwrap_or_default();
    let parsed = constraint::parse_all(&constraints).unwrap_or_default();
    nodes
        .values()
        .filter(|n| node_keeps_tasks(Some(n)) && parsed.iter().all(|c| c.matches(n)))
        .filter(|n| {
            let has_live = slots
                .get(&SlotKey::Node(n.id.clone()))
                .is_some_and(|ts| ts.iter().any(|t| is_live(t)));
            has_live
                || (n.status.state == NodeState::Ready
                    && matches!(
                        n.spec.availability,
                        None | Some(NodeSpecAvailabilityEnum::ACTIVE)
                            | Some(NodeSpecAvailabilityEnum::EMPTY)
                    ))
        })
        .map(|n| SlotKey::Node(n.id.clone()))
        .collect()
}

/// swarmkit's constraint enforcer: a node label change (or role change) that breaks a
/// placed task's constraints moves the task. Unparsable constraints (validated at create
/// time, so never in practice) leave the task where it is.
/// A task's placement constraints (none: empty).
fn constraints_of(t: &Task) -> &[String] {
    t.spec
        .placement
        .as_ref()
        .and_then(|p| p.constraints.as_deref())
        .unwrap_or_default()
}

fn still_satisfies_constraints(t: &Task, node: Option<&swarmd_types::Node>) -> bool {
    let Some(node) = node else { return true };
    let Some(cs) = t
        .spec
        .placement
        .as_ref()
        .and_then(|p| p.constraints.as_ref())
    else {
        return true;
    };
    match constraint::parse_all(cs) {
        Ok(parsed) => parsed.iter().all(|c| c.matches(node)),
        Err(_) => true,
    }
}

pub(super) fn with_desired(t: &Task, desired: TaskState) -> Task {
    let mut t = t.clone();
    t.desired_state = desired;
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmd_types::Node;
    use swarmd_types::models::{
        ServiceSpecMode, ServiceSpecUpdateConfigOrderEnum, ServiceUpdateStatus,
        ServiceUpdateStatusStateEnum, TaskSpecRestartPolicy,
    };

    fn now() -> OffsetDateTime {
        timefmt::parse("2026-01-01T00:01:00Z").unwrap()
    }

    fn service(replicas: i64) -> Service {
        crate::orchestrator::testing::replicated("svc", replicas)
    }

    fn ready_node(id: &str) -> Node {
        let mut n = Node {
            id: id.into(),
            ..Default::default()
        };
        n.status.state = NodeState::Ready;
        n
    }

    fn task(id: &str, slot: u64, state: TaskState, desired: TaskState, at: &str) -> Task {
        crate::orchestrator::testing::slot_task((id, "svc", "n1"), slot, state, desired, at)
    }

    fn nodes() -> Nodes {
        Nodes::from([("n1".to_string(), ready_node("n1"))])
    }

    fn creates(p: &Plan) -> Vec<&Task> {
        p.changes
            .iter()
            .filter_map(|c| match c {
                Change::Create(t) => Some(t),
                _ => None,
            })
            .collect()
    }

    fn updates(p: &Plan) -> Vec<(&str, TaskState)> {
        p.changes
            .iter()
            .filter_map(|c| match c {
                Change::Update(t) => Some((t.id.as_str(), t.desired_state)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn creates_one_task_per_missing_slot() {
        let p = reconcile_service(&service(3), &[], &nodes(), now(), &Watched::new());
        let slots: Vec<u64> = creates(&p).iter().map(|t| t.slot).collect();
        assert_eq!(slots, vec![1, 2, 3]);
        assert!(
            creates(&p)
                .iter()
                .all(|t| t.desired_state == TaskState::RUNNING
                    && t.status.state == TaskState::NEW
                    && t.node_id.is_empty())
        );
    }

    #[test]
    fn steady_state_is_a_fixpoint() {
        let a = task(
            "a",
            1,
            TaskState::RUNNING,
            TaskState::RUNNING,
            "2026-01-01T00:00:00Z",
        );
        let p = reconcile_service(&service(1), &[&a], &nodes(), now(), &Watched::new());
        assert_eq!(p, Plan::default());
    }

    #[test]
    fn scale_down_removes_highest_slots() {
        let a = task("a", 1, TaskState::RUNNING, TaskState::RUNNING, "");
        let b = task("b", 2, TaskState::RUNNING, TaskState::RUNNING, "");
        let p = reconcile_service(&service(1), &[&a, &b], &nodes(), now(), &Watched::new());
        assert_eq!(updates(&p), vec![("b", TaskState::REMOVE)]);
        assert!(creates(&p).is_empty());
    }

    #[test]
    fn failed_task_is_replaced_after_the_restart_delay() {
        // Failed 2 s ago, default delay 5 s: replacement waits in READY.
        let a = task(
            "a",
            1,
            TaskState::FAILED,
            TaskState::RUNNING,
            "2026-01-01T00:00:58Z",
        );
        let p = reconcile_service(&service(1), &[&a], &nodes(), now(), &Watched::new());
        assert_eq!(updates(&p), vec![("a", TaskState::SHUTDOWN)]);
        assert_eq!(creates(&p)[0].desired_state, TaskState::READY);
        assert_eq!(creates(&p)[0].slot, 1);
        assert_eq!(p.wake_after, Some(Duration::from_secs(3)));

        // Later pass: the READY task is promoted once the delay has passed.
        let a = task(
            "a",
            1,
            TaskState::FAILED,
            TaskState::SHUTDOWN,
            "2026-01-01T00:00:50Z",
        );
        let b = task(
            "b",
            1,
            TaskState::ASSIGNED,
            TaskState::READY,
            "2026-01-01T00:00:51Z",
        );
        let p = reconcile_service(&service(1), &[&a, &b], &nodes(), now(), &Watched::new());
        assert_eq!(updates(&p), vec![("b", TaskState::RUNNING)]);
    }

    #[test]
    fn restart_condition_and_max_attempts() {
        let mut svc = service(1);
        svc.spec.task_template.as_mut().unwrap().restart_policy = Some(TaskSpecRestartPolicy {
            condition: Some(TaskSpecRestartPolicyConditionEnum::ON_FAILURE),
            delay: Some(0),
            max_attempts: Some(2),
            window: None,
        });
        let done = task(
            "a",
            1,
            TaskState::COMPLETE,
            TaskState::RUNNING,
            "2026-01-01T00:00:00Z",
        );
        let p = reconcile_service(&svc, &[&done], &nodes(), now(), &Watched::new());
        assert!(
            creates(&p).is_empty(),
            "completed tasks are not restarted on-failure"
        );

        let f1 = task(
            "f1",
            1,
            TaskState::FAILED,
            TaskState::SHUTDOWN,
            "2026-01-01T00:00:01Z",
        );
        let f2 = task(
            "f2",
            1,
            TaskState::FAILED,
            TaskState::RUNNING,
            "2026-01-01T00:00:02Z",
        );
        let p = reconcile_service(&svc, &[&f1, &f2], &nodes(), now(), &Watched::new());
        assert_eq!(creates(&p).len(), 1, "second failure: attempt 2 of 2");
        let f3 = task(
            "f3",
            1,
            TaskState::FAILED,
            TaskState::SHUTDOWN,
            "2026-01-01T00:00:03Z",
        );
        let f2 = task(
            "f2",
            1,
            TaskState::FAILED,
            TaskState::SHUTDOWN,
            "2026-01-01T00:00:02Z",
        );
        let p = reconcile_service(&svc, &[&f1, &f2, &f3], &nodes(), now(), &Watched::new());
        assert!(creates(&p).is_empty(), "max attempts reached");
    }

    #[test]
    fn drained_node_tasks_are_shut_down_and_replaced() {
        let mut n = nodes();
        n.get_mut("n1").unwrap().spec.availability = Some(NodeSpecAvailabilityEnum::DRAIN);
        // Started a second ago: no restart delay applies to a move off a drained node.
        let a = task(
            "a",
            1,
            TaskState::RUNNING,
            TaskState::RUNNING,
            "2026-01-01T00:00:59Z",
        );
        let p = reconcile_service(&service(1), &[&a], &n, now(), &Watched::new());
        assert_eq!(updates(&p), vec![("a", TaskState::SHUTDOWN)]);
        let c = creates(&p);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].desired_state, TaskState::RUNNING);
    }

    #[test]
    fn rolling_update_replaces_one_at_a_time() {
        let mut svc = service(2);
        svc.spec_version = 2;
        svc.previous_spec = Some(svc.spec.clone());
        svc.spec.task_template.as_mut().unwrap().force_update = Some(1);
        let a = task("a", 1, TaskState::RUNNING, TaskState::RUNNING, "");
        let b = task("b", 2, TaskState::RUNNING, TaskState::RUNNING, "");
        let p = reconcile_service(&svc, &[&a, &b], &nodes(), now(), &Watched::new());
        assert_eq!(updates(&p), vec![("a", TaskState::SHUTDOWN)]);
        assert_eq!(creates(&p).len(), 1);
        assert_eq!(creates(&p)[0].spec_version, 2);
        assert!(p.changes.iter().any(|c| matches!(c, Change::UpdateService(s)
            if s.update_status.as_ref().unwrap().state == Some(ServiceUpdateStatusStateEnum::UPDATING))));

        // While the new slot-1 task is starting, slot 2 waits.
        let a_old = task("a", 1, TaskState::RUNNING, TaskState::SHUTDOWN, "");
        let mut a_new = task("a2", 1, TaskState::ASSIGNED, TaskState::RUNNING, "");
        a_new.spec_version = 2;
        let mut svc2 = svc.clone();
        svc2.update_status = Some(ServiceUpdateStatus {
            state: Some(ServiceUpdateStatusStateEnum::UPDATING),
            ..Default::default()
        });
        let p = reconcile_service(
            &svc2,
            &[&a_old, &a_new, &b],
            &nodes(),
            now(),
            &Watched::new(),
        );
        assert!(p.changes.is_empty(), "{p:?}");
    }

    #[test]
    fn stop_first_starts_the_replacement_once_the_old_task_stopped() {
        let svc = crate::orchestrator::testing::forced_update(
            ServiceSpecUpdateConfigOrderEnum::STOP_FIRST,
        );
        let old = task("old", 1, TaskState::RUNNING, TaskState::RUNNING, "");
        // First pass: the old task is stopped, its replacement made to wait in READY.
        let p = reconcile_service(&svc, &[&old], &nodes(), now(), &Watched::new());
        assert_eq!(updates(&p), vec![("old", TaskState::SHUTDOWN)]);
        assert_eq!(creates(&p)[0].desired_state, TaskState::READY);

        let mut new = creates(&p)[0].clone();
        new.id = "new".into();
        new.meta.created_at = "2026-01-01T00:00:30Z".into();
        new.status.state = TaskState::READY;
        let mut old = with_desired(&old, TaskState::SHUTDOWN);
        old.meta.created_at = "2026-01-01T00:00:00Z".into();
        // The old task still runs: the replacement waits, at most a minute of this leader
        // watching it, whatever the wall clock says (made 30 s ago, or an hour ago after
        // a step of the clock).
        let p = reconcile_service(&svc, &[&old, &new], &nodes(), now(), &Watched::new());
        assert!(updates(&p).is_empty(), "{p:?}");
        assert_eq!(p.wake_after, Some(Duration::from_secs(60)));
        assert_eq!(p.waiting, ["new"]);
        let watched = Watched::from([("new".to_string(), Duration::from_secs(30))]);
        let p = reconcile_service(&svc, &[&old, &new], &nodes(), now(), &watched);
        assert!(updates(&p).is_empty(), "{p:?}");
        assert_eq!(p.wake_after, Some(Duration::from_secs(30)));
        let stepped = now() + time::Duration::hours(1);
        let p = reconcile_service(&svc, &[&old, &new], &nodes(), stepped, &watched);
        assert!(updates(&p).is_empty(), "{p:?}");

        let start = vec![("new", TaskState::RUNNING)];
        // It stopped, or its node is down, or the minute is over: the replacement starts.
        let mut stopped = old.clone();
        stopped.status.state = TaskState::SHUTDOWN;
        let p = reconcile_service(&svc, &[&stopped, &new], &nodes(), now(), &Watched::new());
        assert_eq!(updates(&p), start);
        let mut down = nodes();
        down.get_mut("n1").unwrap().status.state = NodeState::Down;
        new.node_id = "n2".into();
        down.insert("n2".into(), ready_node("n2"));
        let p = reconcile_service(&svc, &[&old, &new], &down, now(), &Watched::new());
        assert_eq!(updates(&p), start);
        new.node_id = "n1".into();
        let minute = Watched::from([("new".to_string(), Duration::from_secs(60))]);
        let p = reconcile_service(&svc, &[&old, &new], &nodes(), now(), &minute);
        assert_eq!(updates(&p), start);
        assert!(p.waiting.is_empty());

        // An old task that failed by itself 2 s ago is restarted: the delay (5 s) applies.
        let mut failed = old.clone();
        failed.status.state = TaskState::FAILED;
        failed.status.timestamp = "2026-01-01T00:00:58Z".into();
        new.meta.created_at = "2026-01-01T00:00:58Z".into();
        let p = reconcile_service(&svc, &[&failed, &new], &nodes(), now(), &Watched::new());
        assert!(updates(&p).is_empty(), "{p:?}");
        assert_eq!(p.wake_after, Some(Duration::from_secs(3)));
    }

    #[test]
    fn start_first_keeps_the_old_task_until_the_new_one_runs() {
        let svc = crate::orchestrator::testing::forced_update(
            ServiceSpecUpdateConfigOrderEnum::START_FIRST,
        );
        let old = task("old", 1, TaskState::RUNNING, TaskState::RUNNING, "");
        // First pass: the replacement is created, the old task is left running.
        let p = reconcile_service(&svc, &[&old], &nodes(), now(), &Watched::new());
        assert!(updates(&p).is_empty(), "{p:?}");
        assert_eq!(creates(&p).len(), 1);

        let mut new = creates(&p)[0].clone();
        new.id = "new".into();
        new.meta.created_at = "2026-01-01T00:00:30Z".into();
        new.status.state = TaskState::STARTING;
        let p = reconcile_service(&svc, &[&old, &new], &nodes(), now(), &Watched::new());
        assert!(
            p.changes.is_empty(),
            "both run while the new one starts: {p:?}"
        );

        new.status.state = TaskState::RUNNING;
        let p = reconcile_service(&svc, &[&old, &new], &nodes(), now(), &Watched::new());
        assert_eq!(updates(&p), vec![("old", TaskState::SHUTDOWN)]);
        assert!(creates(&p).is_empty());
    }

    #[test]
    fn automatic_rollback_restores_the_previous_spec() {
        use swarmd_types::models::{
            ServiceSpecUpdateConfig, ServiceSpecUpdateConfigFailureActionEnum,
        };
        let mut svc = service(2);
        let prev = svc.spec.clone();
        svc.spec_version = 2;
        svc.previous_spec = Some(prev.clone());
        svc.spec.task_template.as_mut().unwrap().force_update = Some(1);
        svc.spec.update_config = Some(ServiceSpecUpdateConfig {
            failure_action: Some(ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK),
            ..Default::default()
        });
        svc.update_status = Some(ServiceUpdateStatus {
            state: Some(ServiceUpdateStatusStateEnum::UPDATING),
            ..Default::default()
        });
        let mut bad = task("bad", 1, TaskState::FAILED, TaskState::RUNNING, "");
        bad.spec_version = 2;
        bad.spec = svc.spec.task_template.clone().unwrap().into();
        let mut b = task("b", 2, TaskState::RUNNING, TaskState::RUNNING, "");
        b.spec = prev.task_template.clone().unwrap().into();
        let p = reconcile_service(&svc, &[&bad, &b], &nodes(), now(), &Watched::new());
        let s = p
            .changes
            .iter()
            .find_map(|c| match c {
                Change::UpdateService(s) => Some(s),
                _ => None,
            })
            .unwrap();
        assert_eq!(s.spec, prev);
        assert_eq!(s.previous_spec, None);
        assert_eq!(s.spec_version, 3);
        assert_eq!(
            s.update_status.as_ref().unwrap().state,
            Some(ServiceUpdateStatusStateEnum::ROLLBACK_STARTED)
        );

        // Next pass: the old-spec task is up to date again; only the failed slot is redone.
        let mut rolled = s.clone();
        rolled.spec_version = 3;
        let p = reconcile_service(&rolled, &[&bad, &b], &nodes(), now(), &Watched::new());
        assert!(!updates(&p).contains(&("b", TaskState::SHUTDOWN)), "{p:?}");
    }

    #[test]
    fn a_broken_constraint_moves_the_task() {
        use swarmd_types::models::TaskSpecPlacement;
        let mut svc = service(1);
        let placement = TaskSpecPlacement {
            constraints: Some(vec!["node.labels.tier==db".into()]),
            ..Default::default()
        };
        svc.spec.task_template.as_mut().unwrap().placement = Some(placement.clone());
        let mut a = task("a", 1, TaskState::RUNNING, TaskState::RUNNING, "");
        a.spec.placement = Some(placement);
        let mut n = nodes();
        n.get_mut("n1").unwrap().spec.labels =
            Some([("tier".to_string(), "db".to_string())].into());
        let p = reconcile_service(&svc, &[&a], &n, now(), &Watched::new());
        assert!(p.changes.is_empty(), "{p:?}");
        n.get_mut("n1").unwrap().spec.labels = None;
        let p = reconcile_service(&svc, &[&a], &n, now(), &Watched::new());
        assert_eq!(updates(&p), vec![("a", TaskState::SHUTDOWN)]);
        assert_eq!(creates(&p).len(), 1);
    }

    #[test]
    fn global_runs_one_task_per_eligible_node() {
        let mut svc = service(0);
        svc.spec.mode = Some(ServiceSpecMode {
            global: Some(Default::default()),
            ..Default::default()
        });
        let mut ns = nodes();
        ns.insert("n2".into(), ready_node("n2"));
        let mut down = ready_node("n3");
        down.status.state = NodeState::Down;
        ns.insert("n3".into(), down);
        let p = reconcile_service(&svc, &[], &ns, now(), &Watched::new());
        let mut on: Vec<&str> = creates(&p).iter().map(|t| t.node_id.as_str()).collect();
        on.sort();
        assert_eq!(on, vec!["n1", "n2"]);
        assert!(creates(&p).iter().all(|t| t.slot == 0));
    }

    fn arb_state() -> impl proptest::strategy::Strategy<Value = TaskState> {
        proptest::prop_oneof![
            proptest::strategy::Just(TaskState::PENDING),
            proptest::strategy::Just(TaskState::ASSIGNED),
            proptest::strategy::Just(TaskState::STARTING),
            proptest::strategy::Just(TaskState::RUNNING),
            proptest::strategy::Just(TaskState::COMPLETE),
            proptest::strategy::Just(TaskState::FAILED),
            proptest::strategy::Just(TaskState::SHUTDOWN),
        ]
    }

    proptest::proptest! {
        /// After a pass, a slot has at most one task meant to run (stop-first), or two
        /// while a start-first replacement comes up; and the planner never moves a desired
        /// state backwards.
        #[test]
        fn live_tasks_per_slot_stay_within_the_update_order(
            start_first in proptest::bool::ANY,
            parallelism in 0i64..3,
            tasks in proptest::collection::vec(
                (1u64..4, arb_state(), proptest::bool::ANY, proptest::bool::ANY, 0u8..50),
                0..10,
            ),
        ) {
            use swarmd_types::models::{ServiceSpecUpdateConfig, ServiceSpecUpdateConfigOrderEnum};
            let mut svc = service(3);
            svc.spec_version = 2;
            svc.previous_spec = Some(svc.spec.clone());
            svc.spec.task_template.as_mut().unwrap().force_update = Some(1);
            svc.spec.update_config = Some(ServiceSpecUpdateConfig {
                parallelism: Some(parallelism),
                order: Some(if start_first {
                    ServiceSpecUpdateConfigOrderEnum::START_FIRST
                } else {
                    ServiceSpecUpdateConfigOrderEnum::STOP_FIRST
                }),
                ..Default::default()
            });
            let ts: Vec<Task> = tasks
                .iter()
                .enumerate()
                .map(|(i, (slot, state, live, new, secs))| {
                    let desired = if *live { TaskState::RUNNING } else { TaskState::SHUTDOWN };
                    let mut t = task(&format!("t{i}"), *slot, *state, desired, "2026-01-01T00:00:00Z");
                    t.meta.created_at = format!("2026-01-01T00:00:{secs:02}Z");
                    if *new {
                        t.spec_version = 2;
                        t.spec = svc.spec.task_template.clone().unwrap().into();
                    }
                    t
                })
                .collect();
            let refs: Vec<&Task> = ts.iter().collect();
            let p = reconcile_service(&svc, &refs, &nodes(), now(), &Watched::new());
            let mut after: std::collections::BTreeMap<String, Task> =
                ts.iter().map(|t| (t.id.clone(), t.clone())).collect();
            for c in &p.changes {
                match c {
                    Change::Create(t) => {
                        after.insert(t.id.clone(), t.clone());
                    }
                    Change::Update(t) => {
                        let before = after.get(&t.id).unwrap();
                        proptest::prop_assert!(t.desired_state >= before.desired_state);
                        after.insert(t.id.clone(), t.clone());
                    }
                    Change::UpdateService(_) => {}
                }
            }
            let allowed = if start_first { 2 } else { 1 };
            for slot in 1..=3u64 {
                let live = after
                    .values()
                    .filter(|t| t.slot == slot && is_live(t) && t.status.state <= TaskState::RUNNING)
                    .count();
                proptest::prop_assert!(live <= allowed, "slot {slot}: {live} live; {p:?}");
            }
        }
    }
}
