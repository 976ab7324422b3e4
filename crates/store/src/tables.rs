//! Tables per object kind, with the secondary indexes the managers query.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use swarmd_types::models::TaskState;
use swarmd_types::{
    Cluster, Config, Kind, Meta, Network, Node, Object, Secret, Service, SharedSpec, Task,
};

/// All stored objects. `BTreeMap`s keep iteration (and snapshots) in a stable order.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Tables {
    pub clusters: BTreeMap<String, Cluster>,
    pub nodes: BTreeMap<String, Node>,
    pub services: BTreeMap<String, Service>,
    pub tasks: BTreeMap<String, Task>,
    pub networks: BTreeMap<String, Network>,
    pub secrets: BTreeMap<String, Secret>,
    pub configs: BTreeMap<String, Config>,
    #[serde(skip)]
    pub(crate) index: Indexes,
}

/// Derived indexes; rebuilt after a restore, never serialized.
#[derive(Debug, Clone, Default)]
pub(crate) struct Indexes {
    pub tasks_by_service: HashMap<String, BTreeSet<String>>,
    pub tasks_by_node: HashMap<String, BTreeSet<String>>,
    /// (kind, name) -> id for kinds with unique names.
    pub names: HashMap<(Kind, String), String>,
    /// Tasks whose status is NEW (waiting for the allocator), in [`WaitKey`] order.
    pub new_tasks: BTreeSet<WaitKey>,
    /// Tasks whose status is PENDING (waiting for the scheduler), in [`WaitKey`] order.
    pub pending_tasks: BTreeSet<WaitKey>,
    /// The spec of the task of each service applied last: a task arriving with an equal
    /// spec shares its allocation (see [`Tables::share_service_spec`]).
    pub specs: HashMap<String, SharedSpec>,
    /// Per node ID: the tasks holding its resources ([`NodeLoad`]).
    pub node_load: HashMap<String, NodeLoad>,
}

/// A node's load as the scheduler weighs it: the tasks holding its resources (see
/// [`holds_resources`]), their reservations, and how many of them each service has.
///
/// Kept by apply rather than counted by the scheduler: counting walked every task of the
/// store on every scheduler pass, O(tasks) per 8,000 placements, which made placing a
/// million tasks quadratic (most of the leader's CPU; BENCHMARKS.md, "Scale simulation").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeLoad {
    pub tasks: u64,
    pub reserved_cpus: i64,
    pub reserved_mem: i64,
    /// Service ID -> its tasks among `tasks` (no zero entries).
    pub per_service: HashMap<String, u64>,
}

/// Whether a task holds its node's resources: it is, or will be, running there.
pub fn holds_resources(t: &Task) -> bool {
    !t.node_id.is_empty()
        && t.desired_state <= TaskState::COMPLETE
        && (TaskState::ASSIGNED..=TaskState::RUNNING).contains(&t.status.state)
}

/// A task's reserved CPU (nano CPUs) and memory (bytes); 0 when none.
pub fn reservations(t: &Task) -> (i64, i64) {
    let r = t
        .spec
        .resources
        .as_ref()
        .and_then(|r| r.reservations.as_ref());
    (
        r.and_then(|r| r.nano_cpus).unwrap_or(0),
        r.and_then(|r| r.memory_bytes).unwrap_or(0),
    )
}

impl Indexes {
    fn add_load(&mut self, t: &Task) {
        if !holds_resources(t) {
            return;
        }
        let (cpus, mem) = reservations(t);
        // Looked up before inserting: the hot path (a placement) finds the node.
        if !self.node_load.contains_key(&t.node_id) {
            self.node_load
                .insert(t.node_id.clone(), NodeLoad::default());
        }
        let Some(l) = self.node_load.get_mut(&t.node_id) else {
            return;
        };
        l.tasks += 1;
        l.reserved_cpus += cpus;
        l.reserved_mem += mem;
        match l.per_service.get_mut(&t.service_id) {
            Some(n) => *n += 1,
            None => {
                l.per_service.insert(t.service_id.clone(), 1);
            }
        }
    }

