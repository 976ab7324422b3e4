//! End to end: swarm networks with the docker CLI. `network create -d overlay` with IPAM
//! from the default pool, `ls/inspect/rm` with filters and Docker's errors, the `ingress`
//! network, `service create/update --network` (names resolved to IDs, VIPs, task
//! attachments), and, with a Docker Engine, `network ls` merging the engine's networks.

mod common;

use common::{Leave, POLL, T, process_node, running_tasks, task_field};
use swarmd_testkit::{Executor, engine_docker, require_engine, unique_name, wait_for};

fn inspect(n: &swarmd_testkit::Daemon, net: &str, format: &str) -> String {
    n.docker(&["network", "inspect", "--format", format, net])
        .ok()
        .stdout_trimmed()
        .to_string()
}

#[test]
fn overlay_networks_ipam_and_service_attachments() {
    let n = process_node("net");
    n.docker(&["swarm", "init"]).ok();
    let _l = Leave(&n);

    // The ingress network exists from init, as Docker's.
    assert_eq!(
        inspect(&n, "ingress", "{{.Ingress}} {{.Scope}} {{.Driver}}"),
        "true swarm overlay"
    );
    assert_eq!(
        inspect(
            &n,
            "ingress",
            "{{(index .IPAM.Config 0).Subnet}} {{(index .IPAM.Config 0).Gateway}}"
        ),
        "10.0.0.0/24 10.0.0.1"
    );

    // Subnets from the default pool in /24s; --subnet ones are skipped.
    let a = n
        .docker(&[
            "network",
            "create",
            "-d",
            "overlay",
            "--attachable",
            "--label",
            "tier=front",
            "front",
        ])
        .ok()
        .stdout_trimmed()
        .to_string();
    assert_eq!(
        inspect(&n, "front", "{{(index .IPAM.Config 0).Subnet}}"),
        "10.0.1.0/24"
    );
    assert_eq!(
        inspect(&n, "front", "{{.Attachable}} {{.Labels.tier}}"),
        "true front"
    );
    n.docker(&[
        "network",
        "create",
        "-d",
        "overlay",
        "--subnet",
        "10.0.2.0/24",
        "--gateway",
        "10.0.2.254",
        "fixed",
    ])
    .ok();
    assert_eq!(
        inspect(&n, "fixed", "{{(index .IPAM.Config 0).Gateway}}"),
        "10.0.2.254"
    );
    n.docker(&["network", "create", "-d", "overlay", "back"])
        .ok();
    assert_eq!(
        inspect(&n, "back", "{{(index .IPAM.Config 0).Subnet}}"),
        "10.0.3.0/24"
    );
    // By ID and ID prefix.
    assert_eq!(inspect(&n, &a, "{{.Name}}"), "front");
    assert_eq!(inspect(&n, &a[..8], "{{.Name}}"), "front");

    // Docker's errors.
    let dup = n
        .docker(&["network", "create", "-d", "overlay", "front"])
        .fail();
    assert!(
        dup.stderr
            .contains("network with name front already exists"),
        "{}",
        dup.stderr
    );
    let overlap = n
        .docker(&[
            "network",
            "create",
            "-d",
            "overlay",
            "--subnet",
            "10.0.1.128/25",
            "x",
        ])
        .fail();
    assert!(
        overlap
            .stderr
            .contains("Pool overlaps with other one on this address space"),
        "{}",
        overlap.stderr
    );
    let missing = n.docker(&["network", "inspect", "nosuch"]).fail();
    assert!(
        missing.stderr.contains("network nosuch not found"),
        "{}",
        missing.stderr
    );

    // ls and its filters (the process executor has no engine networks to merge).
    let ls = |args: &[&str]| {
        let mut a = vec!["network", "ls", "--format", "{{.Name}}"];
        a.extend_from_slice(args);
        let mut v: Vec<String> = n
            .docker(&a)
            .ok()
            .lines()
            .into_iter()
            .map(str::to_string)
            .collect();
        v.sort();
        v
    };
    assert_eq!(ls(&[]), ["back", "fixed", "front", "ingress"]);
    assert_eq!(ls(&["--filter", "label=tier=front"]), ["front"]);
    assert_eq!(
        ls(&["--filter", "driver=overlay", "--filter", "name=f"]),
        ["fixed", "front"]
    );
    assert_eq!(ls(&["--filter", "type=builtin"]), ["ingress"]);
    assert_eq!(ls(&["--filter", "scope=local"]), Vec::<String>::new());
    let bad = n.docker(&["network", "ls", "--filter", "type=x"]).fail();
    assert!(
        bad.stderr.contains("Invalid filter: 'type'='x'"),
        "{}",
        bad.stderr
    );

    // A service on two networks with a published port: names become IDs in the spec, one
    // VIP per network plus ingress, and each task an address on each.
    n.docker(&[
        "service",
        "create",
        "--name",
        "web",
        "--replicas",
        "2",
        "--network",
        "name=front,alias=www",
        "--network",
        "back",
        "-p",
        "8080:80",
        "busybox",
        "sleep",
        "600",
    ])
    .ok();
    let svc = n.docker(&["service", "inspect", "web"]).ok().json();
    let nets = svc[0]["Spec"]["TaskTemplate"]["Networks"]
        .as_array()
        .unwrap()
        .clone();
    let front = nets.iter().find(|x| x["Target"] == a.as_str());
    assert_eq!(
        front.map(|f| f["Aliases"][0].clone()),
        Some("www".into()),
        "{nets:?}"
    );
    assert!(
        nets.iter()
            .all(|x| x["Target"].as_str().unwrap().len() == 25),
        "{nets:?}"
    );
    let vips = svc[0]["Endpoint"]["VirtualIPs"].as_array().unwrap().clone();
    let mut addrs: Vec<&str> = vips.iter().map(|v| v["Addr"].as_str().unwrap()).collect();
    addrs.sort();
    assert_eq!(
        addrs,
        ["10.0.0.2/24", "10.0.1.2/24", "10.0.3.2/24"],
        "{vips:?}"
    );

    let tasks = wait_for(T, POLL, "two running tasks", || {
        let t = running_tasks(&n, "web");
        if t.len() == 2 {
            Ok(t)
        } else {
            Err(format!("{t:?}"))
        }
    });
    let mut task_addrs: Vec<String> = tasks
        .iter()
        .map(|t| {
            let f = "{{range .NetworksAttachments}}{{.Network.Spec.Name}}={{index .Addresses 0}} {{end}}";
            let mut v: Vec<String> = task_field(&n, t, f)
                .split_whitespace()
                .map(str::to_string)
                .collect();
            v.sort();
            v.join(" ")
        })
        .collect();
    task_addrs.sort();
    assert_eq!(
        task_addrs,
        [
            "back=10.0.3.3/24 front=10.0.1.3/24 ingress=10.0.0.3/24",
            "back=10.0.3.4/24 front=10.0.1.4/24 ingress=10.0.0.4/24",
        ]
    );

    // Unknown networks and dnsrr with ingress ports are refused as Docker does.
    let unknown = n
        .docker(&[
            "service",
            "create",
            "--name",
            "u",
            "--network",
            "nosuch",
            "busybox",
            "true",
        ])
        .fail();
    assert!(
        unknown.stderr.contains("network nosuch not found"),
        "{}",
        unknown.stderr
    );
    let dnsrr = n
        .docker(&[
            "service",
            "create",
            "--name",
            "d",
            "--endpoint-mode",
            "dnsrr",
            "-p",
            "81:80",
            "busybox",
            "true",
        ])
        .fail();
    assert!(
        dnsrr
            .stderr
            .contains("port published with ingress mode can't be used with dnsrr mode"),
        "{}",
        dnsrr.stderr
    );
    n.docker(&[
        "service",
        "create",
        "--name",
        "d",
        "--endpoint-mode",
        "dnsrr",
        "--network",
        "fixed",
        "busybox",
        "sleep",
        "600",
    ])
    .ok();
    let d = n.docker(&["service", "inspect", "d"]).ok().json();
    assert!(
        d[0]["Endpoint"]["VirtualIPs"].is_null(),
        "{}",
        d[0]["Endpoint"]
    );

    // In-use networks cannot be removed; `--network-rm` frees one and it can go.
    let inuse = n.docker(&["network", "rm", "back"]).fail();
    assert!(
        inuse.stderr.contains("is in use by service"),
        "{}",
        inuse.stderr
    );
    // The CLI asks before removing the routing mesh's network.
    let ingress_rm = n.docker_stdin(&["network", "rm", "ingress"], b"y\n").fail();
    assert!(
        ingress_rm
            .stderr
            .contains("ingress network cannot be removed because service"),
        "{}",
        ingress_rm.stderr
    );
    n.docker(&[
        "service",
        "update",
        "--detach",
        "--network-rm",
        "back",
        "web",
    ])
    .ok();
    let vips = n
        .docker(&[
            "service",
            "inspect",
            "--format",
            "{{len .Endpoint.VirtualIPs}}",
            "web",
        ])
        .ok();
    assert_eq!(vips.stdout_trimmed(), "2");
    n.docker(&["network", "rm", "back"]).ok();
    assert_eq!(ls(&[]), ["fixed", "front", "ingress"]);
    // The freed subnet is handed out again.
    n.docker(&["network", "create", "-d", "overlay", "again"])
        .ok();
    assert_eq!(
        inspect(&n, "again", "{{(index .IPAM.Config 0).Subnet}}"),
        "10.0.3.0/24"
    );
}

