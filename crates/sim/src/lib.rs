//! Scale simulation for the benchmark harness (issue 7): **simulated** nodes.
//!
//! A simulated node is what the managers see of a worker, and nothing else: it joins with the
//! worker join token and its own CSR through the real `Ca` service, opens a real dispatcher
//! session over mutual TLS with the certificate it was issued, heartbeats, takes the
//! assignments stream and reports every task it is given as RUNNING (and every task it is
//! told to stop as SHUTDOWN) without running anything. Hundreds of them share one process as
//! tokio tasks, so thousands of them fit on a small machine and the managers' side (CA, Raft,
//! scheduler, dispatcher fan-out, status batching) is what gets measured.
//!
//! This module holds the decisions, free of I/O: which statuses a node reports for its
//! assignment set ([`SimNode::apply`]), and the counters the harness reads ([`Stats`]).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use swarmd_types::dispatcher::{
    Assignment, AssignmentAction, AssignmentsKind, AssignmentsMessage, TaskStatusUpdate,
};
use swarmd_types::models::TaskState;
use swarmd_types::{TaskStatus, timefmt};

/// One simulated node's view of its assignments: task ID → the state it last reported.
#[derive(Debug, Default, Clone)]
pub struct SimNode {
    reported: HashMap<String, TaskState>,
    /// Tasks whose RUNNING report the manager acknowledged (counted once each).
    acked_running: HashSet<String>,
}

/// What one assignments message did to a node.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Applied {
    /// Tasks seen for the first time (each is one placement the scheduler committed).
    pub new_tasks: u64,
    /// The statuses to send in one `update_task_status` call.
    pub reports: Vec<TaskStatusUpdate>,
}

/// The state a simulated node reports for a task, given what it has already reported:
/// RUNNING at once for a task meant to run, SHUTDOWN for one meant to stop; `None` when
/// that (or a later state) is already reported.
pub fn next_report(
    desired: TaskState,
    observed: TaskState,
    reported: Option<TaskState>,
) -> Option<TaskState> {
    let already = reported.unwrap_or(observed).max(observed);
    let target = if desired <= TaskState::RUNNING {
        TaskState::RUNNING
    } else {
        TaskState::SHUTDOWN
    };
    // Never backwards: a task that already ended (say, FAILED) stays as the manager knows it.
    (already < target && already <= TaskState::RUNNING).then_some(target)
}

impl SimNode {
    /// Tasks the node holds now.
    pub fn tasks(&self) -> usize {
        self.reported.len()
    }

    /// Applies one assignments message and returns the reports it calls for. `Complete`
    /// replaces the set (tasks missing from it are forgotten); `Incremental` changes it.
    pub fn apply(&mut self, msg: &AssignmentsMessage, now: &str) -> Applied {
        let mut out = Applied::default();
        if msg.kind == AssignmentsKind::Complete {
            let keep: std::collections::HashSet<&str> = msg
                .changes
                .iter()
                .filter(|c| c.action == AssignmentAction::Update)
                .map(|c| c.assignment.id())
                .collect();
            self.reported.retain(|id, _| keep.contains(id.as_str()));
        }
        for change in &msg.changes {
            let Assignment::Task(task) = &change.assignment else {
                continue;
            };
            if change.action == AssignmentAction::Remove {
                self.reported.remove(&task.id);
                continue;
            }
            let known = self.reported.get(&task.id).copied();
            if known.is_none() {
                out.new_tasks += 1;
            }
            // A complete set says what the manager has: what it lacks (a report lost with
            // the previous session) is reported again, as a real agent keeps its reports
            // until they are acknowledged.
            let prior = if msg.kind == AssignmentsKind::Complete {
                None
            } else {
                known
            };
            match next_report(task.desired_state, task.status.state, prior) {
                Some(state) => {
                    self.reported.insert(task.id.clone(), state);
                    out.reports.push(TaskStatusUpdate {
                        task_id: task.id.clone(),
                        status: TaskStatus {
                            state,
                            timestamp: now.to_string(),
                            message: if state == TaskState::RUNNING {
                                "started (simulated node: nothing runs)".into()
                            } else {
                                "shut down (simulated node)".into()
                            },
                            started_at: if state == TaskState::RUNNING {
                                now.to_string()
                            } else {
                                task.status.started_at.clone()
                            },
                            ..Default::default()
                        },
                    });
                }
                None => {
                    let seen = prior.unwrap_or(task.status.state).max(task.status.state);
                    self.reported.insert(task.id.clone(), seen);
                }
            }
        }
        out
    }
}

