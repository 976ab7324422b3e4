//! The mesh's kernel fast path: which published ports nftables can forward itself.
//!
//! The rules and their table are `swarmd_netplane::ingress`; this module decides, from the
//! ingress table and what the machine has, which ports get a rule. A port qualifies when
//! the kernel can hand each of its connections straight to any of its tasks:
//!
//! - a task on another machine is fine for clients on this one (the output hook reroutes);
//! - a task on this machine must have a socket bound at its address (a process, or the
//!   engine's docker-proxy). A host port that only the engine's own DNAT serves (docker
//!   with `userland-proxy: false`) would see its DNAT skipped after ours, so such a port
//!   stays with the user-space mesh, which connects to it like any client;
//! - clients on other machines are DNATed only when every task is on this machine and
//!   bound (no forwarding needed; see the netplane module).
//!
//! Anything that does not qualify, and everything when `nft` fails, is served by the
//! user-space listeners, which stay bound either way.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};

use procfs_core::net::{TcpNetEntries, TcpState, UdpNetEntries, UdpState};
use procfs_core::{ExplicitSystemInfo, FromBufReadSI};
use swarmd_netplane::ingress::{IngressRule, L4, owner_pid, ruleset, table_name};
use swarmd_netplane::nft;
use swarmd_types::dispatcher::{IngressProtocol, IngressTable};

use crate::Key;

/// Where a backend is, as the kernel path sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// On another machine.
    Remote,
    /// On this machine, with a socket bound at its address.
    LocalBound,
    /// On this machine, nothing bound at its address.
    LocalUnbound,
}

fn l4(p: IngressProtocol) -> L4 {
    match p {
        IngressProtocol::Tcp => L4::Tcp,
        IngressProtocol::Udp => L4::Udp,
    }
}

/// Pure: the kernel rules for the ports the mesh holds (`held`), given where each backend
/// is. Ports with an unparsable, IPv6 or unbound local backend get no rule.
pub fn rules(
    addr: Ipv4Addr,
    table: &IngressTable,
    held: &BTreeSet<Key>,
    mut reach: impl FnMut(L4, SocketAddrV4) -> Reach,
) -> Vec<IngressRule> {
    let mut out = Vec::new();
    for p in &table.ports {
        if !held.contains(&(p.protocol, p.published_port)) || p.backends.is_empty() {
            continue;
        }
        let proto = l4(p.protocol);
        let backends: Option<Vec<(SocketAddrV4, Reach)>> = p
            .backends
            .iter()
            .map(|b| match b.addr.parse::<SocketAddr>() {
                Ok(SocketAddr::V4(a)) => Some((a, reach(proto, a))),
                _ => None,
            })
            .collect();
        let Some(backends) = backends else { continue };
        if backends.iter().any(|(_, r)| *r == Reach::LocalUnbound) {
            continue;
        }
        out.push(IngressRule {
            protocol: proto,
            addr,
            port: p.published_port,
            from_other_machines: backends.iter().all(|(_, r)| *r == Reach::LocalBound),
            backends: backends.into_iter().map(|(a, _)| a).collect(),
        });
    }
    out
}

/// Sockets bound on this machine (in the calling thread's network namespace): TCP
/// listeners and unconnected UDP sockets.
#[derive(Debug, Default)]
pub struct Bound(BTreeSet<(L4, SocketAddr)>);

