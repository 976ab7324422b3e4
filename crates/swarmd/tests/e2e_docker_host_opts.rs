//! End to end with the docker executor against the real Docker Engine: a service's
//! `TaskTemplate.LogDriver` and `ContainerSpec.Privileges` reach the task's container as
//! Docker's executor writes them (`HostConfig.LogConfig`, `HostConfig.SecurityOpt`), set
//! both by the docker CLI's flags and by the API; a service naming no log driver gets the
//! cluster's `TaskDefaults.LogDriver`.

mod common;

use std::time::Duration;

use common::daemon;
use serde_json::{Value, json};
use swarmd_testkit::{Daemon, Executor, engine_docker, require_engine, unique_name, wait_for};

const T: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(250);

/// The `HostConfig` of the service's one task container, once it exists.
fn host_config(service: &str) -> Value {
    let id = wait_for(T, POLL, "the task container", || {
        let out = engine_docker(&[
            "ps",
            "-a",
            "-q",
            "--filter",
            &format!("label=com.docker.swarm.service.name={service}"),
        ]);
        match out.lines().first() {
            Some(id) if !id.is_empty() => Ok(id.to_string()),
            _ => Err(out.report("docker ps")),
        }
    });
    let out = engine_docker(&["inspect", "--format", "{{json .HostConfig}}", &id]).ok();
    serde_json::from_str(out.stdout_trimmed()).expect("HostConfig is JSON")
}

#[test]
#[ignore = "needs a Docker Engine: scripts/test runs it"]
fn log_driver_and_privileges_reach_the_container() {
    require_engine!();
    let n: Daemon = daemon(Executor::Docker, &unique_name("dopts"));
    n.docker(&["swarm", "init"]).ok();
    let _c = common::EngineCleanup::new(&n);

    // The CLI's --log-driver / --log-opt.
    let cli = unique_name("dlog");
    n.docker(&[
        "service",
        "create",
        "-d",
        "--name",
        &cli,
        "--log-driver",
        "json-file",
        "--log-opt",
        "max-size=1m",
        "--log-opt",
        "max-file=2",
        "busybox:latest",
        "sleep",
        "1d",
    ])
    .ok();
    let hc = host_config(&cli);
    assert_eq!(
        hc["LogConfig"],
        json!({"Type": "json-file", "Config": {"max-size": "1m", "max-file": "2"}}),
        "{hc:#}"
    );

    // Privileges through the API (the CLI has no flags for most of them).
    let api = unique_name("dpriv");
    let spec = json!({
        "Name": api,
        "TaskTemplate": {
            "ContainerSpec": {
                "Image": "busybox:latest",
                "Command": ["sleep", "1d"],
                "Privileges": {
                    "NoNewPrivileges": true,
                    "Seccomp": {"Mode": "unconfined"},
                    "AppArmor": {"Mode": "disabled"}
                }
            },
            "LogDriver": {"Name": "local", "Options": {"max-size": "2m"}}
        }
    });
    let body = serde_json::to_vec(&spec).unwrap();
    let r = n
        .http("POST", "/v1.50/services/create", Some(&body))
        .expect("service create");
    assert_eq!(r.status, 201, "{}", r.text());
    let hc = host_config(&api);
    assert_eq!(
        hc["LogConfig"],
        json!({"Type": "local", "Config": {"max-size": "2m"}}),
        "{hc:#}"
    );
    assert_eq!(
        hc["SecurityOpt"],
        json!([
            "seccomp=unconfined",
            "apparmor=unconfined",
            "no-new-privileges=true"
        ]),
        "{hc:#}"
    );

    // The cluster's TaskDefaults.LogDriver applies to a service that names none.
    let r = n.http("GET", "/v1.50/swarm", None).expect("GET /swarm");
    let swarm: Value = serde_json::from_slice(&r.body).unwrap();
    let version = swarm["Version"]["Index"].as_u64().unwrap();
    let mut spec = swarm["Spec"].clone();
    spec["TaskDefaults"] = json!({"LogDriver": {"Name": "local", "Options": {"max-size": "3m"}}});
    let body = serde_json::to_vec(&spec).unwrap();
    let r = n
        .http(
            "POST",
            &format!("/v1.50/swarm/update?version={version}"),
            Some(&body),
        )
        .expect("swarm update");
    assert_eq!(r.status, 200, "{}", r.text());
    let plain = unique_name("ddefault");
    n.docker(&[
        "service",
        "create",
        "-d",
        "--name",
        &plain,
        "busybox:latest",
        "sleep",
        "1d",
    ])
    .ok();
    let hc = host_config(&plain);
    assert_eq!(
        hc["LogConfig"],
        json!({"Type": "local", "Config": {"max-size": "3m"}}),
        "{hc:#}"
    );
}
