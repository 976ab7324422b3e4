//! The routing mesh: every node listens on every published ingress port (TCP and UDP) at
//! its node address and forwards each connection or UDP flow to a running task of the
//! service on any node, balanced by least connections.
//!
//! It is a user-space L4 proxy in tokio, so it works on kernels without IPVS (Docker's mesh
//! needs IPVS and fails there). TCP bytes move with `splice(2)` where the kernel allows.
//! The node follows the ingress table the dispatcher sends on its session: [`Mesh::run`]
//! opens listeners for new ports, swaps backend sets, and closes listeners of ports that
//! left the table. With no running task, a TCP connection is reset at once.
//!
//! With [`Mesh::with_kernel_path`], ports whose tasks the kernel can reach directly are
//! forwarded by nftables DNAT instead ([`kernel`]); the listeners stay bound as the ports'
//! owners and serve whatever the kernel does not take.

pub mod backends;
pub mod balancer;
pub mod kernel;
pub mod splice;
mod udp;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use swarmd_types::dispatcher::{IngressProtocol, IngressTable};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use backends::Backends;

/// How long a connection attempt to one backend may take before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How often ports that could not be bound are tried again.
const RETRY_BIND: Duration = Duration::from_secs(2);
/// How often the kernel path looks again at what the machine has (a task's socket bound
/// after its port entered the table, an engine's proxy restarted).
const RECHECK_KERNEL: Duration = Duration::from_secs(5);

/// A published port: protocol and port number.
pub type Key = (IngressProtocol, u16);

struct Listener {
    backends: Arc<Backends>,
    stop: CancellationToken,
    /// The accept loop; awaited on close so the port is free once `apply` returns.
    task: tokio::task::JoinHandle<()>,
}

/// What to change to go from the ports listened on to the table's ports.
#[derive(Debug, PartialEq, Eq)]
pub struct Plan {
    pub open: Vec<Key>,
    pub close: Vec<Key>,
}

/// Pure: the listeners to open and to close for `table`, given those open now.
pub fn plan(open_now: &BTreeSet<Key>, table: &IngressTable) -> Plan {
    let wanted: BTreeSet<Key> = table
        .ports
        .iter()
        .map(|p| (p.protocol, p.published_port))
        .collect();
    Plan {
        open: wanted.difference(open_now).copied().collect(),
        close: open_now.difference(&wanted).copied().collect(),
    }
}

/// The mesh of one node.
pub struct Mesh {
    ip: IpAddr,
    listeners: BTreeMap<Key, Listener>,
    /// Ports that could not be bound, with the last error (logged once per change).
    failed: BTreeMap<Key, String>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    /// nftables forwarding for the ports the kernel can take (`None`: user space only).
    kernel: Option<kernel::KernelPath>,
}

impl Mesh {
    /// A mesh listening on `ip` (the node's data-plane address). `cancel` ends it all,
    /// open connections included.
    pub fn new(ip: IpAddr, cancel: CancellationToken) -> Mesh {
        Mesh {
            ip,
            listeners: BTreeMap::new(),
            failed: BTreeMap::new(),
            cancel,
            tracker: TaskTracker::new(),
            kernel: None,
        }
    }

    /// Lets nftables forward the ports it can (IPv4 node addresses only); needs `nft` and
    /// CAP_NET_ADMIN, and falls back to user space, with a warning, without them.
    pub fn with_kernel_path(mut self) -> Mesh {
        match self.ip {
            IpAddr::V4(a) => self.kernel = Some(kernel::KernelPath::new(a)),
            IpAddr::V6(_) => {
                tracing::info!(addr = %self.ip, "mesh kernel path is IPv4 only; user space serves")
            }
        }
        self
    }

    /// The kernel path, when enabled.
    pub fn kernel_path(&self) -> Option<&kernel::KernelPath> {
        self.kernel.as_ref()
    }

    /// Ports listened on now.
    pub fn ports(&self) -> BTreeSet<Key> {
        self.listeners.keys().copied().collect()
    }

