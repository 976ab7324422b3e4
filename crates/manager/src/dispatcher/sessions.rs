//! Agent sessions: opening one (a node becomes ready), heartbeats, the monitor that marks
//! silent or hung-up nodes down, and the session stream of a node's view.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use swarmd_store::{ProposeError, Store};
use swarmd_types::dispatcher::{DispatchError, DispatchStream, SessionMessage, SessionRequest};
use swarmd_types::{Node, NodeState, Role, ids};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::net_tables::NetTables;
use super::{Dispatcher, unavailable};

/// Missed heartbeat periods before a node is marked down (swarmkit's grace).
const HEARTBEAT_GRACE: u32 = 3;
/// Heartbeat periods a node whose session connection dropped has to come back (to this
/// or, after a failover, another leader) before it is marked down. Shorter than the grace
/// for silent nodes: a dropped connection is a strong sign the node died, so its tasks
/// move sooner, while a restarting daemon still has two periods (10 s by default).
const DISCONNECT_GRACE: u32 = 2;
/// The heartbeat monitor looks at least this often.
const MONITOR_TICK: Duration = Duration::from_millis(200);

/// A node's open session with this manager (one per node).
pub(super) struct Session {
    pub(super) node_id: String,
    pub(super) last_heartbeat: Instant,
    /// When the session's stream was dropped (the node went away or hung up).
    pub(super) disconnected: Option<Instant>,
    pub(super) closed: CancellationToken,
}

pub(super) type Sessions = Arc<Mutex<HashMap<String, Session>>>;

/// Lives inside a session's stream: when the transport drops the stream (the node's
/// connection is gone), the session is marked disconnected.
struct DisconnectGuard {
    sessions: Sessions,
    session_id: String,
}

impl Drop for DisconnectGuard {
    fn drop(&mut self) {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = sessions.get_mut(&self.session_id) {
            s.disconnected = Some(Instant::now());
        }
    }
}

impl Dispatcher {
    /// Opens a node's session: marks it ready, replaces its older session, and streams
    /// the node's view (itself, the managers, the data plane's tables) as it changes.
    pub(super) async fn open_session(
        &self,
        req: SessionRequest,
    ) -> Result<DispatchStream<SessionMessage>, DispatchError> {
        self.check_leading()?;
        let node = self
            .store
            .update(|t, tx| {
                let Some(stored) = t.nodes.get(&req.node_id) else {
                    return Ok(Err(DispatchError::NodeRemoved(req.node_id.clone())));
                };
                let mut n = stored.clone();
                n.description = req.description.clone();
                // The CA records the certificate's TLS info; the node does not report it.
                if n.description.tls_info.is_none() {
                    n.description.tls_info = stored.description.tls_info.clone();
                }
                n.status.state = NodeState::Ready;
                n.status.message = String::new();
                if !req.addr.is_empty() {
                    n.status.addr = req.addr.clone();
                }
                // A node reconnecting as it was (after a leader change or a dropped
                // connection) costs no Raft write: 1,000 of them at once queued behind
                // each other and the load that made them reconnect.
                if n != *stored {
                    tx.update(n.clone());
                }
                Ok::<_, ProposeError>(Ok(n))
            })
            .await
            .map_err(unavailable)??;
        let session_id = ids::new_id();
        let closed = self.cancel.child_token();
        {
            let mut sessions = self.sessions();
            // One session per node: a new one replaces the old.
            sessions.retain(|_, s| {
                if s.node_id == req.node_id {
                    s.closed.cancel();
                    false
                } else {
                    true
                }
            });
            sessions.insert(
                session_id.clone(),
                Session {
                    node_id: req.node_id.clone(),
                    last_heartbeat: Instant::now(),
                    disconnected: None,
                    closed: closed.clone(),
                },
            );
        }
        tracing::info!(node = %req.node_id, session = %session_id, "agent session opened");
        // Subscribe before reading the first state, so no change falls in between.
        let nodes_rx = self.nodes_changed.subscribe();
        // The shared table (not one computed here), so a session never steps back to an
        // older table than the one it was given.
        let mut tables_rx = self.net_tables.subscribe();
        let tables = tables_rx.borrow_and_update().clone();
        let msg = SessionMessage {
            session_id,
            node,
            managers: self.manager_addrs(),
            heartbeat_period_ms: self.heartbeat_period().as_millis() as u64,
            ingress: Some(tables.ingress.clone()),
            discovery: Some(tables.discovery.clone()),
            trust_roots: self.store.view(|t| {
                t.cluster()
                    .map(|c| crate::ca_rotation::trust_roots(&c.root_ca))
            }),
        };
        let guard = DisconnectGuard {
            sessions: self.sessions.clone(),
            session_id: msg.session_id.clone(),
        };
        let updates = session_updates(self.store.clone(), nodes_rx, tables_rx, msg.clone(), closed);
        Ok(futures::stream::once(async move { Ok(msg) })
            .chain(updates)
            .map(move |m| {
                let _alive = &guard;
                m
            })
            .boxed())
    }

