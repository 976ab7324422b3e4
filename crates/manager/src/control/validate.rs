//! Service spec validation and defaults, with swarmkit's messages.

use swarmd_types::models::{ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, TaskSpec};

use crate::scheduler::constraint;

/// Upper bound on replicas: far beyond any real service, low enough that a typo can't make
/// the orchestrator try to create billions of tasks. A million is issue 7's scale target
/// (1,000,000 tasks on 10,000 nodes), which a task's ~1.5 KB in the store now allows.
pub const MAX_REPLICAS: i64 = 1_000_000;

/// Which mode a spec is in, for "mode change is not allowed".
pub fn mode_kind(spec: &ServiceSpec) -> &'static str {
    match &spec.mode {
        Some(m) if m.global.is_some() => "global",
        Some(m) if m.replicated_job.is_some() => "replicated-job",
        Some(m) if m.global_job.is_some() => "global-job",
        _ => "replicated",
    }
}

fn valid_name(name: &str) -> bool {
    // swarmkit: a DNS label component, at most 63 characters.
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
}

/// Checks a spec and fills Docker's defaults (`Replicas: 1`, `ForceUpdate: 0`).
/// The error text is the gRPC description Docker shows.
pub fn validate_service_spec(mut spec: ServiceSpec) -> Result<ServiceSpec, String> {
    if let Some(name) = spec.name.as_deref().filter(|n| !n.is_empty())
        && !valid_name(name)
    {
        return Err("name must be valid as a DNS name component".into());
    }
    let mode = spec.mode.get_or_insert_with(ServiceSpecMode::default);
    let set = [
        mode.replicated.is_some(),
        mode.global.is_some(),
        mode.replicated_job.is_some(),
        mode.global_job.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if set > 1 {
        return Err("service mode must specify exactly one of replicated, global, replicated-job, global-job".into());
    }
    if set == 0 {
        mode.replicated = Some(ServiceSpecModeReplicated { replicas: Some(1) });
    }
    if let Some(j) = &mode.replicated_job {
        if j.max_concurrent.is_some_and(|n| n < 0) {
            return Err("MaxConcurrent must not be negative".into());
        }
        if j.total_completions.is_some_and(|n| n < 0) {
            return Err("TotalCompletions must not be negative".into());
        }
        if j.total_completions
            .unwrap_or(0)
            .max(j.max_concurrent.unwrap_or(0))
            > MAX_REPLICAS
        {
            return Err(format!(
                "job size exceeds the maximum of {MAX_REPLICAS} tasks per service"
            ));
        }
    }
    if let Some(r) = mode.replicated.as_mut() {
        let n = *r.replicas.get_or_insert(1);
        if n < 0 {
            return Err(format!("replicas must be a non-negative number, got {n}"));
        }
        if n > MAX_REPLICAS {
            return Err(format!(
                "replicas {n} exceeds the maximum of {MAX_REPLICAS} per service"
            ));
        }
    }
    let tt = spec.task_template.get_or_insert_with(TaskSpec::default);
    tt.force_update.get_or_insert(0);
    validate_runtime(tt)?;
    let image = tt
        .container_spec
        .as_ref()
        .and_then(|c| c.image.as_deref())
        .unwrap_or("");
    if image.is_empty() {
        return Err("ContainerSpec: image reference must be provided".into());
    }
    if let Some(c) = tt.placement.as_ref().and_then(|p| p.constraints.as_ref()) {
        constraint::parse_all(c).map_err(|e| e.to_string())?;
    }
    if let Some(res) = &tt.resources {
        let neg = |v: Option<i64>| v.is_some_and(|v| v < 0);
        if let Some(l) = &res.limits
            && (neg(l.nano_cpus) || neg(l.memory_bytes))
        {
            return Err("invalid resources: negative limit".into());
        }
        if let Some(r) = &res.reservations
            && (neg(r.nano_cpus) || neg(r.memory_bytes))
        {
            return Err("invalid resources: negative reservation".into());
        }
    }
    if let Some(rp) = &tt.restart_policy {
        if rp.delay.is_some_and(|d| d < 0) {
            return Err("TaskSpec: restart-delay cannot be negative".into());
        }
        if rp.window.is_some_and(|d| d < 0) {
            return Err("TaskSpec: restart-window cannot be negative".into());
        }
    }
    if let Some(h) = tt
        .container_spec
        .as_ref()
        .and_then(|c| c.health_check.as_ref())
    {
        validate_health_check(h)?;
    }
    if let Some(cs) = tt
        .container_spec
        .as_ref()
        .and_then(|c| c.privileges.as_ref())
        .and_then(|p| p.credential_spec.as_ref())
    {
        validate_credential_spec(cs)?;
    }
    if let Some(u) = &spec.update_config {
        validate_update_policy("update", u.delay, u.monitor, u.max_failure_ratio)?;
    }
    if let Some(r) = &spec.rollback_config {
        validate_update_policy("rollback", r.delay, r.monitor, r.max_failure_ratio)?;
    }
    Ok(spec)
}

/// The daemon's `ServiceSpecToGRPC` runtime check, in its words: `container` (or none)
/// needs a ContainerSpec; `attachment` and unknown runtimes are unsupported. Plugin
/// services (`plugin` with a PluginSpec), which the daemon accepts, are refused: swarmd
/// has no plugins to install.
fn validate_runtime(tt: &TaskSpec) -> Result<(), String> {
    match tt.runtime.as_deref().unwrap_or_default() {
        "" | "container" if tt.container_spec.is_none() => {
            Err("mismatched Runtime and *Spec fields".into())
        }
        "" | "container" => Ok(()),
        "plugin" if tt.plugin_spec.is_none() => Err("mismatched Runtime and *Spec fields".into()),
        "plugin" => Err("plugin services are not supported by swarmd".into()),
        _ => Err("unsupported runtime".into()),
    }
}

/// The daemon's `credentialSpecToGRPC`: exactly one of config, file and registry, named
/// in its words (the daemon wraps them in "invalid CredentialSpec: ").
fn validate_credential_spec(
    cs: &swarmd_types::models::TaskSpecContainerSpecPrivilegesCredentialSpec,
) -> Result<(), String> {
    let set = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
    let opts: Vec<&str> = [
        (set(&cs.config), "\"config\""),
        (set(&cs.file), "\"file\""),
        (set(&cs.registry), "\"registry\""),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
    .collect();
    let why = match opts.as_slice() {
        [] => r#"must either provide "file", "registry", or "config" for credential spec"#.into(),
        [_] => return Ok(()),
        [a, b] => format!("cannot specify both {a} and {b} credential specs"),
        [rest @ .., last] => format!(
            "cannot specify both {}, and {last} credential specs",
            rest.join(", ")
        ),
    };
    Err(format!("invalid CredentialSpec: {why}"))
}

/// swarmkit's `validateUpdate`/`validateRollback`, with its messages.
fn validate_update_policy(
    kind: &str,
    delay: Option<i64>,
    monitor: Option<i64>,
    ratio: Option<f64>,
) -> Result<(), String> {
    if delay.is_some_and(|d| d < 0) {
        return Err(format!("TaskSpec: {kind}-delay cannot be negative"));
    }
    if monitor.is_some_and(|d| d < 0) {
        return Err(format!("TaskSpec: {kind}-monitor cannot be negative"));
    }
    if ratio.is_some_and(|r| !(0.0..=1.0).contains(&r)) {
        return Err(format!(
            "TaskSpec: {kind}-maxfailureratio cannot be less than 0 or bigger than 1"
        ));
    }
    Ok(())
}

/// swarmkit's `validateHealthCheck`: durations, when set, are at least 1ms.
fn validate_health_check(h: &swarmd_types::models::HealthConfig) -> Result<(), String> {
    const MIN: i64 = 1_000_000;
    for (name, v) in [
        ("Interval", h.interval),
        ("Timeout", h.timeout),
        ("StartPeriod", h.start_period),
    ] {
        if v.is_some_and(|v| v != 0 && v < MIN) {
            return Err(format!(
                "ContainerSpec: {name} in HealthConfig cannot be less than 1ms"
            ));
        }
    }
    if h.retries.is_some_and(|r| r < 0) {
        return Err("ContainerSpec: Retries in HealthConfig cannot be negative".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmd_types::models::{TaskSpecContainerSpec, TaskSpecPlacement};

    fn spec(image: &str) -> ServiceSpec {
        ServiceSpec {
            name: Some("web".into()),
            task_template: Some(TaskSpec {
                container_spec: Some(TaskSpecContainerSpec {
                    image: Some(image.into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn fills_defaults() {
        let s = validate_service_spec(spec("busybox")).unwrap();
        assert_eq!(s.mode.unwrap().replicated.unwrap().replicas, Some(1));
        assert_eq!(s.task_template.unwrap().force_update, Some(0));
    }

    #[test]
    fn rejects_bad_specs() {
        assert_eq!(
            validate_service_spec(spec("")).unwrap_err(),
            "ContainerSpec: image reference must be provided"
        );
        let mut s = spec("busybox");
        s.name = Some("bad name!".into());
        assert!(validate_service_spec(s).unwrap_err().contains("DNS name"));
        let mut s = spec("busybox");
        s.mode = Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated { replicas: Some(-1) }),
            ..Default::default()
        });
        assert!(validate_service_spec(s).is_err());
        let mut s = spec("busybox");
        s.mode = Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated {
                replicas: Some(1 << 40),
            }),
            ..Default::default()
        });
        assert!(validate_service_spec(s).unwrap_err().contains("maximum"));
        let mut s = spec("busybox");
        s.task_template.as_mut().unwrap().placement = Some(TaskSpecPlacement {
            constraints: Some(vec!["node.role=manager".into()]),
            ..Default::default()
        });
        assert_eq!(
            validate_service_spec(s).unwrap_err(),
            "constraint expected one operator from ==, !="
        );
        let mut s = spec("busybox");
        s.update_config = Some(swarmd_types::models::ServiceSpecUpdateConfig {
            max_failure_ratio: Some(1.5),
            ..Default::default()
        });
        assert_eq!(
            validate_service_spec(s).unwrap_err(),
            "TaskSpec: update-maxfailureratio cannot be less than 0 or bigger than 1"
        );
        let mut s = spec("busybox");
        s.rollback_config = Some(swarmd_types::models::ServiceSpecRollbackConfig {
            delay: Some(-1),
            ..Default::default()
        });
        assert_eq!(
            validate_service_spec(s).unwrap_err(),
            "TaskSpec: rollback-delay cannot be negative"
        );
        let mut s = spec("busybox");
        s.task_template
            .as_mut()
            .unwrap()
            .container_spec
            .as_mut()
            .unwrap()
            .health_check = Some(swarmd_types::models::HealthConfig {
            interval: Some(10),
            ..Default::default()
        });
        assert_eq!(
            validate_service_spec(s).unwrap_err(),
            "ContainerSpec: Interval in HealthConfig cannot be less than 1ms"
        );
    }

    /// One credential spec source, as the daemon demands, with its words otherwise.
    #[test]
    fn a_credential_spec_names_exactly_one_source() {
        let with = |cs: serde_json::Value| {
            let mut s = spec("busybox");
            let c = s
                .task_template
                .as_mut()
                .unwrap()
                .container_spec
                .as_mut()
                .unwrap();
            c.privileges =
                Some(serde_json::from_value(serde_json::json!({"CredentialSpec": cs})).unwrap());
            validate_service_spec(s)
        };
        with(serde_json::json!({"File": "f"})).unwrap();
        assert_eq!(
            with(serde_json::json!({"File": "f", "Registry": "r"})).unwrap_err(),
            r#"invalid CredentialSpec: cannot specify both "file" and "registry" credential specs"#
        );
        assert_eq!(
            with(serde_json::json!({"Config": "c", "File": "f", "Registry": "r"})).unwrap_err(),
            r#"invalid CredentialSpec: cannot specify both "config", "file", and "registry" credential specs"#
        );
        assert_eq!(
            with(serde_json::json!({})).unwrap_err(),
            r#"invalid CredentialSpec: must either provide "file", "registry", or "config" for credential spec"#
        );
    }

    /// Runtimes other than `container` are refused in the daemon's words.
    #[test]
    fn only_the_container_runtime_is_accepted() {
        let with = |runtime: &str, plugin: bool| {
            let mut s = spec("busybox");
            let tt = s.task_template.as_mut().unwrap();
            tt.runtime = Some(runtime.into());
            if plugin {
                tt.plugin_spec = Some(Default::default());
            }
            validate_service_spec(s)
        };
        with("container", false).unwrap();
        with("", false).unwrap();
        assert_eq!(
            with("attachment", false).unwrap_err(),
            "unsupported runtime"
        );
        assert_eq!(with("wasm", false).unwrap_err(), "unsupported runtime");
        assert_eq!(
            with("plugin", false).unwrap_err(),
            "mismatched Runtime and *Spec fields"
        );
        assert_eq!(
            with("plugin", true).unwrap_err(),
            "plugin services are not supported by swarmd"
        );
        let mut s = spec("busybox");
        s.task_template.as_mut().unwrap().container_spec = None;
        assert_eq!(
            validate_service_spec(s).unwrap_err(),
            "mismatched Runtime and *Spec fields"
        );
    }
}
