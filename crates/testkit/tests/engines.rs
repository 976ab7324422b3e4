//! The pool-of-engines fixture against real engines: what classic Swarm's tests rely on.
//! Each engine answers over TCP with its hostname and labels, runs containers (with
//! published ports), survives a kill with its containers, and can be hung and woken.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use swarmd_testkit::{
    EnginePool, Machine, REGISTRY_IMAGE, is_root, require, require_engine, wait_for,
};

fn require_machines() {
    require("root (network namespaces)", is_root());
    require_engine!();
}

/// `GET path` over a fresh TCP connection; the status line, or why there is none.
fn http_status(addr: &str, path: &str, timeout: Duration) -> Result<String, String> {
    let sock = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let mut s = TcpStream::connect_timeout(&sock, timeout).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&buf);
    Ok(text.lines().next().unwrap_or_default().to_string())
}

#[test]
#[ignore = "needs root and dockerd: scripts/test runs it"]
fn each_engine_of_a_pool_answers_over_tcp_with_its_name_and_labels_and_runs_containers() {
    require_machines();
    let started = Instant::now();
    let pool = EnginePool::start(&[&[("zone", "a"), ("disk", "ssd")], &[("zone", "b")]])
        .expect("a pool of 2 engines starts");
    eprintln!("pool of 2 up in {:.1?}", started.elapsed());

    let addrs = pool.addrs();
    assert_eq!(addrs.len(), 2);
    assert_ne!(addrs[0], addrs[1]);
    let want_labels = [vec!["disk=ssd", "zone=a"], vec!["zone=b"]];
    for (i, m) in pool.machines().iter().enumerate() {
        assert!(
            addrs[i].starts_with("10.77.") && addrs[i].ends_with(":2375"),
            "{addrs:?}"
        );
        assert_eq!(m.tcp_addr().as_deref(), Some(addrs[i].as_str()));
        assert_eq!(m.hostname(), format!("node-{i}"));
        let info = m
            .docker_tcp(&["info", "--format", "{{json .}}"])
            .ok()
            .json();
        assert_eq!(info["Name"], format!("node-{i}"));
        // In no particular order: dockerd keeps them in a map.
        let mut labels: Vec<&str> = info["Labels"]
            .as_array()
            .expect("Labels is a list")
            .iter()
            .filter_map(|l| l.as_str())
            .collect();
        labels.sort_unstable();
        assert_eq!(labels, want_labels[i]);

        // The default bridge: a plain container runs, and a published port answers on the
        // machine's address.
        m.docker_tcp(&["run", "-d", "busybox:latest", "sleep", "1d"])
            .ok();
        m.docker_tcp(&[
            "run",
            "-d",
            "-p",
            "8080:80",
            "busybox:latest",
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            "/etc",
        ])
        .ok();
        let host = addrs[i].replace(":2375", ":8080");
        let status = wait_for(
            Duration::from_secs(20),
            Duration::from_millis(100),
            "the published port to answer",
            || http_status(&host, "/hostname", Duration::from_secs(2)),
        );
        assert!(status.contains(" 200 "), "{host}: {status}");
        let running = m.docker_tcp(&["ps", "-q"]).ok();
        assert_eq!(running.lines().len(), 2, "{}", running.stdout);
    }
}

#[test]
#[ignore = "needs root and dockerd: scripts/test runs it"]
fn a_crashed_engine_goes_away_and_comes_back_with_its_containers() {
    require_machines();
    let mut pool = EnginePool::plain(1).expect("a pool of 1 starts");
    let addr = pool.addrs()[0].clone();
    let m = pool.machine_mut(0);
    m.docker_tcp(&[
        "run",
        "-d",
        "--name",
        "keeper",
        "busybox:latest",
        "sleep",
        "1d",
    ])
    .ok();

    m.stop_engine().expect("the machine crashes");
    assert!(!m.engine_running());
    let err = http_status(&addr, "/_ping", Duration::from_secs(2)).unwrap_err();
    assert!(
        err.starts_with("connect:"),
        "a killed engine refuses: {err}"
    );
    m.docker_tcp(&["info"]).fail();

    m.start_engine().expect("the engine starts again");
    assert!(m.engine_running());
    let names = m.docker_tcp(&["ps", "-a", "--format", "{{.Names}}"]).ok();
    assert_eq!(
        names.lines(),
        ["keeper"],
        "the container made before the kill"
    );
    m.docker_tcp(&["start", "keeper"]).ok();
    m.docker_tcp(&["info", "--format", "{{.Name}}"]).ok();

    // Twice: the second restart finds the pid files the first one left.
    m.stop_engine().unwrap();
    m.start_engine().unwrap();
    m.docker_tcp(&["inspect", "keeper"]).ok();
}

