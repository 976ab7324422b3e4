//! The task runner: one loop per task that moves it through its states with a
//! [`Controller`].
//!
//! The decision of what to do next is [`decide`], a pure function of the desired state,
//! the last reported state and the outcome of the last controller step (like swarmkit's
//! `exec.Do`, but without I/O inside, so every transition is unit-tested). `run` is the
//! thin loop that performs the chosen step, reports states through the worker and reacts
//! to desired-state changes.
//!
//! States only move forward (docs/DESIGN.md §2 principle 4): `decide` never returns a report at or
//! below the current state, and the loop refuses one if it ever did.

use std::sync::Arc;
use std::time::Duration;

use bollard_stubs::models::{ContainerStatus, PortStatus, TaskState};
use swarmd_types::TaskStatus;
use swarmd_types::dispatcher::TaskStatusUpdate;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::exec::{Controller, ExecError, ExitStatus, TaskRuntime};

/// A controller step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Prepare,
    Start,
    Wait,
    Shutdown,
    Remove,
}

/// The result of the last controller step, fed back into [`decide`].
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Prepared(Result<(), ExecError>),
    Started(Result<(), ExecError>),
    Exited(Result<ExitStatus, ExecError>),
    ShutDown(Result<(), ExecError>),
    Removed(Result<(), ExecError>),
}

/// A status to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub state: TaskState,
    pub message: String,
    /// Error text (empty unless the task failed or was rejected).
    pub err: String,
}

/// What the runner should do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Report this status; the task is then in `state`.
    Report(Report),
    /// Perform a controller step and feed its outcome back.
    Do(Op),
    /// The step failed in a way that may pass (engine unreachable): back off, then retry.
    Retry(Op),
    /// Nothing to do until the desired state changes.
    Idle,
    /// The task is removed; the runner ends.
    Done,
}

fn report(state: TaskState, message: &str, err: impl Into<String>) -> Action {
    Action::Report(Report {
        state,
        message: message.to_string(),
        err: err.into(),
    })
}

/// A step failure: rejected before starting (the task never ran), failed after.
fn fatal(state: TaskState, err: &ExecError) -> Action {
    if state < TaskState::STARTING {
        report(TaskState::REJECTED, "rejected", err.to_string())
    } else {
        report(TaskState::FAILED, "failed", err.to_string())
    }
}

/// Whether the orchestrator wants the task stopped (SHUTDOWN, REMOVE, ORPHANED and the
/// terminal states, which are never desired for a task that should run).
fn stop_wanted(desired: TaskState) -> bool {
    desired >= TaskState::SHUTDOWN
}

