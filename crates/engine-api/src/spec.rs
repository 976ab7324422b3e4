//! Service spec adjustments the daemon makes on the way in and out.
//!
//! In: the daemon's `ServiceSpecToGRPC` picks one mode (Global, GlobalJob, ReplicatedJob,
//! Replicated, in that order) and fills counts the client left out (`Replicas: 1`, a job's
//! `MaxConcurrent: 1`, `TotalCompletions = MaxConcurrent`). Storing the filled spec keeps the
//! orchestrators free of "absent means 1" rules.
//!
//! Out: `ForceUpdate` is a plain `uint64` in Docker's Go types, so it is always present, and
//! the CLI's `service update --force` reads it. `insertDefaults=true` asks for swarmkit's
//! `defaults.InterpolateService`.

use swarmd_types::models::{
    ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, ServiceSpecModeReplicatedJob,
    ServiceSpecRollbackConfig, ServiceSpecRollbackConfigFailureActionEnum,
    ServiceSpecRollbackConfigOrderEnum, ServiceSpecUpdateConfig,
    ServiceSpecUpdateConfigFailureActionEnum, ServiceSpecUpdateConfigOrderEnum, TaskSpec,
    TaskSpecContainerSpecDnsConfig, TaskSpecPlacement, TaskSpecResources, TaskSpecRestartPolicy,
    TaskSpecRestartPolicyConditionEnum,
};

/// swarmkit's default stop grace period (10 s), in nanoseconds.
pub const DEFAULT_STOP_GRACE_PERIOD_NS: i64 = 10_000_000_000;
/// Default restart delay and update/rollback monitor period (5 s), in nanoseconds.
pub const DEFAULT_DELAY_NS: i64 = 5_000_000_000;

/// The mode a spec asks for, as the daemon names it in the `mode` filter.
pub fn mode_name(spec: &ServiceSpec) -> &'static str {
    match &spec.mode {
        Some(m) if m.global.is_some() => "global",
        Some(m) if m.global_job.is_some() => "global-job",
        Some(m) if m.replicated_job.is_some() => "replicated-job",
        _ => "replicated",
    }
}

/// Whether the service runs to completion (replicated-job or global-job).
pub fn is_job(spec: &ServiceSpec) -> bool {
    matches!(mode_name(spec), "global-job" | "replicated-job")
}

/// Whether the service has one task per node (global or global-job).
pub fn is_global(spec: &ServiceSpec) -> bool {
    matches!(mode_name(spec), "global" | "global-job")
}

/// Normalizes a decoded spec the way the daemon does before storing it.
pub fn normalize_service_spec(spec: &mut ServiceSpec) {
    let mode = spec.mode.take().unwrap_or_default();
    spec.mode = Some(if let Some(g) = mode.global {
        ServiceSpecMode {
            global: Some(g),
            ..Default::default()
        }
    } else if let Some(g) = mode.global_job {
        ServiceSpecMode {
            global_job: Some(g),
            ..Default::default()
        }
    } else if let Some(job) = mode.replicated_job {
        let max = job.max_concurrent.unwrap_or(1);
        ServiceSpecMode {
            replicated_job: Some(ServiceSpecModeReplicatedJob {
                max_concurrent: Some(max),
                total_completions: Some(job.total_completions.unwrap_or(max)),
            }),
            ..Default::default()
        }
    } else {
        let replicas = mode.replicated.and_then(|r| r.replicas).unwrap_or(1);
        ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated {
                replicas: Some(replicas),
            }),
            ..Default::default()
        }
    });
    ensure_force_update(spec);
}

/// Makes `TaskTemplate.ForceUpdate` present (0 when unset).
pub fn ensure_force_update(spec: &mut ServiceSpec) {
    let tt = spec.task_template.get_or_insert_with(TaskSpec::default);
    ensure_task_force_update(tt);
}

pub fn ensure_task_force_update(spec: &mut TaskSpec) {
    spec.force_update.get_or_insert(0);
}

