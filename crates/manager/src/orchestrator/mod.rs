//! Orchestrators: decide which tasks should exist and what their desired state is.
//!
//! Everything here is a pure function from a store snapshot (and the current time) to a
//! [`Plan`]. Replicated services keep one live task per slot `1..=replicas`; global services
//! keep one per eligible node. Both share the per-slot logic: restart policy (condition,
//! delay, max attempts in a window), node loss/drain, and rolling replacement of tasks made
//! from an older spec. The loop that runs it is in `crate::reconcile`.

pub mod jobs;
mod pass;
pub mod reaper;
mod slots;
#[cfg(test)]
mod testing;
pub mod update;

use std::collections::BTreeMap;
use std::time::Duration;

use swarmd_store::{Event, EventAction, Tables};
use swarmd_types::models::{TaskSpec, TaskState};
use swarmd_types::{Node, NodeState, Object, Service, SharedSpec, Task, TaskStatus, ids, timefmt};
use time::OffsetDateTime;

pub use pass::Orchestrator;
pub use slots::{SlotKey, Watched, reconcile_service};

use crate::reconcile::{Depth, Scope, Touch};

/// A change the orchestrator wants committed. Short-lived, so the size difference between
/// variants is not worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Create(Task),
    /// A task with a new desired state (or other orchestrator-owned fields).
    Update(Task),
    /// A service whose update status changed. Boxed: a service is 4 KB inline, a task
    /// 0.5 KB, and a pass can hold 100,000 task changes.
    UpdateService(Box<Service>),
}

/// The orchestrator's decisions for one pass.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub changes: Vec<Change>,
    /// Run again after this long even if nothing changes (restart delays).
    pub wake_after: Option<Duration>,
    /// Stop-first replacements still waiting for the task they replace: the caller
    /// measures their wait (see [`Watched`]).
    pub waiting: Vec<String>,
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

/// The service's task template as a [`SharedSpec`]: the one made last when it is equal, so
/// a pass creating 100,000 tasks holds one copy of the spec, not one per task, until the
/// batch is proposed.
fn template_of(service: &Service) -> SharedSpec {
    thread_local! {
        static LAST: std::cell::RefCell<Option<SharedSpec>> = const { std::cell::RefCell::new(None) };
    }
    let template = service.spec.task_template.as_ref();
    LAST.with_borrow_mut(|last| {
        let equal = match (last.as_ref(), template) {
            (Some(l), Some(t)) => **l == *t,
            (Some(l), None) => **l == TaskSpec::default(),
            (None, _) => false,
        };
        if !equal {
            *last = Some(template.cloned().unwrap_or_default().into());
        }
        last.clone().unwrap_or_default()
    })
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
        spec: template_of(service),
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
        // The cluster default is filled in when the task is written (see `log_driver`).
        log_driver: service
            .spec
            .task_template
            .as_ref()
            .and_then(|t| t.log_driver.clone()),
    }
}

/// The log driver a new task runs with, as swarmkit's `NewTask`: the service's own, else
/// the cluster's `TaskDefaults.LogDriver` (only new tasks see a changed default).
pub fn log_driver(task: &Task, tables: &Tables) -> Option<swarmd_types::models::TaskSpecLogDriver> {
    task.log_driver.clone().or_else(|| {
        let d = tables
            .cluster()?
            .spec
            .task_defaults
            .as_ref()?
            .log_driver
            .as_ref()?;
        Some(swarmd_types::models::TaskSpecLogDriver {
            name: d.name.clone(),
            options: d.options.clone(),
        })
    })
}

/// Plans for every service, plus the removal of tasks whose service is gone.
pub fn reconcile_all(tables: &Tables, now: OffsetDateTime, watched: &Watched) -> Plan {
    reconcile_scope(tables, &Scope::All, now, watched)
}

/// What a store event means to the orchestrator (see [`crate::reconcile::Touch`]).
///
/// A task update that leaves it wanted (desired state up to RUNNING) and alive (observed
/// state up to RUNNING) is only progress: the allocator, the scheduler and the agents moving
/// it towards RUNNING. Replicated and global slots decide nothing from that; only a rolling
/// update (waiting for its tasks to run) and jobs do, which [`needs_progress`] checks at pass
/// time. Everything else about a task or service marks its service; nodes and the cluster
/// can change any service.
pub fn touch(e: &Event) -> Touch<'_> {
    match &e.object {
        Object::Task(t)
            if e.action == EventAction::Updated
                && t.desired_state <= TaskState::RUNNING
                && t.status.state <= TaskState::RUNNING =>
        {
            Touch::Progress(&t.service_id)
        }
        Object::Task(t) => Touch::Service(&t.service_id),
        Object::Service(s) => Touch::Service(&s.id),
        Object::Node(_) | Object::Cluster(_) => Touch::All,
        _ => Touch::None,
    }
}

