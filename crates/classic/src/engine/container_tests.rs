use super::*;
use crate::scheduler::model::SWARM_ID_LABEL;

const ID: &str = "4f6f4c2b8a1e3d5c7b9a0e1f2d3c4b5a6f7e8d9c0b1a2f3e4d5c6b7a8f9e0d1c";

/// Trimmed from engine 20.10's `/containers/json?all=1`.
fn summary(state: &str) -> ContainerSummary {
    serde_json::from_str(&format!(
        r#"{{"Id":"{ID}","Names":["/web"],"Image":"nginx:1.25",
        "ImageID":"sha256:a8758716bb6a","Command":"/docker-entrypoint.sh nginx",
        "Created":1701945600,"Ports":[{{"IP":"0.0.0.0","PrivatePort":80,"PublicPort":8080,"Type":"tcp"}}],
        "Labels":{{"{SWARM_ID_LABEL}":"s1","tier":"front"}},"State":"{state}","Status":"Up 2 minutes",
        "HostConfig":{{"NetworkMode":"default"}},"Mounts":[]}}"#
    ))
    .unwrap()
}

/// Trimmed from engine 20.10's `/containers/{id}/json`.
fn inspect() -> ContainerInspectResponse {
    serde_json::from_str(&format!(
        r#"{{"Id":"{ID}","Created":"2023-12-07T10:40:00.123Z","Path":"/docker-entrypoint.sh",
        "State":{{"Status":"running","Running":true,"Paused":false,"Restarting":false,
          "OOMKilled":false,"Dead":false,"Pid":4242,"ExitCode":0,"Error":"",
          "StartedAt":"2023-12-07T10:40:01Z","FinishedAt":"0001-01-01T00:00:00Z"}},
        "Name":"/web","RestartCount":0,
        "HostConfig":{{"NetworkMode":"default","PortBindings":{{"80/tcp":[{{"HostIp":"","HostPort":"8080"}}],
          "443/tcp":[{{"HostIp":"127.0.0.1","HostPort":""}}]}},
          "CpuShares":512,"Memory":268435456,"MemoryReservation":0}},
        "Config":{{"Hostname":"4f6f4c2b8a1e","Image":"nginx:1.25",
          "ExposedPorts":{{"80/tcp":{{}},"443/tcp":{{}},"9000/udp":{{}}}},
          "Labels":{{"{SWARM_ID_LABEL}":"s1","tier":"front"}}}},
        "NetworkSettings":{{"Ports":{{"80/tcp":[{{"HostIp":"0.0.0.0","HostPort":"8080"}},{{"HostIp":"::","HostPort":"8080"}}],
          "443/tcp":[{{"HostIp":"127.0.0.1","HostPort":"49153"}}],"9000/udp":null}}}}}}"#
    ))
    .unwrap()
}

fn node() -> Node {
    Node {
        name: "node1".into(),
        cpus: 4,
        memory: 8 << 30,
        ..Default::default()
    }
}

fn inspects() -> HashMap<String, ContainerInspectResponse> {
    HashMap::from([(ID.to_string(), inspect())])
}

fn pb(port: &str, ip: &str, host: &str) -> PortBinding {
    PortBinding {
        container_port: port.into(),
        host_ip: ip.into(),
        host_port: host.into(),
    }
}

#[test]
fn inspect_gives_reservations_and_ports() {
    let c = from_inspect(&inspect(), 4);
    assert_eq!(c.cpu_shares, 2, "512 shares of 1024 on 4 CPUs reserve 2");
    assert_eq!(c.memory, 268435456);
    assert_eq!(
        c.port_bindings,
        [pb("443/tcp", "127.0.0.1", ""), pb("80/tcp", "", "8080")]
    );
    assert_eq!(
        c.published,
        [
            pb("443/tcp", "127.0.0.1", "49153"),
            pb("80/tcp", "0.0.0.0", "8080"),
            pb("80/tcp", "::", "8080"),
        ],
        "the unpublished 9000/udp holds nothing"
    );
    assert_eq!(c.exposed_ports, ["443/tcp", "80/tcp", "9000/udp"]);
    assert_eq!(c.network_mode, "default");
    assert_eq!(c.state, "running");
    assert_eq!(c.swarm_id(), "s1");
}

#[test]
fn unset_shares_reserve_no_cpu() {
    let mut i = inspect();
    i.host_config.as_mut().unwrap().cpu_shares = Some(0);
    assert_eq!(from_inspect(&i, 4).cpu_shares, 0);
}

#[test]
fn new_containers_need_inspect_known_ones_only_on_full_refresh() {
    let mut n = node();
    let list = [summary("running")];
    assert_eq!(n.to_inspect(&list, false), [ID]);
    n.merge_containers(&list, &inspects());
    assert!(n.to_inspect(&list, false).is_empty());
    assert_eq!(n.to_inspect(&list, true), [ID]);
    n.merge_containers(&[summary("restarting")], &HashMap::new());
    assert_eq!(
        n.to_inspect(&list, false),
        [ID],
        "restarting is re-inspected"
    );
}

#[test]
fn merge_takes_summary_fields_and_keeps_known_inspect() {
    let mut n = node();
    n.merge_containers(&[summary("running")], &inspects());
    assert_eq!(n.containers.len(), 1);
    assert_eq!(n.containers[0].names, ["/web"]);
    assert_eq!(n.used_cpus(), 2);
    // A soft refresh: no inspect, the summary's state wins, reservations stay.
    n.merge_containers(&[summary("exited")], &HashMap::new());
    assert_eq!(n.containers[0].state, "exited");
    assert_eq!(n.used_cpus(), 2);
    assert_eq!(n.used_memory(), 268435456);
}

#[test]
fn merge_skips_new_uninspected_drops_gone_and_pending() {
    let mut n = node();
    n.containers.push(Container {
        names: vec!["/pending".into()],
        ..Default::default()
    });
    n.containers.push(Container {
        id: "gone".into(),
        ..Default::default()
    });
    n.merge_containers(&[summary("running")], &HashMap::new());
    assert!(n.containers.is_empty(), "{:?}", n.containers);
}

#[test]
fn refresh_one_container_adds_updates_and_removes() {
    let mut n = node();
    assert!(n.refresh_container(ID, &[summary("running")], Some(&inspect())));
    assert_eq!(n.containers.len(), 1);
    assert!(n.refresh_container(ID, &[summary("paused")], None));
    assert_eq!(n.containers.len(), 1);
    assert_eq!(n.containers[0].state, "paused");
    assert_eq!(n.used_cpus(), 2);
    assert!(n.refresh_container(ID, &[], None));
    assert!(n.containers.is_empty());
}

#[test]
fn ambiguous_refresh_asks_for_a_full_one() {
    let mut n = node();
    n.refresh_container(ID, &[summary("running")], Some(&inspect()));
    let before = n.clone();
    assert!(!n.refresh_container(ID, &[summary("exited"), summary("exited")], None));
    assert_eq!(n, before);
}
