//! End to end: service discovery and VIPs on an overlay network, 3 nodes on loopback
//! addresses with the docker executor. A task on the manager reaches a service whose tasks
//! run on the two workers by name (`http://api/`, through the VIP, both tasks answering),
//! `tasks.api` lists the task addresses, a dnsrr service and its alias resolve to its tasks,
//! and a VIP with no running task refuses at once.

mod common;

use std::collections::BTreeSet;

use common::{
    EngineCleanup, POLL, T, http_body, http_get_cmd, nslookup_answers, running_tasks,
    service_field, task_containers_args, task_field, three_nodes,
};
use swarmd_testkit::{Daemon, Executor, engine_docker, require_engine, wait_for, wait_until};

const HTTPD: &str = "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www";

/// The running engine container of `service` on the node `node_id`.
fn container_of(service: &str, node_id: &str) -> Option<String> {
    let args = task_containers_args(service, node_id);
    let out = engine_docker(&args.iter().map(String::as_str).collect::<Vec<_>>());
    out.success()
        .then(|| out.stdout_trimmed().lines().next().map(str::to_string))
        .flatten()
}

/// Runs a command in the client container (through the engine).
fn exec(container: &str, cmd: &[&str]) -> Result<String, String> {
    let mut args = vec!["exec", container];
    args.extend_from_slice(cmd);
    let out = engine_docker(&args);
    if out.success() {
        Ok(out.stdout_trimmed().to_string())
    } else {
        Err(out.report("exec"))
    }
}

/// `GET /` of `host` port 80 from the client container; the body (the answering task's
/// hostname). Busybox `nc`: the static busybox's `wget` crashes in these images.
fn http_get(container: &str, host: &str) -> Result<String, String> {
    let out = exec(container, &["sh", "-c", &http_get_cmd(host, "/")])?;
    http_body(&out, host).map(|b| b.trim().to_string())
}

/// The IPv4 addresses busybox `nslookup` gives for `name` (the server's own lines left out).
fn resolve(container: &str, name: &str) -> Result<BTreeSet<String>, String> {
    let out = exec(container, &["nslookup", "-type=a", name])?;
    nslookup_answers(&out, name)
}

/// The addresses of `service`'s tasks on the network, from `NetworksAttachments`.
fn task_addrs(m: &Daemon, service: &str) -> BTreeSet<String> {
    running_tasks(m, service)
        .iter()
        .map(|id| {
            let cidr = task_field(
                m,
                id,
                "{{range .NetworksAttachments}}{{range .Addresses}}{{.}}{{end}}{{end}}",
            );
            cidr.split('/').next().unwrap_or_default().to_string()
        })
        .collect()
}

/// Removes the engine's bridge networks of the swarm network when the test ends.
struct EngineNetwork(String);
impl Drop for EngineNetwork {
    fn drop(&mut self) {
        let out = engine_docker(&[
            "network",
            "ls",
            "-q",
            "--filter",
            &format!("label=com.swarmd.network.id={}", self.0),
        ]);
        for id in out.stdout_trimmed().lines() {
            let _ = engine_docker(&["network", "rm", id]);
        }
    }
}

#[test]
#[ignore = "needs a Docker Engine: scripts/test runs it"]
fn tasks_find_services_by_name_and_reach_them_through_the_vip_across_nodes() {
    require_engine!();
    let nodes = three_nodes(Executor::Docker, "disc");
    let cleanup: Vec<EngineCleanup> = nodes.iter().rev().map(EngineCleanup::new).collect();
    let manager_id = cleanup.last().expect("the manager").node_id.clone();
    let m = &nodes[0];
    let net = m
        .docker(&["network", "create", "-d", "overlay", "appnet"])
        .ok()
        .stdout_trimmed()
        .to_string();
    let _bridges = EngineNetwork(net.clone());
    let create = |args: &[&str]| {
        let mut a = vec![
            "service",
            "create",
            "--detach",
            "--stop-grace-period",
            "1s",
            "--network",
        ];
        a.extend_from_slice(args);
        m.docker(&a).ok();
    };
    create(&[
        "appnet",
        "--name",
        "api",
        "--replicas",
        "2",
        "--constraint",
        "node.role==worker",
        "--replicas-max-per-node",
        "1",
        "busybox:latest",
        "sh",
        "-c",
        HTTPD,
    ]);
    create(&[
        "name=appnet,alias=rr",
        "--name",
        "apirr",
        "--endpoint-mode",
        "dnsrr",
        "--replicas",
        "2",
        "--constraint",
        "node.role==worker",
        "busybox:latest",
        "sh",
        "-c",
        HTTPD,
    ]);
    create(&[
        "appnet",
        "--name",
        "client",
        "--constraint",
        "node.role==manager",
        "busybox:latest",
        "sleep",
        "3600",
    ]);
    let client = wait_for(T, POLL, "the client task runs on the manager", || {
        container_of("client", &manager_id).ok_or("not yet")
    });
    wait_until(T, POLL, "api and apirr tasks running", || {
        common::replicas(m, "api").starts_with("2/2") && common::replicas(m, "apirr") == "2/2"
    });

    // The service name is its VIP on the network.
    let vip = service_field(
        m,
        "api",
        &format!(
            "{{{{range .Endpoint.VirtualIPs}}}}{{{{if eq .NetworkID \"{net}\"}}}}{{{{.Addr}}}}{{{{end}}}}{{{{end}}}}"
        ),
    );
    let vip = vip.split('/').next().unwrap_or_default().to_string();
    assert!(!vip.is_empty(), "api has a VIP on appnet");
    let got = wait_for(T, POLL, "api resolves", || resolve(&client, "api"));
    assert_eq!(got, BTreeSet::from([vip.clone()]));

    // Through the VIP, both tasks (on the two workers) answer a task on the manager.
    let mut seen = BTreeSet::new();
    wait_until(T, POLL, "both api tasks answer http://api/", || {
        if let Ok(body) = http_get(&client, "api") {
            seen.insert(body);
        }
        seen.len() == 2
    });

    // tasks.<service>: the task addresses.
    let api_tasks = task_addrs(m, "api");
    assert_eq!(api_tasks.len(), 2);
    let got = wait_for(T, POLL, "tasks.api resolves", || {
        resolve(&client, "tasks.api")
    });
    assert_eq!(got, api_tasks);

    // dnsrr: the name and its alias give the task addresses; both answer HTTP.
    let rr_tasks = task_addrs(m, "apirr");
    assert_eq!(rr_tasks.len(), 2);
    for name in ["apirr", "rr"] {
        let got = wait_for(T, POLL, &format!("{name} resolves"), || {
            resolve(&client, name)
        });
        assert_eq!(got, rr_tasks, "{name}");
    }
    wait_for(T, POLL, "http://rr/ answers", || http_get(&client, "rr"));

    // With no running task the VIP refuses at once (a reset, not a timeout).
    m.docker(&["service", "scale", "--detach", "api=0"]).ok();
    wait_for(T, POLL, "the VIP refuses", || {
        match http_get(&client, "api") {
            Ok(body) => Err(format!("still answers: {body}")),
            Err(e) if e.contains("refused") => Ok(()),
            Err(e) if e.contains("timed out") => panic!("the VIP hung instead of refusing: {e}"),
            Err(e) => Err(e),
        }
    });
    drop(cleanup);
}