impl SimNode {
    /// Records that the manager acknowledged `running` (task IDs reported RUNNING); returns
    /// how many of them it had not acknowledged before, so a report sent again after a
    /// reconnect does not count twice.
    pub fn acknowledged(&mut self, running: Vec<String>) -> u64 {
        running
            .into_iter()
            .filter(|id| self.acked_running.insert(id.clone()))
            .count() as u64
    }
}

/// Counters shared by all simulated nodes of a process; printed as JSON lines.
#[derive(Debug, Default)]
pub struct Stats {
    pub joined: AtomicU64,
    pub join_errors: AtomicU64,
    pub sessions: AtomicU64,
    pub session_errors: AtomicU64,
    pub heartbeats: AtomicU64,
    pub heartbeat_errors: AtomicU64,
    /// Tasks received for the first time (placements).
    pub assigned: AtomicU64,
    /// RUNNING reports the dispatcher acknowledged (it answers after the Raft commit).
    pub running: AtomicU64,
    pub shutdown: AtomicU64,
    pub report_errors: AtomicU64,
    /// Unix time (ms) of the latest placement and of the latest acknowledged RUNNING report.
    pub last_assigned_ms: AtomicU64,
    pub last_running_ms: AtomicU64,
}

/// A point-in-time copy of [`Stats`].
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Snapshot {
    pub t_ms: u64,
    pub joined: u64,
    pub join_errors: u64,
    pub sessions: u64,
    pub session_errors: u64,
    pub heartbeats: u64,
    pub heartbeat_errors: u64,
    pub assigned: u64,
    pub running: u64,
    pub shutdown: u64,
    pub report_errors: u64,
    pub last_assigned_ms: u64,
    pub last_running_ms: u64,
}

impl Stats {
    pub fn snapshot(&self, t_ms: u64) -> Snapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Snapshot {
            t_ms,
            joined: g(&self.joined),
            join_errors: g(&self.join_errors),
            sessions: g(&self.sessions),
            session_errors: g(&self.session_errors),
            heartbeats: g(&self.heartbeats),
            heartbeat_errors: g(&self.heartbeat_errors),
            assigned: g(&self.assigned),
            running: g(&self.running),
            shutdown: g(&self.shutdown),
            report_errors: g(&self.report_errors),
            last_assigned_ms: g(&self.last_assigned_ms),
            last_running_ms: g(&self.last_running_ms),
        }
    }
}