#[test]
#[ignore = "needs root and dockerd: scripts/test runs it"]
fn a_frozen_engine_accepts_connections_but_never_answers_until_thawed() {
    require_machines();
    let pool = EnginePool::plain(1).expect("a pool of 1 starts");
    let addr = pool.addrs()[0].clone();
    let m = pool.machine(0);
    assert!(
        http_status(&addr, "/_ping", Duration::from_secs(5))
            .unwrap()
            .contains(" 200 ")
    );

    m.freeze_engine().unwrap();
    let err = http_status(&addr, "/_ping", Duration::from_secs(1)).unwrap_err();
    assert!(err.starts_with("read:"), "connected, then silence: {err}");

    m.thaw_engine().unwrap();
    let status = http_status(&addr, "/_ping", Duration::from_secs(5)).unwrap();
    assert!(status.contains(" 200 "), "{status}");
    // Dropping a frozen engine's machine is fine too.
    m.freeze_engine().unwrap();
}

#[test]
#[ignore = "needs root and dockerd: scripts/test runs it"]
fn the_overlay_tests_machine_keeps_its_settings() {
    require_machines();
    let m = Machine::start("swm").expect("the overlay machine starts");
    assert_eq!(m.tcp_addr(), None, "unix socket only");
    let info = m
        .docker(&["info", "--format", "{{.Name}} {{json .Labels}}"])
        .ok();
    assert_eq!(info.stdout_trimmed(), format!("{} []", m.netns()));
    assert_eq!(m.hostname(), m.netns());
    let networks = m.docker(&["network", "ls", "--format", "{{.Name}}"]).ok();
    assert!(
        !networks.lines().contains(&"bridge"),
        "--bridge none: {}",
        networks.stdout
    );
}

#[test]
#[ignore = "needs root and dockerd: scripts/test runs it"]
fn an_engine_pulls_from_its_registry_and_is_refused_an_unknown_repository() {
    require_machines();
    let pool = EnginePool::plain(1).expect("a pool of 1 starts");
    let m = pool.machine(0);
    m.docker_tcp(&["image", "inspect", REGISTRY_IMAGE]).fail();
    // The preloaded busybox:latest is the same image: with it the pull would stop after
    // the manifest, and the blobs would go untested.
    m.docker_tcp(&["rmi", "busybox:latest"]).ok();

    let pulled = m.docker_tcp(&["pull", REGISTRY_IMAGE]).ok();
    assert!(
        pulled.stdout.contains("Pull complete")
            && pulled
                .stdout
                .contains("Status: Downloaded newer image for 127.0.0.1:5000/busybox:latest"),
        "layers fetched and registered: {}",
        pulled.stdout
    );
    let ran = m
        .docker_tcp(&["run", "--rm", REGISTRY_IMAGE, "echo", "pulled"])
        .ok();
    assert_eq!(ran.stdout_trimmed(), "pulled");

    // dockerd 20.10's words (distribution/errors.go) for the registry's DENIED (Docker
    // Hub's answer for a repository that does not exist) and MANIFEST_UNKNOWN; classic
    // Swarm matches `repository does not exist`.
    let refused = m.docker_tcp(&["pull", "127.0.0.1:5000/nope"]).fail();
    assert_eq!(
        refused.stderr.trim(),
        "Error response from daemon: pull access denied for 127.0.0.1:5000/nope, repository \
         does not exist or may require 'docker login': denied: requested access to the \
         resource is denied"
    );
    let refused = m.docker_tcp(&["pull", "127.0.0.1:5000/busybox:1.0"]).fail();
    assert_eq!(
        refused.stderr.trim(),
        "Error response from daemon: manifest for 127.0.0.1:5000/busybox:1.0 not found: \
         manifest unknown: manifest unknown"
    );
}

/// No host-wide lock, and everything per namespace: two pools (each with a `node-0` and a
/// registry on 127.0.0.1:5000) live at once in one process.
#[test]
#[ignore = "needs root and dockerd: scripts/test runs it"]
fn two_pools_live_side_by_side() {
    require_machines();
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| EnginePool::plain(1));
        let b = s.spawn(|| EnginePool::plain(1));
        (a.join().unwrap(), b.join().unwrap())
    });
    let (a, b) = (a.expect("pool A starts"), b.expect("pool B starts"));
    assert_ne!(a.addrs(), b.addrs());
    for pool in [&a, &b] {
        let name = pool
            .machine(0)
            .docker_tcp(&["info", "--format", "{{.Name}}"])
            .ok();
        assert_eq!(name.stdout_trimmed(), "node-0");
        // Its own registry answers (the pull stops after the manifest: same image).
        pool.machine(0).docker_tcp(&["pull", REGISTRY_IMAGE]).ok();
    }
}
