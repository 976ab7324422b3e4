//! Task invariants over a sequence of `GET /nodes` and `GET /tasks` listings.
//!
//! One observer reads the listings one after another, each from a random manager. Reads are
//! linearizable (a read index through the leader), so the listings are snapshots of the
//! store in the order they were taken. Between two listings anything may have happened
//! unseen; every rule below concludes only what the listings prove:
//!
//! - A node was **steadily** in a state from listing `a` to listing `b` when every nodes
//!   listing in between shows it in that state with one `Version.Index`. A node's version
//!   changes with every write of it (Ready to Down and back included; heartbeats write
//!   nothing), so an unchanged version means no transition happened unseen.
//! - A task's `Status.State` never moves backwards between listings (swarmkit's order,
//!   `api/types.proto` TaskState, which the API's enum keeps: [`STATES`]).
//! - At most 1 (stop-first) or 2 (start-first) tasks of one (service, slot) run at once;
//!   for start-first only tasks whose desired state is running count (see
//!   `check_running`).
//!   swarmkit's updater creates a stop-first replacement with desired state READY and lets
//!   it start only once the old task's observed state is past RUNNING or the old task's
//!   node went Down (`restart.Supervisor.DelayStart` with `waitStop`); start-first removes
//!   the old task once the new one runs. So two running tasks of a slot prove a violation
//!   only when neither node was written between before the newer task existed and after the
//!   listing: a task left "running" on a node that went Down (or came back) is stale, since
//!   only its node reports its state, and is not counted. Tasks with desired state `remove`
//!   are not counted either: a scale-down frees its slot numbers at once (swarmkit's
//!   `addTasks` reuses any slot with no runnable task) while the removed task stops.
//!   Caveat kept: swarmkit also starts a stop-first replacement after a one-minute timeout
//!   when the old task never reports; the workload's tasks stop on SIGTERM in moments.
//! - No task is assigned to a Down node: a task absent (or unassigned) in one tasks listing
//!   and assigned to node X in the next, with X steadily Down from the nodes listing before
//!   the first to the one after the second, was assigned while X was Down.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// Task states from first to last (swarmkit's `TaskState` order; "allocated" is the API's
/// leftover between new and pending).
pub const STATES: [&str; 15] = [
    "new",
    "allocated",
    "pending",
    "assigned",
    "accepted",
    "preparing",
    "ready",
    "starting",
    "running",
    "complete",
    "shutdown",
    "failed",
    "rejected",
    "remove",
    "orphaned",
];

fn rank(state: &str) -> Option<usize> {
    STATES.iter().position(|s| *s == state)
}

/// A service's `UpdateConfig.Order`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Order {
    StopFirst,
    StartFirst,
}

impl Order {
    /// How many tasks of one slot may run at once.
    pub fn allowed(self) -> usize {
        match self {
            Order::StopFirst => 1,
            Order::StartFirst => 2,
        }
    }
}

/// A node as one listing showed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSeen {
    pub id: String,
    /// `Status.State`: "ready", "down", "unknown", "disconnected".
    pub state: String,
    pub version: u64,
}

/// A task as one listing showed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSeen {
    pub id: String,
    pub service: String,
    pub slot: u64,
    /// Empty until the scheduler assigns it.
    pub node: String,
    pub state: String,
    pub desired: String,
}

/// One listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Listing {
    Nodes(Vec<NodeSeen>),
    Tasks(Vec<TaskSeen>),
}

/// A listing and when it returned (nanoseconds on the harness's clock).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    pub at: u64,
    pub listing: Listing,
}

/// A broken invariant, with the harness time of the listing that shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskViolation {
    TooManyRunning {
        at: u64,
        service: String,
        slot: u64,
        allowed: usize,
        tasks: Vec<String>,
    },
    Backwards {
        at: u64,
        task: String,
        from: String,
        to: String,
    },
    AssignedToDownNode {
        at: u64,
        task: String,
        node: String,
    },
}

/// What the checker looked at and found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskReport {
    pub nodes_listings: usize,
    pub task_listings: usize,
    /// Distinct tasks seen.
    pub tasks: usize,
    /// (listing, slot) pairs with a running task, checked against the update order.
    pub slots_checked: usize,
    /// State changes of one task between successive sightings.
    pub transitions_checked: usize,
    /// Assignments seen happen between two listings, with the node known on both sides.
    pub assignments_checked: usize,
    pub violations: Vec<TaskViolation>,
}

