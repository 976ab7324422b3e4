//! End to end: the routing mesh and host-mode publishing, 3 nodes on loopback addresses.
//! A published port answers on every node and reaches tasks on any node (both replicas
//! are hit); with no running task connections fail at once; the port is released by
//! `--publish-rm` and `service rm`; UDP flows go through too; `mode=host` binds only on
//! the node that runs the task.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use common::{Leave, POLL, T, three_nodes as cluster};
use swarmd_testkit::{
    Daemon, Executor, cleanup_engine_containers, require_engine, wait_for, wait_until,
};

/// An HTTP GET through a raw socket; the body (busybox httpd serves the task's hostname).
/// The timeout only keeps a broken mesh from hanging the test: "fails fast" is checked by
/// the kind of error, never by how long it took.
fn get(ip: IpAddr, port: u16) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&SocketAddr::new(ip, port), Duration::from_secs(10))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    match out.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.") && head.contains(" 200 ") => {
            Ok(body.trim().to_string())
        }
        _ if out.is_empty() => Err(std::io::ErrorKind::UnexpectedEof.into()),
        _ => Err(std::io::Error::other(format!("bad answer: {out:?}"))),
    }
}

/// A connection that fails by refusal or reset (or an immediate EOF), not by a timeout.
fn fails_fast(ip: IpAddr, port: u16) -> Result<(), String> {
    match get(ip, port) {
        Ok(body) => Err(format!("{ip}:{port} still answers: {body}")),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ) =>
        {
            panic!("{ip}:{port}: the connection hung ({e}) instead of failing")
        }
        Err(_) => Ok(()),
    }
}

