//! What the process executor can apply from a task, and the refusal for what it cannot.
//!
//! A host process gets its command, environment, directory, user, hostname (as
//! `HOSTNAME`), stop signal and grace period, health check, secrets and configs (files
//! under the task's directory), and published ports. It has no image filesystem, mounts,
//! namespaces, cgroup limits, LSM or seccomp profiles, capabilities, log driver or
//! terminal of its own. A task that sets any of those is refused at prepare, with every
//! such field named, rather than run without it (docs/COMPATIBILITY.md).
//!
//! The container spec is taken apart with no `..`: a field added to the model does not
//! compile until it is placed on one side or the other here.

use bollard_stubs::models::{
    TaskSpecContainerSpec, TaskSpecContainerSpecIsolationEnum, TaskSpecLogDriver, TaskSpecResources,
};

use crate::exec::host_opts;

/// Why the process executor refuses the task, if it sets a field a host process cannot
/// get. Zero values (the CLI sends many) are not settings.
pub fn refusal(
    spec: &TaskSpecContainerSpec,
    resources: Option<&TaskSpecResources>,
    log_driver: Option<&TaskSpecLogDriver>,
) -> Option<String> {
    let TaskSpecContainerSpec {
        // Recorded for `docker ps`; the command runs from the host's filesystem.
        image: _,
        // Shown as the task's container labels.
        labels: _,
        command: _,
        args: _,
        hostname: _,
        env: _,
        dir: _,
        user: _,
        groups,
        privileges,
        tty,
        open_stdin,
        read_only,
        mounts,
        stop_signal: _,
        stop_grace_period: _,
        health_check: _,
        hosts,
        dns_config,
        secrets: _,
        oom_score_adj,
        configs: _,
        isolation,
        init,
        sysctls,
        capability_add,
        capability_drop,
        ulimits,
    } = spec;
    let mut set: Vec<String> = Vec::new();
    let mut flag = |on: bool, what: &str| {
        if on {
            set.push(what.to_string());
        }
    };
    let any = |v: &Option<Vec<String>>| v.as_ref().is_some_and(|v| !v.is_empty());
    flag(any(groups), "Groups (--group)");
    flag(*tty == Some(true), "TTY (--tty)");
    flag(*open_stdin == Some(true), "OpenStdin");
    flag(*read_only == Some(true), "ReadOnly (--read-only)");
    flag(
        mounts.as_ref().is_some_and(|m| !m.is_empty()),
        "Mounts (--mount)",
    );
    flag(any(hosts), "Hosts (--host)");
    flag(
        dns_config
            .as_ref()
            .is_some_and(|d| any(&d.nameservers) || any(&d.search) || any(&d.options)),
        "DNSConfig (--dns*)",
    );
    flag(
        oom_score_adj.is_some_and(|v| v != 0),
        "OomScoreAdj (--oom-score-adj)",
    );
    flag(
        isolation.as_ref().is_some_and(|i| {
            !matches!(
                i,
                TaskSpecContainerSpecIsolationEnum::DEFAULT
                    | TaskSpecContainerSpecIsolationEnum::EMPTY
            )
        }),
        "Isolation (--isolation)",
    );
    flag(*init == Some(true), "Init (--init)");
    flag(
        sysctls.as_ref().is_some_and(|s| !s.is_empty()),
        "Sysctls (--sysctl)",
    );
    flag(any(capability_add), "CapabilityAdd (--cap-add)");
    flag(any(capability_drop), "CapabilityDrop (--cap-drop)");
    flag(
        ulimits.as_ref().is_some_and(|u| !u.is_empty()),
        "Ulimits (--ulimit)",
    );
    let limits = resources.and_then(|r| r.limits.as_ref());
    flag(
        limits.is_some_and(|l| {
            l.nano_cpus.is_some_and(|v| v > 0)
                || l.memory_bytes.is_some_and(|v| v > 0)
                || l.pids.is_some_and(|v| v > 0)
        }),
        "Resources.Limits (--limit-*)",
    );
    if let Some(d) = log_driver {
        set.push(format!(
            "log driver {:?}",
            d.name.as_deref().unwrap_or_default()
        ));
    }
    match host_opts::security_opts(privileges.as_ref()) {
        Ok(opts) => set.extend(opts.into_iter().map(|o| format!("security option {o:?}"))),
        Err(_) => set.push("a seccomp profile".into()),
    }
    if set.is_empty() {
        return None;
    }
    Some(format!(
        "the process executor cannot apply {}: run this service on a node with the docker executor",
        set.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> TaskSpecContainerSpec {
        serde_json::from_value(v).unwrap()
    }

    /// What the docker CLI sends for a plain `service create` is fine.
    #[test]
    fn zero_values_are_not_settings() {
        let s = spec(json!({
            "Image": "busybox", "Command": ["sleep"], "Args": ["1d"], "Env": ["A=1"],
            "TTY": false, "OpenStdin": false, "ReadOnly": false, "Mounts": [],
            "DNSConfig": {}, "Isolation": "default", "Init": null, "Ulimits": [],
            "Privileges": {"NoNewPrivileges": false}
        }));
        let r: TaskSpecResources = serde_json::from_value(json!({"Limits": {}})).unwrap();
        assert_eq!(refusal(&s, Some(&r), None), None);
    }

    #[test]
    fn every_field_a_process_cannot_get_is_named() {
        let s = spec(json!({
            "Image": "busybox", "Groups": ["wheel"], "TTY": true, "OpenStdin": true,
            "ReadOnly": true, "Mounts": [{"Type": "tmpfs", "Target": "/t"}],
            "Hosts": ["10.0.0.1 db"], "DNSConfig": {"Nameservers": ["10.0.0.2"]},
            "OomScoreAdj": 100, "Isolation": "hyperv", "Init": true,
            "Sysctls": {"net.core.somaxconn": "1"}, "CapabilityAdd": ["CAP_NET_ADMIN"],
            "CapabilityDrop": ["CAP_MKNOD"], "Ulimits": [{"Name": "nofile", "Soft": 1, "Hard": 2}],
            "Privileges": {"NoNewPrivileges": true}
        }));
        let r: TaskSpecResources =
            serde_json::from_value(json!({"Limits": {"MemoryBytes": 1048576}})).unwrap();
        let d = TaskSpecLogDriver {
            name: Some("syslog".into()),
            options: None,
        };
        let why = refusal(&s, Some(&r), Some(&d)).unwrap();
        for word in [
            "--group",
            "--tty",
            "OpenStdin",
            "--read-only",
            "--mount",
            "--host",
            "--dns",
            "--oom-score-adj",
            "--isolation",
            "--init",
            "--sysctl",
            "--cap-add",
            "--cap-drop",
            "--ulimit",
            "--limit-",
            "log driver \"syslog\"",
            "no-new-privileges=true",
        ] {
            assert!(why.contains(word), "{word}: {why}");
        }
    }
}