    fn remove_load(&mut self, t: &Task) {
        if !holds_resources(t) {
            return;
        }
        let Some(l) = self.node_load.get_mut(&t.node_id) else {
            return;
        };
        let (cpus, mem) = reservations(t);
        l.tasks = l.tasks.saturating_sub(1);
        l.reserved_cpus -= cpus;
        l.reserved_mem -= mem;
        if let Some(n) = l.per_service.get_mut(&t.service_id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                l.per_service.remove(&t.service_id);
            }
        }
        if l.tasks == 0 {
            self.node_load.remove(&t.node_id);
        }
    }

    fn add_task(&mut self, t: &Task) {
        self.add_load(t);
        self.tasks_by_service
            .entry(t.service_id.clone())
            .or_default()
            .insert(t.id.clone());
        if !t.node_id.is_empty() {
            self.tasks_by_node
                .entry(t.node_id.clone())
                .or_default()
                .insert(t.id.clone());
        }
        match t.status.state {
            TaskState::NEW => {
                self.new_tasks.insert(wait_key(t));
            }
            TaskState::PENDING => {
                self.pending_tasks.insert(wait_key(t));
            }
            _ => {}
        }
    }

    fn add_name(&mut self, kind: Kind, name: &str, id: &str) {
        self.names.insert((kind, name.to_string()), id.to_string());
    }
}

/// A service with at least 1 / WALK_SHARE of all tasks is read by walking the task table
/// (see [`Tables::tasks_of_service`]).
const WALK_SHARE: usize = 8;

/// Order of the waiting-task indexes: oldest first, then by service, slot and ID (the order
/// the scheduler places tasks in, so scale-ups fill slots in order).
pub(crate) type WaitKey = (String, String, u64, String);

fn wait_key(t: &Task) -> WaitKey {
    (
        t.meta.created_at.clone(),
        t.service_id.clone(),
        t.slot,
        t.id.clone(),
    )
}

/// Replaces a stored task with a new version on the same service and node (most updates:
/// an allocation, a placement's status, an agent's report), touching only the indexes its
/// state moves it between (waiting tasks, node load); the per-service and per-node sets of
/// a million tasks are left alone.
fn replace_in_place(index: &mut Indexes, old: &mut Task, t: Task) {
    let (old_state, new_state) = (old.status.state, t.status.state);
    let waiting = |s: TaskState| matches!(s, TaskState::NEW | TaskState::PENDING);
    if waiting(old_state) || waiting(new_state) {
        let old_key = wait_key(old);
        let new_key = wait_key(&t);
        match old_state {
            TaskState::NEW => index.new_tasks.remove(&old_key),
            TaskState::PENDING => index.pending_tasks.remove(&old_key),
            _ => false,
        };
        match new_state {
            TaskState::NEW => index.new_tasks.insert(new_key),
            TaskState::PENDING => index.pending_tasks.insert(new_key),
            _ => false,
        };
    }
    let (was, is) = (holds_resources(old), holds_resources(&t));
    if was != is || (was && reservations(old) != reservations(&t)) {
        index.remove_load(old);
        index.add_load(&t);
    }
    *old = t;
}

impl Tables {
    pub fn get(&self, kind: Kind, id: &str) -> Option<Object> {
        match kind {
            Kind::Cluster => self.clusters.get(id).cloned().map(Object::from),
            Kind::Node => self.nodes.get(id).cloned().map(Object::Node),
            Kind::Service => self.services.get(id).cloned().map(Object::from),
            Kind::Task => self.tasks.get(id).cloned().map(Object::Task),
            Kind::Network => self.networks.get(id).cloned().map(Object::Network),
            Kind::Secret => self.secrets.get(id).cloned().map(Object::Secret),
            Kind::Config => self.configs.get(id).cloned().map(Object::Config),
        }
    }

    pub fn version_of(&self, kind: Kind, id: &str) -> Option<u64> {
        self.meta_of(kind, id).map(|m| m.version)
    }

