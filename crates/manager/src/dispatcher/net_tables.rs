//! The data plane's tables (routing mesh and discovery), computed once per relevant
//! store change for every session.

use std::sync::Arc;
use std::time::Duration;

use swarmd_store::{EventAction, EventBatch};
use swarmd_types::Object;
use swarmd_types::dispatcher::{DiscoveryTable, IngressTable};
use swarmd_types::models::TaskState;
use tokio::time::Instant;

use super::{Dispatcher, discovery, ingress};

/// The data plane's tables are recomputed at most this often (each is a walk over the
/// services' tasks; under load commits come every few milliseconds).
const NET_TABLES_INTERVAL: Duration = Duration::from_millis(100);
/// What every node's data plane follows: the routing mesh's table and the discovery table.
/// Both are pure functions of the store, computed once per change for all sessions.
#[derive(Debug, Default, PartialEq)]
pub(super) struct NetTables {
    pub(super) ingress: IngressTable,
    pub(super) discovery: DiscoveryTable,
}

/// Whether a commit can change the data plane's tables, and whether it changed a node
/// object (sessions carry their node and the manager set).
///
/// The tables list tasks that are RUNNING and meant to stay so. A task event with an
/// observed state before RUNNING and a desired state up to RUNNING (the allocator, the
/// scheduler, an agent on the way) leaves it out before and after, as states only move
/// forward: it is the one kind skipped, and the most frequent under load. Secrets and
/// configs are not read.
pub(super) fn net_relevant(batch: &EventBatch) -> (bool, bool) {
    let EventBatch::Commit { events, .. } = batch else {
        return (true, true);
    };
    let (mut net, mut nodes) = (false, false);
    for e in events {
        match &e.object {
            Object::Task(t) => {
                net |= e.action == EventAction::Removed
                    || t.status.state >= TaskState::RUNNING
                    || t.desired_state > TaskState::RUNNING
            }
            Object::Secret(_) | Object::Config(_) => {}
            // A root rotation changes the roots sessions carry.
            Object::Node(_) | Object::Cluster(_) => {
                net = true;
                nodes = true;
            }
            _ => net = true,
        }
        if net && nodes {
            break;
        }
    }
    (net, nodes)
}

impl Dispatcher {
    /// Keeps the data plane's tables current, once for all sessions: recomputed when a commit
    /// touched something they read (see [`net_relevant`]), at most once per
    /// [`NET_TABLES_INTERVAL`] (commits in between are folded into the next recompute, so a
    /// change is never lost, only delayed), and published only when they differ. Also tells
    /// the session streams when node objects changed, so they need not each look at every
    /// commit.
    pub(super) async fn net_tables_tracker(&self) {
        let mut events = self.store.memory().watch();
        let mut dirty = true;
        let mut next_at = Instant::now();
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = tokio::time::sleep_until(next_at), if dirty => {
                    dirty = false;
                    let table = self.store.view(|t| NetTables {
                        ingress: ingress::table(t),
                        discovery: discovery::table(t),
                    });
                    self.net_tables.send_if_modified(|cur| {
                        if **cur == table {
                            return false;
                        }
                        *cur = Arc::new(table);
                        true
                    });
                    next_at = Instant::now() + NET_TABLES_INTERVAL;
                }
                ev = events.recv() => {
                    let (net, nodes) = match ev {
                        Ok(batch) => net_relevant(&batch),
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => (true, true),
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    };
                    dirty |= net;
                    if nodes {
                        self.nodes_changed.send_modify(|g| *g += 1);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmd_store::Event;
    use swarmd_types::{Node, Secret, Task};

    fn commit(action: EventAction, object: Object) -> EventBatch {
        EventBatch::Commit {
            index: 1,
            events: vec![Event { action, object }],
        }
    }

    fn task(state: TaskState, desired: TaskState) -> Object {
        let mut t = Task {
            desired_state: desired,
            ..Default::default()
        };
        t.status.state = state;
        Object::Task(t)
    }

    #[test]
    fn tasks_on_their_way_to_running_change_no_table() {
        let up = |s, d| net_relevant(&commit(EventAction::Updated, task(s, d)));
        assert_eq!(up(TaskState::ASSIGNED, TaskState::RUNNING), (false, false));
        assert_eq!(up(TaskState::RUNNING, TaskState::RUNNING), (true, false));
        assert_eq!(up(TaskState::ASSIGNED, TaskState::SHUTDOWN), (true, false));
        let removed = commit(
            EventAction::Removed,
            task(TaskState::NEW, TaskState::RUNNING),
        );
        assert_eq!(net_relevant(&removed), (true, false));
    }

    #[test]
    fn nodes_and_resets_change_both_secrets_neither() {
        let node = commit(EventAction::Updated, Object::Node(Node::default()));
        assert_eq!(net_relevant(&node), (true, true));
        assert_eq!(net_relevant(&EventBatch::Reset { index: 3 }), (true, true));
        let secret = commit(EventAction::Created, Object::Secret(Secret::default()));
        assert_eq!(net_relevant(&secret), (false, false));
    }
}
