//! The pool's members: the swarm's nodes that run a Docker Engine, followed in the store,
//! and the nodes that left the swarm lately (their containers are to move).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use swarmd_classic::discovery::{EngineAddr, PoolMember};
use swarmd_engine_api::dial::NODE_SCHEME;
use swarmd_node::node::ManagerParts;
use swarmd_store::EventBatch;
use swarmd_types::models::NodeSpecAvailabilityEnum;
use swarmd_types::{Node, NodeState, Object};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often the members are recomputed when no store event says so (a missed event
/// batch on a lagging subscriber is caught up by this).
const MEMBERS_RESYNC: Duration = Duration::from_secs(5);

/// How long a node that left the swarm (`docker node rm`) stays a member taking no new
/// containers: the rescheduler moves its `reschedule:on-node-failure` containers meanwhile
/// (off a drained engine, or off a lost one once its tunnel is gone). Then it goes, and its
/// containers with it from the pool's view.
const DEPARTED_GRACE: Duration = Duration::from_secs(600);

/// The pool's members: the swarm's nodes that run a Docker Engine.
pub fn members_of<'a>(nodes: impl IntoIterator<Item = &'a Node>) -> Vec<PoolMember> {
    nodes
        .into_iter()
        .filter(|n| n.description.executor == "docker")
        .map(|n| {
            let labels: BTreeMap<String, String> = n
                .spec
                .labels
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect();
            let active = matches!(
                n.spec.availability,
                None | Some(NodeSpecAvailabilityEnum::ACTIVE)
            );
            PoolMember {
                upstream: EngineAddr::Dialed(format!("{NODE_SCHEME}{}", n.id)),
                name: Some(n.description.hostname.clone()).filter(|h| !h.is_empty()),
                labels,
                ip: n.status.addr.clone(),
                accepts_new: active && n.status.state == NodeState::Ready,
            }
        })
        .collect()
}

/// Nodes that were members and are no longer in the store, kept for [`DEPARTED_GRACE`].
#[derive(Default)]
struct Departed {
    /// The members of the last call, to see who left.
    last: Vec<PoolMember>,
    left: HashMap<EngineAddr, (PoolMember, Instant)>,
}

impl Departed {
    /// `current` plus the members that left within the grace, taking no new containers.
    fn add_to(&mut self, current: Vec<PoolMember>, now: Instant) -> Vec<PoolMember> {
        let present: std::collections::HashSet<&EngineAddr> =
            current.iter().map(|m| &m.upstream).collect();
        for m in &self.last {
            if !present.contains(&m.upstream) && !self.left.contains_key(&m.upstream) {
                tracing::info!(engine = %m.upstream, "node left the swarm: its containers are to move");
                let mut gone = m.clone();
                gone.accepts_new = false;
                self.left.insert(m.upstream.clone(), (gone, now));
            }
        }
        self.left
            .retain(|addr, (_, since)| !present.contains(addr) && now - *since < DEPARTED_GRACE);
        let mut out = current;
        self.last = out.clone();
        let mut gone: Vec<PoolMember> = self.left.values().map(|(m, _)| m.clone()).collect();
        gone.sort_by(|a, b| a.upstream.cmp(&b.upstream));
        out.extend(gone);
        out
    }
}

/// Keeps `tx` at the store's pool members (and the recently departed): recomputed when a batch of store events touches
/// a node (or resets the state), and every [`MEMBERS_RESYNC`] (a subscriber that lagged
/// behind missed some batches).
pub(super) async fn follow(
    mgr: Arc<ManagerParts>,
    tx: watch::Sender<Vec<PoolMember>>,
    cancel: CancellationToken,
) {
    use tokio::sync::broadcast::error::RecvError;
    let mut events = mgr.store.memory().watch();
    let mut departed = Departed::default();
    loop {
        let current = mgr.store.view(|t| members_of(t.nodes.values()));
        let members = departed.add_to(current, Instant::now());
        tx.send_if_modified(|m| {
            let changed = *m != members;
            *m = members;
            changed
        });
        let resync = tokio::time::sleep(MEMBERS_RESYNC);
        tokio::pin!(resync);
        loop {
            tokio::select! {
                r = events.recv() => match r {
                    Ok(batch) if !touches_nodes(&batch) => continue,
                    Ok(_) | Err(RecvError::Lagged(_)) => break,
                    // The store is gone with the membership: its end cancels us soon.
                    Err(RecvError::Closed) => (&mut resync).await,
                },
                _ = &mut resync => break,
                _ = cancel.cancelled() => return,
            }
            break;
        }
    }
}