/// Decides the next action for a task whose desired state is `desired`, whose last
/// reported state is `state`, given the outcome of the step just performed (if any).
///
/// Run path: NEW..ASSIGNED → ACCEPTED → PREPARING → (prepare) READY → STARTING → (start)
/// RUNNING → (wait) COMPLETE | FAILED; never past the desired state except by exiting.
/// Stop path: any state below SHUTDOWN → (shutdown) SHUTDOWN; then, for REMOVE, remove.
pub fn decide(desired: TaskState, state: TaskState, outcome: Option<&Outcome>) -> Action {
    use TaskState as S;
    if stop_wanted(desired) {
        // A task that already ended (COMPLETE included) keeps its final state, as in
        // Docker's `service ps` ("Shutdown  Complete 2 minutes ago").
        if state > S::RUNNING {
            if desired != S::REMOVE {
                return Action::Idle;
            }
            return match outcome {
                Some(Outcome::Removed(Ok(()))) => Action::Done,
                Some(Outcome::Removed(Err(e))) if e.is_temporary() => Action::Retry(Op::Remove),
                // A permanent removal error is logged by the loop; retrying will not help.
                Some(Outcome::Removed(Err(_))) => Action::Done,
                _ => Action::Do(Op::Remove),
            };
        }
        return match outcome {
            Some(Outcome::ShutDown(Ok(()))) => report(S::SHUTDOWN, "shutdown", ""),
            Some(Outcome::ShutDown(Err(e))) if e.is_temporary() => Action::Retry(Op::Shutdown),
            Some(Outcome::ShutDown(Err(e))) => fatal(state, e),
            _ => Action::Do(Op::Shutdown),
        };
    }
    // Steps that only move the state forward: taken only up to the desired state.
    let step = |next: TaskState, message: &str| {
        if next > desired {
            Action::Idle
        } else {
            report(next, message, "")
        }
    };
    match state {
        S::NEW | S::ALLOCATED | S::PENDING | S::ASSIGNED => step(S::ACCEPTED, "accepted"),
        S::ACCEPTED => step(S::PREPARING, "preparing"),
        S::PREPARING if S::READY > desired => Action::Idle,
        S::PREPARING => match outcome {
            Some(Outcome::Prepared(Ok(()))) => report(S::READY, "prepared", ""),
            Some(Outcome::Prepared(Err(e))) if e.is_temporary() => Action::Retry(Op::Prepare),
            Some(Outcome::Prepared(Err(e))) => fatal(state, e),
            _ => Action::Do(Op::Prepare),
        },
        S::READY => step(S::STARTING, "starting"),
        S::STARTING if S::RUNNING > desired => Action::Idle,
        S::STARTING => match outcome {
            Some(Outcome::Started(Ok(()))) => report(S::RUNNING, "started", ""),
            Some(Outcome::Started(Err(e))) if e.is_temporary() => Action::Retry(Op::Start),
            Some(Outcome::Started(Err(e))) => fatal(state, e),
            _ => Action::Do(Op::Start),
        },
        S::RUNNING => match outcome {
            Some(Outcome::Exited(Ok(s))) if s.success() => report(S::COMPLETE, "finished", ""),
            Some(Outcome::Exited(Ok(s))) => report(
                S::FAILED,
                "failed",
                ExecError::NonZeroExit(s.code).to_string(),
            ),
            Some(Outcome::Exited(Err(e))) if e.is_temporary() => Action::Retry(Op::Wait),
            Some(Outcome::Exited(Err(e))) => fatal(state, e),
            _ => Action::Do(Op::Wait),
        },
        // COMPLETE and beyond: the task is done running.
        _ => Action::Idle,
    }
}

/// Why a runner ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunnerExit {
    /// The task was removed (desired REMOVE): forget it.
    Removed,
    /// The agent is stopping; the task is left as it is for the next agent to adopt.
    Cancelled,
}

/// Everything one runner needs.
pub(crate) struct RunnerCtx {
    pub rt: TaskRuntime,
    pub ctlr: Arc<dyn Controller>,
    /// The last reported status (the runner's starting point).
    pub status: TaskStatus,
    pub desired: watch::Receiver<TaskState>,
    /// Status updates go to the worker, which persists and reports them.
    pub updates: mpsc::UnboundedSender<TaskStatusUpdate>,
    pub cancel: CancellationToken,
}

/// Exponential backoff with jitter for retried steps and reconnects.
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max,
            next: min,
        }
    }

    pub(crate) fn reset(&mut self) {
        self.next = self.min;
    }

    /// The next delay: the current one ±20 %, then doubled up to the cap.
    pub(crate) fn next_delay(&mut self) -> Duration {
        use rand::Rng;
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        let jitter = rand::rng().random_range(0.8..1.2);
        base.mul_f64(jitter)
    }
}

/// Waits for a change of the desired state; `false` when the worker is gone.
async fn desired_changed(rx: &mut watch::Receiver<TaskState>) -> bool {
    rx.changed().await.is_ok()
}