    /// Records a session's heartbeat; answers the period until the next one is due.
    pub(super) fn record_heartbeat(&self, session_id: &str) -> Result<Duration, DispatchError> {
        self.check_leading()?;
        {
            let mut sessions = self.sessions();
            let s = sessions
                .get_mut(session_id)
                .ok_or(DispatchError::SessionInvalid)?;
            s.last_heartbeat = Instant::now();
        }
        match self.period_ns.load(Ordering::Relaxed) {
            0 => Ok(self.heartbeat_period()),
            ns => Ok(Duration::from_nanos(ns)),
        }
    }

    /// Ends the sessions that stopped heartbeating (or hung up) and marks their nodes,
    /// and nodes that never opened a session since this manager began leading, down.
    pub(super) async fn heartbeat_monitor(&self) {
        loop {
            let period = self.heartbeat_period();
            self.period_ns
                .store(period.as_nanos() as u64, Ordering::Relaxed);
            let grace = period * HEARTBEAT_GRACE;
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = tokio::time::sleep((period / 2).min(MONITOR_TICK)) => {}
            }
            if !self.leading.load(Ordering::SeqCst) {
                continue;
            }
            let started = *self.lead_since.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let mut expired = HashSet::new();
            let live_nodes: HashSet<String> = {
                let mut sessions = self.sessions();
                sessions.retain(|_, s| {
                    if session_expired(s, now, period) {
                        s.closed.cancel();
                        expired.insert(s.node_id.clone());
                        false
                    } else {
                        true
                    }
                });
                sessions.values().map(|s| s.node_id.clone()).collect()
            };
            // Nodes marked ready that never opened a session here since we started.
            let stale_after_start = now.duration_since(started) > grace;
            let silent = |n: &Node| goes_down(n, &live_nodes, &expired, stale_after_start);
            // Looked at under the read lock first: most ticks find nothing to write.
            if !self.store.view(|t| t.nodes.values().any(&silent)) {
                continue;
            }
            let res = self
                .store
                .update(|t, tx| {
                    for n in t.nodes.values() {
                        if silent(n) {
                            let mut n = n.clone();
                            n.status.state = NodeState::Down;
                            n.status.message = "heartbeat failure".into();
                            tx.update(n);
                        }
                    }
                    Ok::<_, ProposeError>(())
                })
                .await;
            if let Err(e) = res {
                tracing::debug!(error = %e, "could not mark nodes down");
            }
        }
    }
}

/// Whether a session is over at `now`: its connection dropped more than
/// [`DISCONNECT_GRACE`] periods ago, or no heartbeat came for [`HEARTBEAT_GRACE`] periods.
fn session_expired(s: &Session, now: Instant, period: Duration) -> bool {
    let hung_up = s
        .disconnected
        .is_some_and(|d| now.duration_since(d) > period * DISCONNECT_GRACE);
    hung_up || now.duration_since(s.last_heartbeat) > period * HEARTBEAT_GRACE
}

/// Whether the monitor marks a node down: it is marked ready, has no live session here,
/// and either its session just expired or it opened none within the grace since this
/// manager began leading (`stale_after_start`).
fn goes_down(
    n: &Node,
    live: &HashSet<String>,
    expired: &HashSet<String>,
    stale_after_start: bool,
) -> bool {
    n.status.state == NodeState::Ready
        && !live.contains(&n.id)
        && (expired.contains(&n.id) || stale_after_start)
}

/// Cluster addresses of the managers that have joined Raft.
pub(super) fn manager_addrs(nodes: &std::collections::BTreeMap<String, Node>) -> Vec<String> {
    nodes
        .values()
        .filter(|n| n.role == Role::Manager)
        .filter_map(|n| n.manager.as_ref().map(|m| m.addr.clone()))
        .collect()
}

