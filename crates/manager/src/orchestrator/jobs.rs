//! The job orchestrators: replicated jobs (`TotalCompletions` runs, at most
//! `MaxConcurrent` at a time) and global jobs (one run per eligible node).
//!
//! As in swarmkit, job tasks are created with desired state COMPLETE: the agent runs them
//! to their end. A completed task is never restarted; a failed one is replaced in its slot
//! as the restart policy allows (a job never restarts on success, whatever the condition).
//! Each `service update` of a job starts a new iteration (`Service::job_iteration`): tasks
//! of older iterations still running are removed and the job runs again from zero.
//!
//! Replicated job tasks get one slot per completion, `0..TotalCompletions` (swarmkit's
//! numbering, which the CLI's job progress display relies on).

use swarmd_types::models::{TaskSpecRestartPolicyConditionEnum, TaskState};
use swarmd_types::{Service, Task};
use time::OffsetDateTime;

use super::slots::{RestartPolicy, SlotKey, eligible_nodes, ended_at, since, with_desired};
use super::{Change, Nodes, Plan, new_task};

/// A job's mode, simplified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobMode {
    Replicated {
        max_concurrent: u64,
        total_completions: u64,
    },
    Global,
}

/// The job mode of a service, if it is a job. Defaults as swarmkit: `MaxConcurrent` 1,
/// `TotalCompletions` = `MaxConcurrent`.
pub fn job_mode(service: &Service) -> Option<JobMode> {
    let m = service.spec.mode.as_ref()?;
    if m.global_job.is_some() {
        return Some(JobMode::Global);
    }
    let r = m.replicated_job.as_ref()?;
    let max_concurrent = r.max_concurrent.filter(|n| *n > 0).unwrap_or(1) as u64;
    let total_completions = r
        .total_completions
        .filter(|n| *n >= 0)
        .map_or(max_concurrent, |n| n as u64);
    Some(JobMode::Replicated {
        max_concurrent,
        total_completions,
    })
}

/// A live job task: meant to run to completion and not ended yet.
fn running(t: &Task) -> bool {
    t.desired_state <= TaskState::COMPLETE && t.status.state <= TaskState::RUNNING
}

/// What a slot of the current iteration needs.
enum SlotState<'a> {
    /// A task completed: the slot is done for this iteration.
    Done,
    /// A task is on its way (or running).
    Active,
    /// The last task failed: restart (now, or after `wait`) or give up.
    Failed { last: &'a Task, attempts: u64 },
    /// Nothing ran in this slot yet.
    Empty,
}

fn slot_state<'a>(
    tasks: &[&'a Task],
    policy: &RestartPolicy,
    now: OffsetDateTime,
) -> SlotState<'a> {
    if tasks.iter().any(|t| t.status.state == TaskState::COMPLETE) {
        return SlotState::Done;
    }
    if tasks.iter().any(|t| running(t)) {
        return SlotState::Active;
    }
    let last = tasks.iter().copied().max_by(|a, b| {
        (&a.status.timestamp, &a.meta.created_at).cmp(&(&b.status.timestamp, &b.meta.created_at))
    });
    match last {
        None => SlotState::Empty,
        Some(last) => SlotState::Failed {
            last,
            attempts: tasks
                .iter()
                .filter(|t| policy.window.is_zero() || since(now, ended_at(t)) <= policy.window)
                .count() as u64,
        },
    }
}

/// Whether the restart policy replaces a failed job task.
fn restarts(policy: &RestartPolicy, attempts: u64) -> bool {
    policy.condition != TaskSpecRestartPolicyConditionEnum::NONE
        && (policy.max_attempts == 0 || attempts <= policy.max_attempts)
}

