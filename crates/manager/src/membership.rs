//! Keeps the Raft membership and the managers recorded in the store in agreement.
//!
//! The store is the intent: a node whose spec says manager becomes one (its `role` is set,
//! then its next certificate is a manager's and it gets a Raft ID, see [`crate::ca`]), and
//! the leader adds every manager with a Raft ID as a voter. A node whose spec says worker
//! is first removed from Raft (only while the rest keep a quorum), then recorded as a
//! worker. Raft members that no manager in the store owns are removed.
//!
//! [`plan`] decides from a snapshot of both sides and does no I/O; [`Membership`] carries
//! the plan out on the leader through the [`RaftMembership`] trait that the daemon
//! implements over its Raft node.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use swarmd_store::{Event, ReadTx, WriteTx};
use swarmd_types::models::NodeSpecRoleEnum;
use swarmd_types::{Object, Role};

use crate::reconcile::{Plan, ReconcileError, Reconciler, Scope, StepResult, Touch};

/// One member of the Raft cluster as Raft sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftMember {
    pub raft_id: u64,
    pub addr: String,
    /// Counts for quorum (a learner that is still catching up does not).
    pub voter: bool,
}

/// The Raft side as the manager needs it: who is in, who leads, and membership changes.
#[async_trait::async_trait]
pub trait RaftMembership: Send + Sync + 'static {
    /// The current (effective) membership.
    fn members(&self) -> Vec<RaftMember>;
    /// The current leader's Raft ID and cluster address.
    fn leader(&self) -> Option<(u64, String)>;
    /// Members the leader heard from recently; `None` when this node does not lead (and so
    /// cannot tell).
    fn reachable(&self) -> Option<HashSet<u64>>;
    /// Adds a manager as a voter (catching it up first). On the leader only.
    async fn add_voter(&self, raft_id: u64, addr: String) -> Result<(), String>;
    /// Removes a member. On the leader only.
    async fn remove(&self, raft_id: u64) -> Result<(), String>;
}

/// A step that brings Raft and the store closer together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Record the node as a manager (`node promote` took effect).
    MarkManager {
        node_id: String,
    },
    /// Record the node as a worker and forget its Raft ID (it left the membership).
    MarkWorker {
        node_id: String,
    },
    AddVoter {
        raft_id: u64,
        addr: String,
    },
    Remove {
        raft_id: u64,
    },
}

/// What to do next, from the store and the current membership. `reachable` is the leader's
/// view of which members answer; a removal that would leave the cluster without a quorum of
/// reachable voters is held back (swarmkit's `CanRemoveMember`), as is any removal while
/// another member is still only a learner.
pub fn plan(t: &ReadTx<'_>, members: &[RaftMember], reachable: &HashSet<u64>) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut owned: BTreeSet<u64> = BTreeSet::new();
    let member = |id: u64| members.iter().find(|m| m.raft_id == id);
    for n in t.nodes.values() {
        let wants_manager = match n.spec.role {
            Some(NodeSpecRoleEnum::MANAGER) => true,
            Some(NodeSpecRoleEnum::WORKER) => false,
            _ => n.role == Role::Manager,
        };
        match (wants_manager, n.role) {
            (true, Role::Worker) => steps.push(Step::MarkManager {
                node_id: n.id.clone(),
            }),
            (true, Role::Manager) => {
                if let Some(m) = &n.manager {
                    owned.insert(m.raft_id);
                    if !member(m.raft_id).is_some_and(|x| x.voter) {
                        steps.push(Step::AddVoter {
                            raft_id: m.raft_id,
                            addr: m.addr.clone(),
                        });
                    }
                }
            }
            (false, Role::Manager) => match n.manager.as_ref().and_then(|m| member(m.raft_id)) {
                Some(m) => {
                    owned.insert(m.raft_id);
                    if can_remove(members, reachable, m.raft_id) {
                        steps.push(Step::Remove { raft_id: m.raft_id });
                    }
                }
                None => steps.push(Step::MarkWorker {
                    node_id: n.id.clone(),
                }),
            },
            (false, Role::Worker) => {}
        }
    }
    for m in members {
        if !owned.contains(&m.raft_id) && can_remove(members, reachable, m.raft_id) {
            steps.push(Step::Remove { raft_id: m.raft_id });
        }
    }
    steps
}

/// Whether removing `id` leaves a quorum of the remaining voters reachable.
pub fn can_remove(members: &[RaftMember], reachable: &HashSet<u64>, id: u64) -> bool {
    let remaining: Vec<u64> = members
        .iter()
        .filter(|m| m.voter && m.raft_id != id)
        .map(|m| m.raft_id)
        .collect();
    if remaining.is_empty() {
        return false;
    }
    let up = remaining.iter().filter(|r| reachable.contains(r)).count();
    up > remaining.len() / 2
}

/// How soon to look again while steps are pending (membership changes make no store
/// events of their own).
const PENDING_RECHECK: Duration = Duration::from_secs(1);