/// The rest of a session stream: a new message whenever the node's role or spec, the
/// manager set (a promoted node learns it here) or the data plane's tables change, until the
/// session closes. Woken only when a commit changed node objects (`nodes`, bumped by the
/// dispatcher's tracker) or the tables changed: 1,000 sessions each looking at every commit
/// cost O(sessions) wake-ups per commit.
fn session_updates(
    store: Store,
    nodes: watch::Receiver<u64>,
    ingress: watch::Receiver<Arc<NetTables>>,
    first: SessionMessage,
    closed: CancellationToken,
) -> DispatchStream<SessionMessage> {
    futures::stream::unfold(
        (store, (nodes, ingress), first, closed, false),
        move |(store, (mut nodes, mut ingress), mut last, closed, ended)| async move {
            if ended {
                return None;
            }
            loop {
                tokio::select! {
                    _ = closed.cancelled() => return None,
                    r = nodes.changed() => if r.is_err() { return None },
                    r = ingress.changed() => if r.is_err() { return None },
                }
                let tables = ingress.borrow_and_update().clone();
                let ingress_changed = last.ingress.as_ref() != Some(&tables.ingress);
                let discovery_changed = last.discovery.as_ref() != Some(&tables.discovery);
                if ingress_changed || discovery_changed {
                    if ingress_changed {
                        last.ingress = Some(tables.ingress.clone());
                    }
                    if discovery_changed {
                        last.discovery = Some(tables.discovery.clone());
                    }
                    let msg = last.clone();
                    return Some((Ok(msg), (store, (nodes, ingress), last, closed, false)));
                }
                nodes.borrow_and_update();
                let next = store.view(|t| {
                    t.nodes.get(&last.node.id).map(|n| {
                        let roots = t
                            .cluster()
                            .map(|c| crate::ca_rotation::trust_roots(&c.root_ca));
                        (n.clone(), manager_addrs(&t.nodes), roots)
                    })
                });
                let Some((node, managers, trust_roots)) = next else {
                    let id = last.node.id.clone();
                    return Some((
                        Err(DispatchError::NodeRemoved(id)),
                        (store, (nodes, ingress), last, closed, true),
                    ));
                };
                let changed = node.role != last.node.role
                    || node.spec != last.node.spec
                    || managers != last.managers
                    || trust_roots != last.trust_roots;
                if changed {
                    last.node = node;
                    last.managers = managers;
                    last.trust_roots = trust_roots;
                    let msg = last.clone();
                    return Some((Ok(msg), (store, (nodes, ingress), last, closed, false)));
                }
            }
        },
    )
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERIOD: Duration = Duration::from_secs(5);

    fn session(last_heartbeat: Instant, disconnected: Option<Instant>) -> Session {
        Session {
            node_id: "n1".into(),
            last_heartbeat,
            disconnected,
            closed: CancellationToken::new(),
        }
    }

    #[test]
    fn a_silent_session_expires_after_three_periods() {
        let t0 = Instant::now();
        let s = session(t0, None);
        assert!(!session_expired(&s, t0 + PERIOD * 3, PERIOD));
        assert!(session_expired(
            &s,
            t0 + PERIOD * 3 + Duration::from_millis(1),
            PERIOD
        ));
    }

    #[test]
    fn a_hung_up_session_expires_after_two_periods() {
        let t0 = Instant::now();
        // Heartbeats kept coming until the connection dropped at t0.
        let s = session(t0, Some(t0));
        assert!(!session_expired(&s, t0 + PERIOD * 2, PERIOD));
        assert!(session_expired(
            &s,
            t0 + PERIOD * 2 + Duration::from_millis(1),
            PERIOD
        ));
    }

    fn node(id: &str, state: NodeState) -> Node {
        let mut n = Node {
            id: id.into(),
            ..Default::default()
        };
        n.status.state = state;
        n
    }

    #[test]
    fn only_ready_nodes_without_a_live_session_go_down() {
        let set = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<HashSet<_>>();
        let ready = node("n1", NodeState::Ready);
        // Its session expired this tick.
        assert!(goes_down(&ready, &set(&[]), &set(&["n1"]), false));
        // Never connected since this manager leads, and the grace is over.
        assert!(goes_down(&ready, &set(&[]), &set(&[]), true));
        // Still within the grace after gaining leadership.
        assert!(!goes_down(&ready, &set(&[]), &set(&[]), false));
        // A new session replaced the expired one.
        assert!(!goes_down(&ready, &set(&["n1"]), &set(&["n1"]), true));
        // Already down (or never ready): nothing to write.
        assert!(!goes_down(
            &node("n1", NodeState::Down),
            &set(&[]),
            &set(&["n1"]),
            true
        ));
    }
}
