//! Two "machines" as network namespaces joined by a veth "wire", each with a bridge and a
//! "container" namespace on it: the VXLAN devices and flood peers this crate sets up carry
//! container-to-container traffic between the machines, and a VIP it adds to a bridge
//! answers the containers of that machine. Needs root, iproute2 and busybox: ignored unless
//! asked (scripts/test runs it).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::Command;

use swarmd_netplane::{Netplane, VxlanSpec, vxlan_ifname};

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

fn ping(ns: &str, addr: &str) -> bool {
    // busybox's ping: minimal hosts (and CI) have busybox-static but no iputils.
    ip(&["netns", "exec", ns, "busybox", "ping", "-c1", "-W2", addr])
        .status
        .success()
}

/// Deletes the test's namespaces (and with them every interface in them) on drop.
struct Namespaces(Vec<String>);
impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// Runs `f` with a [`Netplane`] connected inside namespace `ns`, on a thread of its own (a
/// netlink socket belongs to the namespace of the thread that opens it).
fn in_ns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce(Netplane) -> std::pin::Pin<Box<dyn Future<Output = T>>> + Send + 'static,
) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("namespace file");
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move { f(Netplane::connect().expect("netlink")).await })
    })
    .join()
    .expect("namespace thread")
}

#[test]
#[ignore = "needs root, iproute2 and busybox: scripts/test runs it"]
fn vxlan_joins_bridges_across_machines_and_vips_answer_locally() {
    swarmd_testkit::require(
        "root, iproute2 and busybox",
        swarmd_testkit::is_root()
            && swarmd_testkit::command_works("ip", &["netns", "list"])
            && swarmd_testkit::command_works("busybox", &["true"]),
    );
    let tag = format!("{:x}", std::process::id() & 0xffff);
    let (host_a, host_b) = (format!("swdA{tag}"), format!("swdB{tag}"));
    let (ctr_a, ctr_b) = (format!("swdCA{tag}"), format!("swdCB{tag}"));
    let _cleanup = Namespaces(vec![
        host_a.clone(),
        host_b.clone(),
        ctr_a.clone(),
        ctr_b.clone(),
    ]);
    for ns in [&host_a, &host_b, &ctr_a, &ctr_b] {
        ip_ok(&["netns", "add", ns]);
        ip_ok(&["-n", ns, "link", "set", "lo", "up"]);
    }
    // The wire between the machines: 192.168.251.1 <-> .2.
    ip_ok(&[
        "link", "add", "swdwa", "netns", &host_a, "type", "veth", "peer", "swdwb", "netns", &host_b,
    ]);
    for (ns, dev, addr) in [
        (&host_a, "swdwa", "192.168.251.1/24"),
        (&host_b, "swdwb", "192.168.251.2/24"),
    ] {
        ip_ok(&["-n", ns, "addr", "add", addr, "dev", dev]);
        ip_ok(&["-n", ns, "link", "set", dev, "up"]);
    }
    // On each machine a bridge (the gateway address, as the engine gives it) and a
    // container plugged into it.
    for (host, ctr, addr) in [
        (&host_a, &ctr_a, "10.251.0.10/24"),
        (&host_b, &ctr_b, "10.251.0.20/24"),
    ] {
        ip_ok(&["-n", host, "link", "add", "swdbr", "type", "bridge"]);
        ip_ok(&["-n", host, "addr", "add", "10.251.0.1/24", "dev", "swdbr"]);
        ip_ok(&["-n", host, "link", "set", "swdbr", "up"]);
        ip_ok(&[
            "-n", host, "link", "add", "swdport", "type", "veth", "peer", "eth0", "netns", ctr,
        ]);
        ip_ok(&[
            "-n", host, "link", "set", "swdport", "master", "swdbr", "up",
        ]);
        ip_ok(&["-n", ctr, "addr", "add", addr, "dev", "eth0"]);
        ip_ok(&["-n", ctr, "link", "set", "eth0", "up"]);
    }
    assert!(!ping(&ctr_a, "10.251.0.20"), "no path before the overlay");

    let vx = vxlan_ifname("testnetwork0001");
    for (host, local, peer) in [
        (&host_a, [192, 168, 251, 1], [192, 168, 251, 2]),
        (&host_b, [192, 168, 251, 2], [192, 168, 251, 1]),
    ] {
        let vx = vx.clone();
        let peers = in_ns(host, move |np| {
            Box::pin(async move {
                let spec = VxlanSpec {
                    name: vx,
                    vni: 4242,
                    local: Ipv4Addr::from(local),
                    bridge: "swdbr".into(),
                    // Not the default: a swarm's `--data-path-port` carries the overlay.
                    port: 7789,
                };
                let index = np.ensure_vxlan(&spec).await.unwrap();
                // Idempotent: a second pass changes nothing.
                assert_eq!(np.ensure_vxlan(&spec).await.unwrap(), index);
                let want: BTreeSet<Ipv4Addr> = [Ipv4Addr::from(peer)].into();
                np.set_flood_peers(index, &want).await.unwrap();
                np.set_flood_peers(index, &want).await.unwrap();
                np.flood_peers(index).await.unwrap()
            })
        });
        assert_eq!(peers, [Ipv4Addr::from(peer)].into());
    }
    assert!(ping(&ctr_a, "10.251.0.20"), "A's container reaches B's");
    assert!(ping(&ctr_b, "10.251.0.10"), "and back");

    // A VIP on A's bridge answers A's container; removing it takes it away.
    in_ns(&host_a, |np| {
        Box::pin(async move {
            np.set_host_addrs("swdbr", &[Ipv4Addr::new(10, 251, 0, 200)].into())
                .await
                .unwrap();
        })
    });
    assert!(ping(&ctr_a, "10.251.0.200"), "the VIP answers");
    let left = in_ns(&host_a, |np| {
        Box::pin(async move {
            np.set_host_addrs("swdbr", &BTreeSet::new()).await.unwrap();
            np.host_addrs("swdbr").await.unwrap()
        })
    });
    assert!(left.is_empty(), "{left:?}");
    let gw = ip(&["-n", &host_a, "addr", "show", "swdbr"]);
    assert!(
        String::from_utf8_lossy(&gw.stdout).contains("10.251.0.1/24"),
        "the gateway address is never touched"
    );

    // No peers left: the device floods nowhere; removing it is idempotent.
    let vx2 = vx.clone();
    in_ns(&host_a, move |np| {
        Box::pin(async move {
            let index = np.link_index(&vx2).await.unwrap().unwrap();
            np.set_flood_peers(index, &BTreeSet::new()).await.unwrap();
            assert!(np.flood_peers(index).await.unwrap().is_empty());
            np.remove_link(&vx2).await.unwrap();
            np.remove_link(&vx2).await.unwrap();
            assert_eq!(np.link_index(&vx2).await.unwrap(), None);
        })
    });
}