impl Bound {
    /// Reads `/proc/thread-self/net/{tcp,tcp6,udp,udp6}`; a table that cannot be read
    /// counts as empty (its ports then stay with the user-space mesh).
    pub fn read() -> Bound {
        let si = ExplicitSystemInfo {
            boot_time_secs: 0,
            ticks_per_second: 100,
            page_size: 4096,
            is_little_endian: cfg!(target_endian = "little"),
        };
        let mut set = BTreeSet::new();
        for f in ["tcp", "tcp6"] {
            let path = format!("/proc/thread-self/net/{f}");
            if let Ok(file) = std::fs::File::open(&path)
                && let Ok(t) = TcpNetEntries::from_buf_read(std::io::BufReader::new(file), &si)
            {
                set.extend(
                    t.0.into_iter()
                        .filter(|e| e.state == TcpState::Listen)
                        .map(|e| (L4::Tcp, e.local_address)),
                );
            }
        }
        for f in ["udp", "udp6"] {
            let path = format!("/proc/thread-self/net/{f}");
            if let Ok(file) = std::fs::File::open(&path)
                && let Ok(t) = UdpNetEntries::from_buf_read(std::io::BufReader::new(file), &si)
            {
                set.extend(
                    t.0.into_iter()
                        .filter(|e| e.state == UdpState::Close)
                        .map(|e| (L4::Udp, e.local_address)),
                );
            }
        }
        Bound(set)
    }

    /// Whether a socket would take a packet for `a`: bound to it, to the IPv4 wildcard, to
    /// the IPv6 wildcard (dual stack), or to `a` mapped into IPv6.
    pub fn covers(&self, proto: L4, a: SocketAddrV4) -> bool {
        let port = a.port();
        [
            IpAddr::V4(*a.ip()),
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
            IpAddr::V6(a.ip().to_ipv6_mapped()),
        ]
        .into_iter()
        .any(|ip| self.0.contains(&(proto, SocketAddr::new(ip, port))))
    }
}

/// Whether `ip` is an address of this machine (binding to it works).
fn is_local(ip: Ipv4Addr) -> bool {
    ip.is_loopback() || std::net::UdpSocket::bind((ip, 0)).is_ok()
}

/// The node's kernel path: its table and what was last put there.
pub struct KernelPath {
    addr: Ipv4Addr,
    table: String,
    /// The script in force (`None`: nothing applied yet, or the table was removed).
    applied: Option<String>,
    /// The last error, logged once per change.
    failed: Option<String>,
}

impl KernelPath {
    /// The kernel path of this process's mesh on `addr`.
    pub fn new(addr: Ipv4Addr) -> KernelPath {
        KernelPath {
            addr,
            table: table_name(std::process::id(), addr),
            applied: None,
            failed: None,
        }
    }

    /// The nftables table this path writes.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Makes the kernel rules match `table` for the ports held by the mesh. On failure the
    /// table is removed, so nothing stale stays in force, and the user-space mesh serves.
    pub async fn sync(&mut self, table: &IngressTable, held: &BTreeSet<Key>) {
        let bound = Bound::read();
        let mut local: BTreeMap<Ipv4Addr, bool> = BTreeMap::new();
        let rules = rules(self.addr, table, held, |proto, a| {
            let is_local = *local.entry(*a.ip()).or_insert_with(|| is_local(*a.ip()));
            match (is_local, bound.covers(proto, a)) {
                (false, _) => Reach::Remote,
                (true, true) => Reach::LocalBound,
                (true, false) => Reach::LocalUnbound,
            }
        });
        let script = ruleset(&self.table, &rules);
        if self.applied.as_deref() == Some(script.as_str()) {
            return;
        }
        match nft::run(None, &script).await {
            Ok(()) => {
                tracing::debug!(table = %self.table, ports = rules.len(), "mesh kernel rules applied");
                if self.failed.take().is_some() {
                    tracing::info!(table = %self.table, "mesh kernel path working again");
                }
                self.applied = Some(script);
            }
            Err(e) => {
                let msg = e.to_string();
                if self.failed.as_deref() != Some(msg.as_str()) {
                    tracing::warn!(
                        table = %self.table,
                        error = %msg,
                        "mesh kernel path unavailable; published ports served in user space"
                    );
                }
                self.failed = Some(msg);
                self.remove().await;
            }
        }
    }

    /// Removes the table (on leave and shutdown, and after a failed apply).
    pub async fn remove(&mut self) {
        self.applied = None;
        if let Err(e) = nft::run(None, &nft::delete_table(&self.table)).await {
            tracing::debug!(table = %self.table, error = %e, "removing mesh kernel table");
        }
    }