    /// A stored object's metadata, borrowed (apply reads it for every action; a copy of
    /// the object would cost more than the rest of the action).
    pub fn meta_of(&self, kind: Kind, id: &str) -> Option<&Meta> {
        match kind {
            Kind::Cluster => self.clusters.get(id).map(|o| &o.meta),
            Kind::Node => self.nodes.get(id).map(|o| &o.meta),
            Kind::Service => self.services.get(id).map(|o| &o.meta),
            Kind::Task => self.tasks.get(id).map(|o| &o.meta),
            Kind::Network => self.networks.get(id).map(|o| &o.meta),
            Kind::Secret => self.secrets.get(id).map(|o| &o.meta),
            Kind::Config => self.configs.get(id).map(|o| &o.meta),
        }
    }

    /// `None` when no such object is stored; else its unique name, for kinds that have
    /// one (see [`Object::unique_name`]), borrowed.
    pub fn unique_name_of(&self, kind: Kind, id: &str) -> Option<Option<&str>> {
        match kind {
            Kind::Cluster => self.clusters.get(id).map(|_| None),
            Kind::Node => self.nodes.get(id).map(|_| None),
            Kind::Task => self.tasks.get(id).map(|_| None),
            Kind::Service => self.services.get(id).map(|o| o.spec.name.as_deref()),
            Kind::Network => self.networks.get(id).map(|o| Some(o.name.as_str())),
            Kind::Secret => self.secrets.get(id).map(|o| Some(o.name.as_str())),
            Kind::Config => self.configs.get(id).map(|o| Some(o.name.as_str())),
        }
    }

    pub fn id_by_name(&self, kind: Kind, name: &str) -> Option<&str> {
        self.index
            .names
            .get(&(kind, name.to_string()))
            .map(String::as_str)
    }

    /// Tasks of a service, in ID order.
    ///
    /// A service holding a large share of all tasks is read by walking the task table in
    /// order and skipping the others: a lookup per task costs some twenty key comparisons
    /// in a table of a million, a step of the walk one. Both give the same order.
    pub fn tasks_of_service<'a>(&'a self, service_id: &'a str) -> impl Iterator<Item = &'a Task> {
        let ids = self.index.tasks_by_service.get(service_id);
        let walk = ids.is_some_and(|ids| ids.len() * WALK_SHARE >= self.tasks.len());
        let (by_id, by_walk) = if walk {
            (
                None,
                Some(
                    self.tasks
                        .values()
                        .filter(move |t| t.service_id == service_id),
                ),
            )
        } else {
            (
                Some(
                    ids.into_iter()
                        .flatten()
                        .filter_map(|id| self.tasks.get(id)),
                ),
                None,
            )
        };
        by_id
            .into_iter()
            .flatten()
            .chain(by_walk.into_iter().flatten())
    }

    /// The service IDs that tasks refer to (indexed: no scan of the tasks), in no order.
    /// Includes services that no longer exist while tasks of theirs remain.
    pub fn task_service_ids(&self) -> impl Iterator<Item = &str> {
        self.index.tasks_by_service.keys().map(String::as_str)
    }

    /// Tasks assigned to a node, in ID order.
    pub fn tasks_on_node(&self, node_id: &str) -> impl Iterator<Item = &Task> {
        self.index
            .tasks_by_node
            .get(node_id)
            .into_iter()
            .flatten()
            .filter_map(|id| self.tasks.get(id))
    }

    /// Tasks whose status is NEW, oldest first (creation time, service, slot, ID). Indexed,
    /// so a reconciler that handles a few of them per pass does not scan every task.
    pub fn new_tasks(&self) -> impl Iterator<Item = &Task> {
        self.index
            .new_tasks
            .iter()
            .filter_map(|k| self.tasks.get(&k.3))
    }

    /// Tasks whose status is PENDING, oldest first (creation time, service, slot, ID).
    pub fn pending_tasks(&self) -> impl Iterator<Item = &Task> {
        self.index
            .pending_tasks
            .iter()
            .filter_map(|k| self.tasks.get(&k.3))
    }