/// Checks `observations` (in the order they were read); `orders` is each service's update
/// order by service ID (tasks of other services are checked for states and nodes only).
pub fn check_tasks(observations: &[Observation], orders: &BTreeMap<String, Order>) -> TaskReport {
    let view = View::new(observations);
    let mut report = TaskReport {
        nodes_listings: view.nodes.len(),
        task_listings: view.tasks.len(),
        ..TaskReport::default()
    };
    let mut last_state: HashMap<&str, &str> = HashMap::new();
    let mut first_seen: HashMap<&str, usize> = HashMap::new();
    for (pos, &i) in view.tasks.iter().enumerate() {
        let Listing::Tasks(tasks) = &observations[i].listing else {
            unreachable!("view.tasks holds tasks listings")
        };
        let at = observations[i].at;
        for t in tasks {
            first_seen.entry(&t.id).or_insert(i);
            if let Some(prev) = last_state.insert(&t.id, &t.state)
                && prev != t.state
                && let (Some(a), Some(b)) = (rank(prev), rank(&t.state))
            {
                report.transitions_checked += 1;
                if b < a {
                    report.violations.push(TaskViolation::Backwards {
                        at,
                        task: t.id.clone(),
                        from: prev.to_string(),
                        to: t.state.clone(),
                    });
                }
            }
        }
        let previous = pos.checked_sub(1).map(|p| view.tasks[p]);
        if let Some(j) = previous {
            view.check_assignments(j, i, &mut report);
        }
        view.check_running(i, &first_seen, orders, &mut report);
    }
    report.tasks = first_seen.len();
    report
}

/// The observations with their nodes and tasks listings indexed.
struct View<'a> {
    observations: &'a [Observation],
    /// Positions of the nodes listings, ascending.
    nodes: Vec<usize>,
    /// Positions of the tasks listings, ascending.
    tasks: Vec<usize>,
    /// Each nodes listing by node ID.
    node_maps: HashMap<usize, HashMap<&'a str, &'a NodeSeen>>,
}

impl<'a> View<'a> {
    fn new(observations: &'a [Observation]) -> View<'a> {
        let mut view = View {
            observations,
            nodes: Vec::new(),
            tasks: Vec::new(),
            node_maps: HashMap::new(),
        };
        for (i, o) in observations.iter().enumerate() {
            match &o.listing {
                Listing::Nodes(ns) => {
                    view.nodes.push(i);
                    view.node_maps
                        .insert(i, ns.iter().map(|n| (n.id.as_str(), n)).collect());
                }
                Listing::Tasks(_) => view.tasks.push(i),
            }
        }
        view
    }

    /// The last nodes listing before position `i`.
    fn nodes_before(&self, i: usize) -> Option<usize> {
        let p = self.nodes.partition_point(|&n| n < i);
        p.checked_sub(1).map(|p| self.nodes[p])
    }

    /// The first nodes listing after position `i`.
    fn nodes_after(&self, i: usize) -> Option<usize> {
        self.nodes
            .get(self.nodes.partition_point(|&n| n <= i))
            .copied()
    }

    /// The last tasks listing before position `i`.
    fn tasks_before(&self, i: usize) -> Option<usize> {
        let p = self.tasks.partition_point(|&n| n < i);
        p.checked_sub(1).map(|p| self.tasks[p])
    }

    /// Whether `node` was in `state`, unwritten, in every nodes listing from `a` to `b`.
    fn steady(&self, node: &str, state: &str, a: usize, b: usize) -> bool {
        let mut version = None;
        for n in &self.nodes[self.nodes.partition_point(|&n| n < a)..] {
            if *n > b {
                break;
            }
            let Some(seen) = self.node_maps[n].get(node) else {
                return false;
            };
            if seen.state != state || version.is_some_and(|v| v != seen.version) {
                return false;
            }
            version = Some(seen.version);
        }
        version.is_some()
    }

    fn tasks_of(&self, i: usize) -> &'a [TaskSeen] {
        match &self.observations[i].listing {
            Listing::Tasks(t) => t,
            Listing::Nodes(_) => &[],
        }
    }

