//! Fixtures for the orchestrators' unit tests.

use swarmd_types::models::{
    ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, ServiceSpecUpdateConfig,
    ServiceSpecUpdateConfigOrderEnum, ServiceUpdateStatus, ServiceUpdateStatusStateEnum, TaskSpec,
    TaskState,
};
use swarmd_types::{Service, Task, TaskStatus};

/// A replicated service of `replicas` tasks at spec version 1, named as its ID.
pub fn replicated(id: &str, replicas: i64) -> Service {
    Service {
        id: id.into(),
        spec: ServiceSpec {
            name: Some(id.into()),
            mode: Some(ServiceSpecMode {
                replicated: Some(ServiceSpecModeReplicated {
                    replicas: Some(replicas),
                }),
                ..Default::default()
            }),
            task_template: Some(TaskSpec::default()),
            ..Default::default()
        },
        spec_version: 1,
        ..Default::default()
    }
}

/// A task of `service` in `slot` on `node` (spec version 1), in `state` since `at`.
pub fn slot_task(
    (id, service, node): (&str, &str, &str),
    slot: u64,
    state: TaskState,
    desired: TaskState,
    at: &str,
) -> Task {
    Task {
        id: id.into(),
        service_id: service.into(),
        slot,
        node_id: node.into(),
        spec_version: 1,
        desired_state: desired,
        status: TaskStatus {
            state,
            timestamp: at.into(),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Service "svc" (one replica) in the middle of a forced update with `order`: spec
/// version 2, its tasks of version 1 out of date.
pub fn forced_update(order: ServiceSpecUpdateConfigOrderEnum) -> Service {
    let mut svc = replicated("svc", 1);
    svc.spec_version = 2;
    svc.previous_spec = Some(svc.spec.clone());
    svc.spec.update_config = Some(ServiceSpecUpdateConfig {
        order: Some(order),
        ..Default::default()
    });
    svc.spec.task_template.as_mut().unwrap().force_update = Some(1);
    svc.update_status = Some(ServiceUpdateStatus {
        state: Some(ServiceUpdateStatusStateEnum::UPDATING),
        ..Default::default()
    });
    svc
}
