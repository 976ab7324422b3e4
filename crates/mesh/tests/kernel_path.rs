//! The mesh's kernel fast path on two "machines" (network namespaces joined by a veth):
//! the node's machine runs the mesh and two tasks (sockets at its address), the other runs
//! a client and a third task. Each task answers with the peer address it saw, which tells
//! who forwarded the connection: the kernel (DNAT keeps the client's address) or the
//! user-space mesh (the task sees the mesh's own socket). Needs root, iproute2 and nftables
//! (scripts/ci-setup.sh): ignored unless asked (scripts/test runs it).

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use swarmd_mesh::Mesh;
use swarmd_types::dispatcher::{IngressBackend, IngressPort, IngressProtocol, IngressTable};
use tokio_util::sync::CancellationToken;

fn ip(args: &[&str]) -> std::process::Output {
    Command::new("ip").args(args).output().expect("ip runs")
}

fn ip_ok(args: &[&str]) {
    let out = ip(args);
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Deletes the test's namespaces (and every interface and nft table in them) on drop.
struct Namespaces(Vec<String>);
impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

fn enter(ns: &str) {
    let file = std::fs::File::open(format!("/run/netns/{ns}")).expect("namespace file");
    nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
}

/// A task: answers every connection with `name peer-address` (on a thread of its own, in
/// the namespace of the calling thread).
fn task(name: &'static str, addr: SocketAddrV4) -> SocketAddrV4 {
    let l = TcpListener::bind(addr).unwrap();
    let SocketAddr::V4(bound) = l.local_addr().unwrap() else {
        unreachable!()
    };
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let peer = s.peer_addr().unwrap();
            let _ = s.write_all(format!("{name} {peer}").as_bytes());
        }
    });
    bound
}