    /// The load of a node (`None`: no task holds its resources).
    pub fn node_load(&self, node_id: &str) -> Option<&NodeLoad> {
        self.index.node_load.get(node_id)
    }

    /// The single cluster object, once the swarm is initialised.
    pub fn cluster(&self) -> Option<&Cluster> {
        self.clusters.values().next()
    }

    /// Makes a task about to be stored share its spec with an equal one already stored:
    /// that of the task of its service applied last (`specs`, the index). Every task of a
    /// service version then holds one copy of the spec instead of its own (1.4 KB inline
    /// plus strings each). Only sharing changes, never a value, so apply stays
    /// deterministic.
    fn share_service_spec(specs: &mut HashMap<String, SharedSpec>, t: &mut Task) {
        match specs.get(&t.service_id) {
            Some(s) if s.ptr_eq(&t.spec) => {}
            Some(s) if *s == t.spec => t.spec = s.clone(),
            _ => {
                specs.insert(t.service_id.clone(), t.spec.clone());
            }
        }
    }

    /// Stores an object whose ID is free (apply validated it); returns a copy for the
    /// event.
    pub(crate) fn insert_new(&mut self, mut obj: Object) -> Object {
        if let Object::Task(t) = &mut obj {
            Self::share_service_spec(&mut self.index.specs, t);
        }
        self.put(obj.clone());
        obj
    }

    /// Stores a new version of an existing object (apply validated it), keeping its
    /// creation time; returns a copy for the event. A task is looked up once in the task
    /// table (a million entries: each lookup is some twenty key comparisons, and apply
    /// made five of them per task before) for its creation time, its previous spec and its
    /// replacement.
    pub(crate) fn update(&mut self, obj: Object) -> Object {
        let mut t = match obj {
            Object::Task(t) => t,
            mut other => {
                let created = self
                    .meta_of(other.kind(), other.id())
                    .map(|m| m.created_at.clone())
                    .unwrap_or_default();
                other.meta_mut().created_at = created;
                self.unindex(other.kind(), other.id());
                self.put(other.clone());
                return other;
            }
        };
        if let Some(old) = self.tasks.get_mut(&t.id) {
            t.meta.created_at = old.meta.created_at.clone();
            if old.spec.ptr_eq(&t.spec) || old.spec == t.spec {
                t.spec = old.spec.clone();
            } else {
                Self::share_service_spec(&mut self.index.specs, &mut t);
            }
            if old.service_id == t.service_id && old.node_id == t.node_id {
                let event = t.clone();
                replace_in_place(&mut self.index, old, t);
                return Object::Task(event);
            }
        } else {
            Self::share_service_spec(&mut self.index.specs, &mut t);
        }
        self.unindex(Kind::Task, &t.id);
        self.put(Object::Task(t.clone()));
        Object::Task(t)
    }

    /// Indexes and stores an object whose ID is not stored (or was just unindexed).
    fn put(&mut self, obj: Object) {
        self.index_obj(&obj);
        match obj {
            Object::Cluster(o) => {
                self.clusters.insert(o.id.clone(), *o);
            }
            Object::Node(o) => {
                self.nodes.insert(o.id.clone(), o);
            }
            Object::Service(o) => {
                self.services.insert(o.id.clone(), *o);
            }
            Object::Task(o) => {
                self.tasks.insert(o.id.clone(), o);
            }
            Object::Network(o) => {
                self.networks.insert(o.id.clone(), o);
            }
            Object::Secret(o) => {
                self.secrets.insert(o.id.clone(), o);
            }
            Object::Config(o) => {
                self.configs.insert(o.id.clone(), o);
            }
        }
    }

    pub(crate) fn remove(&mut self, kind: Kind, id: &str) -> Option<Object> {
        self.unindex(kind, id);
        match kind {
            Kind::Cluster => self.clusters.remove(id).map(Object::from),
            Kind::Node => self.nodes.remove(id).map(Object::Node),
            Kind::Service => self.services.remove(id).map(Object::from),
            Kind::Task => self.tasks.remove(id).map(Object::Task),
            Kind::Network => self.networks.remove(id).map(Object::Network),
            Kind::Secret => self.secrets.remove(id).map(Object::Secret),
            Kind::Config => self.configs.remove(id).map(Object::Config),
        }
    }

