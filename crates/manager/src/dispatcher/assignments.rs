//! A node's assignment stream: the complete set, then changes from store events.
//!
//! Besides tasks the set holds the secrets and configs those tasks reference, and only
//! those (swarmkit's dependency tracking): a node learns a secret when a task of its own
//! that needs it is assigned and forgets it when no such task is left, so a node that
//! runs no task referencing a secret never receives it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use futures::StreamExt;
use swarmd_store::{EventAction, EventBatch, MemoryStore, Tables};
use swarmd_types::dispatcher::{
    Assignment, AssignmentAction, AssignmentChange, AssignmentsKind, AssignmentsMessage,
    DispatchStream,
};
use swarmd_types::models::TaskState;
use swarmd_types::{Kind, Object, Task, is_terminal};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Whether a task belongs in the node's assignment set: placed there by the scheduler.
fn assigned_to(t: &Task, node_id: &str) -> bool {
    t.node_id == node_id && t.status.state >= TaskState::ASSIGNED
}

/// What the agent acts on; a status-only change (the agent's own report) is not resent.
type Sent = HashMap<String, (TaskState, u64)>;

/// The secrets and configs a node holds, with the version sent.
type SentDeps = BTreeMap<(Kind, String), u64>;

/// The secret and config IDs referenced by `t`'s container spec.
pub fn task_dependencies(t: &Task) -> impl Iterator<Item = (Kind, &str)> {
    let c = t.spec.container_spec.as_ref();
    let secrets = c
        .and_then(|c| c.secrets.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|r| r.secret_id.as_deref())
        .map(|id| (Kind::Secret, id));
    let configs = c
        .and_then(|c| c.configs.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|r| r.config_id.as_deref())
        .map(|id| (Kind::Config, id));
    secrets.chain(configs)
}

/// The dependencies the node needs now: those of its assigned tasks that have not ended.
/// A task that ended needs its files no more (the executor removed them), so its secrets
/// are withdrawn even while the task object lingers in the history.
fn needed(tables: &Tables, node_id: &str) -> BTreeMap<(Kind, String), Assignment> {
    let mut out = BTreeMap::new();
    for t in tables.tasks_on_node(node_id) {
        if !assigned_to(t, node_id) || is_terminal(t.status.state) {
            continue;
        }
        for (kind, id) in task_dependencies(t) {
            let obj = match kind {
                Kind::Secret => tables.secrets.get(id).cloned().map(Assignment::Secret),
                _ => tables.configs.get(id).cloned().map(Assignment::Config),
            };
            if let Some(obj) = obj {
                out.insert((kind, id.to_string()), obj);
            }
        }
    }
    out
}

fn dep_version(a: &Assignment) -> u64 {
    match a {
        Assignment::Secret(s) => s.meta.version,
        Assignment::Config(c) => c.meta.version,
        Assignment::Task(t) => t.meta.version,
    }
}

/// Changes that bring the node's dependencies from `sent` to what it needs now: updates
/// first (a task must find its secret when it starts), removals returned separately so
/// they can follow the task changes.
fn dep_changes(
    tables: &Tables,
    node_id: &str,
    sent: &mut SentDeps,
) -> (Vec<AssignmentChange>, Vec<AssignmentChange>) {
    let now = needed(tables, node_id);
    let mut updates = Vec::new();
    let mut removals = Vec::new();
    for (key, obj) in &now {
        let v = dep_version(obj);
        if sent.get(key) != Some(&v) {
            sent.insert(key.clone(), v);
            updates.push(AssignmentChange {
                action: AssignmentAction::Update,
                assignment: obj.clone(),
            });
        }
    }
    let gone: Vec<(Kind, String)> = sent
        .keys()
        .filter(|k| !now.contains_key(*k))
        .cloned()
        .collect();
    for key in gone {
        sent.remove(&key);
        // Withdrawals carry only the ID: the data stays off the wire.
        let assignment = match key.0 {
            Kind::Secret => Assignment::Secret(swarmd_types::Secret {
                id: key.1,
                ..Default::default()
            }),
            _ => Assignment::Config(swarmd_types::Config {
                id: key.1,
                ..Default::default()
            }),
        };
        removals.push(AssignmentChange {
            action: AssignmentAction::Remove,
            assignment,
        });
    }
    (updates, removals)
}

fn complete(
    tables: &Tables,
    node_id: &str,
    sent: &mut Sent,
    deps: &mut SentDeps,
) -> AssignmentsMessage {
    sent.clear();
    deps.clear();
    let (mut changes, _) = dep_changes(tables, node_id, deps);
    changes.extend(
        tables
            .tasks_on_node(node_id)
            .filter(|t| assigned_to(t, node_id))
            .map(|t| {
                sent.insert(t.id.clone(), (t.desired_state, t.spec_version));
                AssignmentChange {
                    action: AssignmentAction::Update,
                    assignment: Assignment::Task(t.clone()),
                }
            }),
    );
    AssignmentsMessage {
        kind: AssignmentsKind::Complete,
        changes,
    }
}

