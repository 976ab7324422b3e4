//! Task status reports: batched into Raft entries, applied only for tasks on the
//! reporting node and only forward.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures::StreamExt;
use swarmd_store::ProposeError;
use swarmd_types::Task;
use swarmd_types::dispatcher::{DispatchError, TaskStatusUpdate};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::{Dispatcher, unavailable};

/// Most status updates folded into one Raft entry.
const MAX_STATUS_BATCH: usize = swarmd_store::MAX_ACTIONS_PER_ENTRY;
/// How long the batcher waits for more updates before writing.
pub(super) const STATUS_BATCH_WINDOW: Duration = Duration::from_millis(20);
/// Status entries in Raft at once. One at a time capped status writes at one entry per
/// commit latency: with a million placements queued in the log ahead of it, nodes' reports
/// waited past their deadline (BENCHMARKS.md, "Scale simulation").
pub(super) const STATUS_WRITES_IN_FLIGHT: usize = 4;

/// One node's reports and where to answer once they are written.
pub(super) type StatusJob = (
    String,
    Vec<TaskStatusUpdate>,
    oneshot::Sender<Result<(), DispatchError>>,
);

impl Dispatcher {
    /// Folds reports into Raft entries: a batch is written once it holds
    /// [`MAX_STATUS_BATCH`] updates or its first report has waited [`STATUS_BATCH_WINDOW`],
    /// with up to [`STATUS_WRITES_IN_FLIGHT`] entries in Raft at once; while all are in
    /// flight, reports gather into the next batch. Each caller is answered once its entry
    /// committed (or failed).
    pub(super) async fn status_batcher(&self, mut rx: mpsc::Receiver<StatusJob>) {
        use futures::stream::FuturesUnordered;
        let mut writing = FuturesUnordered::new();
        let mut jobs: Vec<StatusJob> = Vec::new();
        let mut count = 0usize;
        // When the oldest gathered report's window ends.
        let mut deadline: Option<Instant> = None;
        let mut closed = false;
        loop {
            let slot_free = writing.len() < STATUS_WRITES_IN_FLIGHT;
            let due = count >= MAX_STATUS_BATCH
                || closed
                || deadline.is_some_and(|d| Instant::now() >= d);
            if slot_free && !jobs.is_empty() && due {
                let batch = std::mem::take(&mut jobs);
                count = 0;
                deadline = None;
                writing.push(async move {
                    let result = self.write_statuses(&batch).await;
                    for (_, _, reply) in batch {
                        let _ = reply.send(result.clone());
                    }
                });
                continue;
            }
            if closed && jobs.is_empty() && writing.is_empty() {
                return;
            }
            let timer = deadline.filter(|_| slot_free && !jobs.is_empty());
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                job = rx.recv(), if !closed && count < MAX_STATUS_BATCH => match job {
                    Some(j) => {
                        count += j.1.len();
                        jobs.push(j);
                        deadline.get_or_insert_with(|| Instant::now() + STATUS_BATCH_WINDOW);
                    }
                    None => closed = true,
                },
                _ = tokio::time::sleep_until(timer.unwrap_or_else(Instant::now)), if timer.is_some() => {}
                Some(()) = writing.next(), if !writing.is_empty() => {}
            }
        }
    }

    /// Applies status reports: only for tasks on the reporting node, only forward.
    async fn write_statuses(&self, jobs: &[StatusJob]) -> Result<(), DispatchError> {
        self.store
            .update(|t, tx| {
                let reports = jobs
                    .iter()
                    .map(|(node, updates, _)| (node.as_str(), &updates[..]));
                for task in status_writes(&t.tasks, reports) {
                    tx.update(task);
                }
                Ok::<_, ProposeError>(())
            })
            .await
            .map_err(unavailable)
    }
}

/// The task writes a batch of reports makes: per task its last report, only from the node
/// the task is on, only forward, and only where it changes the status.
fn status_writes<'a>(
    tasks: &BTreeMap<String, Task>,
    reports: impl IntoIterator<Item = (&'a str, &'a [TaskStatusUpdate])>,
) -> Vec<Task> {
    // The last report of each task, with the task (looked up once).
    let mut latest: HashMap<&str, (&Task, &TaskStatusUpdate)> = HashMap::new();
    for (node_id, updates) in reports {
        for u in updates {
            let Some(task) = tasks.get(&u.task_id) else {
                continue;
            };
            if task.node_id != node_id {
                tracing::warn!(task = %u.task_id, node = %node_id, "status report for a task of another node ignored");
                continue;
            }
            latest.insert(&u.task_id, (task, u));
        }
    }
    let mut out = Vec::new();
    for (id, (task, u)) in latest {
        if u.status.state < task.status.state {
            tracing::debug!(task = %id, from = %task.status.state, to = %u.status.state, "backward status report ignored");
            continue;
        }
        if task.status == u.status {
            continue;
        }
        let mut task = task.clone();
        task.status = u.status.clone();
        out.push(task);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmd_types::models::TaskState;

    fn task(id: &str, node: &str, state: TaskState) -> (String, Task) {
        let mut t = Task {
            id: id.into(),
            node_id: node.into(),
            ..Default::default()
        };
        t.status.state = state;
        (id.to_string(), t)
    }

    fn report(id: &str, state: TaskState) -> TaskStatusUpdate {
        let mut u = TaskStatusUpdate {
            task_id: id.into(),
            status: Default::default(),
        };
        u.status.state = state;
        u
    }

    fn written(
        tasks: &BTreeMap<String, Task>,
        reports: &[(&str, Vec<TaskStatusUpdate>)],
    ) -> Vec<(String, TaskState)> {
        let mut out: Vec<_> = status_writes(tasks, reports.iter().map(|(n, u)| (*n, &u[..])))
            .into_iter()
            .map(|t| (t.id, t.status.state))
            .collect();
        out.sort();
        out
    }

    #[test]
    fn the_last_forward_report_of_the_tasks_node_is_written() {
        let tasks = BTreeMap::from([
            task("t1", "n1", TaskState::ASSIGNED),
            task("t2", "n1", TaskState::RUNNING),
            task("t3", "n2", TaskState::ASSIGNED),
        ]);
        let reports = [
            (
                "n1",
                vec![
                    report("t1", TaskState::STARTING),
                    report("t2", TaskState::STARTING),
                    report("gone", TaskState::RUNNING),
                ],
            ),
            // Another node cannot move n2's task.
            ("n1", vec![report("t3", TaskState::RUNNING)]),
            ("n1", vec![report("t1", TaskState::RUNNING)]),
        ];
        assert_eq!(
            written(&tasks, &reports),
            [("t1".to_string(), TaskState::RUNNING)]
        );
    }

    #[test]
    fn an_unchanged_status_is_not_written() {
        let tasks = BTreeMap::from([task("t1", "n1", TaskState::RUNNING)]);
        assert!(written(&tasks, &[("n1", vec![report("t1", TaskState::RUNNING)])]).is_empty());
    }
}
