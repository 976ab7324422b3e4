//! The scheduler: assigns pending tasks to nodes.
//!
//! [`schedule`] is a pure function over a store snapshot: it filters nodes (ready, active,
//! constraints, platforms, resources, max replicas per node) and ranks the survivors by placement
//! preferences (fewest tasks of the service in the node's label branches), then spread
//! (fewest tasks of the same service, then fewest tasks overall). The loop around it lives
//! in `run.rs` and commits decisions in batches.

pub mod constraint;
mod platform;
mod run;

pub use run::{MAX_WRITES_PER_PASS, Scheduler};

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::rc::Rc;

use swarmd_store::{Tables, reservations};
use swarmd_types::models::{NodeSpecAvailabilityEnum, TaskState};
use swarmd_types::{Node, NodeState, Task};

/// What the scheduler decided for one pending task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Assign {
        task_id: String,
        node_id: String,
    },
    /// No node fits; the text is Docker's explanation shown by `service ps`.
    NoFit {
        task_id: String,
        reason: String,
    },
}

/// Per-node bookkeeping while deciding a batch.
struct Candidate<'a> {
    node: &'a Node,
    total: u64,
    reserved_cpus: i64,
    reserved_mem: i64,
}

/// Why a node can or cannot take a task, as far as the node and the task's constraints
/// decide it (the same for every task with those constraints during one pass).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Filter {
    Fits,
    Unavailable,
    Constraints,
}

/// The tasks of one pass that rank nodes alike: same service, constraints, reservations
/// and replicas-per-node limit, no preferences and no preset node.
type GroupKey<'a> = (&'a str, &'a [String], i64, i64, Option<u64>);

/// A node's rank for a group, lowest first: (tasks of the service, all tasks, position);
/// the position breaks ties towards the lowest node ID, as the full scan does.
type HeapEntry = Reverse<(u64, u64, usize)>;

/// The nodes and their load as one pass sees them, updated as it places tasks.
struct Candidates<'a> {
    tables: &'a Tables,
    /// In node ID order (ties in ranking go to the lowest ID).
    nodes: Vec<Candidate<'a>>,
    /// Tasks holding each node, per service: indexed like `nodes`.
    per_service: HashMap<&'a str, Vec<u64>>,
    /// Per distinct constraint list: each node's [`Filter`], indexed like `nodes`. A service
    /// of 100,000 replicas on 1,000 nodes asked for 100 million constraint matches; now
    /// it is 1,000 per pass.
    filters: HashMap<&'a [String], Rc<Vec<Filter>>>,
    /// Per group: its fitting nodes by rank. Placing a task is then O(log nodes) instead of
    /// a look at every node (a million tasks on 10,000 nodes were 10^10 looks).
    heaps: HashMap<GroupKey<'a>, BinaryHeap<HeapEntry>>,
}

impl<'a> Candidates<'a> {
    /// The nodes with their load from the store's index (no walk over the tasks).
    fn new(tables: &'a Tables) -> Self {
        let nodes: Vec<Candidate<'a>> = tables
            .nodes
            .values()
            .map(|n| {
                let load = tables.node_load(&n.id);
                Candidate {
                    node: n,
                    total: load.map_or(0, |l| l.tasks),
                    reserved_cpus: load.map_or(0, |l| l.reserved_cpus),
                    reserved_mem: load.map_or(0, |l| l.reserved_mem),
                }
            })
            .collect();
        Candidates {
            tables,
            nodes,
            per_service: HashMap::new(),
            filters: HashMap::new(),
            heaps: HashMap::new(),
        }
    }

