//! A node's assignment stream: the complete set, then changes from store events.
//!
//! Besides tasks the set holds the secrets and configs those tasks reference, and only
//! those (swarmkit's dependency tracking): a node learns a secret when a task of its own
//! that needs it is assigned and forgets it when no such task is left, so a node that
//! runs no task referencing a secret never receives it.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures::StreamExt;
use swarmd_store::{Event, EventAction, EventBatch, MemoryStore, Tables};
use swarmd_types::dispatcher::{
    Assignment, AssignmentAction, AssignmentChange, AssignmentsKind, AssignmentsMessage,
    DispatchStream,
};
use swarmd_types::models::TaskState;
use swarmd_types::{Kind, Object, Task, is_terminal};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc};
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
/// (indices into the batch, in order), and whether it touched secrets/configs.
#[derive(Debug, Default, PartialEq)]
pub struct BatchSummary {
    tasks_by_node: HashMap<String, Vec<usize>>,
    deps_changed: bool,
}

impl BatchSummary {
    /// Summarizes one batch (a reset changes everything).
    pub fn of(batch: &EventBatch) -> Self {
        let mut out = BatchSummary::default();
        match batch {
            EventBatch::Reset { .. } => out.deps_changed = true,
            EventBatch::Commit { events, .. } => {
                for (i, ev) in events.iter().enumerate() {
                    match &ev.object {
                        // Not placed yet: no node's stream has it.
                        Object::Task(t) if t.node_id.is_empty() => {}
                        Object::Task(t) => match out.tasks_by_node.get_mut(&t.node_id) {
                            Some(v) => v.push(i),
                            None => {
                                out.tasks_by_node.insert(t.node_id.clone(), vec![i]);
                            }
                        },
                        Object::Secret(_) | Object::Config(_) => out.deps_changed = true,
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
}

/// A commit as the fanout hands it to a stream; `None` asks for the complete set (the fanout
/// itself fell behind the store's events).
type Item = Option<(Arc<EventBatch>, Arc<BatchSummary>)>;

/// How many commits a stream may have waiting before it is treated as lagged (and resyncs
/// from a fresh view instead).
const STREAM_QUEUE: usize = 256;

struct Subscriber {
    id: u64,
    tx: mpsc::Sender<Item>,
    /// Set when a commit could not be queued: the stream resends the complete set.
    lagged: Arc<AtomicBool>,
}

/// Routes each commit to the assignment streams of the nodes it touches: one task reads the
/// store's events, summarizes each commit once ([`BatchSummary`]) and queues it only for the
/// streams of the nodes whose tasks it changed (all streams when secrets, configs or the
/// whole state changed). Before, each of N streams woke for every commit and looked the
/// summary up: with 1,000 sessions and a commit every few milliseconds that was most of
/// the leader's CPU (BENCHMARKS.md, "Scale simulation"); now a commit costs O(events) plus
/// one wake-up per node it concerns.
pub struct Fanout {
    subs: Mutex<HashMap<String, Vec<Subscriber>>>,
    next_id: AtomicU64,
    /// Taken by [`Fanout::run`]; subscribed at construction, so no commit after it is missed.
    events: Mutex<Option<broadcast::Receiver<Arc<EventBatch>>>>,
}

/// A stream's registration with the [`Fanout`]; unregisters on drop.
struct Subscription {
    fanout: Arc<Fanout>,
    node_id: String,
    id: u64,
    lagged: Arc<AtomicBool>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut subs = self.fanout.lock();
        if let Some(v) = subs.get_mut(&self.node_id) {
            v.retain(|s| s.id != self.id);
            if v.is_empty() {
                subs.remove(&self.node_id);
            }
        }
    }
}

impl Fanout {
    /// A fanout over `store`'s events from now on; [`Fanout::run`] delivers them.
    pub fn new(store: &MemoryStore) -> Arc<Self> {
        Arc::new(Fanout {
            subs: Mutex::default(),
            next_id: AtomicU64::new(0),
            events: Mutex::new(Some(store.watch())),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Subscriber>>> {
        self.subs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn subscribe(self: &Arc<Self>, node_id: &str) -> (Subscription, mpsc::Receiver<Item>) {
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let lagged = Arc::new(AtomicBool::new(false));
        self.lock()
            .entry(node_id.to_string())
            .or_default()
            .push(Subscriber {
                id,
                tx,
                lagged: lagged.clone(),
            });
        let sub = Subscription {
            fanout: self.clone(),
            node_id: node_id.to_string(),
            id,
            lagged,
        };
        (sub, rx)
    }

    /// Delivers commits until cancelled (or the store is gone). Runs once.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let Some(mut events) = self
            .events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return;
        };
        loop {
            let ev = tokio::select! {
                _ = cancel.cancelled() => return,
                ev = events.recv() => ev,
            };
            match ev {
                Ok(batch) => {
                    let summary = Arc::new(BatchSummary::of(&batch));
                    let everyone =
                        matches!(*batch, EventBatch::Reset { .. }) || summary.deps_changed;
                    let subs = self.lock();
                    let item = || Some((batch.clone(), summary.clone()));
                    if everyone {
                        subs.values().flatten().for_each(|s| deliver(s, item()));
                    } else {
                        for node in summary.tasks_by_node.keys() {
                            for s in subs.get(node).into_iter().flatten() {
                                deliver(s, item());
                            }
                        }
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(
                        missed = n,
                        "assignment fanout fell behind; every stream resyncs"
                    );
                    for s in self.lock().values().flatten() {
                        s.lagged.store(true, Ordering::SeqCst);
                        deliver(s, None);
                    }
                }
                Err(RecvError::Closed) => return,
            }
        }
    }
}

/// Queues `item` for one stream, or marks it lagged when its queue is full.
fn deliver(s: &Subscriber, item: Item) {
    if let Err(mpsc::error::TrySendError::Full(_)) = s.tx.try_send(item) {
        s.lagged.store(true, Ordering::SeqCst);
    }
}

/// The complete set as of now, and the log index it is as of.
fn complete_now(
    store: &MemoryStore,
    node_id: &str,
    sent: &mut Sent,
    deps: &mut SentDeps,
) -> (AssignmentsMessage, u64) {
    store.view(|t| (complete(t, node_id, sent, deps), t.applied_index()))
}

/// Streams a node's assignments until `closed` fires.
pub fn stream(
    store: Arc<MemoryStore>,
    node_id: String,
    closed: CancellationToken,
    tracker: &TaskTracker,
    fanout: Arc<Fanout>,
) -> DispatchStream<AssignmentsMessage> {
    let (tx, rx) = mpsc::channel(16);
    tracker.spawn(async move {
        let mut sent = Sent::new();
        let mut deps = SentDeps::new();
        // Registered before the first view: every commit after the view is queued (those
        // at or below the view's index are skipped).
        let (sub, mut items) = fanout.subscribe(&node_id);
        let (first, mut seen) = complete_now(&store, &node_id, &mut sent, &mut deps);
        if tx.send(Ok(first)).await.is_err() {
            return;
        }
        loop {
            let item = tokio::select! {
                _ = closed.cancelled() => return,
                _ = tx.closed() => return,
                i = items.recv() => match i {
                    Some(i) => i,
                    None => return,
                },
            };
            let resync = sub.lagged.swap(false, Ordering::SeqCst);
            let msg = match item {
                // Fell behind: resend everything.
                _ if resync => {
                    let (m, at) = complete_now(&store, &node_id, &mut sent, &mut deps);
                    seen = at;
                    Some(m)
                }
                None => {
                    let (m, at) = complete_now(&store, &node_id, &mut sent, &mut deps);
                    seen = at;
                    Some(m)
                }
                Some((b, summary)) => match &*b {
                    EventBatch::Reset { .. } => {
                        let (m, at) = complete_now(&store, &node_id, &mut sent, &mut deps);
                        seen = at;
                        Some(m)
                    }
                    EventBatch::Commit { index, .. } if *index <= seen => None,
                    EventBatch::Commit { index, events } => {
                        seen = *index;
                        incremental(&store, &node_id, events, &summary, &mut sent, &mut deps)
                    }
                },
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

/// The changes one commit makes to the node's assignment set (`None`: none).
fn incremental(
    store: &MemoryStore,
    node_id: &str,
    events: &[Event],
    summary: &BatchSummary,
    sent: &mut Sent,
    deps: &mut SentDeps,
) -> Option<AssignmentsMessage> {
    let mine = summary.tasks_of(node_id);
    let mut changes = Vec::new();
    // Recompute the dependencies only when something they derive from changed: a secret
    // or a config, or a task of this node while the node holds some or the task references
    // some (a node without secrets whose tasks reference none, the common case, skips the
    // walk over its tasks on every status change).
    let references = |&i: &usize| {
        events.get(i).is_some_and(|e| match &e.object {
            Object::Task(t) => task_dependencies(t).next().is_some(),
            _ => false,
        })
    };
    let deps_dirty = summary.deps_changed
        || (!mine.is_empty() && (!deps.is_empty() || mine.iter().any(references)));
    let (dep_updates, dep_removals) = if deps_dirty {
        store.view(|t| dep_changes(t, node_id, deps))
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
            _ if assigned_to(t, node_id) => {
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
            }
            .into(),
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
    fn a_batch_is_summarized_by_node() {
        use swarmd_store::Event;
        let ev = |action, object: Object| Event { action, object };
        let batch = EventBatch::Commit {
            index: 1,
            events: vec![
                ev(EventAction::Created, task("t1", "n1", "s").into()),
                ev(EventAction::Created, task("t2", "n2", "s").into()),
                ev(EventAction::Updated, task("t3", "n1", "s").into()),
                ev(EventAction::Created, task("t4", "", "s").into()),
            ],
        };
        let s = BatchSummary::of(&batch);
        assert_eq!(s.tasks_of("n1"), &[0, 2]);
        assert_eq!(s.tasks_of("n2"), &[1]);
        assert!(s.tasks_of("n3").is_empty());
        assert!(s.tasks_of("").is_empty(), "unplaced tasks concern no node");
        assert!(!s.deps_changed);
        let reset = EventBatch::Reset { index: 3 };
        assert!(BatchSummary::of(&reset).deps_changed);
    }

    /// The fanout queues a commit only for the streams of the nodes it concerns, and a
    /// stream whose queue overflowed resends its complete set.
    #[tokio::test]
    async fn the_fanout_routes_commits_by_node_and_resyncs_a_lagged_stream() {
        let mem = Arc::new(MemoryStore::new());
        let store = Store::new(mem.clone(), Arc::new(LocalProposer::new(mem.clone())));
        let fanout = Fanout::new(&mem);
        let (n1, mut rx1) = fanout.subscribe("n1");
        let (_n2, mut rx2) = fanout.subscribe("n2");
        let cancel = CancellationToken::new();
        let run = tokio::spawn(fanout.clone().run(cancel.clone()));
        let mut t = task("t1", "n1", "s");
        t.spec = Default::default();
        store
            .update(|_, tx| {
                tx.create(t.clone());
                Ok::<_, ProposeError>(())
            })
            .await
            .unwrap();
        let (b, summary) = rx1.recv().await.unwrap().expect("a commit");
        assert!(matches!(*b, EventBatch::Commit { .. }));
        assert_eq!(summary.tasks_of("n1"), &[0]);
        assert!(rx2.try_recv().is_err(), "n2 was not concerned");

        // Overflow n1's queue: it is marked lagged.
        for i in 0..STREAM_QUEUE + 1 {
            store
                .update(|t, tx| {
                    let mut t1 = t.tasks["t1"].clone();
                    t1.status.message = format!("{i}");
                    tx.update(t1);
                    Ok::<_, ProposeError>(())
                })
                .await
                .unwrap();
        }
        while !n1.lagged.load(Ordering::SeqCst) {
            tokio::task::yield_now().await;
        }
        cancel.cancel();
        run.await.unwrap();
        drop(n1);
        assert!(!fanout.lock().contains_key("n1"), "unsubscribed on drop");
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
        let fanout = Fanout::new(&mem);
        tracker.spawn(fanout.clone().run(closed.clone()));
        let mut s = stream(mem.clone(), "n1".into(), closed.clone(), &tracker, fanout);
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
