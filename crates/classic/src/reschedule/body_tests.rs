use serde_json::json;

use super::*;
use crate::scheduler::model::PortBinding;

fn inspect() -> Value {
    json!({
        "Id": "0123456789abcdef0123",
        "Name": "/web",
        "Created": "2026-12-07T10:00:00Z",
        "State": {"Status": "running", "Running": true},
        "Config": {
            "Hostname": "0123456789ab",
            "Image": "busybox:latest",
            "Cmd": ["sleep", "1d"],
            "Env": ["A=1"],
            "Labels": {
                "com.docker.swarm.id": "sid",
                "com.docker.swarm.reschedule-policies": "[\"on-node-failure\"]"
            },
            "ExposedPorts": {"80/tcp": {}}
        },
        "HostConfig": {
            "CpuShares": 512,
            "Memory": 1024,
            "PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]},
            "Links": ["/db:/web/db"],
            "VolumesFrom": ["data"],
            "RestartPolicy": {"Name": "always", "MaximumRetryCount": 0}
        },
        "NetworkSettings": {
            "IPAddress": "172.17.0.2",
            "Networks": {
                "bridge": {
                    "IPAMConfig": null,
                    "Links": null,
                    "Aliases": null,
                    "NetworkID": "n1",
                    "EndpointID": "e1",
                    "Gateway": "172.17.0.1",
                    "IPAddress": "172.17.0.2",
                    "IPPrefixLen": 16,
                    "MacAddress": "02:42:ac:11:00:02"
                },
                "back": {
                    "IPAMConfig": {"IPv4Address": "10.1.0.9"},
                    "Aliases": ["api", "0123456789ab"],
                    "NetworkID": "n2",
                    "IPAddress": "10.1.0.9"
                }
            }
        }
    })
}

#[test]
fn resched_body_is_config_hostconfig_and_configured_endpoints() {
    let body = create_body(&inspect()).unwrap();
    assert_eq!(body["Image"], "busybox:latest");
    assert_eq!(body["Cmd"], json!(["sleep", "1d"]));
    assert_eq!(body["Env"], json!(["A=1"]));
    assert_eq!(
        body["Labels"]["com.docker.swarm.id"], "sid",
        "same Swarm ID"
    );
    assert_eq!(body["ExposedPorts"], json!({"80/tcp": {}}));
    assert_eq!(body["HostConfig"]["RestartPolicy"]["Name"], "always");
    assert_eq!(
        body["HostConfig"]["PortBindings"]["80/tcp"][0]["HostPort"],
        "8080"
    );
    assert_eq!(
        body["NetworkingConfig"]["EndpointsConfig"],
        json!({
            "bridge": {},
            "back": {"IPAMConfig": {"IPv4Address": "10.1.0.9"}, "Aliases": ["api"]}
        }),
        "the engine's own endpoint state and the old short-ID alias are left out"
    );
    assert!(body.get("State").is_none() && body.get("Id").is_none());
}

#[test]
fn resched_name_drops_the_slash_and_a_nameless_container_cannot_move() {
    assert_eq!(name_of(&inspect()).unwrap(), "web");
    let err = name_of(&json!({"Id": "abc", "Name": "/"})).unwrap_err();
    assert_eq!(err.to_string(), "container abc has no name");
    let err = create_body(&json!({"Id": "abc"})).unwrap_err();
    assert_eq!(err, BodyError::NoConfig("abc".into()));
}

#[test]
fn resched_shares_follow_the_new_engine_cpus() {
    let body = create_body(&inspect()).unwrap();
    // 512 shares on a 4-CPU engine reserved 2 CPUs; on an 8-CPU one that is 256 shares.
    assert_eq!(for_engine(&body, 2, 8)["HostConfig"]["CpuShares"], 256);
    assert_eq!(for_engine(&body, 0, 8)["HostConfig"]["CpuShares"], 0);
}

#[test]
fn resched_request_reserves_what_the_old_container_held() {
    let body = create_body(&inspect()).unwrap();
    let c = Container {
        image: "busybox:latest".into(),
        cpu_shares: 2,
        memory: 1024,
        port_bindings: vec![PortBinding {
            container_port: "80/tcp".into(),
            host_ip: String::new(),
            host_port: "8080".into(),
        }],
        ..Default::default()
    };
    let r = request_for(&c, &body);
    assert_eq!((r.cpu_shares, r.memory), (2, 1024));
    assert_eq!(r.port_bindings[0].host_port, "8080");
    assert_eq!(r.links, ["/db:/web/db"]);
    assert_eq!(r.volumes_from, ["data"]);
}