/// One request: the task's name and the peer it saw, or the connection error.
fn fetch(to: SocketAddrV4) -> std::io::Result<(String, SocketAddr, SocketAddr)> {
    let mut s = TcpStream::connect_timeout(&to.into(), Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let me = s.local_addr()?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let (name, peer) = out
        .split_once(' ')
        .ok_or_else(|| std::io::Error::other(format!("reset or bad answer: {out:?}")))?;
    Ok((name.to_string(), peer.parse().unwrap(), me))
}

fn port(published: u16, backends: &[SocketAddrV4]) -> IngressPort {
    IngressPort {
        protocol: IngressProtocol::Tcp,
        published_port: published,
        target_port: 80,
        service_id: format!("svc{published}"),
        service_name: format!("web{published}"),
        backends: backends
            .iter()
            .map(|a| IngressBackend {
                task_id: a.to_string(),
                addr: a.to_string(),
            })
            .collect(),
    }
}

fn nft_tables(ns: &str) -> String {
    let out = ip(&["netns", "exec", ns, "nft", "list", "tables", "ip"]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "needs root, iproute2 and nftables: scripts/test runs it"]
fn the_kernel_forwards_what_it_can_reach_and_user_space_the_rest() {
    swarmd_testkit::require(
        "root, iproute2 and nftables",
        swarmd_testkit::is_root()
            && swarmd_testkit::command_works("ip", &["netns", "list"])
            && swarmd_testkit::command_works("nft", &["--version"]),
    );
    let _ = tracing_subscriber::fmt()
        .with_env_filter("swarmd_mesh=debug")
        .with_test_writer()
        .try_init();
    let tag = format!("{:x}", std::process::id() & 0xffff);
    let (node_ns, other_ns) = (format!("swkN{tag}"), format!("swkO{tag}"));
    let _cleanup = Namespaces(vec![node_ns.clone(), other_ns.clone()]);
    for ns in [&node_ns, &other_ns] {
        ip_ok(&["netns", "add", ns]);
        ip_ok(&["-n", ns, "link", "set", "lo", "up"]);
    }
    ip_ok(&[
        "link", "add", "swkn", "netns", &node_ns, "type", "veth", "peer", "swko", "netns",
        &other_ns,
    ]);
    let (node_ip, other_ip) = (Ipv4Addr::new(10, 252, 0, 1), Ipv4Addr::new(10, 252, 0, 2));
    for (ns, dev, addr) in [
        (&node_ns, "swkn", "10.252.0.1/24"),
        (&other_ns, "swko", "10.252.0.2/24"),
    ] {
        ip_ok(&["-n", ns, "addr", "add", addr, "dev", dev]);
        ip_ok(&["-n", ns, "link", "set", dev, "up"]);
    }

    // The other machine's task.
    let other = other_ns.clone();
    let far = std::thread::spawn(move || {
        enter(&other);
        task("far", SocketAddrV4::new(other_ip, 0))
    })
    .join()
    .unwrap();

    // The node's machine: two tasks and the mesh, on this thread from here on.
    enter(&node_ns);
    let a = task("a", SocketAddrV4::new(node_ip, 0));
    let b = task("b", SocketAddrV4::new(node_ip, 0));
    // A task whose socket is gone: the kernel path leaves its port to user space.
    let dead = {
        let l = TcpListener::bind(SocketAddrV4::new(node_ip, 0)).unwrap();
        let SocketAddr::V4(a) = l.local_addr().unwrap() else {
            unreachable!()
        };
        a
    };
    // Its threads start in the node's namespace, as this one is now.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cancel = CancellationToken::new();
    let (tx, rx) = tokio::sync::watch::channel(IngressTable::default());
    let mesh = Mesh::new(node_ip.into(), cancel.clone()).with_kernel_path();
    let table_name = mesh.kernel_path().unwrap().table().to_string();
    // An orphan: the table of a mesh whose process is gone is removed at start.
    let orphan = "swarmd_ingress_999999999_10_252_0_1";
    let out = ip(&[
        "netns", "exec", &node_ns, "nft", "add", "table", "ip", orphan,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let running = rt.spawn(mesh.run(rx, |t: &IngressTable| Some(t.clone())));

    let local = move |p: u16| SocketAddrV4::new(node_ip, p);
    tx.send(IngressTable {
        ports: vec![
            port(18080, &[a, b]),
            port(18081, &[a, far]),
            port(18082, &[dead]),
            port(18083, &[]),
        ],
    })
    .unwrap();
    // Level-triggered: wait until the rules are in force.
    swarmd_testkit::wait_until(
        Duration::from_secs(20),
        Duration::from_millis(50),
        "the mesh's kernel rules",
        || {
            let out = ip(&[
                "netns",
                "exec",
                &node_ns,
                "nft",
                "list",
                "table",
                "ip",
                &table_name,
            ]);
            String::from_utf8_lossy(&out.stdout).contains("dport 18081")
        },
    );
    assert!(
        !nft_tables(&node_ns).contains(orphan),
        "orphaned table removed"
    );

    // Clients on the node's machine: both tasks, each connection handed over by the kernel
    // (the task sees the client's own socket).
    let mut seen = BTreeSet::new();
    for _ in 0..4 {
        let (name, peer, me) = fetch(local(18080)).unwrap();
        assert_eq!(peer, me, "kernel DNAT, not a proxy");
        seen.insert(name);
    }
    assert_eq!(seen, BTreeSet::from(["a".into(), "b".into()]));
    // A task on the other machine is reached from here by the kernel too.
    let mut seen = BTreeSet::new();
    for _ in 0..4 {
        let (name, peer, me) = fetch(local(18081)).unwrap();
        assert_eq!(peer.ip(), me.ip(), "kernel DNAT from the client's address");
        seen.insert(name);
    }
    assert_eq!(seen, BTreeSet::from(["a".into(), "far".into()]));
    // An unbound task: user space tries it and resets; no task at all: reset.
    for p in [18082, 18083] {
        let r = fetch(local(p));
        assert!(r.is_err(), "port {p}: {r:?}");
    }

    // A client on the other machine.
    let other = other_ns.clone();
    let remote = std::thread::spawn(move || {
        enter(&other);
        let all_local = (0..4)
            .map(|_| fetch(local(18080)).unwrap())
            .collect::<Vec<_>>();
        let mixed = (0..4)
            .map(|_| fetch(local(18081)).unwrap())
            .collect::<Vec<_>>();
        (all_local, mixed)
    })
    .join()
    .unwrap();
    for (name, peer, _) in &remote.0 {
        assert!(name == "a" || name == "b");
        assert_eq!(
            peer.ip(),
            std::net::IpAddr::V4(other_ip),
            "DNAT in prerouting"
        );
    }
    // Tasks on both machines: the kernel would have to forward, so user space serves
    // (the tasks see the mesh's socket on the node).
    for (_, peer, _) in &remote.1 {
        assert_eq!(peer.ip(), std::net::IpAddr::V4(node_ip), "user-space mesh");
    }

    // Shutdown removes the table.
    cancel.cancel();
    rt.block_on(running).unwrap();
    assert!(
        !nft_tables(&node_ns).contains(&table_name),
        "table removed on stop"
    );
}