    /// The best node for a task of `key`'s group by the heap, or `None` when no node fits.
    /// Entries go stale only upwards (a node's counts grow as the pass places tasks), so
    /// a popped entry that is current ranks lowest; a stale one is pushed back as it is
    /// now. A node over the replicas limit or out of resources stays out of the group's
    /// heap for the rest of the pass: its counts and reservations only grow.
    fn best_by_heap(&mut self, key: GroupKey<'a>, filter: &[Filter]) -> Option<usize> {
        let (service_id, _, cpu, mem, max_per_node) = key;
        let counts = &self.per_service[service_id];
        let nodes = &self.nodes;
        let heap = self.heaps.entry(key).or_insert_with(|| {
            filter
                .iter()
                .enumerate()
                .filter(|(_, f)| **f == Filter::Fits)
                .map(|(i, _)| Reverse((counts[i], nodes[i].total, i)))
                .collect()
        });
        while let Some(Reverse((service_count, total, i))) = heap.pop() {
            let c = &nodes[i];
            if (counts[i], c.total) != (service_count, total) {
                heap.push(Reverse((counts[i], c.total, i)));
                continue;
            }
            if max_per_node.is_some_and(|m| counts[i] >= m) {
                continue;
            }
            if (cpu > 0 && c.reserved_cpus + cpu > c.node.description.nano_cpus)
                || (mem > 0 && c.reserved_mem + mem > c.node.description.memory_bytes)
            {
                continue;
            }
            return Some(i);
        }
        None
    }

    /// Each node's [`Filter`] for tasks with these constraints (computed once per pass).
    fn filter(&mut self, constraints: &'a [String]) -> Rc<Vec<Filter>> {
        if let Some(f) = self.filters.get(constraints) {
            return f.clone();
        }
        // Constraints were validated at create time; an unparsable one matches nothing.
        let parsed = constraint::parse_all(constraints);
        let f: Rc<Vec<Filter>> = Rc::new(
            self.nodes
                .iter()
                .map(|c| {
                    let n = c.node;
                    let available = n.status.state == NodeState::Ready
                        && matches!(
                            n.spec.availability,
                            None | Some(NodeSpecAvailabilityEnum::ACTIVE)
                                | Some(NodeSpecAvailabilityEnum::EMPTY)
                        );
                    let fits = match &parsed {
                        Ok(cs) => cs.iter().all(|c| c.matches(n)),
                        Err(_) => false,
                    };
                    match (available, fits) {
                        (false, _) => Filter::Unavailable,
                        (true, false) => Filter::Constraints,
                        (true, true) => Filter::Fits,
                    }
                })
                .collect(),
        );
        self.filters.insert(constraints, f.clone());
        f
    }

    fn service_counts(&mut self, service_id: &'a str) -> &mut Vec<u64> {
        let (tables, nodes) = (self.tables, &self.nodes);
        self.per_service.entry(service_id).or_insert_with(|| {
            nodes
                .iter()
                .map(|c| {
                    tables
                        .node_load(&c.node.id)
                        .and_then(|l| l.per_service.get(service_id))
                        .copied()
                        .unwrap_or(0)
                })
                .collect()
        })
    }

    /// Places `task` on node `i`: the node's counts take it.
    fn assign(&mut self, task: &'a Task, i: usize, cpu: i64, mem: i64) -> Decision {
        self.service_counts(&task.service_id)[i] += 1;
        let c = &mut self.nodes[i];
        c.total += 1;
        c.reserved_cpus += cpu;
        c.reserved_mem += mem;
        Decision::Assign {
            task_id: task.id.clone(),
            node_id: c.node.id.clone(),
        }
    }
}

/// Tasks waiting for a node: pending and meant to run (now or after a restart delay; job
/// tasks run to COMPLETE). Global tasks come with their node preset; the scheduler only
/// checks it fits.
pub fn is_schedulable(t: &Task) -> bool {
    t.status.state == TaskState::PENDING
        && matches!(
            t.desired_state,
            TaskState::READY | TaskState::RUNNING | TaskState::COMPLETE
        )
}

/// Decides placements for every schedulable task in the snapshot.
pub fn schedule(tables: &Tables) -> Vec<Decision> {
    schedule_capped(tables, usize::MAX, |_| true).0
}