#[test]
#[ignore = "needs a Docker Engine: scripts/test runs it"]
fn engine_networks_are_listed_with_swarm_networks() {
    require_engine!();
    let n = common::daemon(Executor::Docker, &unique_name("dnet"));
    n.docker(&["swarm", "init"]).ok();
    let _l = Leave(&n);
    // A local network the test owns, to see it merged and refused for services.
    let local = unique_name("swlocal");
    engine_docker(&["network", "create", "--label", "swarmd-test=1", &local]).ok();
    struct Rm(String);
    impl Drop for Rm {
        fn drop(&mut self) {
            let _ = engine_docker(&["network", "rm", &self.0]);
        }
    }
    let _rm = Rm(local.clone());

    n.docker(&["network", "create", "-d", "overlay", "ov"]).ok();
    let all = n
        .docker(&["network", "ls", "--format", "{{.Name}} {{.Scope}}"])
        .ok();
    let lines = all.lines();
    assert!(lines.contains(&"bridge local"), "{lines:?}");
    assert!(lines.contains(&"ov swarm"), "{lines:?}");
    assert!(lines.contains(&"ingress swarm"), "{lines:?}");
    assert!(
        lines.contains(&format!("{local} local").as_str()),
        "{lines:?}"
    );
    // Filters apply to both lists.
    let only = n
        .docker(&[
            "network",
            "ls",
            "--filter",
            "label=swarmd-test=1",
            "--format",
            "{{.Name}}",
        ])
        .ok();
    assert!(only.lines().contains(&local.as_str()), "{:?}", only.lines());
    assert!(!only.lines().contains(&"ov"), "{:?}", only.lines());
    // Local networks inspect through the engine.
    assert_eq!(inspect(&n, "bridge", "{{.Scope}}"), "local");
    assert_eq!(inspect(&n, "ov", "{{.Scope}}"), "swarm");
    // Services cannot use local networks (the daemon's words).
    let refused = n
        .docker(&[
            "service",
            "create",
            "--name",
            "x",
            "--network",
            &local,
            "busybox",
            "true",
        ])
        .fail();
    assert!(
        refused
            .stderr
            .contains("Only networks scoped to the swarm can be used")
            || refused
                .stderr
                .contains(&format!("network {local} not found")),
        "{}",
        refused.stderr
    );
    n.docker(&["network", "rm", "ov"]).ok();
}