/// swarmkit's `defaults.InterpolateService`: fills what a client left out with the values
/// the cluster uses.
pub fn insert_service_defaults(spec: &mut ServiceSpec) {
    let tt = spec.task_template.get_or_insert_with(TaskSpec::default);
    if let Some(cs) = tt.container_spec.as_mut() {
        cs.stop_grace_period
            .get_or_insert(DEFAULT_STOP_GRACE_PERIOD_NS);
        cs.dns_config
            .get_or_insert_with(TaskSpecContainerSpecDnsConfig::default);
    }
    tt.resources.get_or_insert_with(TaskSpecResources::default);
    match tt.restart_policy.as_mut() {
        None => {
            tt.restart_policy = Some(TaskSpecRestartPolicy {
                condition: Some(TaskSpecRestartPolicyConditionEnum::ANY),
                delay: Some(DEFAULT_DELAY_NS),
                max_attempts: Some(0),
                window: None,
            });
        }
        Some(rp) => {
            rp.delay.get_or_insert(DEFAULT_DELAY_NS);
        }
    }
    tt.placement.get_or_insert_with(TaskSpecPlacement::default);
    match spec.update_config.as_mut() {
        None => {
            spec.update_config = Some(ServiceSpecUpdateConfig {
                parallelism: Some(1),
                delay: None,
                failure_action: Some(ServiceSpecUpdateConfigFailureActionEnum::PAUSE),
                monitor: Some(DEFAULT_DELAY_NS),
                max_failure_ratio: Some(0.0),
                order: Some(ServiceSpecUpdateConfigOrderEnum::STOP_FIRST),
            });
        }
        Some(u) => {
            u.monitor.get_or_insert(DEFAULT_DELAY_NS);
        }
    }
    match spec.rollback_config.as_mut() {
        None => {
            spec.rollback_config = Some(ServiceSpecRollbackConfig {
                parallelism: Some(1),
                delay: None,
                failure_action: Some(ServiceSpecRollbackConfigFailureActionEnum::PAUSE),
                monitor: Some(DEFAULT_DELAY_NS),
                max_failure_ratio: Some(0.0),
                order: Some(ServiceSpecRollbackConfigOrderEnum::STOP_FIRST),
            });
        }
        Some(r) => {
            r.monitor.get_or_insert(DEFAULT_DELAY_NS);
        }
    }
    ensure_task_force_update(tt);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn replicated_without_count_gets_one() {
        let mut spec = ServiceSpec::default();
        normalize_service_spec(&mut spec);
        assert_eq!(
            spec.mode
                .as_ref()
                .unwrap()
                .replicated
                .as_ref()
                .unwrap()
                .replicas,
            Some(1)
        );
        assert_eq!(spec.task_template.as_ref().unwrap().force_update, Some(0));

        let mut spec = ServiceSpec {
            mode: Some(ServiceSpecMode {
                replicated: Some(ServiceSpecModeReplicated { replicas: None }),
                ..Default::default()
            }),
            ..Default::default()
        };
        normalize_service_spec(&mut spec);
        assert_eq!(spec.mode.unwrap().replicated.unwrap().replicas, Some(1));
    }

    #[test]
    fn global_wins_and_jobs_get_counts() {
        let mut spec = ServiceSpec {
            mode: Some(ServiceSpecMode {
                replicated: Some(ServiceSpecModeReplicated { replicas: Some(3) }),
                global: Some(HashMap::new()),
                ..Default::default()
            }),
            ..Default::default()
        };
        normalize_service_spec(&mut spec);
        assert_eq!(mode_name(&spec), "global");
        assert!(spec.mode.as_ref().unwrap().replicated.is_none());

        let mut job = ServiceSpec {
            mode: Some(ServiceSpecMode {
                replicated_job: Some(ServiceSpecModeReplicatedJob {
                    max_concurrent: Some(2),
                    total_completions: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        normalize_service_spec(&mut job);
        let rj = job.mode.as_ref().unwrap().replicated_job.clone().unwrap();
        assert_eq!(
            (rj.max_concurrent, rj.total_completions),
            (Some(2), Some(2))
        );
        assert!(is_job(&job));
        assert!(!is_global(&job));
    }

    #[test]
    fn defaults_fill_only_what_is_missing() {
        let mut spec: ServiceSpec = serde_json::from_value(serde_json::json!({
            "TaskTemplate": {"ContainerSpec": {"Image": "busybox", "StopGracePeriod": 1},
                             "RestartPolicy": {"Condition": "none"}},
            "UpdateConfig": {"Parallelism": 4}
        }))
        .unwrap();
        insert_service_defaults(&mut spec);
        let tt = spec.task_template.as_ref().unwrap();
        assert_eq!(
            tt.container_spec.as_ref().unwrap().stop_grace_period,
            Some(1)
        );
        let rp = tt.restart_policy.as_ref().unwrap();
        assert_eq!(rp.condition, Some(TaskSpecRestartPolicyConditionEnum::NONE));
        assert_eq!(rp.delay, Some(DEFAULT_DELAY_NS));
        let u = spec.update_config.as_ref().unwrap();
        assert_eq!(u.parallelism, Some(4));
        assert_eq!(u.monitor, Some(DEFAULT_DELAY_NS));
        let r = spec.rollback_config.as_ref().unwrap();
        assert_eq!(
            r.order,
            Some(ServiceSpecRollbackConfigOrderEnum::STOP_FIRST)
        );
        assert_eq!(tt.force_update, Some(0));
    }
}