fn touches_nodes(batch: &EventBatch) -> bool {
    match batch {
        EventBatch::Commit { events, .. } => {
            events.iter().any(|e| matches!(e.object, Object::Node(_)))
        }
        EventBatch::Reset { .. } => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, executor: &str, state: NodeState, avail: NodeSpecAvailabilityEnum) -> Node {
        let mut n = Node {
            id: id.into(),
            ..Default::default()
        };
        n.description.executor = executor.into();
        n.description.hostname = format!("host-{id}");
        n.status.state = state;
        n.status.addr = "10.0.0.7".into();
        n.spec.availability = Some(avail);
        n.spec.labels = Some(HashMap::from([("zone".to_string(), "b".to_string())]));
        n
    }

    /// Nodes with an engine are members, under their hostname, with their labels and
    /// address; only a Ready, Active node takes new containers.
    #[test]
    fn members_are_the_nodes_with_an_engine() {
        use NodeSpecAvailabilityEnum as A;
        let nodes = [
            node("a", "docker", NodeState::Ready, A::ACTIVE),
            node("p", "process", NodeState::Ready, A::ACTIVE),
            node("d", "docker", NodeState::Ready, A::DRAIN),
            node("x", "docker", NodeState::Down, A::ACTIVE),
        ];
        let members = members_of(&nodes);
        let ids: Vec<String> = members.iter().map(|m| m.upstream.to_string()).collect();
        assert_eq!(ids, ["node://a", "node://d", "node://x"]);
        let a = &members[0];
        assert_eq!(a.name.as_deref(), Some("host-a"));
        assert_eq!(a.ip, "10.0.0.7");
        assert_eq!(a.labels.get("zone").map(String::as_str), Some("b"));
        let accepts: Vec<bool> = members.iter().map(|m| m.accepts_new).collect();
        assert_eq!(accepts, [true, false, false]);
    }

    /// A node gone from the store stays a member taking nothing new for the grace, then
    /// goes; one that comes back is itself again.
    #[test]
    fn departed_nodes_stay_for_the_grace() {
        use NodeSpecAvailabilityEnum as A;
        let a = node("a", "docker", NodeState::Ready, A::ACTIVE);
        let b = node("b", "docker", NodeState::Ready, A::ACTIVE);
        let t0 = Instant::now();
        let mut d = Departed::default();
        let both = members_of([&a, &b]);
        assert_eq!(d.add_to(both.clone(), t0), both);
        let after = d.add_to(members_of([&a]), t0 + Duration::from_secs(1));
        let shown: Vec<(String, bool)> = after
            .iter()
            .map(|m| (m.upstream.to_string(), m.accepts_new))
            .collect();
        assert_eq!(
            shown,
            [("node://a".into(), true), ("node://b".into(), false)]
        );
        // Still there within the grace, gone after it.
        assert_eq!(d.add_to(members_of([&a]), t0 + DEPARTED_GRACE).len(), 2);
        let later = t0 + DEPARTED_GRACE + Duration::from_secs(2);
        assert_eq!(d.add_to(members_of([&a]), later), members_of([&a]));
        // Back in the store: a member as any other.
        let mut d = Departed::default();
        d.add_to(both.clone(), t0);
        d.add_to(members_of([&a]), t0);
        assert_eq!(d.add_to(both.clone(), t0), both);
    }
}