    /// Removes the tables of meshes whose process is gone (a node killed without its
    /// clean-up), so their rules cannot catch a later node's traffic.
    pub async fn remove_orphans() {
        let Ok(tables) = nft::ip_tables().await else {
            return;
        };
        for t in tables {
            let Some(pid) = owner_pid(&t) else { continue };
            if std::path::Path::new(&format!("/proc/{pid}")).exists() {
                continue;
            }
            match nft::run(None, &nft::delete_table(&t)).await {
                Ok(()) => {
                    tracing::info!(table = %t, pid, "removed the mesh table of a gone process")
                }
                Err(e) => {
                    tracing::debug!(table = %t, error = %e, "removing an orphaned mesh table")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::port as port_of;
    use swarmd_types::dispatcher::IngressPort;

    fn port(proto: IngressProtocol, published: u16, backends: &[&str]) -> IngressPort {
        let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.parse().unwrap()).collect();
        port_of(proto, published, &addrs)
    }

    fn reach_by_ip(proto: L4, a: SocketAddrV4) -> Reach {
        match (a.ip().octets()[0], proto) {
            (10, _) => Reach::Remote,
            (_, L4::Udp) => Reach::LocalUnbound,
            _ => Reach::LocalBound,
        }
    }

    #[test]
    fn only_held_ports_whose_backends_the_kernel_can_reach() {
        use IngressProtocol::{Tcp, Udp};
        let table = IngressTable {
            ports: vec![
                port(Tcp, 80, &["127.0.0.2:32768", "127.0.0.3:32769"]),
                port(Tcp, 81, &["127.0.0.2:32770", "10.0.0.9:32771"]),
                port(Udp, 53, &["127.0.0.2:32772"]),
                port(Tcp, 82, &[]),
                port(Tcp, 83, &["[::1]:32773"]),
                port(Tcp, 84, &["127.0.0.2:32774"]),
            ],
        };
        let held: BTreeSet<Key> = [(Tcp, 80), (Tcp, 81), (Udp, 53), (Tcp, 82), (Tcp, 83)].into();
        let r = rules("127.0.0.2".parse().unwrap(), &table, &held, reach_by_ip);
        let ports: Vec<(u16, bool, usize)> = r
            .iter()
            .map(|r| (r.port, r.from_other_machines, r.backends.len()))
            .collect();
        // 80: all local and bound, for every client. 81: a remote task, local clients only.
        // 53: an unbound local task; 82: no task; 83: IPv6; 84: not held (bind failed).
        assert_eq!(ports, vec![(80, true, 2), (81, false, 2)]);
    }

    #[test]
    fn bound_sockets_cover_their_address_and_wildcards() {
        let a: SocketAddrV4 = "127.0.0.2:8080".parse().unwrap();
        let on = |ip: &str| Bound([(L4::Tcp, SocketAddr::new(ip.parse().unwrap(), 8080))].into());
        assert!(on("127.0.0.2").covers(L4::Tcp, a));
        assert!(on("0.0.0.0").covers(L4::Tcp, a));
        assert!(on("::").covers(L4::Tcp, a));
        assert!(on("::ffff:127.0.0.2").covers(L4::Tcp, a));
        assert!(!on("127.0.0.3").covers(L4::Tcp, a));
        assert!(!on("127.0.0.2").covers(L4::Udp, a));
    }

    #[test]
    fn reads_this_namespaces_listeners() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let SocketAddr::V4(a) = l.local_addr().unwrap() else {
            unreachable!()
        };
        assert!(Bound::read().covers(L4::Tcp, a));
        drop(l);
        assert!(!Bound::read().covers(L4::Tcp, a));
        assert!(is_local("127.0.0.5".parse().unwrap()));
        assert!(!is_local("192.0.2.77".parse().unwrap()));
    }
}