    fn index_obj(&mut self, obj: &Object) {
        if let Object::Task(t) = obj {
            self.index.add_task(t);
        }
        if let Some(name) = obj.unique_name() {
            self.index.add_name(obj.kind(), name, obj.id());
        }
    }

    fn unindex(&mut self, kind: Kind, id: &str) {
        if kind == Kind::Task
            && let Some(t) = self.tasks.get(id)
        {
            self.index.remove_load(t);
            match t.status.state {
                TaskState::NEW => {
                    let key = wait_key(t);
                    self.index.new_tasks.remove(&key);
                }
                TaskState::PENDING => {
                    let key = wait_key(t);
                    self.index.pending_tasks.remove(&key);
                }
                _ => {}
            }
        }
        let Some(old) = self.get_ref_name_and_task(kind, id) else {
            return;
        };
        let (name, task_keys) = old;
        if let Some(name) = name {
            let key = (kind, name);
            if self.index.names.get(&key).map(String::as_str) == Some(id) {
                self.index.names.remove(&key);
            }
        }
        if let Some((service_id, node_id)) = task_keys {
            if let Some(set) = self.index.tasks_by_service.get_mut(&service_id) {
                set.remove(id);
                if set.is_empty() {
                    self.index.tasks_by_service.remove(&service_id);
                    self.index.specs.remove(&service_id);
                }
            }
            if let Some(set) = self.index.tasks_by_node.get_mut(&node_id) {
                set.remove(id);
                if set.is_empty() {
                    self.index.tasks_by_node.remove(&node_id);
                }
            }
        }
    }

    #[allow(clippy::type_complexity)]
    fn get_ref_name_and_task(
        &self,
        kind: Kind,
        id: &str,
    ) -> Option<(Option<String>, Option<(String, String)>)> {
        Some(match kind {
            Kind::Task => {
                let t = self.tasks.get(id)?;
                (None, Some((t.service_id.clone(), t.node_id.clone())))
            }
            Kind::Service => (self.services.get(id)?.spec.name.clone(), None),
            Kind::Network => (Some(self.networks.get(id)?.name.clone()), None),
            Kind::Secret => (Some(self.secrets.get(id)?.name.clone()), None),
            Kind::Config => (Some(self.configs.get(id)?.name.clone()), None),
            Kind::Cluster | Kind::Node => return None,
        })
    }