/// Runs one task until it is removed or the agent stops.
pub(crate) async fn run(mut ctx: RunnerCtx) -> RunnerExit {
    let task_id = ctx.rt.task_id.clone();
    let mut outcome: Option<Outcome> = None;
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    let mut exit_code: Option<i64> = None;
    loop {
        if ctx.cancel.is_cancelled() {
            return RunnerExit::Cancelled;
        }
        let desired = *ctx.desired.borrow_and_update();
        let state = ctx.status.state;
        if let Some(Outcome::Exited(Ok(s))) = &outcome {
            exit_code = Some(s.code);
        }
        let action = decide(desired, state, outcome.take().as_ref());
        tracing::debug!(task.id = %task_id, ?desired, ?state, ?action, "runner step");
        match action {
            Action::Report(r) => {
                if r.state <= state {
                    // decide() never does this; refuse rather than move backwards.
                    tracing::error!(task.id = %task_id, from = ?state, to = ?r.state, "refusing backward transition");
                    tokio::select! {
                        _ = ctx.cancel.cancelled() => return RunnerExit::Cancelled,
                        ok = desired_changed(&mut ctx.desired) => if !ok { return RunnerExit::Cancelled },
                    }
                    continue;
                }
                let status = build_status(&ctx, &r, exit_code).await;
                tracing::info!(task.id = %task_id, from = %state, to = %r.state, err = %r.err, "task state changed");
                ctx.status = status.clone();
                if ctx
                    .updates
                    .send(TaskStatusUpdate {
                        task_id: task_id.clone(),
                        status,
                    })
                    .is_err()
                {
                    return RunnerExit::Cancelled;
                }
                backoff.reset();
            }
            Action::Do(op) | Action::Retry(op) => {
                if matches!(action, Action::Retry(_)) {
                    let delay = backoff.next_delay();
                    tracing::debug!(task.id = %task_id, ?op, ?delay, "retrying step");
                    tokio::select! {
                        _ = ctx.cancel.cancelled() => return RunnerExit::Cancelled,
                        ok = desired_changed(&mut ctx.desired) => {
                            if !ok { return RunnerExit::Cancelled }
                            continue;
                        }
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
                // Steps toward running yield to a desired-state change (a prepare pulling
                // an image must not delay a shutdown); stopping steps run to completion.
                let interruptible = matches!(op, Op::Prepare | Op::Start | Op::Wait);
                let step = perform(ctx.ctlr.clone(), ctx.rt.stop_grace(), op);
                tokio::pin!(step);
                let res = if interruptible {
                    tokio::select! {
                        _ = ctx.cancel.cancelled() => return RunnerExit::Cancelled,
                        ok = desired_changed(&mut ctx.desired) => {
                            if !ok { return RunnerExit::Cancelled }
                            None
                        }
                        o = &mut step => Some(o),
                    }
                } else {
                    tokio::select! {
                        _ = ctx.cancel.cancelled() => return RunnerExit::Cancelled,
                        o = &mut step => Some(o),
                    }
                };
                if let Some(o) = &res {
                    log_outcome(&task_id, o);
                }
                outcome = res;
            }
            Action::Idle => {
                tokio::select! {
                    _ = ctx.cancel.cancelled() => return RunnerExit::Cancelled,
                    ok = desired_changed(&mut ctx.desired) => if !ok { return RunnerExit::Cancelled },
                }
            }
            Action::Done => return RunnerExit::Removed,
        }
    }
}

async fn perform(c: Arc<dyn Controller>, grace: Duration, op: Op) -> Outcome {
    match op {
        Op::Prepare => Outcome::Prepared(c.prepare().await),
        Op::Start => Outcome::Started(c.start().await),
        Op::Wait => Outcome::Exited(c.wait().await),
        Op::Shutdown => Outcome::ShutDown(c.shutdown(grace).await),
        Op::Remove => Outcome::Removed(c.remove().await),
    }
}

fn log_outcome(task_id: &str, o: &Outcome) {
    let err = match o {
        Outcome::Prepared(Err(e))
        | Outcome::Started(Err(e))
        | Outcome::Exited(Err(e))
        | Outcome::ShutDown(Err(e))
        | Outcome::Removed(Err(e)) => e,
        _ => return,
    };
    if err.is_temporary() {
        tracing::warn!(task.id = %task_id, outcome = ?o, "task step failed, will retry");
    } else {
        tracing::warn!(task.id = %task_id, error = %err, "task step failed");
    }
}

/// The full status for a report: the state change plus what the executor observes
/// (container ID, pid, exit code, bound ports).
async fn build_status(ctx: &RunnerCtx, r: &Report, exit_code: Option<i64>) -> TaskStatus {
    let mut status = TaskStatus {
        state: r.state,
        timestamp: swarmd_types::timefmt::now(),
        message: r.message.clone(),
        err: r.err.clone(),
        container: ctx.status.container.clone(),
        ports: ctx.status.ports.clone(),
        sched_err: String::new(),
        started_at: if r.state == TaskState::RUNNING {
            swarmd_types::timefmt::now()
        } else {
            ctx.status.started_at.clone()
        },
    };
    // Before READY there is nothing to observe.
    if r.state < TaskState::READY || r.state == TaskState::REJECTED {
        return status;
    }
    match tokio::time::timeout(Duration::from_secs(5), ctx.ctlr.status()).await {
        Ok(Ok(rs)) if rs.exists => {
            status.container = Some(ContainerStatus {
                container_id: rs.container_id.clone(),
                pid: rs.pid,
                exit_code: rs.exit_code.or(exit_code),
            });
            let ports = rs.port_configs(&ctx.rt);
            if !ports.is_empty() {
                status.ports = Some(PortStatus { ports: Some(ports) });
            }
        }
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::debug!(task.id = %ctx.rt.task_id, error = %e, "runtime status unavailable")
        }
        Err(_) => tracing::debug!(task.id = %ctx.rt.task_id, "runtime status timed out"),
    }
    if let (Some(code), Some(c)) = (exit_code, status.container.as_mut())
        && c.exit_code.is_none()
    {
        c.exit_code = Some(code);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use TaskState as S;

    const ALL: [TaskState; 15] = [
        S::NEW,
        S::ALLOCATED,
        S::PENDING,
        S::ASSIGNED,
        S::ACCEPTED,
        S::PREPARING,
        S::READY,
        S::STARTING,
        S::RUNNING,
        S::COMPLETE,
        S::SHUTDOWN,
        S::FAILED,
        S::REJECTED,
        S::REMOVE,
        S::ORPHANED,
    ];

    fn ok_report(state: TaskState, message: &str) -> Action {
        report(state, message, "")
    }

    fn all_outcomes() -> Vec<Option<Outcome>> {
        let perm = || ExecError::Engine("boom".into());
        let temp = || ExecError::Unavailable("down".into());
        vec![
            None,
            Some(Outcome::Prepared(Ok(()))),
            Some(Outcome::Prepared(Err(perm()))),
            Some(Outcome::Prepared(Err(temp()))),
            Some(Outcome::Started(Ok(()))),
            Some(Outcome::Started(Err(perm()))),
            Some(Outcome::Started(Err(temp()))),
            Some(Outcome::Exited(Ok(ExitStatus { code: 0 }))),
            Some(Outcome::Exited(Ok(ExitStatus { code: 2 }))),
            Some(Outcome::Exited(Err(ExecError::ExitUnknown))),
            Some(Outcome::Exited(Err(temp()))),
            Some(Outcome::ShutDown(Ok(()))),
            Some(Outcome::ShutDown(Err(perm()))),
            Some(Outcome::ShutDown(Err(temp()))),
            Some(Outcome::Removed(Ok(()))),
            Some(Outcome::Removed(Err(perm()))),
            Some(Outcome::Removed(Err(temp()))),
        ]
    }

    #[test]
    fn run_path_transitions() {
        let d = S::RUNNING;
        let table: Vec<(TaskState, Option<Outcome>, Action)> = vec![
            (S::NEW, None, ok_report(S::ACCEPTED, "accepted")),
            (S::PENDING, None, ok_report(S::ACCEPTED, "accepted")),
            (S::ASSIGNED, None, ok_report(S::ACCEPTED, "accepted")),
            (S::ACCEPTED, None, ok_report(S::PREPARING, "preparing")),
            (S::PREPARING, None, Action::Do(Op::Prepare)),
            (
                S::PREPARING,
                Some(Outcome::Prepared(Ok(()))),
                ok_report(S::READY, "prepared"),
            ),
            (S::READY, None, ok_report(S::STARTING, "starting")),
            (S::STARTING, None, Action::Do(Op::Start)),
            (
                S::STARTING,
                Some(Outcome::Started(Ok(()))),
                ok_report(S::RUNNING, "started"),
            ),
            (S::RUNNING, None, Action::Do(Op::Wait)),
            // Health: never healthy fails the start; unhealthy later fails the wait.
            (
                S::STARTING,
                Some(Outcome::Started(Err(ExecError::Unhealthy))),
                report(S::FAILED, "failed", "dockerexec: unhealthy container"),
            ),
            (
                S::RUNNING,
                Some(Outcome::Exited(Err(ExecError::UnhealthyExit(137)))),
                report(
                    S::FAILED,
                    "failed",
                    "task: non-zero exit (137): dockerexec: unhealthy container",
                ),
            ),
            (
                S::RUNNING,
                Some(Outcome::Exited(Ok(ExitStatus { code: 0 }))),
                ok_report(S::COMPLETE, "finished"),
            ),
            (
                S::RUNNING,
                Some(Outcome::Exited(Ok(ExitStatus { code: 1 }))),
                report(S::FAILED, "failed", "task: non-zero exit (1)"),
            ),
            // Killed behind our back (signal 9 → 137) is a failure too.
            (
                S::RUNNING,
                Some(Outcome::Exited(Ok(ExitStatus { code: 137 }))),
                report(S::FAILED, "failed", "task: non-zero exit (137)"),
            ),
            // Container removed behind our back / adopted process vanished.
            (
                S::RUNNING,
                Some(Outcome::Exited(Err(ExecError::NotFound("t".into())))),
                report(S::FAILED, "failed", "no such container for task t"),
            ),
            (
                S::RUNNING,
                Some(Outcome::Exited(Err(ExecError::ExitUnknown))),
                report(
                    S::FAILED,
                    "failed",
                    "exit status unknown (process adopted after restart)",
                ),
            ),
            (S::COMPLETE, None, Action::Idle),
            (S::FAILED, None, Action::Idle),
            (S::REJECTED, None, Action::Idle),
            (S::SHUTDOWN, None, Action::Idle),
        ];
        for (state, outcome, want) in table {
            assert_eq!(
                decide(d, state, outcome.as_ref()),
                want,
                "state {state:?} outcome {outcome:?}"
            );
        }
    }

    #[test]
    fn failures_reject_before_start_and_fail_after() {
        let no_image = ExecError::NoSuchImage("foo:latest".into());
        assert_eq!(
            decide(
                S::RUNNING,
                S::PREPARING,
                Some(&Outcome::Prepared(Err(no_image)))
            ),
            report(S::REJECTED, "rejected", "No such image: foo:latest")
        );
        assert_eq!(
            decide(
                S::RUNNING,
                S::PREPARING,
                Some(&Outcome::Prepared(Err(ExecError::NoCommand)))
            ),
            report(
                S::REJECTED,
                "rejected",
                "no command given: the process executor needs a command"
            )
        );
        assert_eq!(
            decide(
                S::RUNNING,
                S::STARTING,
                Some(&Outcome::Started(Err(ExecError::Io("exec failed".into()))))
            ),
            report(S::FAILED, "failed", "exec failed")
        );
    }

    #[test]
    fn temporary_failures_are_retried() {
        let t = || ExecError::Unavailable("engine down".into());
        assert_eq!(
            decide(S::RUNNING, S::PREPARING, Some(&Outcome::Prepared(Err(t())))),
            Action::Retry(Op::Prepare)
        );
        assert_eq!(
            decide(S::RUNNING, S::STARTING, Some(&Outcome::Started(Err(t())))),
            Action::Retry(Op::Start)
        );
        assert_eq!(
            decide(S::RUNNING, S::RUNNING, Some(&Outcome::Exited(Err(t())))),
            Action::Retry(Op::Wait)
        );
        assert_eq!(
            decide(S::SHUTDOWN, S::RUNNING, Some(&Outcome::ShutDown(Err(t())))),
            Action::Retry(Op::Shutdown)
        );
        assert_eq!(
            decide(S::REMOVE, S::SHUTDOWN, Some(&Outcome::Removed(Err(t())))),
            Action::Retry(Op::Remove)
        );
    }

    #[test]
    fn desired_shutdown_at_every_stage() {
        for state in ALL {
            let got = decide(S::SHUTDOWN, state, None);
            if state > S::RUNNING {
                assert_eq!(got, Action::Idle, "{state:?}");
            } else {
                assert_eq!(got, Action::Do(Op::Shutdown), "{state:?}");
                assert_eq!(
                    decide(S::SHUTDOWN, state, Some(&Outcome::ShutDown(Ok(())))),
                    ok_report(S::SHUTDOWN, "shutdown"),
                    "{state:?}"
                );
            }
        }
        // A desired change beats the outcome of a run step that was in flight.
        assert_eq!(
            decide(
                S::SHUTDOWN,
                S::RUNNING,
                Some(&Outcome::Exited(Ok(ExitStatus { code: 143 })))
            ),
            Action::Do(Op::Shutdown)
        );
        // A shutdown that cannot be done fails the task.
        assert_eq!(
            decide(
                S::SHUTDOWN,
                S::RUNNING,
                Some(&Outcome::ShutDown(Err(ExecError::Engine("nope".into()))))
            ),
            report(S::FAILED, "failed", "nope")
        );
        assert_eq!(
            decide(
                S::SHUTDOWN,
                S::ACCEPTED,
                Some(&Outcome::ShutDown(Err(ExecError::Engine("nope".into()))))
            ),
            report(S::REJECTED, "rejected", "nope")
        );
    }

    #[test]
    fn desired_remove_shuts_down_then_removes() {
        for state in ALL {
            let got = decide(S::REMOVE, state, None);
            if state > S::RUNNING {
                assert_eq!(got, Action::Do(Op::Remove), "{state:?}");
                assert_eq!(
                    decide(S::REMOVE, state, Some(&Outcome::Removed(Ok(())))),
                    Action::Done
                );
                assert_eq!(
                    decide(
                        S::REMOVE,
                        state,
                        Some(&Outcome::Removed(Err(ExecError::Engine("x".into()))))
                    ),
                    Action::Done
                );
            } else {
                assert_eq!(got, Action::Do(Op::Shutdown), "{state:?}");
            }
        }
    }

    #[test]
    fn never_runs_past_the_desired_state() {
        assert_eq!(
            decide(S::READY, S::ASSIGNED, None),
            ok_report(S::ACCEPTED, "accepted")
        );
        assert_eq!(
            decide(S::READY, S::PREPARING, None),
            Action::Do(Op::Prepare)
        );
        assert_eq!(decide(S::READY, S::READY, None), Action::Idle);
        assert_eq!(decide(S::ACCEPTED, S::ACCEPTED, None), Action::Idle);
        assert_eq!(decide(S::ACCEPTED, S::PREPARING, None), Action::Idle);
        // Jobs want COMPLETE: same path as RUNNING.
        assert_eq!(decide(S::COMPLETE, S::RUNNING, None), Action::Do(Op::Wait));
        assert_eq!(decide(S::COMPLETE, S::COMPLETE, None), Action::Idle);
    }

    /// The forward-only invariant over every combination of inputs.
    #[test]
    fn reports_only_move_forward() {
        for desired in ALL {
            for state in ALL {
                for outcome in all_outcomes() {
                    if let Action::Report(r) = decide(desired, state, outcome.as_ref()) {
                        assert!(
                            r.state > state,
                            "desired {desired:?} state {state:?} outcome {outcome:?} -> {:?}",
                            r.state
                        );
                    }
                }
            }
        }
    }

    /// Following decide() from ASSIGNED with every step succeeding reaches the goal
    /// without getting stuck.
    #[test]
    fn happy_path_walk() {
        let mut state = S::ASSIGNED;
        let mut outcome = None;
        let mut reports = Vec::new();
        for _ in 0..20 {
            match decide(S::RUNNING, state, outcome.take().as_ref()) {
                Action::Report(r) => {
                    reports.push(r.message.clone());
                    state = r.state;
                }
                Action::Do(Op::Prepare) => outcome = Some(Outcome::Prepared(Ok(()))),
                Action::Do(Op::Start) => outcome = Some(Outcome::Started(Ok(()))),
                Action::Do(Op::Wait) => outcome = Some(Outcome::Exited(Ok(ExitStatus { code: 0 }))),
                Action::Idle => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(state, S::COMPLETE);
        assert_eq!(
            reports,
            vec![
                "accepted",
                "preparing",
                "prepared",
                "starting",
                "started",
                "finished"
            ]
        );
    }

    mod with_fake_executor {
        use super::*;
        use crate::exec::Executor;
        use crate::exec::fake::FakeExecutor;
        use bollard_stubs::models::TaskSpecContainerSpec;

        struct Harness {
            exec: Arc<FakeExecutor>,
            desired: watch::Sender<TaskState>,
            updates: mpsc::UnboundedReceiver<TaskStatusUpdate>,
            cancel: CancellationToken,
            handle: tokio::task::JoinHandle<RunnerExit>,
        }

        fn spawn(id: &str, image: &str, command: &[&str]) -> Harness {
            let exec = Arc::new(FakeExecutor::default());
            let mut rt = TaskRuntime::for_existing(id, "127.0.0.1");
            rt.spec = TaskSpecContainerSpec {
                image: Some(image.into()),
                command: Some(command.iter().map(|s| s.to_string()).collect()),
                ..Default::default()
            };
            let ctlr = exec.controller(&rt);
            let (desired, desired_rx) = watch::channel(S::RUNNING);
            let (tx, updates) = mpsc::unbounded_channel();
            let cancel = CancellationToken::new();
            let ctx = RunnerCtx {
                rt,
                ctlr,
                status: TaskStatus {
                    state: S::ASSIGNED,
                    ..Default::default()
                },
                desired: desired_rx,
                updates: tx,
                cancel: cancel.clone(),
            };
            let handle = tokio::spawn(run(ctx));
            Harness {
                exec,
                desired,
                updates,
                cancel,
                handle,
            }
        }

        impl Harness {
            /// Collects reported statuses until one in `state` arrives.
            async fn until(&mut self, state: TaskState) -> Vec<TaskStatus> {
                let mut seen = Vec::new();
                loop {
                    let u = tokio::time::timeout(Duration::from_secs(10), self.updates.recv())
                        .await
                        .expect("no status within 10 s")
                        .expect("runner gone");
                    let done = u.status.state == state;
                    seen.push(u.status);
                    if done {
                        return seen;
                    }
                }
            }
        }

        #[tokio::test]
        async fn non_zero_exit_fails_the_task() {
            let mut h = spawn("t1", "busybox:latest", &["exit", "3"]);
            let seen = h.until(S::FAILED).await;
            let last = seen.last().unwrap();
            assert_eq!(last.err, "task: non-zero exit (3)");
            assert_eq!(last.container.as_ref().unwrap().exit_code, Some(3));
            let states: Vec<_> = seen.iter().map(|s| s.state).collect();
            assert_eq!(
                states,
                vec![
                    S::ACCEPTED,
                    S::PREPARING,
                    S::READY,
                    S::STARTING,
                    S::RUNNING,
                    S::FAILED
                ]
            );
        }

        #[tokio::test]
        async fn exit_zero_completes() {
            let mut h = spawn("t1", "busybox:latest", &["exit", "0"]);
            let seen = h.until(S::COMPLETE).await;
            assert_eq!(seen.last().unwrap().message, "finished");
        }

        #[tokio::test]
        async fn missing_image_rejects() {
            let mut h = spawn("t1", "missing:latest", &["true"]);
            let seen = h.until(S::REJECTED).await;
            assert_eq!(seen.last().unwrap().err, "No such image: missing:latest");
        }

        #[tokio::test]
        async fn killed_behind_our_back_fails() {
            let mut h = spawn("t1", "busybox:latest", &["serve"]);
            h.until(S::RUNNING).await;
            h.exec.exit("t1", 137);
            let seen = h.until(S::FAILED).await;
            assert_eq!(seen.last().unwrap().err, "task: non-zero exit (137)");
        }

        #[tokio::test]
        async fn shutdown_then_remove() {
            let mut h = spawn("t1", "busybox:latest", &["serve"]);
            let running = h.until(S::RUNNING).await;
            assert_eq!(
                running.last().unwrap().container.as_ref().unwrap().pid,
                Some(4242)
            );
            h.desired.send_replace(S::SHUTDOWN);
            let seen = h.until(S::SHUTDOWN).await;
            assert_eq!(seen.len(), 1, "nothing between RUNNING and SHUTDOWN");
            assert!(!h.exec.is_running("t1"));
            h.desired.send_replace(S::REMOVE);
            assert_eq!(h.handle.await.unwrap(), RunnerExit::Removed);
            h.exec.wait_removed("t1").await;
        }

        #[tokio::test]
        async fn cancel_leaves_the_task_running() {
            let mut h = spawn("t1", "busybox:latest", &["serve"]);
            h.until(S::RUNNING).await;
            h.cancel.cancel();
            assert_eq!(h.handle.await.unwrap(), RunnerExit::Cancelled);
            assert!(h.exec.is_running("t1"));
        }
    }
}