/// Milliseconds since the Unix epoch (shared clock of all simulator processes).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The current time as the dispatcher expects it in statuses.
pub fn now_rfc3339() -> String {
    timefmt::now()
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmd_types::Task;
    use swarmd_types::dispatcher::AssignmentChange;

    fn task(id: &str, desired: TaskState, observed: TaskState) -> Task {
        let mut t = Task {
            id: id.into(),
            desired_state: desired,
            ..Default::default()
        };
        t.status.state = observed;
        t
    }

    fn msg(kind: AssignmentsKind, tasks: Vec<(AssignmentAction, Task)>) -> AssignmentsMessage {
        AssignmentsMessage {
            kind,
            changes: tasks
                .into_iter()
                .map(|(action, t)| AssignmentChange {
                    action,
                    assignment: Assignment::Task(t),
                })
                .collect(),
        }
    }

    #[test]
    fn assigned_task_is_reported_running_once() {
        let mut n = SimNode::default();
        let m = msg(
            AssignmentsKind::Complete,
            vec![(
                AssignmentAction::Update,
                task("a", TaskState::RUNNING, TaskState::ASSIGNED),
            )],
        );
        let a = n.apply(&m, "t");
        assert_eq!(a.new_tasks, 1);
        assert_eq!(a.reports.len(), 1);
        assert_eq!(a.reports[0].status.state, TaskState::RUNNING);
        assert_eq!(a.reports[0].status.started_at, "t");
        // The manager echoes the task back (say, with RUNNING stored): nothing more to say.
        let m2 = msg(
            AssignmentsKind::Incremental,
            vec![(
                AssignmentAction::Update,
                task("a", TaskState::RUNNING, TaskState::RUNNING),
            )],
        );
        let a2 = n.apply(&m2, "t2");
        assert_eq!(a2, Applied::default());
    }

    #[test]
    fn stop_is_reported_as_shutdown_and_removal_forgets() {
        let mut n = SimNode::default();
        n.apply(
            &msg(
                AssignmentsKind::Complete,
                vec![(
                    AssignmentAction::Update,
                    task("a", TaskState::RUNNING, TaskState::ASSIGNED),
                )],
            ),
            "t",
        );
        let a = n.apply(
            &msg(
                AssignmentsKind::Incremental,
                vec![(
                    AssignmentAction::Update,
                    task("a", TaskState::SHUTDOWN, TaskState::RUNNING),
                )],
            ),
            "t",
        );
        assert_eq!(a.reports[0].status.state, TaskState::SHUTDOWN);
        assert_eq!(a.new_tasks, 0);
        n.apply(
            &msg(
                AssignmentsKind::Incremental,
                vec![(
                    AssignmentAction::Remove,
                    task("a", TaskState::SHUTDOWN, TaskState::SHUTDOWN),
                )],
            ),
            "t",
        );
        assert_eq!(n.tasks(), 0);
    }

    #[test]
    fn complete_set_drops_tasks_missing_from_it() {
        let mut n = SimNode::default();
        let two = msg(
            AssignmentsKind::Complete,
            vec![
                (
                    AssignmentAction::Update,
                    task("a", TaskState::RUNNING, TaskState::ASSIGNED),
                ),
                (
                    AssignmentAction::Update,
                    task("b", TaskState::RUNNING, TaskState::ASSIGNED),
                ),
            ],
        );
        assert_eq!(n.apply(&two, "t").new_tasks, 2);
        let one = msg(
            AssignmentsKind::Complete,
            vec![(
                AssignmentAction::Update,
                task("b", TaskState::RUNNING, TaskState::RUNNING),
            )],
        );
        let a = n.apply(&one, "t");
        assert_eq!(a.new_tasks, 0);
        assert!(a.reports.is_empty());
        assert_eq!(n.tasks(), 1);
    }

    #[test]
    fn a_report_lost_with_its_session_is_sent_again_and_counted_once() {
        let mut n = SimNode::default();
        let assigned = |kind| {
            msg(
                kind,
                vec![(
                    AssignmentAction::Update,
                    task("a", TaskState::RUNNING, TaskState::ASSIGNED),
                )],
            )
        };
        let first = n.apply(&assigned(AssignmentsKind::Complete), "t");
        assert_eq!(first.reports.len(), 1);
        // The report failed; the next session's complete set still says ASSIGNED.
        let again = n.apply(&assigned(AssignmentsKind::Complete), "t2");
        assert_eq!(again.new_tasks, 0, "not a new placement");
        assert_eq!(again.reports.len(), 1, "reported again");
        assert_eq!(again.reports[0].status.state, TaskState::RUNNING);
        // An incremental echo of the same state is not reported again.
        assert!(
            n.apply(&assigned(AssignmentsKind::Incremental), "t3")
                .reports
                .is_empty()
        );
        assert_eq!(n.acknowledged(vec!["a".into()]), 1);
        assert_eq!(n.acknowledged(vec!["a".into()]), 0, "counted once");
    }

    const STATES: [TaskState; 12] = [
        TaskState::NEW,
        TaskState::PENDING,
        TaskState::ASSIGNED,
        TaskState::ACCEPTED,
        TaskState::PREPARING,
        TaskState::STARTING,
        TaskState::RUNNING,
        TaskState::COMPLETE,
        TaskState::SHUTDOWN,
        TaskState::FAILED,
        TaskState::REJECTED,
        TaskState::ORPHANED,
    ];

    proptest::proptest! {
        /// Reports only ever move a task forward, and never out of a terminal state.
        #[test]
        fn reports_never_go_backwards(d in 0usize..12, o in 0usize..12, r in proptest::option::of(0usize..12)) {
            let (desired, observed) = (STATES[d], STATES[o]);
            let reported = r.map(|i| STATES[i]);
            if let Some(next) = next_report(desired, observed, reported) {
                proptest::prop_assert!(next > observed);
                proptest::prop_assert!(reported.is_none_or(|p| next > p));
                proptest::prop_assert!(observed <= TaskState::RUNNING);
            }
        }
    }
}
