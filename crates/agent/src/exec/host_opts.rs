//! The task's log driver and `ContainerSpec.Privileges` as the engine's `HostConfig` takes
//! them, exactly as Docker's swarm executor writes them (moby
//! `daemon/cluster/executor/container/container.go`: `hostConfig`, `applyPrivileges`).
//!
//! Each spec struct is taken apart field by field with no `..`: a field added to the model
//! does not compile until it is mapped or refused here, so none can be dropped silently.
//! The process executor cannot apply any of them and refuses a task that sets one (see
//! [`super::process::spec`]).

use base64::Engine as _;
use bollard_stubs::models::{
    HostConfigLogConfig, TaskSpecContainerSpecPrivileges, TaskSpecContainerSpecPrivilegesAppArmor,
    TaskSpecContainerSpecPrivilegesAppArmorModeEnum, TaskSpecContainerSpecPrivilegesCredentialSpec,
    TaskSpecContainerSpecPrivilegesSeLinuxContext, TaskSpecContainerSpecPrivilegesSeccomp,
    TaskSpecContainerSpecPrivilegesSeccompModeEnum, TaskSpecLogDriver,
};

use super::ExecError;

/// `HostConfig.LogConfig` for the task's log driver: name and options as given (an empty
/// name is the engine's default driver, as under Docker).
pub fn log_config(driver: Option<&TaskSpecLogDriver>) -> Option<HostConfigLogConfig> {
    let TaskSpecLogDriver { name, options } = driver?;
    Some(HostConfigLogConfig {
        typ: Some(name.clone().unwrap_or_default()),
        config: options.clone().filter(|o| !o.is_empty()),
    })
}

/// `HostConfig.SecurityOpt` entries for `Privileges`, in the order Docker appends them.
/// The seccomp profile travels base64-encoded in the API (Go `[]byte`); the engine wants
/// the profile's JSON text.
pub fn security_opts(
    p: Option<&TaskSpecContainerSpecPrivileges>,
) -> Result<Vec<String>, ExecError> {
    let mut out = Vec::new();
    let Some(TaskSpecContainerSpecPrivileges {
        credential_spec,
        se_linux_context,
        seccomp,
        app_armor,
        no_new_privileges,
    }) = p
    else {
        return Ok(out);
    };
    if let Some(TaskSpecContainerSpecPrivilegesCredentialSpec {
        config,
        file,
        registry,
    }) = credential_spec
    {
        // The API admits exactly one (the manager refuses more); the order is swarmkit's.
        let set = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        if let Some(f) = set(file) {
            out.push(format!("credentialspec=file://{f}"));
        } else if let Some(r) = set(registry) {
            out.push(format!("credentialspec=registry://{r}"));
        } else if let Some(c) = set(config) {
            out.push(format!("credentialspec=config://{c}"));
        }
    }
    if let Some(TaskSpecContainerSpecPrivilegesSeLinuxContext {
        disable,
        user,
        role,
        typ,
        level,
    }) = se_linux_context
    {
        if *disable == Some(true) {
            out.push("label=disable".into());
        }
        for (key, v) in [
            ("user", user),
            ("role", role),
            ("level", level),
            ("type", typ),
        ] {
            if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
                out.push(format!("label={key}:{v}"));
            }
        }
    }
    if let Some(TaskSpecContainerSpecPrivilegesSeccomp { mode, profile }) = seccomp {
        use TaskSpecContainerSpecPrivilegesSeccompModeEnum as M;
        match mode {
            Some(M::UNCONFINED) => out.push("seccomp=unconfined".into()),
            Some(M::CUSTOM) => {
                let b64 = profile.as_deref().unwrap_or_default();
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|e| ExecError::InvalidSpec(format!("invalid seccomp profile: {e}")))?;
                out.push(format!("seccomp={}", String::from_utf8_lossy(&bytes)));
            }
            // The engine's default profile: nothing to set, as Docker.
            Some(M::DEFAULT) | Some(M::EMPTY) | None => {}
        }
    }
    if let Some(TaskSpecContainerSpecPrivilegesAppArmor { mode }) = app_armor {
        use TaskSpecContainerSpecPrivilegesAppArmorModeEnum as M;
        match mode {
            Some(M::DISABLED) => out.push("apparmor=unconfined".into()),
            Some(M::DEFAULT) | Some(M::EMPTY) | None => {}
        }
    }
    if *no_new_privileges == Some(true) {
        out.push("no-new-privileges=true".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn privileges(v: serde_json::Value) -> TaskSpecContainerSpecPrivileges {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn log_driver_becomes_log_config() {
        let d = TaskSpecLogDriver {
            name: Some("json-file".into()),
            options: Some([("max-size".to_string(), "1m".to_string())].into()),
        };
        let lc = log_config(Some(&d)).unwrap();
        assert_eq!(lc.typ.as_deref(), Some("json-file"));
        assert_eq!(lc.config.unwrap()["max-size"], "1m");
        assert!(log_config(None).is_none());
    }

    /// Every privilege maps to the security option Docker's executor writes, in its order.
    #[test]
    fn privileges_become_dockers_security_options() {
        let p = privileges(json!({
            "CredentialSpec": {"File": "spec.json"},
            "SELinuxContext": {"Disable": true, "User": "u", "Role": "r", "Type": "t",
                               "Level": "s0:c1"},
            "Seccomp": {"Mode": "custom", "Profile": "eyJkZWZhdWx0QWN0aW9uIjoiU0NNUF9BQ1RfQUxMT1cifQ=="},
            "AppArmor": {"Mode": "disabled"},
            "NoNewPrivileges": true
        }));
        assert_eq!(
            security_opts(Some(&p)).unwrap(),
            [
                "credentialspec=file://spec.json",
                "label=disable",
                "label=user:u",
                "label=role:r",
                "label=level:s0:c1",
                "label=type:t",
                r#"seccomp={"defaultAction":"SCMP_ACT_ALLOW"}"#,
                "apparmor=unconfined",
                "no-new-privileges=true",
            ]
        );
        let p = privileges(
            json!({"CredentialSpec": {"Registry": "r"}, "Seccomp": {"Mode": "unconfined"}}),
        );
        assert_eq!(
            security_opts(Some(&p)).unwrap(),
            ["credentialspec=registry://r", "seccomp=unconfined"]
        );
        let p = privileges(json!({"CredentialSpec": {"Config": "c"}}));
        assert_eq!(
            security_opts(Some(&p)).unwrap(),
            ["credentialspec=config://c"]
        );
    }

    /// Defaults set nothing, as Docker: the engine's own profiles apply.
    #[test]
    fn defaults_add_no_option() {
        let p = privileges(json!({
            "Seccomp": {"Mode": "default"}, "AppArmor": {"Mode": "default"},
            "NoNewPrivileges": false, "SELinuxContext": {"Disable": false}
        }));
        assert!(security_opts(Some(&p)).unwrap().is_empty());
        assert!(security_opts(None).unwrap().is_empty());
    }

    #[test]
    fn a_bad_seccomp_profile_is_an_invalid_spec() {
        let p = privileges(json!({"Seccomp": {"Mode": "custom", "Profile": "not base64!"}}));
        assert!(matches!(
            security_opts(Some(&p)),
            Err(ExecError::InvalidSpec(_))
        ));
    }
}