/// Decides placements for schedulable tasks in order (oldest first, then by service and
/// slot, from the store's index of PENDING tasks, so nothing else is scanned for them) until
/// `max_writes` decisions that `writes` says need a store write have been made. Returns the
/// decisions and whether tasks were left undecided.
///
/// A task that fits nowhere is decided like the previous one whose placement inputs
/// (service, preset node, placement, resources) are the same, as long as nothing was placed
/// in between: the nodes have not changed, so neither has the answer. That keeps a pass
/// over thousands of unplaceable tasks cheap; the placeable ones behind them are reached
/// because only writes count against the cap.
pub fn schedule_capped(
    tables: &Tables,
    max_writes: usize,
    writes: impl FnMut(&Decision) -> bool,
) -> (Vec<Decision>, bool) {
    schedule_with(tables, max_writes, writes, true)
}

/// [`schedule_capped`]; `by_heap: false` ranks by scanning every node for every task.
fn schedule_with(
    tables: &Tables,
    max_writes: usize,
    mut writes: impl FnMut(&Decision) -> bool,
    by_heap: bool,
) -> (Vec<Decision>, bool) {
    let mut waiting = tables
        .pending_tasks()
        .filter(|t| is_schedulable(t))
        .peekable();
    // Nothing waits (most passes: the agents' status reports wake the scheduler too):
    // skip counting every task's node, which is O(tasks).
    if waiting.peek().is_none() {
        return (Vec::new(), false);
    }
    let mut candidates = Candidates::new(tables);
    let mut decisions = Vec::new();
    let mut written = 0;
    let mut unplaceable: Vec<(&Task, String)> = Vec::new();
    for task in waiting {
        if written >= max_writes {
            return (decisions, true);
        }
        let known = unplaceable
            .iter()
            .find(|(t, _)| same_placement_inputs(t, task))
            .map(|(_, reason)| reason.clone());
        let d = match known {
            Some(reason) => Decision::NoFit {
                task_id: task.id.clone(),
                reason,
            },
            None => place_with(task, &mut candidates, by_heap),
        };
        match &d {
            Decision::Assign { .. } => unplaceable.clear(),
            Decision::NoFit { reason, .. } => {
                if unplaceable.len() >= 16 {
                    unplaceable.remove(0);
                }
                unplaceable.push((task, reason.clone()));
            }
        }
        if writes(&d) {
            written += 1;
        }
        decisions.push(d);
    }
    (decisions, false)
}

/// Whether [`place`] decides `a` and `b` from the same inputs.
fn same_placement_inputs(a: &Task, b: &Task) -> bool {
    a.service_id == b.service_id
        && a.node_id == b.node_id
        && a.spec.placement == b.spec.placement
        && a.spec.resources == b.spec.resources
}

/// How good a node is for a task, lower first: tasks of the service in the node's
/// preference branches (outermost first), then on the node, then all tasks on the node.
type Rank = (Vec<u64>, u64, u64);

#[derive(Default)]
struct Rejections {
    unavailable: u64,
    constraints: u64,
    platform: u64,
    resources: u64,
    max_replicas: u64,
}