    /// Rebuilds the indexes from the tables: after deserializing a snapshot, or after
    /// filling the public maps directly (tests of the components above the store).
    pub fn reindex(&mut self) {
        self.index = Indexes::default();
        // Share the specs again (a deserialized snapshot holds one copy per task), and index
        // in place: a copy of every object would double the memory of a big restore.
        let mut specs: HashMap<String, SharedSpec> = HashMap::new();
        for t in self.tasks.values_mut() {
            match specs.get(&t.service_id) {
                Some(s) if *s == t.spec => t.spec = s.clone(),
                _ => {
                    specs.insert(t.service_id.clone(), t.spec.clone());
                }
            }
            self.index.add_task(t);
        }
        self.index.specs = specs;
        for s in self.services.values() {
            if let Some(name) = s.spec.name.as_deref() {
                self.index.add_name(Kind::Service, name, &s.id);
            }
        }
        for n in self.networks.values() {
            self.index.add_name(Kind::Network, &n.name, &n.id);
        }
        for s in self.secrets.values() {
            self.index.add_name(Kind::Secret, &s.name, &s.id);
        }
        for c in self.configs.values() {
            self.index.add_name(Kind::Config, &c.name, &c.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATES: [TaskState; 6] = [
        TaskState::NEW,
        TaskState::PENDING,
        TaskState::ASSIGNED,
        TaskState::RUNNING,
        TaskState::FAILED,
        TaskState::SHUTDOWN,
    ];

    /// The indexes as comparable values (the spec-sharing cache aside).
    fn indexes(t: &Tables) -> impl PartialEq + std::fmt::Debug {
        let mut by_node: Vec<_> = t.index.tasks_by_node.iter().collect();
        by_node.sort();
        let mut by_service: Vec<_> = t.index.tasks_by_service.iter().collect();
        by_service.sort();
        (
            by_service
                .into_iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<Vec<_>>(),
            by_node
                .into_iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<Vec<_>>(),
            t.index.new_tasks.clone(),
            t.index.pending_tasks.clone(),
            {
                let mut load: Vec<_> = t
                    .index
                    .node_load
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                load.sort_by(|a, b| a.0.cmp(&b.0));
                load.into_iter()
                    .map(|(k, v)| {
                        let mut per: Vec<_> = v.per_service.into_iter().collect();
                        per.sort();
                        (k, v.tasks, v.reserved_cpus, v.reserved_mem, per)
                    })
                    .collect::<Vec<_>>()
            },
        )
    }

    /// A small service's tasks come from its index, a large one's from a walk of the
    /// table: the same tasks in the same (ID) order either way.
    #[test]
    fn tasks_of_a_service_are_the_same_by_index_or_by_walk() {
        let mut t = Tables::default();
        for i in 0..40 {
            let service = if i % 10 == 0 { "small" } else { "big" };
            t.insert_new(Object::Task(Task {
                id: format!("t{:02}", (i * 7) % 40),
                service_id: service.into(),
                ..Default::default()
            }));
        }
        for service in ["small", "big", "none"] {
            let got: Vec<&str> = t.tasks_of_service(service).map(|t| t.id.as_str()).collect();
            let want: Vec<&str> = t
                .index
                .tasks_by_service
                .get(service)
                .into_iter()
                .flatten()
                .map(String::as_str)
                .collect();
            assert_eq!(got, want, "{service}");
        }
        assert!(t.index.tasks_by_service["big"].len() * WALK_SHARE >= t.tasks.len());
        assert!(t.index.tasks_by_service["small"].len() * WALK_SHARE < t.tasks.len());
    }

    proptest::proptest! {
        /// Whatever the sequence of task writes, the indexes kept up to date write by write
        /// (in place for most updates) equal the indexes rebuilt from the tables.
        #[test]
        fn incremental_indexes_equal_rebuilt_ones(
            ops in proptest::collection::vec(
                (0u8..6, 0u8..2, 0u8..3, 0usize..6, proptest::bool::ANY, 0i64..3, proptest::bool::ANY),
                1..60,
            )
        ) {
            let mut t = Tables::default();
            for (id, service, node, state, remove, cpus, stopping) in ops {
                let id = format!("t{id}");
                if remove {
                    t.remove(Kind::Task, &id);
                    continue;
                }
                let mut task = Task {
                    id: id.clone(),
                    service_id: format!("s{service}"),
                    node_id: if node == 0 { String::new() } else { format!("n{node}") },
                    ..Default::default()
                };
                task.status.state = STATES[state];
                task.desired_state = if stopping { TaskState::SHUTDOWN } else { TaskState::RUNNING };
                if cpus > 0 {
                    task.spec = swarmd_types::models::TaskSpec {
                        resources: Some(swarmd_types::models::TaskSpecResources {
                            reservations: Some(swarmd_types::models::ResourceObject {
                                nano_cpus: Some(cpus),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }
                    .into();
                }
                task.meta.created_at = format!("2026-01-01T00:00:0{}Z", id.len());
                // As apply stores them: creations and updates by their own paths.
                if t.tasks.contains_key(&id) {
                    t.update(Object::Task(task));
                } else {
                    t.insert_new(Object::Task(task));
                }
            }
            let mut rebuilt = t.clone();
            rebuilt.reindex();
            proptest::prop_assert_eq!(indexes(&t), indexes(&rebuilt));
        }
    }
}