/// What one commit changed, as every node's streams need it: its task events grouped by node
/// (indices into the batch, in order), and whether it touched secrets/configs or nodes.
#[derive(Debug, Default, PartialEq)]
pub struct BatchSummary {
    tasks_by_node: HashMap<String, Vec<usize>>,
    deps_changed: bool,
    nodes_changed: bool,
}

impl BatchSummary {
    /// Summarizes one batch (a reset changes everything).
    pub fn of(batch: &EventBatch) -> Self {
        let mut out = BatchSummary::default();
        match batch {
            EventBatch::Reset { .. } => {
                out.deps_changed = true;
                out.nodes_changed = true;
            }
            EventBatch::Commit { events, .. } => {
                for (i, ev) in events.iter().enumerate() {
                    match &ev.object {
                        Object::Task(t) => out
                            .tasks_by_node
                            .entry(t.node_id.clone())
                            .or_default()
                            .push(i),
                        Object::Secret(_) | Object::Config(_) => out.deps_changed = true,
                        Object::Node(_) => out.nodes_changed = true,
                        _ => {}
                    }
                }
            }
        }
        out
    }

    /// Indices of the batch's events about tasks on `node_id`.
    pub fn tasks_of(&self, node_id: &str) -> &[usize] {
        self.tasks_by_node.get(node_id).map_or(&[], Vec::as_slice)
    }

    /// Whether a node object (role, spec, the manager set) may have changed.
    pub fn nodes_changed(&self) -> bool {
        self.nodes_changed
    }
}

/// Shares each batch's [`BatchSummary`] between the streams of all nodes: the first stream
/// to take a batch builds it, the others reuse it. Without it every one of N streams scanned
/// every event of every batch, O(nodes x events): with 1,000 nodes and a scheduler commit of
/// 80,000 placements that is 80 million string compares per batch, which starved Raft (see
/// BENCHMARKS.md, "Scale simulation"). Now a batch costs O(events + nodes).
#[derive(Debug, Default)]
pub struct BatchIndex {
    /// The latest batches (streams run a little apart), newest last.
    recent: Mutex<VecDeque<(Arc<EventBatch>, Arc<BatchSummary>)>>,
}

/// How many batches [`BatchIndex`] remembers. Big changes now commit as many entries in
/// quick succession (plus the agents' status batches), and with 1,000 sessions the slowest
/// streams run dozens of batches behind the fastest: a batch forgotten before they reach it
/// is summarized again by each of them (the profile of 100,000 tasks on 1,000 nodes showed
/// 40% of the leader's CPU in that with 8).
const RECENT_BATCHES: usize = 128;

impl BatchIndex {
    /// The summary of `batch`, built on first request.
    pub fn summary(&self, batch: &Arc<EventBatch>) -> Arc<BatchSummary> {
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, s)) = recent.iter().find(|(b, _)| Arc::ptr_eq(b, batch)) {
            return s.clone();
        }
        let s = Arc::new(BatchSummary::of(batch));
        if recent.len() == RECENT_BATCHES {
            recent.pop_front();
        }
        recent.push_back((batch.clone(), s.clone()));
        s
    }
}

