//! Orchestrators: decide which tasks should exist and what their desired state is.
//!
//! Everything here is a pure function from a store snapshot (and the current time) to a
//! [`Plan`]. Replicated services keep one live task per slot `1..=replicas`; global services
//! keep one per eligible node. Both share the per-slot logic: restart policy (condition,
//! delay, max attempts in a window), node loss/drain, and rolling replacement of tasks made
//! from an older spec. The loop that runs it is in `crate::reconcile`.

pub mod jobs;
pub mod reaper;
mod slots;
pub mod update;

use std::collections::BTreeMap;
use std::time::Duration;

use swarmd_store::Tables;
use swarmd_types::models::TaskState;
use swarmd_types::{Node, NodeState, Service, Task, TaskStatus, ids, timefmt};
use time::OffsetDateTime;

pub use slots::{SlotKey, reconcile_service};

/// A change the orchestrator wants committed. Short-lived, so the size difference between
/// variants is not worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Create(Task),
    /// A task with a new desired state (or other orchestrator-owned fields).
    Update(Task),
    /// A service whose update status changed.
    UpdateService(Service),
}

/// The orchestrator's decisions for one pass.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub changes: Vec<Change>,
    /// Run again after this long even if nothing changes (restart delays).
    pub wake_after: Option<Duration>,
}

impl Plan {
    fn wake(&mut self, after: Duration) {
        self.wake_after = Some(self.wake_after.map_or(after, |w| w.min(after)));
    }
}

/// Service mode, simplified for the orchestrators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Replicated(u64),
    Global,
}

/// The service's mode; `None` for jobs (orchestrated by [`jobs`]).
pub fn mode_of(service: &Service) -> Option<Mode> {
    let mode = service.spec.mode.as_ref();
    match mode {
        None => Some(Mode::Replicated(1)),
        Some(m) if m.global.is_some() => Some(Mode::Global),
        Some(m) if m.replicated.is_some() => Some(Mode::Replicated(
            m.replicated
                .as_ref()
                .and_then(|r| r.replicas)
                .unwrap_or(1)
                .max(0) as u64,
        )),
        Some(m) if m.replicated_job.is_none() && m.global_job.is_none() => {
            Some(Mode::Replicated(1))
        }
        Some(_) => None,
    }
}

/// A task the orchestrator still wants (desired state not past RUNNING).
pub fn is_live(t: &Task) -> bool {
    t.desired_state <= TaskState::RUNNING
}

/// Whether the node can keep running tasks (not down, not drained).
pub fn node_keeps_tasks(node: Option<&Node>) -> bool {
    use swarmd_types::models::NodeSpecAvailabilityEnum as A;
    match node {
        None => false,
        Some(n) => n.status.state != NodeState::Down && n.spec.availability != Some(A::DRAIN),
    }
}

/// Makes a new task for a service. IDs and timestamps are chosen here, at proposal time.
pub fn new_task(
    service: &Service,
    slot: u64,
    node_id: &str,
    desired: TaskState,
    now: OffsetDateTime,
) -> Task {
    Task {
        id: ids::new_id(),
        meta: Default::default(),
        service_id: service.id.clone(),
        service_name: service.spec.name.clone().unwrap_or_default(),
        slot,
        node_id: node_id.to_string(),
        spec: service.spec.task_template.clone().unwrap_or_default(),
        spec_version: service.spec_version,
        service_labels: service.spec.labels.clone().unwrap_or_default(),
        desired_state: desired,
        status: TaskStatus {
            state: TaskState::NEW,
            timestamp: timefmt::format(now),
            message: "created".into(),
            ..Default::default()
        },
        endpoint_ports: service.endpoint.ports.clone(),
        job_iteration: None,
        networks: Vec::new(),
    }
}

/// Plans for every service, plus the removal of tasks whose service is gone.
pub fn reconcile_all(tables: &Tables, now: OffsetDateTime) -> Plan {
    let mut plan = Plan::default();
    for service in tables.services.values() {
        let tasks: Vec<&Task> = tables.tasks_of_service(&service.id).collect();
        let mut p = match jobs::job_mode(service) {
            Some(mode) => jobs::reconcile_job(service, mode, &tasks, &tables.nodes, now),
            None => reconcile_service(service, &tasks, &tables.nodes, now),
        };
        for c in &mut p.changes {
            if let Change::UpdateService(s) = c {
                reallocate_ports(tables, s);
            }
        }
        plan.changes.extend(p.changes);
        if let Some(w) = p.wake_after {
            plan.wake(w);
        }
    }
    // Orphans: the service was removed; its tasks are shut down and reaped.
    for t in tables.tasks.values() {
        if !tables.services.contains_key(&t.service_id) && t.desired_state < TaskState::REMOVE {
            let mut t = t.clone();
            t.desired_state = TaskState::REMOVE;
            plan.changes.push(Change::Update(t));
        }
    }
    plan
}

/// An automatic rollback restores a spec whose published ports may differ from the ones
/// allocated for the failed update: allocate them as `service update` would. If the old
/// ports were taken meanwhile the service keeps its current ones (and says so in the log).
fn reallocate_ports(tables: &Tables, s: &mut Service) {
    if s.spec.endpoint_spec == s.endpoint.spec {
        return;
    }
    match crate::control::ports::allocate(tables, &s.id, s.spec.endpoint_spec.as_ref()) {
        Ok(ports) => {
            s.endpoint.spec = s.spec.endpoint_spec.clone();
            s.endpoint.ports = ports;
        }
        Err(e) => {
            tracing::warn!(service.id = %s.id, error = %e, "rollback keeps the current ports")
        }
    }
}

/// Nodes by ID, as the orchestrators take them.
pub type Nodes = BTreeMap<String, Node>;