    /// Makes the listeners and backend sets match `table`.
    pub async fn apply(&mut self, table: &IngressTable) {
        let p = plan(&self.ports(), table);
        for key in p.close {
            if let Some(l) = self.listeners.remove(&key) {
                l.stop.cancel();
                let _ = l.task.await;
                tracing::info!(
                    protocol = key.0.as_str(),
                    port = key.1,
                    "mesh port released"
                );
            }
        }
        self.failed.retain(|k, _| {
            table
                .ports
                .iter()
                .any(|p| (p.protocol, p.published_port) == *k)
        });
        for key in p.open {
            match self.open(key).await {
                Ok(l) => {
                    tracing::info!(protocol = key.0.as_str(), port = key.1, addr = %self.ip, "mesh listening");
                    self.failed.remove(&key);
                    self.listeners.insert(key, l);
                }
                Err(e) => {
                    let msg = e.to_string();
                    if self.failed.get(&key) != Some(&msg) {
                        tracing::error!(
                            protocol = key.0.as_str(),
                            port = key.1,
                            addr = %self.ip,
                            error = %msg,
                            "cannot publish port on this node: bind failed (will retry)"
                        );
                    }
                    self.failed.insert(key, msg);
                }
            }
        }
        for port in &table.ports {
            let Some(l) = self.listeners.get(&(port.protocol, port.published_port)) else {
                continue;
            };
            let addrs: Vec<SocketAddr> = port
                .backends
                .iter()
                .filter_map(|b| match b.addr.parse() {
                    Ok(a) => Some(a),
                    Err(_) => {
                        tracing::warn!(backend = %b.addr, "unparsable backend address");
                        None
                    }
                })
                .collect();
            if l.backends.set(&addrs) {
                tracing::debug!(
                    protocol = port.protocol.as_str(),
                    port = port.published_port,
                    service = %port.service_name,
                    backends = ?addrs,
                    "mesh backends changed"
                );
            }
        }
        if let Some(k) = self.kernel.as_mut() {
            let held: BTreeSet<Key> = self.listeners.keys().copied().collect();
            k.sync(table, &held).await;
        }
    }

    async fn open(&self, (proto, port): Key) -> std::io::Result<Listener> {
        let backends = Arc::new(Backends::default());
        let stop = self.cancel.child_token();
        let addr = SocketAddr::new(self.ip, port);
        let task = match proto {
            IngressProtocol::Tcp => {
                let l = TcpListener::bind(addr).await?;
                self.tracker.spawn(serve_tcp(
                    l,
                    backends.clone(),
                    stop.clone(),
                    self.cancel.clone(),
                    self.tracker.clone(),
                ))
            }
            IngressProtocol::Udp => {
                let s = UdpSocket::bind(addr).await?;
                self.tracker.spawn(udp::serve(
                    Arc::new(s),
                    backends.clone(),
                    stop.clone(),
                    self.tracker.clone(),
                ))
            }
        };
        Ok(Listener {
            backends,
            stop,
            task,
        })
    }

