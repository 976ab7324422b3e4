//! A node's assignment stream: the complete set, then changes from store events.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use swarmd_store::{EventAction, EventBatch, MemoryStore, Tables};
use swarmd_types::dispatcher::{
    Assignment, AssignmentAction, AssignmentChange, AssignmentsKind, AssignmentsMessage,
    DispatchStream,
};
use swarmd_types::models::TaskState;
use swarmd_types::{Object, Task};
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

fn complete(tables: &Tables, node_id: &str, sent: &mut Sent) -> AssignmentsMessage {
    sent.clear();
    let changes = tables
        .tasks_on_node(node_id)
        .filter(|t| assigned_to(t, node_id))
        .map(|t| {
            sent.insert(t.id.clone(), (t.desired_state, t.spec_version));
            AssignmentChange {
                action: AssignmentAction::Update,
                assignment: Assignment::Task(t.clone()),
            }
        })
        .collect();
    AssignmentsMessage {
        kind: AssignmentsKind::Complete,
        changes,
    }
}

/// Streams a node's assignments until `closed` fires.
pub fn stream(
    store: Arc<MemoryStore>,
    node_id: String,
    closed: CancellationToken,
    tracker: &TaskTracker,
) -> DispatchStream<AssignmentsMessage> {
    let (tx, rx) = mpsc::channel(16);
    tracker.spawn(async move {
        let mut sent = Sent::new();
        let (first, mut events) = store.view_and_watch(|t| complete(t, &node_id, &mut sent));
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
                        Some(store.view(|t| complete(t, &node_id, &mut sent)))
                    }
                    EventBatch::Commit { events, .. } => {
                        let mut changes = Vec::new();
                        for ev in events {
                            let Object::Task(t) = &ev.object else {
                                continue;
                            };
                            if t.node_id != node_id {
                                continue;
                            }
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
                        (!changes.is_empty()).then_some(AssignmentsMessage {
                            kind: AssignmentsKind::Incremental,
                            changes,
                        })
                    }
                },
                // Fell behind: resend everything.
                Err(RecvError::Lagged(_)) => Some(store.view(|t| complete(t, &node_id, &mut sent))),
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