/// Nothing listens on the port any more (connect refused).
fn refused(ip: IpAddr, port: u16) -> bool {
    matches!(
        TcpStream::connect_timeout(&SocketAddr::new(ip, port), Duration::from_secs(5)),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

/// Removes the engine containers of a node when the test ends.
struct Containers(String);
impl Drop for Containers {
    fn drop(&mut self) {
        cleanup_engine_containers(&format!("com.docker.swarm.node.id={}", self.0));
    }
}

fn node_id(n: &Daemon) -> String {
    n.docker(&["info", "--format", "{{.Swarm.NodeID}}"])
        .ok()
        .stdout_trimmed()
        .to_string()
}

/// Hostnames answering on every node's address, until both tasks have been seen from each.
fn both_tasks_answer_everywhere(nodes: &[Daemon], port: u16) {
    for n in nodes {
        let mut seen = std::collections::BTreeSet::new();
        wait_until(
            T,
            POLL,
            &format!("both tasks via {}", n.node_addr()),
            || {
                if let Ok(body) = get(n.node_addr(), port) {
                    seen.insert(body);
                }
                seen.len() == 2
            },
        );
    }
}

/// Whether node `n`'s kernel fast path holds a DNAT rule for `port` (its nftables table,
/// named after its process and address: `swarmd_netplane::ingress::table_name`).
fn kernel_rule(n: &Daemon, port: u16) -> bool {
    let (Some(pid), IpAddr::V4(addr)) = (n.pid(), n.node_addr()) else {
        return false;
    };
    let table = swarmd_netplane::ingress::table_name(pid, addr);
    let out = std::process::Command::new("nft")
        .args(["list", "table", "ip", &table])
        .output()
        .expect("nft runs");
    String::from_utf8_lossy(&out.stdout).contains(&format!("dport {port} dnat"))
}

const HTTPD: &str = "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www";

#[test]
#[ignore = "needs a Docker Engine: scripts/test runs it"]
fn ingress_port_answers_on_every_node_and_follows_the_tasks() {
    require_engine!();
    let nodes = cluster(Executor::Docker, "mesh");
    let _leave: Vec<Leave> = nodes.iter().rev().map(Leave).collect();
    let _containers: Vec<Containers> = nodes.iter().map(|n| Containers(node_id(n))).collect();
    let m = &nodes[0];
    let port = 8080;
    m.docker(&[
        "service",
        "create",
        "--detach",
        "--name",
        "web",
        "--replicas",
        "2",
        "-p",
        "8080:80",
        "busybox:latest",
        "sh",
        "-c",
        HTTPD,
    ])
    .ok();
    both_tasks_answer_everywhere(&nodes, port);
    // The tasks' host ports are bound (the engine's proxy), so the kernel forwards them.
    for n in &nodes {
        wait_until(T, POLL, "kernel rule", || kernel_rule(n, port));
    }

    // No running task: every node still holds the port, and connections fail at once.
    m.docker(&["service", "scale", "--detach", "web=0"]).ok();
    for n in &nodes {
        wait_for(T, POLL, "connections fail fast", || {
            fails_fast(n.node_addr(), port)
        });
    }
    m.docker(&["service", "scale", "--detach", "web=2"]).ok();
    both_tasks_answer_everywhere(&nodes, port);

    // An update that removes the port releases it on every node.
    m.docker(&["service", "update", "--detach", "--publish-rm", "80", "web"])
        .ok();
    for n in &nodes {
        wait_until(T, POLL, "port released", || refused(n.node_addr(), port));
        TcpListener::bind((n.node_addr(), port)).expect("the port is free on the node");
    }
    // Published again, then the service removed: released again.
    m.docker(&[
        "service",
        "update",
        "--detach",
        "--publish-add",
        "8080:80",
        "web",
    ])
    .ok();
    both_tasks_answer_everywhere(&nodes, port);
    m.docker(&["service", "rm", "web"]).ok();
    for n in &nodes {
        wait_until(T, POLL, "port released by rm", || {
            refused(n.node_addr(), port)
        });
        wait_until(T, POLL, "kernel rule gone with the service", || {
            !kernel_rule(n, port)
        });
    }
}

#[test]
#[ignore = "needs a Docker Engine: scripts/test runs it"]
fn host_mode_binds_only_where_the_task_runs() {
    require_engine!();
    let nodes = cluster(Executor::Docker, "host");
    let _leave: Vec<Leave> = nodes.iter().rev().map(Leave).collect();
    let _containers: Vec<Containers> = nodes.iter().map(|n| Containers(node_id(n))).collect();
    let m = &nodes[0];
    let port = 8081;
    let worker = nodes[1].hostname().expect("hostname").to_string();
    m.docker(&[
        "service",
        "create",
        "--detach",
        "--name",
        "hm",
        "--constraint",
        &format!("node.hostname=={worker}"),
        "--publish",
        "mode=host,published=8081,target=80",
        "busybox:latest",
        "sh",
        "-c",
        HTTPD,
    ])
    .ok();
    let body = wait_for(T, POLL, "the task's node answers", || {
        get(nodes[1].node_addr(), port)
    });
    assert!(!body.is_empty());
    for other in [&nodes[0], &nodes[2]] {
        assert!(
            refused(other.node_addr(), port),
            "{} must not listen",
            other.node_addr()
        );
    }
    // Shown like Docker: the task's status carries the host-mode port.
    let task = m
        .docker(&["service", "ps", "-q", "--no-trunc", "hm"])
        .ok()
        .stdout_trimmed()
        .to_string();
    let ports = m
        .docker(&[
            "inspect", "--type", "task", "--format",
            "{{range .Status.PortStatus.Ports}}{{.PublishedPort}}:{{.TargetPort}}/{{.Protocol}} {{.PublishMode}}{{end}}",
            &task,
        ])
        .ok()
        .stdout_trimmed()
        .to_string();
    assert_eq!(ports, "8081:80/tcp host");
    m.docker(&["service", "rm", "hm"]).ok();
    wait_until(T, POLL, "host port released", || {
        refused(nodes[1].node_addr(), port)
    });
}

/// The busybox image here has no UDP tools (its nc lacks -u), so the UDP flow runs
/// through process-executor tasks: a Python echo server on the port it is given.
const UDP_ECHO: &str = "import os,socket\n\
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
s.bind((os.environ['SWARMD_NODE_ADDR'],int(os.environ['PORT'])))\n\
while True:\n    d,a=s.recvfrom(2048); s.sendto(os.environ['SWARMD_TASK_ID'].encode()+b' '+d,a)\n";

#[test]
fn udp_flows_cross_the_mesh() {
    let nodes = cluster(Executor::Process, "udp");
    let _leave: Vec<Leave> = nodes.iter().rev().map(Leave).collect();
    let m = &nodes[0];
    let port = 5353;
    m.docker(&[
        "service",
        "create",
        "--detach",
        "--name",
        "echo",
        "--replicas",
        "2",
        "-p",
        "5353:9000/udp",
        "busybox:latest",
        "/usr/bin/python3",
        "-c",
        UDP_ECHO,
    ])
    .ok();
    for n in &nodes {
        let mut seen = std::collections::BTreeSet::new();
        wait_until(
            T,
            POLL,
            &format!("both tasks via {}", n.node_addr()),
            || {
                // A new client address each time: a new flow, balanced anew.
                let c = UdpSocket::bind((n.node_addr(), 0)).expect("udp client");
                c.set_read_timeout(Some(Duration::from_millis(500)))
                    .unwrap();
                c.connect((n.node_addr(), port)).unwrap();
                let _ = c.send(b"ping");
                let mut buf = [0u8; 2048];
                if let Ok(len) = c.recv(&mut buf) {
                    let reply = String::from_utf8_lossy(&buf[..len]).to_string();
                    let (task, rest) = reply.split_once(' ').expect("task id and payload");
                    assert_eq!(rest, "ping");
                    seen.insert(task.to_string());
                }
                seen.len() == 2
            },
        );
    }
    m.docker(&["service", "rm", "echo"]).ok();
    for n in &nodes {
        wait_until(T, POLL, "udp port released", || {
            UdpSocket::bind((n.node_addr(), port)).is_ok()
        });
    }
}