    /// Tasks unassigned (or absent) in tasks listing `j` and assigned in `i`.
    fn check_assignments(&self, j: usize, i: usize, report: &mut TaskReport) {
        let (Some(a), Some(b)) = (self.nodes_before(j), self.nodes_after(i)) else {
            return;
        };
        let before: HashMap<&str, &str> = self
            .tasks_of(j)
            .iter()
            .map(|t| (t.id.as_str(), t.node.as_str()))
            .collect();
        for t in self.tasks_of(i) {
            if t.node.is_empty() || before.get(t.id.as_str()).is_some_and(|n| !n.is_empty()) {
                continue;
            }
            report.assignments_checked += 1;
            if self.steady(&t.node, "down", a, b) {
                report.violations.push(TaskViolation::AssignedToDownNode {
                    at: self.observations[i].at,
                    task: t.id.clone(),
                    node: t.node.clone(),
                });
            }
        }
    }

    /// Running tasks per slot in tasks listing `i` against their service's update order.
    fn check_running(
        &self,
        i: usize,
        first_seen: &HashMap<&str, usize>,
        orders: &BTreeMap<String, Order>,
        report: &mut TaskReport,
    ) {
        let mut slots: BTreeMap<(&str, u64), Vec<&TaskSeen>> = BTreeMap::new();
        for t in self.tasks_of(i) {
            let Some(order) = orders.get(&t.service) else {
                continue;
            };
            // Start-first: only the tasks meant to run count. A task told to stop is on its
            // way out, and the updater does not wait for it (swarmkit's neither): its
            // "running" can outlive the next update while its report waits out a manager's
            // fault (found by `scripts/chaos --quick`: three "running" in a slot, the oldest
            // stopped 10 s before its report landed). Stop-first: every running task counts,
            // the replacement waits for the old one's reported stop.
            let meant_to_run = *order == Order::StopFirst || t.desired == "running";
            if t.state == "running" && t.desired != "remove" && meant_to_run {
                slots.entry((&t.service, t.slot)).or_default().push(t);
            }
        }
        let Some(after) = self.nodes_after(i) else {
            return;
        };
        for ((service, slot), running) in slots {
            report.slots_checked += 1;
            let allowed = orders[service].allowed();
            if running.len() <= allowed {
                continue;
            }
            // Each task in turn as the newest of those counted: the others count when their
            // nodes were steadily Ready from before it existed.
            for newest in &running {
                let born = first_seen[newest.id.as_str()];
                let Some(start) = self.tasks_before(born).and_then(|j| self.nodes_before(j)) else {
                    continue;
                };
                let counted: Vec<String> = running
                    .iter()
                    .filter(|t| first_seen[t.id.as_str()] <= born)
                    .filter(|t| self.steady(&t.node, "ready", start, after))
                    .map(|t| t.id.clone())
                    .collect();
                if counted.len() > allowed && counted.contains(&newest.id) {
                    report.violations.push(TaskViolation::TooManyRunning {
                        at: self.observations[i].at,
                        service: service.to_string(),
                        slot,
                        allowed,
                        tasks: counted,
                    });
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(list: &[(&str, &str, u64)]) -> Listing {
        Listing::Nodes(
            list.iter()
                .map(|(id, state, version)| NodeSeen {
                    id: id.to_string(),
                    state: state.to_string(),
                    version: *version,
                })
                .collect(),
        )
    }

    /// Tasks of service "s": (id, slot, node, state, desired).
    fn tasks(list: &[(&str, u64, &str, &str, &str)]) -> Listing {
        Listing::Tasks(
            list.iter()
                .map(|(id, slot, node, state, desired)| TaskSeen {
                    id: id.to_string(),
                    service: "s".into(),
                    slot: *slot,
                    node: node.to_string(),
                    state: state.to_string(),
                    desired: desired.to_string(),
                })
                .collect(),
        )
    }

    fn history(listings: Vec<Listing>) -> Vec<Observation> {
        listings
            .into_iter()
            .enumerate()
            .map(|(i, listing)| Observation {
                at: i as u64,
                listing,
            })
            .collect()
    }

    fn check(order: Order, listings: Vec<Listing>) -> TaskReport {
        let orders = BTreeMap::from([("s".to_string(), order)]);
        check_tasks(&history(listings), &orders)
    }

    const READY: [(&str, &str, u64); 2] = [("w1", "ready", 10), ("w2", "ready", 20)];

    /// Task "old" of `slot` runs on w1; then it is asked to go to `old_desired` while "new"
    /// is (node, state); nodes listings around each tasks listing, all steadily Ready.
    fn replaced(slot: u64, old_desired: &str, new: (&str, &str)) -> Vec<Listing> {
        vec![
            nodes(&READY),
            tasks(&[("old", slot, "w1", "running", "running")]),
            nodes(&READY),
            tasks(&[
                ("old", slot, "w1", "running", old_desired),
                ("new", slot, new.0, new.1, "running"),
            ]),
            nodes(&READY),
        ]
    }

    /// A stop-first update done right: the old task stops before the new one runs.
    fn stop_first_update(overlap: bool) -> Vec<Listing> {
        let mut l = replaced(1, "shutdown", ("", "pending"));
        if overlap {
            l.push(tasks(&[
                ("old", 1, "w1", "running", "shutdown"),
                ("new", 1, "w2", "running", "running"),
            ]));
            l.push(nodes(&READY));
        }
        l.push(tasks(&[
            ("old", 1, "w1", "shutdown", "shutdown"),
            ("new", 1, "w2", "running", "running"),
        ]));
        l.push(nodes(&READY));
        l
    }

    #[test]
    fn a_clean_stop_first_update_passes() {
        let r = check(Order::StopFirst, stop_first_update(false));
        assert_eq!(r.violations, vec![]);
        assert_eq!((r.task_listings, r.nodes_listings, r.tasks), (3, 4, 2));
        assert!(r.slots_checked >= 2 && r.transitions_checked >= 2, "{r:?}");
        assert_eq!(r.assignments_checked, 1);
    }

    #[test]
    fn two_running_tasks_of_a_stop_first_slot_are_caught() {
        let r = check(Order::StopFirst, stop_first_update(true));
        assert_eq!(
            r.violations,
            vec![TaskViolation::TooManyRunning {
                at: 5,
                service: "s".into(),
                slot: 1,
                allowed: 1,
                tasks: vec!["old".into(), "new".into()],
            }]
        );
    }

    #[test]
    fn start_first_may_overlap_two_but_not_three() {
        assert_eq!(
            check(Order::StartFirst, stop_first_update(true)).violations,
            vec![]
        );
        let three = vec![
            nodes(&READY),
            tasks(&[("a", 1, "w1", "running", "running")]),
            nodes(&READY),
            tasks(&[
                ("a", 1, "w1", "running", "running"),
                ("b", 1, "w2", "running", "running"),
                ("c", 1, "w1", "running", "running"),
            ]),
            nodes(&READY),
        ];
        let r = check(Order::StartFirst, three);
        assert!(
            matches!(&r.violations[..], [TaskViolation::TooManyRunning { allowed: 2, tasks, .. }] if tasks.len() == 3),
            "{r:?}"
        );
    }

    #[test]
    fn start_first_does_not_count_tasks_told_to_stop() {
        // Two updates in a row: "a" was told to stop by the first and still shows running
        // (its report is late) when "b" is told to stop by the second and "c" runs.
        let l = vec![
            nodes(&READY),
            tasks(&[("a", 1, "w1", "running", "running")]),
            nodes(&READY),
            tasks(&[
                ("a", 1, "w1", "running", "shutdown"),
                ("b", 1, "w2", "running", "running"),
            ]),
            nodes(&READY),
            tasks(&[
                ("a", 1, "w1", "running", "shutdown"),
                ("b", 1, "w2", "running", "shutdown"),
                ("c", 1, "w2", "running", "running"),
            ]),
            nodes(&READY),
        ];
        assert_eq!(check(Order::StartFirst, l.clone()).violations, vec![]);
        // Stop-first counts them: its replacement must wait for the reported stop.
        assert!(!check(Order::StopFirst, l).violations.is_empty());
    }

    #[test]
    fn a_stale_running_task_on_a_node_that_went_down_is_not_counted() {
        // w1 went Down (and came back: a new version) while the replacement started; the
        // old task's "running" is what w1 last reported.
        let l = vec![
            nodes(&READY),
            tasks(&[("old", 1, "w1", "running", "running")]),
            nodes(&[("w1", "down", 11), ("w2", "ready", 20)]),
            tasks(&[
                ("old", 1, "w1", "running", "shutdown"),
                ("new", 1, "w2", "running", "running"),
            ]),
            nodes(&[("w1", "ready", 12), ("w2", "ready", 20)]),
            tasks(&[
                ("old", 1, "w1", "running", "shutdown"),
                ("new", 1, "w2", "running", "running"),
            ]),
            nodes(&[("w1", "ready", 12), ("w2", "ready", 20)]),
        ];
        assert_eq!(check(Order::StopFirst, l).violations, vec![]);
    }

    #[test]
    fn a_node_written_unseen_between_listings_does_not_count() {
        // Ready on both sides, but its version moved: it may have been Down in between.
        let mut l = stop_first_update(true);
        l[4] = nodes(&[("w1", "ready", 11), ("w2", "ready", 20)]);
        assert_eq!(check(Order::StopFirst, l).violations, vec![]);
    }

    #[test]
    fn scaled_down_tasks_do_not_hold_their_slot() {
        let l = replaced(2, "remove", ("w2", "running"));
        assert_eq!(check(Order::StopFirst, l).violations, vec![]);
    }

    #[test]
    fn a_state_moving_backwards_is_caught() {
        let l = vec![
            tasks(&[("t", 1, "w1", "running", "running")]),
            tasks(&[("t", 1, "w1", "shutdown", "shutdown")]),
            tasks(&[("t", 1, "w1", "running", "shutdown")]),
        ];
        let r = check(Order::StopFirst, l);
        assert_eq!(
            r.violations,
            vec![TaskViolation::Backwards {
                at: 2,
                task: "t".into(),
                from: "shutdown".into(),
                to: "running".into(),
            }]
        );
        assert_eq!(r.transitions_checked, 2);
    }

    #[test]
    fn states_follow_swarmkits_order() {
        let all: Vec<Listing> = STATES
            .iter()
            .map(|s| tasks(&[("t", 1, "w1", s, "running")]))
            .collect();
        let r = check(Order::StopFirst, all);
        assert_eq!(r.violations, vec![]);
        assert_eq!(r.transitions_checked, STATES.len() - 1);
    }

    /// A task appears assigned to w1 between two listings that show w1 Down, unwritten.
    fn assigned_while(down_before: (&str, u64), down_after: (&str, u64)) -> Vec<Listing> {
        vec![
            nodes(&[("w1", down_before.0, down_before.1), ("w2", "ready", 20)]),
            tasks(&[]),
            tasks(&[("t", 1, "w1", "assigned", "running")]),
            nodes(&[("w1", down_after.0, down_after.1), ("w2", "ready", 20)]),
        ]
    }

    #[test]
    fn a_task_assigned_to_a_down_node_is_caught() {
        let r = check(Order::StopFirst, assigned_while(("down", 5), ("down", 5)));
        assert_eq!(
            r.violations,
            vec![TaskViolation::AssignedToDownNode {
                at: 2,
                task: "t".into(),
                node: "w1".into(),
            }]
        );
        assert_eq!(r.assignments_checked, 1);
    }

    #[test]
    fn a_node_that_may_have_been_up_at_assignment_is_no_violation() {
        // Down on both sides but written in between (up, then down again), or up on one side.
        for (before, after) in [
            (("down", 5), ("down", 7)),
            (("ready", 5), ("down", 6)),
            (("down", 5), ("ready", 6)),
        ] {
            let r = check(Order::StopFirst, assigned_while(before, after));
            assert_eq!(r.violations, vec![], "{before:?} {after:?}");
        }
    }

    #[test]
    fn a_task_assigned_before_the_window_is_not_checked() {
        // Already assigned in the earlier listing: its assignment happened before it.
        let l = vec![
            nodes(&[("w1", "down", 5)]),
            tasks(&[("t", 1, "w1", "running", "running")]),
            tasks(&[("t", 1, "w1", "running", "running")]),
            nodes(&[("w1", "down", 5)]),
        ];
        let r = check(Order::StopFirst, l);
        assert_eq!((r.violations, r.assignments_checked), (vec![], 0));
    }
}