/// Decides one task. `by_heap`: tasks without preferences or a preset node take the best
/// node from their group's heap; otherwise (and to explain a task that fits nowhere) every
/// node is looked at. Both choose the same node.
fn place_with<'a>(task: &'a Task, candidates: &mut Candidates<'a>, by_heap: bool) -> Decision {
    let constraints: &'a [String] = task
        .spec
        .placement
        .as_ref()
        .and_then(|p| p.constraints.as_deref())
        .unwrap_or_default();
    let filter = candidates.filter(constraints);
    let max_per_node = task
        .spec
        .placement
        .as_ref()
        .and_then(|p| p.max_replicas)
        .filter(|m| *m > 0)
        .map(|m| m as u64);
    let (cpu, mem) = reservations(task);
    let platforms = platform::platforms(task);
    let generic = platform::reserves_generic(task);
    candidates.service_counts(&task.service_id);
    // Platforms and generic resources are checked by the scan below only (rare, and the
    // heap's grouping does not know them).
    if by_heap
        && spread_keys(task).next().is_none()
        && task.node_id.is_empty()
        && platforms.is_none()
        && !generic
    {
        let key = (
            task.service_id.as_str(),
            constraints,
            cpu,
            mem,
            max_per_node,
        );
        if let Some(i) = candidates.best_by_heap(key, &filter) {
            let d = candidates.assign(task, i, cpu, mem);
            let (counts, c) = (&candidates.per_service[key.0], &candidates.nodes[i]);
            if let Some(heap) = candidates.heaps.get_mut(&key) {
                heap.push(Reverse((counts[i], c.total, i)));
            }
            return d;
        }
        // Nothing fits: the scan below says why.
    }
    let counts = &candidates.per_service[task.service_id.as_str()];
    let spread = Spread::new(task, &candidates.nodes, counts);

    let mut why = Rejections::default();
    let mut best: Option<(usize, Rank)> = None;
    for (i, c) in candidates.nodes.iter().enumerate() {
        let n = c.node;
        if !task.node_id.is_empty() && n.id != task.node_id {
            continue;
        }
        match filter[i] {
            Filter::Fits => {}
            Filter::Unavailable => {
                why.unavailable += 1;
                continue;
            }
            Filter::Constraints => {
                why.constraints += 1;
                continue;
            }
        }
        if platforms.is_some_and(|p| !platform::supported(p, n)) {
            why.platform += 1;
            continue;
        }
        let service_count = counts[i];
        if max_per_node.is_some_and(|m| service_count >= m) {
            why.max_replicas += 1;
            continue;
        }
        if generic
            || (cpu > 0 && c.reserved_cpus + cpu > n.description.nano_cpus)
            || (mem > 0 && c.reserved_mem + mem > n.description.memory_bytes)
        {
            why.resources += 1;
            continue;
        }
        let rank = (spread.branch_counts(n), service_count, c.total);
        if best.as_ref().is_none_or(|(_, r)| rank < *r) {
            best = Some((i, rank));
        }
    }

    match best {
        Some((i, _)) => candidates.assign(task, i, cpu, mem),
        None => Decision::NoFit {
            task_id: task.id.clone(),
            reason: explain(&why),
        },
    }
}

/// Placement preferences (`--placement-pref spread=node.labels.zone`, nested in order):
/// nodes are grouped by the values of the preference labels (a node without the label is
/// in the group of the missing value), and a task goes to the group, then sub-group, with
/// the fewest tasks of its service, as swarmkit's preference tree spreads them.
struct Spread {
    keys: Vec<String>,
    /// Per preference level: tasks of the service per branch (label values up to there).
    counts: Vec<HashMap<Vec<Option<String>>, u64>>,
}

/// The label keys of a task's spread preferences, outermost first.
fn spread_keys(task: &Task) -> impl Iterator<Item = &String> {
    task.spec
        .placement
        .as_ref()
        .and_then(|p| p.preferences.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|p| p.spread.as_ref()?.spread_descriptor.as_ref())
}