/// Additions in flight: adding a voter waits for it to catch up, which may take long, so it
/// runs beside the reconciler instead of blocking it.
#[derive(Default, Clone)]
pub struct InFlight(Arc<Mutex<HashSet<u64>>>);

/// The membership reconciler: [`plan`] over the store and Raft's current membership; the
/// store's side (a node's role) is written, then Raft's side is changed.
pub struct Membership {
    raft: Arc<dyn RaftMembership>,
    adding: InFlight,
}

impl Membership {
    pub fn new(raft: Arc<dyn RaftMembership>) -> Self {
        Membership {
            raft,
            adding: InFlight::default(),
        }
    }
}

#[async_trait::async_trait]
impl Reconciler for Membership {
    /// The Raft steps ([`Step::AddVoter`], [`Step::Remove`]).
    type Then = Vec<Step>;
    const NAME: &'static str = "membership";

    fn touch(e: &Event) -> Touch<'_> {
        Touch::all_if(matches!(e.object, Object::Node(_)))
    }

    /// Reads Raft's membership as it is now (an in-memory copy), so a plan made again after
    /// a conflict sees both sides fresh.
    fn plan(&self, t: &ReadTx<'_>, _: &Scope) -> Result<Plan<Vec<Step>>, ReconcileError> {
        let members = self.raft.members();
        let reachable = self.raft.reachable().unwrap_or_default();
        let steps = plan(t, &members, &reachable);
        let mut out = Plan::idle();
        if steps.is_empty() {
            return Ok(out);
        }
        // Membership changes make no store events of their own: look again soon.
        out.wake = Some(PENDING_RECHECK);
        for step in steps {
            match step {
                Step::MarkManager { node_id } => {
                    set_role(t, &mut out.writes, &node_id, Role::Manager)
                }
                Step::MarkWorker { node_id } => {
                    set_role(t, &mut out.writes, &node_id, Role::Worker)
                }
                raft => out.then.push(raft),
            }
        }
        Ok(out)
    }

    async fn then(&self, steps: Vec<Step>) -> StepResult {
        for step in steps {
            match step {
                Step::AddVoter { raft_id, addr } => {
                    if !self
                        .adding
                        .0
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(raft_id)
                    {
                        continue;
                    }
                    let raft = self.raft.clone();
                    let adding = self.adding.clone();
                    tokio::spawn(async move {
                        tracing::info!(raft_id, %addr, "adding manager to raft");
                        if let Err(e) = raft.add_voter(raft_id, addr.clone()).await {
                            tracing::warn!(raft_id, %addr, error = %e, "could not add manager to raft yet");
                        }
                        adding
                            .0
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&raft_id);
                    });
                }
                Step::Remove { raft_id } => {
                    tracing::info!(raft_id, "removing manager from raft");
                    self.raft
                        .remove(raft_id)
                        .await
                        .map_err(ReconcileError::Raft)?;
                }
                Step::MarkManager { .. } | Step::MarkWorker { .. } => {}
            }
        }
        Ok(None)
    }
}

