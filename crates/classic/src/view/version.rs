//! `GET /version` of the virtual host (classic's `getVersion`): the manager's own version
//! as `swarm/<version>` and platform "Docker Swarm - Community", as classic answered, plus
//! what today's clients read: `MinAPIVersion` and an `Engine` component (the CLI 28.2
//! prints "API version: X (minimum version Y)" from it).

use serde_json::{Value, json};

use super::ManagerHost;

/// Classic's `Platform.Name`.
pub const PLATFORM: &str = "Docker Swarm - Community";

/// The manager's `/version`. `build_time` is RFC 3339, or empty when unknown.
pub fn version(host: &ManagerHost, build_time: &str) -> Value {
    let version = format!("swarm/{}", host.version);
    json!({
        "Platform": {"Name": PLATFORM},
        "Components": [{
            "Name": "Engine",
            "Version": version,
            "Details": {
                "ApiVersion": host.api_version,
                "MinAPIVersion": host.min_api_version,
                "GitCommit": host.git_commit,
                "GoVersion": "",
                "Os": host.os,
                "Arch": host.arch,
                "KernelVersion": host.kernel_version,
                "BuildTime": build_time,
                "Experimental": "false"
            }
        }],
        "Version": version,
        "ApiVersion": host.api_version,
        "MinAPIVersion": host.min_api_version,
        "GitCommit": host.git_commit,
        "GoVersion": "",
        "Os": host.os,
        "Arch": host.arch,
        "KernelVersion": host.kernel_version,
        "BuildTime": build_time
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swarm_version_with_the_api_range_the_cli_negotiates() {
        let host = ManagerHost {
            version: "0.1.0".into(),
            api_version: "1.50".into(),
            min_api_version: "1.24".into(),
            os: "linux".into(),
            arch: "x86_64".into(),
            kernel_version: "6.1.0".into(),
            ..Default::default()
        };
        let v = version(&host, "");
        assert_eq!(v["Version"], "swarm/0.1.0");
        assert_eq!(v["ApiVersion"], "1.50");
        assert_eq!(v["MinAPIVersion"], "1.24");
        assert_eq!(v["Os"], "linux");
        assert_eq!(v["Platform"]["Name"], "Docker Swarm - Community");
        let engine = &v["Components"][0];
        assert_eq!(engine["Name"], "Engine");
        assert_eq!(engine["Details"]["ApiVersion"], "1.50");
        assert_eq!(engine["Details"]["MinAPIVersion"], "1.24");
        let typed: bollard_stubs::models::SystemVersion = serde_json::from_value(v).unwrap();
        assert_eq!(typed.kernel_version.as_deref(), Some("6.1.0"));
    }
}