    /// Follows a table source until cancelled: `get` extracts the table from each value
    /// (`None`: no table known, leave the mesh as it is). Then closes everything.
    pub async fn run<T: Send + Sync + 'static>(
        mut self,
        mut rx: watch::Receiver<T>,
        get: impl Fn(&T) -> Option<IngressTable>,
    ) {
        let mut table = IngressTable::default();
        if self.kernel.is_some() {
            kernel::KernelPath::remove_orphans().await;
        }
        loop {
            if let Some(t) = get(&rx.borrow_and_update()) {
                table = t;
            }
            self.apply(&table).await;
            let wake = if !self.failed.is_empty() {
                Some(RETRY_BIND)
            } else if self.kernel.is_some() && !table.ports.is_empty() {
                Some(RECHECK_KERNEL)
            } else {
                None
            };
            tokio::select! {
                _ = self.cancel.cancelled() => break,
                r = rx.changed() => if r.is_err() { self.cancel.cancelled().await; break },
                _ = tokio::time::sleep(wake.unwrap_or_default()), if wake.is_some() => {}
            }
        }
        if let Some(k) = self.kernel.as_mut() {
            k.remove().await;
        }
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// Refuses a connection at once: an RST rather than an accepted socket left waiting.
fn reset(s: TcpStream) {
    let _ = s.set_zero_linger();
    drop(s);
}

async fn serve_tcp(
    listener: TcpListener,
    backends: Arc<Backends>,
    stop: CancellationToken,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((s, peer)) => {
                if backends.is_empty() {
                    tracing::debug!(%peer, "no running task: connection reset");
                    reset(s);
                    continue;
                }
                let b = backends.clone();
                let c = cancel.clone();
                tracker.spawn(async move {
                    tokio::select! {
                        _ = c.cancelled() => {}
                        _ = connection(s, peer, b) => {}
                    }
                });
            }
            Err(e) => {
                // Out of descriptors and the like: don't spin.
                tracing::warn!(error = %e, "mesh accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// One client connection: reach a backend (trying the others if one fails), then forward.
async fn connection(client: TcpStream, peer: SocketAddr, backends: Arc<Backends>) {
    let mut failed = Vec::new();
    let (upstream, lease) = loop {
        let Some(lease) = backends.lease(&failed) else {
            tracing::debug!(%peer, ?failed, "no backend reachable: connection reset");
            reset(client);
            return;
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(lease.addr)).await {
            Ok(Ok(s)) => break (s, lease),
            Ok(Err(e)) => tracing::debug!(backend = %lease.addr, error = %e, "backend refused"),
            Err(_) => tracing::debug!(backend = %lease.addr, "backend connect timed out"),
        }
        failed.push(lease.addr);
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    match splice::forward(&client, &upstream).await {
        Ok((up, down)) => {
            tracing::trace!(%peer, backend = %lease.addr, up, down, "connection done")
        }
        Err(e) => tracing::debug!(%peer, backend = %lease.addr, error = %e, "connection ended"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use swarmd_types::dispatcher::{IngressBackend, IngressPort};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A published port of service "web" (target 80) with these running tasks.
    pub(crate) fn port(
        proto: IngressProtocol,
        published: u16,
        backends: &[SocketAddr],
    ) -> IngressPort {
        IngressPort {
            protocol: proto,
            published_port: published,
            target_port: 80,
            service_id: "s".into(),
            service_name: "web".into(),
            backends: backends
                .iter()
                .map(|a| IngressBackend {
                    task_id: a.to_string(),
                    addr: a.to_string(),
                })
                .collect(),
        }
    }

    #[test]
    fn plan_opens_new_ports_and_closes_gone_ones() {
        let now: BTreeSet<Key> = [(IngressProtocol::Tcp, 80), (IngressProtocol::Udp, 53)].into();
        let table = IngressTable {
            ports: vec![
                port(IngressProtocol::Tcp, 80, &[]),
                port(IngressProtocol::Tcp, 53, &[]),
            ],
        };
        assert_eq!(
            plan(&now, &table),
            Plan {
                open: vec![(IngressProtocol::Tcp, 53)],
                close: vec![(IngressProtocol::Udp, 53)],
            }
        );
    }

    /// A backend that answers each connection with its name.
    async fn named_backend(name: &'static str) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                tokio::spawn(async move {
                    let _ = s.write_all(name.as_bytes()).await;
                });
            }
        });
        addr
    }

    async fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    async fn fetch(addr: SocketAddr) -> std::io::Result<String> {
        let mut s = TcpStream::connect(addr).await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        Ok(out)
    }

    #[tokio::test]
    async fn forwards_balances_resets_when_empty_and_releases() {
        let a = named_backend("a").await;
        let b = named_backend("b").await;
        // A backend address nothing listens on: skipped after a refused connect.
        let dead: SocketAddr = format!("127.0.0.1:{}", free_port().await).parse().unwrap();
        let published = free_port().await;
        let front: SocketAddr = format!("127.0.0.1:{published}").parse().unwrap();
        let mut mesh = Mesh::new("127.0.0.1".parse().unwrap(), CancellationToken::new());

        mesh.apply(&IngressTable {
            ports: vec![port(IngressProtocol::Tcp, published, &[a, b, dead])],
        })
        .await;
        let mut seen = BTreeSet::new();
        for _ in 0..6 {
            seen.insert(fetch(front).await.unwrap());
        }
        assert_eq!(seen, BTreeSet::from(["a".to_string(), "b".to_string()]));

        // No running task: the port stays, connections fail at once.
        mesh.apply(&IngressTable {
            ports: vec![port(IngressProtocol::Tcp, published, &[])],
        })
        .await;
        assert!(fetch(front).await.is_err(), "reset, not served");

        mesh.apply(&IngressTable {
            ports: vec![port(IngressProtocol::Tcp, published, &[b])],
        })
        .await;
        assert_eq!(fetch(front).await.unwrap(), "b");

        // Gone from the table: the port is free again.
        mesh.apply(&IngressTable::default()).await;
        assert!(mesh.ports().is_empty());
        TcpListener::bind(front).await.expect("port released");
    }

    #[tokio::test]
    async fn a_taken_port_is_reported_not_fatal() {
        let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let p = taken.local_addr().unwrap().port();
        let mut mesh = Mesh::new("127.0.0.1".parse().unwrap(), CancellationToken::new());
        mesh.apply(&IngressTable {
            ports: vec![port(IngressProtocol::Tcp, p, &[])],
        })
        .await;
        assert!(mesh.ports().is_empty());
        assert!(mesh.failed.contains_key(&(IngressProtocol::Tcp, p)));
        drop(taken);
        mesh.apply(&IngressTable {
            ports: vec![port(IngressProtocol::Tcp, p, &[])],
        })
        .await;
        assert_eq!(mesh.ports().len(), 1, "bound once free");
    }

    #[tokio::test]
    async fn udp_flows_reach_a_backend_and_replies_come_back() {
        let echo = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let echo_addr = echo.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            loop {
                let (n, from) = echo.recv_from(&mut buf).await.unwrap();
                let mut reply = b"echo:".to_vec();
                reply.extend_from_slice(&buf[..n]);
                echo.send_to(&reply, from).await.unwrap();
            }
        });
        let published = UdpSocket::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut mesh = Mesh::new("127.0.0.1".parse().unwrap(), CancellationToken::new());
        mesh.apply(&IngressTable {
            ports: vec![port(IngressProtocol::Udp, published, &[echo_addr])],
        })
        .await;
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.connect(("127.0.0.1", published)).await.unwrap();
        let mut buf = [0u8; 1500];
        for msg in [&b"one"[..], b"two"] {
            client.send(msg).await.unwrap();
            let n = client.recv(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], [&b"echo:"[..], msg].concat());
        }
    }
}