/// Records the node's role (a worker forgets its Raft ID).
fn set_role(t: &ReadTx<'_>, tx: &mut WriteTx, node_id: &str, role: Role) {
    if let Some(n) = t.nodes.get(node_id)
        && n.role != role
    {
        let mut n = n.clone();
        n.role = role;
        if role == Role::Worker {
            n.manager = None;
        }
        tx.update(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::pass;
    use swarmd_store::Store;
    use swarmd_types::{ManagerInfo, Node};

    fn node(id: &str, spec: Option<NodeSpecRoleEnum>, role: Role, raft_id: Option<u64>) -> Node {
        let mut n = Node {
            id: id.into(),
            role,
            manager: raft_id.map(|raft_id| ManagerInfo {
                raft_id,
                addr: format!("{id}:2377"),
            }),
            ..Default::default()
        };
        n.spec.role = spec;
        n
    }

    fn voter(raft_id: u64) -> RaftMember {
        RaftMember {
            raft_id,
            addr: String::new(),
            voter: true,
        }
    }

    async fn store_with(nodes: Vec<Node>) -> Store {
        crate::reconcile::testing::store_with(nodes.into_iter().map(Object::from).collect()).await
    }

    use NodeSpecRoleEnum::{MANAGER, WORKER};

    /// Managers m1, m2 and m3 (Raft IDs 1 to 3), m3 demoted.
    async fn m3_demoted() -> Store {
        store_with(vec![
            node("m1", Some(MANAGER), Role::Manager, Some(1)),
            node("m2", Some(MANAGER), Role::Manager, Some(2)),
            node("m3", Some(WORKER), Role::Manager, Some(3)),
        ])
        .await
    }

    #[tokio::test]
    async fn a_joined_manager_is_added_and_a_promoted_worker_marked() {
        let store = store_with(vec![
            node("m1", Some(MANAGER), Role::Manager, Some(1)),
            node("m2", Some(MANAGER), Role::Manager, Some(2)),
            node("w", Some(MANAGER), Role::Worker, None),
            node("w2", Some(WORKER), Role::Worker, None),
        ])
        .await;
        let steps = store.view(|t| plan(t, &[voter(1)], &HashSet::from([1])));
        assert_eq!(steps.len(), 2, "{steps:?}");
        assert!(steps.contains(&Step::AddVoter {
            raft_id: 2,
            addr: "m2:2377".into()
        }));
        assert!(steps.contains(&Step::MarkManager {
            node_id: "w".into()
        }));
        // A learner still catching up is added again (as voter), nothing else.
        let learner = RaftMember {
            voter: false,
            ..voter(2)
        };
        let steps = store.view(|t| plan(t, &[voter(1), learner.clone()], &HashSet::from([1])));
        assert!(steps.contains(&Step::AddVoter {
            raft_id: 2,
            addr: "m2:2377".into()
        }));
    }

    #[tokio::test]
    async fn demotion_removes_from_raft_first_then_marks_worker() {
        let store = m3_demoted().await;
        let all = [voter(1), voter(2), voter(3)];
        let up = HashSet::from([1, 2, 3]);
        assert_eq!(
            store.view(|t| plan(t, &all, &up)),
            vec![Step::Remove { raft_id: 3 }]
        );
        // Out of raft now: record it as a worker.
        assert_eq!(
            store.view(|t| plan(t, &all[..2], &up)),
            vec![Step::MarkWorker {
                node_id: "m3".into()
            }]
        );
    }

    #[tokio::test]
    async fn removal_that_breaks_quorum_waits() {
        let store = m3_demoted().await;
        let all = [voter(1), voter(2), voter(3)];
        // m2 is down: removing m3 would leave 1 of 2 voters up, no quorum.
        assert!(
            store
                .view(|t| plan(t, &all, &HashSet::from([1, 3])))
                .is_empty()
        );
        assert!(!can_remove(&all, &HashSet::from([1, 3]), 3));
        assert!(can_remove(&all, &HashSet::from([1, 2]), 3));
        // Never remove the last voter.
        assert!(!can_remove(&[voter(1)], &HashSet::from([1]), 1));
    }

    #[tokio::test]
    async fn members_nobody_owns_are_removed() {
        let store = store_with(vec![
            node("m1", Some(MANAGER), Role::Manager, Some(1)),
            node("m2", Some(MANAGER), Role::Manager, Some(2)),
        ])
        .await;
        let steps = store.view(|t| {
            plan(
                t,
                &[voter(1), voter(2), voter(9)],
                &HashSet::from([1, 2, 9]),
            )
        });
        assert_eq!(steps, vec![Step::Remove { raft_id: 9 }]);
    }

    /// A fake Raft side that records what the reconciler asked for (unit tests only).
    struct FakeRaft(Mutex<Vec<RaftMember>>);

    #[async_trait::async_trait]
    impl RaftMembership for FakeRaft {
        fn members(&self) -> Vec<RaftMember> {
            self.0.lock().unwrap().clone()
        }
        fn leader(&self) -> Option<(u64, String)> {
            Some((1, String::new()))
        }
        fn reachable(&self) -> Option<HashSet<u64>> {
            Some(self.members().iter().map(|m| m.raft_id).collect())
        }
        async fn add_voter(&self, raft_id: u64, addr: String) -> Result<(), String> {
            self.0.lock().unwrap().push(RaftMember {
                raft_id,
                addr,
                voter: true,
            });
            Ok(())
        }
        async fn remove(&self, raft_id: u64) -> Result<(), String> {
            self.0.lock().unwrap().retain(|m| m.raft_id != raft_id);
            Ok(())
        }
    }

    #[tokio::test]
    async fn reconcile_converges_promotion_and_demotion() {
        let store = store_with(vec![
            node("m1", Some(MANAGER), Role::Manager, Some(1)),
            node("m2", Some(WORKER), Role::Manager, Some(2)),
            node("m3", Some(MANAGER), Role::Manager, Some(3)),
            node("w", Some(MANAGER), Role::Worker, None),
        ])
        .await;
        let fake = Arc::new(FakeRaft(Mutex::new(vec![voter(1), voter(2), voter(3)])));
        let raft: Arc<dyn RaftMembership> = fake.clone();
        let membership = Membership::new(raft);
        for _ in 0..10 {
            if pass(&membership, &store, &Scope::All)
                .await
                .unwrap()
                .is_none()
            {
                break;
            }
            tokio::task::yield_now().await;
        }
        let ids: Vec<u64> = fake.members().iter().map(|m| m.raft_id).collect();
        assert_eq!(ids, vec![1, 3]);
        let (m2, w) = store.view(|t| (t.nodes["m2"].clone(), t.nodes["w"].clone()));
        assert_eq!(m2.role, Role::Worker);
        assert_eq!(m2.manager, None);
        assert_eq!(w.role, Role::Manager);
    }
}