/// Streams a node's assignments until `closed` fires.
pub fn stream(
    store: Arc<MemoryStore>,
    node_id: String,
    closed: CancellationToken,
    tracker: &TaskTracker,
    index: Arc<BatchIndex>,
) -> DispatchStream<AssignmentsMessage> {
    let (tx, rx) = mpsc::channel(16);
    tracker.spawn(async move {
        let mut sent = Sent::new();
        let mut deps = SentDeps::new();
        let (first, mut events) =
            store.view_and_watch(|t| complete(t, &node_id, &mut sent, &mut deps));
        if tx.send(Ok(first)).await.is_err() {
            return;
        }
        loop {
            let batch = tokio::select! {
                _ = closed.cancelled() => return,
                _ = tx.closed() => return,
                b = events.recv() => b,
            };
            let msg = match batch {
                Ok(b) => match &*b {
                    EventBatch::Reset { .. } => {
                        Some(store.view(|t| complete(t, &node_id, &mut sent, &mut deps)))
                    }
                    EventBatch::Commit { events, .. } => {
                        let summary = index.summary(&b);
                        let mine = summary.tasks_of(&node_id);
                        let mut changes = Vec::new();
                        // Recompute the dependencies only when something they derive
                        // from changed: a task of this node, a secret or a config.
                        let deps_dirty = !mine.is_empty() || summary.deps_changed;
                        let (dep_updates, dep_removals) = if deps_dirty {
                            store.view(|t| dep_changes(t, &node_id, &mut deps))
                        } else {
                            Default::default()
                        };
                        changes.extend(dep_updates);
                        for ev in mine.iter().filter_map(|&i| events.get(i)) {
                            let Object::Task(t) = &ev.object else {
                                continue;
                            };
                            match ev.action {
                                EventAction::Removed if sent.remove(&t.id).is_some() => {
                                    changes.push(AssignmentChange {
                                        action: AssignmentAction::Remove,
                                        assignment: Assignment::Task(t.clone()),
                                    });
                                }
                                _ if assigned_to(t, &node_id) => {
                                    let key = (t.desired_state, t.spec_version);
                                    if sent.get(&t.id) != Some(&key) {
                                        sent.insert(t.id.clone(), key);
                                        changes.push(AssignmentChange {
                                            action: AssignmentAction::Update,
                                            assignment: Assignment::Task(t.clone()),
                                        });
                                    }
                                }
                                _ => {}
                            }
                        }
                        changes.extend(dep_removals);
                        (!changes.is_empty()).then_some(AssignmentsMessage {
                            kind: AssignmentsKind::Incremental,
                            changes,
                        })
                    }
                },
                // Fell behind: resend everything.
                Err(RecvError::Lagged(_)) => {
                    Some(store.view(|t| complete(t, &node_id, &mut sent, &mut deps)))
                }
                Err(RecvError::Closed) => return,
            };
            if let Some(msg) = msg
                && tx.send(Ok(msg)).await.is_err()
            {
                return;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmd_store::{LocalProposer, ProposeError, Store};
    use swarmd_types::Secret;
    use swarmd_types::models::{TaskSpec, TaskSpecContainerSpec, TaskSpecContainerSpecSecrets};

    fn task(id: &str, node: &str, secret: &str) -> Task {
        let mut t = Task {
            id: id.into(),
            node_id: node.into(),
            desired_state: TaskState::RUNNING,
            spec: TaskSpec {
                container_spec: Some(TaskSpecContainerSpec {
                    secrets: Some(vec![TaskSpecContainerSpecSecrets {
                        secret_id: Some(secret.into()),
                        secret_name: Some(secret.into()),
                        file: None,
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        t.status.state = TaskState::ASSIGNED;
        t
    }

    fn ids(msg: &AssignmentsMessage) -> Vec<(AssignmentAction, &str)> {
        msg.changes
            .iter()
            .map(|c| (c.action, c.assignment.id()))
            .collect()
    }

    #[test]
    fn a_batch_is_summarized_by_node_once_and_shared() {
        use swarmd_store::Event;
        let ev = |action, object: Object| Event { action, object };
        let batch = Arc::new(EventBatch::Commit {
            index: 1,
            events: vec![
                ev(EventAction::Created, task("t1", "n1", "s").into()),
                ev(EventAction::Created, task("t2", "n2", "s").into()),
                ev(EventAction::Updated, task("t3", "n1", "s").into()),
            ],
        });
        let index = BatchIndex::default();
        let s = index.summary(&batch);
        assert_eq!(s.tasks_of("n1"), &[0, 2]);
        assert_eq!(s.tasks_of("n2"), &[1]);
        assert!(s.tasks_of("n3").is_empty());
        assert!(!s.deps_changed && !s.nodes_changed());
        assert!(
            Arc::ptr_eq(&s, &index.summary(&batch)),
            "built once per batch"
        );
        let node = Arc::new(EventBatch::Commit {
            index: 2,
            events: vec![ev(
                EventAction::Updated,
                swarmd_types::Node::default().into(),
            )],
        });
        assert!(index.summary(&node).nodes_changed());
        let reset = EventBatch::Reset { index: 3 };
        let r = BatchSummary::of(&reset);
        assert!(r.deps_changed && r.nodes_changed());
    }

    #[tokio::test]
    async fn a_node_gets_only_the_secrets_its_tasks_reference_until_they_end() {
        let mem = Arc::new(MemoryStore::new());
        let store = Store::new(mem.clone(), Arc::new(LocalProposer::new(mem.clone())));
        store
            .update(|_, tx| {
                for s in ["s1", "s2"] {
                    tx.create(Secret {
                        id: s.into(),
                        name: s.into(),
                        data: b"x".to_vec(),
                        ..Default::default()
                    });
                }
                tx.create(task("t1", "n1", "s1"));
                tx.create(task("t2", "n2", "s2"));
                Ok::<_, ProposeError>(())
            })
            .await
            .unwrap();
        let tracker = TaskTracker::new();
        let closed = CancellationToken::new();
        let mut s = stream(
            mem.clone(),
            "n1".into(),
            closed.clone(),
            &tracker,
            Arc::default(),
        );
        let first = s.next().await.unwrap().unwrap();
        assert_eq!(first.kind, AssignmentsKind::Complete);
        assert_eq!(
            ids(&first),
            vec![
                (AssignmentAction::Update, "s1"),
                (AssignmentAction::Update, "t1")
            ],
            "the secret comes before the task; n2's secret never comes"
        );

        // The task ends: its secret is withdrawn, without its data.
        store
            .update(|t, tx| {
                let mut t1 = t.tasks["t1"].clone();
                t1.status.state = TaskState::COMPLETE;
                tx.update(t1);
                Ok::<_, ProposeError>(())
            })
            .await
            .unwrap();
        let msg = s.next().await.unwrap().unwrap();
        assert_eq!(ids(&msg), vec![(AssignmentAction::Remove, "s1")]);
        match &msg.changes[0].assignment {
            Assignment::Secret(sec) => assert!(sec.data.is_empty()),
            other => panic!("{other:?}"),
        }
        closed.cancel();
        tracker.close();
        tracker.wait().await;
    }
}