impl Spread {
    fn new(task: &Task, candidates: &[Candidate<'_>], service_counts: &[u64]) -> Self {
        let keys: Vec<String> = spread_keys(task).cloned().collect();
        let mut counts = vec![HashMap::new(); keys.len()];
        if !keys.is_empty() {
            for (c, &n) in candidates.iter().zip(service_counts) {
                let path: Vec<Option<String>> = keys
                    .iter()
                    .map(|k| constraint::label_value(c.node, k))
                    .collect();
                for (level, map) in counts.iter_mut().enumerate() {
                    *map.entry(path[..=level].to_vec()).or_default() += n;
                }
            }
        }
        Spread { keys, counts }
    }

    /// The node's branch counts, outermost preference first (compared lexicographically).
    fn branch_counts(&self, node: &Node) -> Vec<u64> {
        // No preferences (the usual case): nothing to look up for each node.
        if self.keys.is_empty() {
            return Vec::new();
        }
        let path: Vec<Option<String>> = self
            .keys
            .iter()
            .map(|k| constraint::label_value(node, k))
            .collect();
        self.counts
            .iter()
            .enumerate()
            .map(|(level, map)| map.get(&path[..=level]).copied().unwrap_or(0))
            .collect()
    }
}

/// Docker's wording: "no suitable node (insufficient resources on 2 nodes)".
fn explain(why: &Rejections) -> String {
    fn nodes(n: u64) -> String {
        if n == 1 {
            "1 node".to_string()
        } else {
            format!("{n} nodes")
        }
    }
    let mut parts = Vec::new();
    if why.max_replicas > 0 {
        parts.push("max replicas per node limit exceed".to_string());
    }
    if why.constraints > 0 {
        parts.push(format!(
            "scheduling constraints not satisfied on {}",
            nodes(why.constraints)
        ));
    }
    if why.platform > 0 {
        parts.push(format!("unsupported platform on {}", nodes(why.platform)));
    }
    if why.resources > 0 {
        parts.push(format!(
            "insufficient resources on {}",
            nodes(why.resources)
        ));
    }
    if why.unavailable > 0 {
        parts.push(format!(
            "{} not available for new tasks",
            nodes(why.unavailable)
        ));
    }
    if parts.is_empty() {
        "no suitable node".to_string()
    } else {
        format!("no suitable node ({})", parts.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmd_types::TaskStatus;
    use swarmd_types::models::{Limit, TaskSpecPlacement, TaskSpecResources};

    fn node(id: &str, ready: bool) -> Node {
        let mut n = Node {
            id: id.into(),
            ..Default::default()
        };
        n.status.state = if ready {
            NodeState::Ready
        } else {
            NodeState::Down
        };
        n.description.nano_cpus = 2_000_000_000;
        n.description.memory_bytes = 1 << 30;
        n
    }

    fn task(id: &str, service: &str, node: &str, state: TaskState) -> Task {
        Task {
            id: id.into(),
            service_id: service.into(),
            node_id: node.into(),
            desired_state: TaskState::RUNNING,
            status: TaskStatus {
                state,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn tables(nodes: Vec<Node>, tasks: Vec<Task>) -> Tables {
        let mut t = Tables::default();
        for n in nodes {
            t.nodes.insert(n.id.clone(), n);
        }
        for k in tasks {
            t.tasks.insert(k.id.clone(), k);
        }
        t.reindex();
        t
    }

    #[test]
    fn spreads_over_nodes_with_fewest_tasks_of_the_service() {
        let t = tables(
            vec![node("a", true), node("b", true), node("c", false)],
            vec![
                task("old", "s", "a", TaskState::RUNNING),
                task("p1", "s", "", TaskState::PENDING),
                task("p2", "s", "", TaskState::PENDING),
                task("p3", "s", "", TaskState::PENDING),
            ],
        );
        let d = schedule(&t);
        let on = |n: &str| {
            d.iter()
                .filter(|d| matches!(d, Decision::Assign { node_id, .. } if node_id == n))
                .count()
        };
        assert_eq!(on("a") + 1, 2);
        assert_eq!(on("b"), 2);
        assert_eq!(on("c"), 0, "down nodes get nothing");
    }

    fn labelled(id: &str, labels: &[(&str, &str)]) -> Node {
        let mut n = node(id, true);
        n.spec.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        n
    }

    fn pending_with_prefs(n: usize, prefs: &[&str]) -> Vec<Task> {
        (0..n)
            .map(|i| {
                let mut t = task(&format!("p{i:03}"), "s", "", TaskState::PENDING);
                t.spec.placement = Some(TaskSpecPlacement {
                    preferences: Some(
                        prefs
                            .iter()
                            .map(|p| swarmd_types::models::TaskSpecPlacementPreferences {
                                spread: Some(swarmd_types::models::TaskSpecPlacementSpread {
                                    spread_descriptor: Some(p.to_string()),
                                }),
                            })
                            .collect(),
                    ),
                    ..Default::default()
                });
                t
            })
            .collect()
    }

    fn placed(d: &[Decision]) -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for d in d {
            if let Decision::Assign { node_id, .. } = d {
                *m.entry(node_id.clone()).or_default() += 1;
            }
        }
        m
    }

    #[test]
    fn placement_preferences_spread_over_label_values() {
        // Zone a has two nodes, zone b one: half the tasks go to each zone.
        let t = tables(
            vec![
                labelled("a1", &[("zone", "a")]),
                labelled("a2", &[("zone", "a")]),
                labelled("b1", &[("zone", "b")]),
            ],
            pending_with_prefs(4, &["node.labels.zone"]),
        );
        let on = placed(&schedule(&t));
        assert_eq!(on.get("b1"), Some(&2), "{on:?}");
        assert_eq!(on.get("a1"), Some(&1));
        assert_eq!(on.get("a2"), Some(&1));

        // Nested: zone, then rack within the zone; a node without the label is a branch.
        let t = tables(
            vec![
                labelled("a-r1", &[("zone", "a"), ("rack", "1")]),
                labelled("a-r2", &[("zone", "a"), ("rack", "2")]),
                labelled("a-r2b", &[("zone", "a"), ("rack", "2")]),
                labelled("none", &[]),
            ],
            pending_with_prefs(4, &["node.labels.zone", "node.labels.rack"]),
        );
        let on = placed(&schedule(&t));
        assert_eq!(on.get("none"), Some(&2), "{on:?}");
        assert_eq!(on.get("a-r1"), Some(&1));
        assert_eq!(
            on.get("a-r2").unwrap_or(&0) + on.get("a-r2b").unwrap_or(&0),
            1
        );
    }

    proptest::proptest! {
        /// With preferences, tasks spread within one task per branch (all nodes fit); with
        /// reservations, no node is ever over-committed.
        #[test]
        fn spread_is_even_and_reservations_never_overcommit(
            zones in proptest::collection::vec(0u8..3, 1..6),
            n in 0usize..12,
            cpu in 0i64..3,
        ) {
            let nodes: Vec<Node> = zones
                .iter()
                .enumerate()
                .map(|(i, z)| labelled(&format!("n{i}"), &[("zone", &z.to_string())]))
                .collect();
            let mut tasks = pending_with_prefs(n, &["node.labels.zone"]);
            for t in &mut tasks {
                t.spec.resources = Some(TaskSpecResources {
                    reservations: Some(swarmd_types::models::ResourceObject {
                        nano_cpus: Some(cpu * 1_000_000_000),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
            }
            let t = tables(nodes.clone(), tasks);
            let on = placed(&schedule(&t));
            for (node, count) in &on {
                proptest::prop_assert!(cpu == 0 || (*count as i64) * cpu <= 2, "{node} over-committed");
            }
            if cpu == 0 {
                let mut per_zone: HashMap<u8, usize> = HashMap::new();
                for (i, z) in zones.iter().enumerate() {
                    *per_zone.entry(*z).or_default() += on.get(&format!("n{i}")).copied().unwrap_or(0);
                }
                let max = per_zone.values().max().copied().unwrap_or(0);
                let min = per_zone.values().min().copied().unwrap_or(0);
                proptest::prop_assert!(max - min <= 1, "{per_zone:?}");
            }
        }
    }

    proptest::proptest! {
        /// Placing by the per-group heaps decides exactly what looking at every node decides:
        /// same nodes, same order, same explanations, whatever the mix of down and drained
        /// nodes, constraints, reservations, replica limits and tasks already running.
        #[test]
        fn heap_placement_equals_the_full_scan(
            nodes in proptest::collection::vec((0u8..3, 0u8..4), 1..10),
            running in proptest::collection::vec((0u8..3, 0usize..10), 0..12),
            pending in proptest::collection::vec((0u8..3, 0u8..3, 0i64..2, 0u64..3), 0..30),
        ) {
            let nodes: Vec<Node> = nodes
                .iter()
                .enumerate()
                .map(|(i, (zone, state))| {
                    let mut n = labelled(&format!("n{i}"), &[("zone", &zone.to_string())]);
                    match state {
                        0 => n.status.state = NodeState::Down,
                        1 => n.spec.availability = Some(NodeSpecAvailabilityEnum::DRAIN),
                        _ => {}
                    }
                    n
                })
                .collect();
            let mut tasks = Vec::new();
            for (k, (service, node)) in running.iter().enumerate() {
                let node = format!("n{}", node % nodes.len());
                tasks.push(task(&format!("r{k:02}"), &format!("s{service}"), &node, TaskState::RUNNING));
            }
            for (k, (service, zone, cpu, max)) in pending.iter().enumerate() {
                let mut t = task(&format!("p{k:02}"), &format!("s{service}"), "", TaskState::PENDING);
                t.spec.placement = Some(TaskSpecPlacement {
                    constraints: (*zone > 0).then(|| vec![format!("node.labels.zone=={}", zone - 1)]),
                    max_replicas: (*max > 0).then_some(*max as i64),
                    ..Default::default()
                });
                if *cpu > 0 {
                    t.spec.resources = Some(TaskSpecResources {
                        reservations: Some(swarmd_types::models::ResourceObject {
                            nano_cpus: Some(cpu * 1_000_000_000),
                            ..Default::default()
                        }),
                        ..Default::default()
                    });
                }
                tasks.push(t);
            }
            let t = tables(nodes, tasks);
            let by_heap = schedule_with(&t, usize::MAX, |_| true, true).0;
            let by_scan = schedule_with(&t, usize::MAX, |_| true, false).0;
            proptest::prop_assert_eq!(by_heap, by_scan);
        }
    }

    #[test]
    fn explains_why_nothing_fits() {
        let mut drained = node("d", true);
        drained.spec.availability = Some(NodeSpecAvailabilityEnum::DRAIN);
        let mut p = task("p", "s", "", TaskState::PENDING);
        p.spec.resources = Some(TaskSpecResources {
            reservations: Some(swarmd_types::models::ResourceObject {
                nano_cpus: Some(4_000_000_000),
                ..Default::default()
            }),
            limits: None::<Limit>,
            ..Default::default()
        });
        let t = tables(vec![node("a", true), node("b", true), drained], vec![p]);
        assert_eq!(
            schedule(&t),
            vec![Decision::NoFit {
                task_id: "p".into(),
                reason: "no suitable node (insufficient resources on 2 nodes; 1 node not available for new tasks)".into()
            }]
        );
    }

    #[test]
    fn constraints_and_max_replicas_filter() {
        let mut p1 = task("p1", "s", "", TaskState::PENDING);
        p1.spec.placement = Some(TaskSpecPlacement {
            constraints: Some(vec!["node.id==b".into()]),
            max_replicas: Some(1),
            ..Default::default()
        });
        let mut p2 = p1.clone();
        p2.id = "p2".into();
        let t = tables(vec![node("a", true), node("b", true)], vec![p1, p2]);
        let d = schedule(&t);
        assert_eq!(
            d[0],
            Decision::Assign {
                task_id: "p1".into(),
                node_id: "b".into()
            }
        );
        assert_eq!(
            d[1],
            Decision::NoFit {
                task_id: "p2".into(),
                reason: "no suitable node (max replicas per node limit exceed; scheduling constraints not satisfied on 1 node)".into()
            }
        );
    }

    /// `Placement.Platforms` keeps a task off nodes of other platforms, and a generic
    /// resource reservation fits no node (swarmd nodes advertise none), in swarmkit's words.
    #[test]
    fn platforms_and_generic_resources_filter() {
        let mut arm = node("arm", true);
        arm.description.architecture = "aarch64".into();
        arm.description.os = "linux".into();
        let mut x86 = node("x86", true);
        x86.description.architecture = "x86_64".into();
        x86.description.os = "linux".into();
        let platform = |arch: &str| swarmd_types::models::Platform {
            architecture: Some(arch.into()),
            os: Some("linux".into()),
        };
        let mut p1 = task("p1", "s", "", TaskState::PENDING);
        p1.spec.placement = Some(TaskSpecPlacement {
            platforms: Some(vec![platform("amd64")]),
            ..Default::default()
        });
        let mut p2 = task("p2", "t", "", TaskState::PENDING);
        p2.spec.placement = Some(TaskSpecPlacement {
            platforms: Some(vec![platform("s390x")]),
            ..Default::default()
        });
        let mut p3 = task("p3", "u", "", TaskState::PENDING);
        p3.spec.resources = Some(serde_json::from_value(serde_json::json!({
            "Reservations": {"GenericResources": [{"DiscreteResourceSpec": {"Kind": "gpu", "Value": 1}}]}
        })).unwrap());
        let t = tables(vec![arm, x86], vec![p1, p2, p3]);
        assert_eq!(
            schedule(&t),
            vec![
                Decision::Assign {
                    task_id: "p1".into(),
                    node_id: "x86".into()
                },
                Decision::NoFit {
                    task_id: "p2".into(),
                    reason: "no suitable node (unsupported platform on 2 nodes)".into()
                },
                Decision::NoFit {
                    task_id: "p3".into(),
                    reason: "no suitable node (insufficient resources on 2 nodes)".into()
                },
            ]
        );
    }

    /// A capped pass stops after `max` writes, in index order; unplaceable tasks whose
    /// explanation is already recorded do not count, so placeable tasks behind them are
    /// reached; the remembered explanation is the one `place` gives.
    #[test]
    fn capped_passes_count_writes_only_and_reuse_no_fit_answers() {
        let mut tasks = Vec::new();
        for i in 0..5 {
            // Older, unplaceable (no node matches), explanation already recorded.
            let mut t = task(&format!("a{i}"), "old", "", TaskState::PENDING);
            t.meta.created_at = "2024-01-01T00:00:00Z".into();
            t.spec.placement = Some(TaskSpecPlacement {
                constraints: Some(vec!["node.id==nowhere".into()]),
                ..Default::default()
            });
            t.status.err =
                "no suitable node (scheduling constraints not satisfied on 2 nodes)".into();
            tasks.push(t);
        }
        for i in 0..4 {
            let mut t = task(&format!("b{i}"), "new", "", TaskState::PENDING);
            t.meta.created_at = "2024-01-02T00:00:00Z".into();
            tasks.push(t);
        }
        let t = tables(vec![node("n1", true), node("n2", true)], tasks);
        let writes = |d: &Decision| match d {
            Decision::Assign { .. } => true,
            Decision::NoFit { task_id, reason } => t.tasks[task_id].status.err != *reason,
        };
        let (d, more) = schedule_capped(&t, 3, writes);
        assert!(more);
        assert_eq!(d.len(), 8, "5 unchanged no-fits, then 3 placements");
        assert!(d[..5].iter().all(|d| matches!(d, Decision::NoFit { .. })));
        assert_eq!(d[..5].to_vec(), schedule(&t)[..5].to_vec());
        assert!(d[5..].iter().all(|d| matches!(d, Decision::Assign { .. })));
        let (d, more) = schedule_capped(&t, 100, writes);
        assert!(!more);
        assert_eq!(d, schedule(&t));
    }

    #[test]
    fn no_nodes_at_all() {
        let t = tables(vec![], vec![task("p", "s", "", TaskState::PENDING)]);
        assert!(
            matches!(&schedule(&t)[0], Decision::NoFit { reason, .. } if reason == "no suitable node")
        );
    }
}