/// Whether a task's progress towards RUNNING can change the service's plan: while an update
/// or rollback runs or is paused (it waits for its tasks to run; start-first retires an old
/// task once its replacement runs), and for jobs (their own rules).
pub fn needs_progress(service: &Service) -> bool {
    use swarmd_types::models::ServiceUpdateStatusStateEnum as U;
    let updating = service
        .update_status
        .as_ref()
        .and_then(|u| u.state)
        .is_some_and(|s| !matches!(s, U::COMPLETED | U::ROLLBACK_COMPLETED | U::EMPTY));
    updating || jobs::job_mode(service).is_some()
}

/// Plans for the services in `scope`, plus the removal of their tasks whose service is gone.
pub fn reconcile_scope(
    tables: &Tables,
    scope: &Scope,
    now: OffsetDateTime,
    watched: &Watched,
) -> Plan {
    let mut plan = Plan::default();
    let mut orphans_of: Vec<&str> = Vec::new();
    let mut one = |service: &Service| {
        let tasks: Vec<&Task> = tables.tasks_of_service(&service.id).collect();
        let mut p = match jobs::job_mode(service) {
            Some(mode) => jobs::reconcile_job(service, mode, &tasks, &tables.nodes, now),
            None => reconcile_service(service, &tasks, &tables.nodes, now, watched),
        };
        for c in &mut p.changes {
            if let Change::UpdateService(s) = c {
                reallocate_ports(tables, s);
            }
        }
        plan.changes.extend(p.changes);
        plan.waiting.extend(p.waiting);
        if let Some(w) = p.wake_after {
            plan.wake(w);
        }
    };
    match scope {
        Scope::All => {
            for service in tables.services.values() {
                one(service);
            }
            orphans_of.extend(
                tables
                    .task_service_ids()
                    .filter(|id| !tables.services.contains_key(*id)),
            );
        }
        Scope::Services(ids) => {
            for (id, depth) in ids {
                match tables.services.get(id) {
                    None => orphans_of.push(id),
                    Some(s) if *depth == Depth::Full || needs_progress(s) => one(s),
                    Some(_) => {}
                }
            }
        }
    }
    // Orphans: the service was removed; its tasks are shut down and reaped.
    orphans_of.sort_unstable();
    for id in orphans_of {
        for t in tables.tasks_of_service(id) {
            if t.desired_state < TaskState::REMOVE {
                let mut t = t.clone();
                t.desired_state = TaskState::REMOVE;
                plan.changes.push(Change::Update(t));
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use swarmd_types::models::{ServiceUpdateStatus, ServiceUpdateStatusStateEnum as U, TaskSpec};

    use testing::replicated as service;

    fn task(id: &str, service: &str, slot: u64, state: TaskState) -> Task {
        let mut t = Task {
            id: id.into(),
            service_id: service.into(),
            slot,
            spec: TaskSpec::default().into(),
            spec_version: 1,
            desired_state: TaskState::RUNNING,
            ..Default::default()
        };
        t.status.state = state;
        t
    }

    fn tables(services: Vec<Service>, tasks: Vec<Task>) -> Tables {
        let mut t = Tables::default();
        for s in services {
            t.services.insert(s.id.clone(), s);
        }
        for k in tasks {
            t.tasks.insert(k.id.clone(), k);
        }
        t.reindex();
        t
    }

    fn now() -> OffsetDateTime {
        timefmt::parse("2026-01-01T00:01:00Z").unwrap()
    }

    /// A new task runs with its service's log driver, else the cluster default, as
    /// swarmkit's `NewTask`.
    #[test]
    fn a_new_task_takes_the_services_log_driver_else_the_cluster_default() {
        use swarmd_types::models::{
            SwarmSpecTaskDefaults, SwarmSpecTaskDefaultsLogDriver, TaskSpecLogDriver,
        };
        let mut t = tables(vec![], vec![]);
        let plain = service("plain", 1);
        let task = new_task(&plain, 1, "", TaskState::RUNNING, now());
        assert_eq!(log_driver(&task, &t), None);
        t.clusters.insert(
            "c".into(),
            swarmd_types::Cluster {
                id: "c".into(),
                spec: swarmd_types::models::SwarmSpec {
                    task_defaults: Some(SwarmSpecTaskDefaults {
                        log_driver: Some(SwarmSpecTaskDefaultsLogDriver {
                            name: Some("local".into()),
                            options: Some([("max-size".to_string(), "1m".to_string())].into()),
                        }),
                    }),
                    ..Default::default()
                },
                ..Default::default()
            },
        );
        let default = TaskSpecLogDriver {
            name: Some("local".into()),
            options: Some([("max-size".to_string(), "1m".to_string())].into()),
        };
        assert_eq!(log_driver(&task, &t), Some(default));
        let mut own = service("own", 1);
        let own_driver = TaskSpecLogDriver {
            name: Some("json-file".into()),
            options: None,
        };
        own.spec.task_template.as_mut().unwrap().log_driver = Some(own_driver.clone());
        let task = new_task(&own, 1, "", TaskState::RUNNING, now());
        assert_eq!(log_driver(&task, &t), Some(own_driver));
    }

    fn ev(action: EventAction, object: impl Into<Object>) -> Event {
        Event {
            action,
            object: object.into(),
        }
    }

    #[test]
    fn progress_towards_running_is_told_apart_from_changes() {
        use EventAction::*;
        let assigned = task("t", "s", 1, TaskState::ASSIGNED);
        assert_eq!(touch(&ev(Updated, assigned.clone())), Touch::Progress("s"));
        assert_eq!(
            touch(&ev(Updated, task("t", "s", 1, TaskState::RUNNING))),
            Touch::Progress("s")
        );
        assert_eq!(touch(&ev(Created, assigned.clone())), Touch::Service("s"));
        assert_eq!(touch(&ev(Removed, assigned.clone())), Touch::Service("s"));
        assert_eq!(
            touch(&ev(Updated, task("t", "s", 1, TaskState::FAILED))),
            Touch::Service("s"),
            "a task that died may need a replacement"
        );
        let mut stopping = assigned;
        stopping.desired_state = TaskState::SHUTDOWN;
        assert_eq!(touch(&ev(Updated, stopping)), Touch::Service("s"));
        assert_eq!(touch(&ev(Updated, service("s", 1))), Touch::Service("s"));
        assert_eq!(touch(&ev(Updated, Node::default())), Touch::All);
        assert_eq!(
            touch(&ev(Created, swarmd_types::Secret::default())),
            Touch::None
        );
    }

    #[test]
    fn a_scoped_pass_reconciles_only_its_services_and_skips_mere_progress() {
        let t = tables(
            vec![service("a", 2), service("b", 2)],
            vec![task("a1", "a", 1, TaskState::RUNNING)],
        );
        let creates = |p: &Plan| -> Vec<String> {
            p.changes
                .iter()
                .filter_map(|c| match c {
                    Change::Create(t) => Some(format!("{}.{}", t.service_id, t.slot)),
                    _ => None,
                })
                .collect()
        };
        let scope = |d| Scope::Services(BTreeMap::from([("a".to_string(), d)]));
        assert_eq!(
            creates(&reconcile_scope(
                &t,
                &scope(Depth::Full),
                now(),
                &Watched::new()
            )),
            ["a.2"]
        );
        assert!(
            reconcile_scope(&t, &scope(Depth::Progress), now(), &Watched::new())
                .changes
                .is_empty(),
            "progress alone does not reconcile a service that is not updating"
        );
        let mut all = creates(&reconcile_scope(&t, &Scope::All, now(), &Watched::new()));
        all.sort();
        assert_eq!(all, ["a.2", "b.1", "b.2"]);

        // While an update runs, progress is looked at.
        let mut updating = service("a", 2);
        updating.update_status = Some(ServiceUpdateStatus {
            state: Some(U::UPDATING),
            ..Default::default()
        });
        assert!(needs_progress(&updating));
        assert!(!needs_progress(&service("a", 2)));
        let t = tables(vec![updating], vec![task("a1", "a", 1, TaskState::RUNNING)]);
        assert_eq!(
            creates(&reconcile_scope(
                &t,
                &scope(Depth::Progress),
                now(),
                &Watched::new()
            )),
            ["a.2"]
        );
    }

    #[test]
    fn orphans_are_removed_for_the_missing_services_in_scope() {
        let t = tables(
            vec![],
            vec![
                task("x1", "gone-x", 1, TaskState::RUNNING),
                task("y1", "gone-y", 1, TaskState::RUNNING),
            ],
        );
        let removed = |p: &Plan| -> Vec<String> {
            let mut v: Vec<String> = p
                .changes
                .iter()
                .filter_map(|c| match c {
                    Change::Update(t) if t.desired_state == TaskState::REMOVE => Some(t.id.clone()),
                    _ => None,
                })
                .collect();
            v.sort();
            v
        };
        let only_x = Scope::Services(BTreeMap::from([("gone-x".to_string(), Depth::Progress)]));
        assert_eq!(
            removed(&reconcile_scope(&t, &only_x, now(), &Watched::new())),
            ["x1"]
        );
        assert_eq!(
            removed(&reconcile_all(&t, now(), &Watched::new())),
            ["x1", "y1"]
        );
    }
}
