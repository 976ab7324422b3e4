//! Tables per object kind, with the secondary indexes the managers query.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use swarmd_types::models::TaskState;
use swarmd_types::{
    Cluster, Config, Kind, Network, Node, Object, Secret, Service, SharedSpec, Task,
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
    /// spec shares its allocation (see [`Tables::share_spec`]).
    pub specs: HashMap<String, SharedSpec>,
}

impl Indexes {
    fn add_task(&mut self, t: &Task) {
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
        match kind {
            Kind::Cluster => self.clusters.get(id).map(|o| o.meta.version),
            Kind::Node => self.nodes.get(id).map(|o| o.meta.version),
            Kind::Service => self.services.get(id).map(|o| o.meta.version),
            Kind::Task => self.tasks.get(id).map(|o| o.meta.version),
            Kind::Network => self.networks.get(id).map(|o| o.meta.version),
            Kind::Secret => self.secrets.get(id).map(|o| o.meta.version),
            Kind::Config => self.configs.get(id).map(|o| o.meta.version),
        }
    }

    pub fn id_by_name(&self, kind: Kind, name: &str) -> Option<&str> {
        self.index
            .names
            .get(&(kind, name.to_string()))
            .map(String::as_str)
    }

    /// Tasks of a service, in ID order.
    pub fn tasks_of_service(&self, service_id: &str) -> impl Iterator<Item = &Task> {
        self.index
            .tasks_by_service
            .get(service_id)
            .into_iter()
            .flatten()
            .filter_map(|id| self.tasks.get(id))
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

    /// The single cluster object, once the swarm is initialised.
    pub fn cluster(&self) -> Option<&Cluster> {
        self.clusters.values().next()
    }

    /// Makes a task about to be stored share its spec with an equal one already stored: its
    /// own previous version's, or that of the task of its service applied last. Every task
    /// of a service version then holds one copy of the spec instead of its own (1.4 KB
    /// inline plus strings each). Only sharing changes, never a value, so apply stays
    /// deterministic.
    pub(crate) fn share_spec(&mut self, obj: &mut Object) {
        let Object::Task(t) = obj else {
            return;
        };
        if let Some(old) = self.tasks.get(&t.id)
            && (old.spec.ptr_eq(&t.spec) || old.spec == t.spec)
        {
            t.spec = old.spec.clone();
            return;
        }
        match self.index.specs.get(&t.service_id) {
            Some(s) if s.ptr_eq(&t.spec) => {}
            Some(s) if *s == t.spec => t.spec = s.clone(),
            _ => {
                self.index
                    .specs
                    .insert(t.service_id.clone(), t.spec.clone());
            }
        }
    }

    pub(crate) fn insert(&mut self, obj: Object) {
        self.unindex(obj.kind(), obj.id());
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