/// Reconciles one job service. `tasks` are all the service's tasks (any state).
pub fn reconcile_job(
    service: &Service,
    mode: JobMode,
    tasks: &[&Task],
    nodes: &Nodes,
    now: OffsetDateTime,
) -> Plan {
    let mut plan = Plan::default();
    let policy = RestartPolicy::of(service);
    let iteration = Some(service.job_iteration);

    // Earlier iterations are over: what still runs of them is removed, as swarmkit's job
    // reconcilers do (their completed tasks stay in the history).
    let mut current: Vec<&Task> = Vec::new();
    for t in tasks {
        if t.job_iteration == iteration {
            current.push(t);
        } else if t.status.state <= TaskState::RUNNING && t.desired_state < TaskState::REMOVE {
            plan.changes
                .push(Change::Update(with_desired(t, TaskState::REMOVE)));
        }
    }

    let mut slots: std::collections::BTreeMap<SlotKey, Vec<&Task>> = Default::default();
    for t in &current {
        let key = match mode {
            JobMode::Global => SlotKey::Node(t.node_id.clone()),
            JobMode::Replicated { .. } => SlotKey::Slot(t.slot),
        };
        slots.entry(key).or_default().push(t);
    }

    // Failed tasks the agent ended stay in history with desired COMPLETE; mark them shut
    // down so nothing mistakes them for live ones (as the replicated orchestrator does).
    for t in &current {
        if t.status.state > TaskState::COMPLETE && t.desired_state <= TaskState::COMPLETE {
            plan.changes
                .push(Change::Update(with_desired(t, TaskState::SHUTDOWN)));
        }
    }

    let wanted: Vec<SlotKey> = match mode {
        JobMode::Replicated {
            total_completions, ..
        } => (0..total_completions).map(SlotKey::Slot).collect(),
        JobMode::Global => eligible_nodes(service, nodes, &slots).into_iter().collect(),
    };
    let max_active = match mode {
        JobMode::Replicated { max_concurrent, .. } => max_concurrent as usize,
        JobMode::Global => usize::MAX,
    };

    let mut active = 0usize;
    let mut to_restart: Vec<(&SlotKey, &Task)> = Vec::new();
    let mut empty: Vec<&SlotKey> = Vec::new();
    for key in &wanted {
        let ts = slots.get(key).map(Vec::as_slice).unwrap_or(&[]);
        match slot_state(ts, &policy, now) {
            SlotState::Done => {}
            SlotState::Active => active += 1,
            SlotState::Failed { last, attempts } => {
                if restarts(&policy, attempts) {
                    to_restart.push((key, last));
                }
            }
            SlotState::Empty => empty.push(key),
        }
    }

    let create = |key: &SlotKey, plan: &mut Plan| {
        let (slot, node) = match key {
            SlotKey::Slot(s) => (*s, ""),
            SlotKey::Node(n) => (0, n.as_str()),
        };
        let mut t = new_task(service, slot, node, TaskState::COMPLETE, now);
        t.job_iteration = iteration;
        plan.changes.push(Change::Create(t));
    };

    // Failed slots first (they hold a place in the concurrency budget while they wait for
    // their restart delay), then slots that never ran, lowest first.
    for (key, last) in to_restart {
        if active >= max_active {
            break;
        }
        active += 1;
        let waited = since(now, ended_at(last));
        if waited >= policy.delay {
            create(key, &mut plan);
        } else {
            plan.wake(policy.delay - waited);
        }
    }
    for key in empty {
        if active >= max_active {
            break;
        }
        active += 1;
        create(key, &mut plan);
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmd_types::models::{
        ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicatedJob, TaskSpec, TaskSpecRestartPolicy,
    };
    use swarmd_types::{Node, NodeState, TaskStatus, timefmt};

    fn now() -> OffsetDateTime {
        timefmt::parse("2026-01-01T00:01:00Z").unwrap()
    }

    fn job(max: i64, total: i64) -> Service {
        Service {
            id: "svc".into(),
            spec: ServiceSpec {
                name: Some("job".into()),
                mode: Some(ServiceSpecMode {
                    replicated_job: Some(ServiceSpecModeReplicatedJob {
                        max_concurrent: Some(max),
                        total_completions: Some(total),
                    }),
                    ..Default::default()
                }),
                task_template: Some(TaskSpec {
                    restart_policy: Some(TaskSpecRestartPolicy {
                        delay: Some(0),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
            spec_version: 1,
            ..Default::default()
        }
    }

    fn task(id: &str, slot: u64, state: TaskState, iteration: u64) -> Task {
        Task {
            id: id.into(),
            service_id: "svc".into(),
            slot,
            node_id: "n1".into(),
            desired_state: TaskState::COMPLETE,
            job_iteration: Some(iteration),
            status: TaskStatus {
                state,
                timestamp: "2026-01-01T00:00:00Z".into(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn nodes() -> Nodes {
        let mut n = Node {
            id: "n1".into(),
            ..Default::default()
        };
        n.status.state = NodeState::Ready;
        Nodes::from([("n1".to_string(), n)])
    }

    fn run(svc: &Service, tasks: &[&Task]) -> Plan {
        reconcile_job(svc, job_mode(svc).unwrap(), tasks, &nodes(), now())
    }

    fn created_slots(p: &Plan) -> Vec<u64> {
        p.changes
            .iter()
            .filter_map(|c| match c {
                Change::Create(t) => {
                    assert_eq!(t.desired_state, TaskState::COMPLETE);
                    assert_eq!(t.job_iteration, Some(0));
                    Some(t.slot)
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn runs_max_concurrent_at_a_time_until_total() {
        let svc = job(2, 5);
        assert_eq!(created_slots(&run(&svc, &[])), vec![0, 1]);
        let a = task("a", 0, TaskState::COMPLETE, 0);
        let b = task("b", 1, TaskState::RUNNING, 0);
        assert_eq!(created_slots(&run(&svc, &[&a, &b])), vec![2]);
        let done: Vec<Task> = (0..5)
            .map(|s| task(&format!("t{s}"), s, TaskState::COMPLETE, 0))
            .collect();
        let refs: Vec<&Task> = done.iter().collect();
        assert_eq!(run(&svc, &refs), Plan::default(), "complete: nothing more");
    }

    #[test]
    fn failed_tasks_follow_the_restart_policy() {
        let mut svc = job(1, 1);
        let f = task("f", 0, TaskState::FAILED, 0);
        let p = run(&svc, &[&f]);
        assert_eq!(created_slots(&p), vec![0]);

        svc.spec
            .task_template
            .as_mut()
            .unwrap()
            .restart_policy
            .as_mut()
            .unwrap()
            .condition = Some(TaskSpecRestartPolicyConditionEnum::NONE);
        assert!(created_slots(&run(&svc, &[&f])).is_empty());

        let mut svc = job(1, 1);
        svc.spec
            .task_template
            .as_mut()
            .unwrap()
            .restart_policy
            .as_mut()
            .unwrap()
            .delay = Some(120_000_000_000);
        let p = run(&svc, &[&f]);
        assert!(created_slots(&p).is_empty());
        assert!(p.wake_after.is_some());
    }

    #[test]
    fn a_new_iteration_removes_the_old_one_and_runs_again() {
        let mut svc = job(1, 1);
        svc.job_iteration = 1;
        let old_done = task("d", 0, TaskState::COMPLETE, 0);
        let old_running = task("r", 0, TaskState::RUNNING, 0);
        let p = run(&svc, &[&old_done, &old_running]);
        let removed: Vec<&str> = p
            .changes
            .iter()
            .filter_map(|c| match c {
                Change::Update(t) if t.desired_state == TaskState::REMOVE => Some(t.id.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(removed, vec!["r"], "completed tasks stay in the history");
        let created: Vec<&Task> = p
            .changes
            .iter()
            .filter_map(|c| match c {
                Change::Create(t) => Some(t),
                _ => None,
            })
            .collect();
        assert_eq!(created.len(), 1);
        assert_eq!(created[0].job_iteration, Some(1));
    }

    #[test]
    fn global_job_runs_once_per_node() {
        let mut svc = job(1, 1);
        svc.spec.mode = Some(ServiceSpecMode {
            global_job: Some(Default::default()),
            ..Default::default()
        });
        let p = run(&svc, &[]);
        let on: Vec<&str> = p
            .changes
            .iter()
            .filter_map(|c| match c {
                Change::Create(t) => Some(t.node_id.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(on, vec!["n1"]);
        let mut done = task("d", 0, TaskState::COMPLETE, 0);
        done.node_id = "n1".into();
        assert_eq!(run(&svc, &[&done]), Plan::default());
    }

    proptest::proptest! {
        /// Never more live tasks than MaxConcurrent, never more runs than TotalCompletions.
        #[test]
        fn respects_concurrency_and_total(max in 1i64..5, total in 0i64..8, done in 0u64..8, live in 0u64..5) {
            let svc = job(max, total);
            let done = done.min(total as u64);
            let live = live.min(max as u64).min(total as u64 - done);
            let mut ts = Vec::new();
            for s in 0..done { ts.push(task(&format!("d{s}"), s, TaskState::COMPLETE, 0)); }
            for s in done..done + live { ts.push(task(&format!("l{s}"), s, TaskState::RUNNING, 0)); }
            let refs: Vec<&Task> = ts.iter().collect();
            let created = created_slots(&run(&svc, &refs)).len() as u64;
            proptest::prop_assert!(created + live <= max as u64);
            proptest::prop_assert!(created + live + done <= total as u64);
            if live + done < total as u64 && live < max as u64 {
                proptest::prop_assert!(created > 0, "progress while work remains");
            }
        }
    }
}
