//! UDP through the mesh: each client address is a flow with its own upstream socket,
//! connected to the backend chosen for its first datagram; replies go back from the
//! published port. A flow ends after [`IDLE`] without traffic either way, or when its
//! backend leaves the table.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backends::{Backends, Lease};

/// Idle time after which a flow is forgotten (Linux conntrack's UDP default).
const IDLE: Duration = Duration::from_secs(30);

struct Flow {
    upstream: Arc<UdpSocket>,
    backend: SocketAddr,
    /// Milliseconds since `epoch` of the last datagram either way.
    last: Arc<AtomicU64>,
    stop: CancellationToken,
}

type Flows = Arc<Mutex<HashMap<SocketAddr, Flow>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) async fn serve(
    sock: Arc<UdpSocket>,
    backends: Arc<Backends>,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    let flows: Flows = Arc::default();
    let epoch = Instant::now();
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            r = sock.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(error = %e, "mesh udp receive failed");
                    continue;
                }
            },
        };
        let now_ms = epoch.elapsed().as_millis() as u64;
        let existing = {
            let mut f = lock(&flows);
            match f.get(&peer) {
                Some(flow) if backends.contains(flow.backend) => {
                    flow.last.store(now_ms, Ordering::Relaxed);
                    Some(flow.upstream.clone())
                }
                Some(_) => {
                    // Its backend is gone: start over with a live one.
                    if let Some(old) = f.remove(&peer) {
                        old.stop.cancel();
                    }
                    None
                }
                None => None,
            }
        };
        let upstream = match existing {
            Some(u) => u,
            None => {
                let Some(lease) = backends.lease(&[]) else {
                    tracing::debug!(%peer, "no running task: datagram dropped");
                    continue;
                };
                match open_flow(&lease).await {
                    Ok(u) => {
                        let flow = Flow {
                            upstream: u.clone(),
                            backend: lease.addr,
                            last: Arc::new(AtomicU64::new(now_ms)),
                            stop: stop.child_token(),
                        };
                        tracker.spawn(replies(
                            sock.clone(),
                            peer,
                            flows.clone(),
                            u.clone(),
                            flow.last.clone(),
                            flow.stop.clone(),
                            epoch,
                            lease,
                        ));
                        lock(&flows).insert(peer, flow);
                        u
                    }
                    Err(e) => {
                        tracing::debug!(backend = %lease.addr, error = %e, "udp flow failed");
                        continue;
                    }
                }
            }
        };
        if let Err(e) = upstream.send(&buf[..n]).await {
            tracing::debug!(%peer, error = %e, "udp forward failed");
        }
    }
    for (_, f) in lock(&flows).drain() {
        f.stop.cancel();
    }
}

async fn open_flow(lease: &Lease) -> std::io::Result<Arc<UdpSocket>> {
    let bind: SocketAddr = if lease.addr.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let u = UdpSocket::bind(bind).await?;
    u.connect(lease.addr).await?;
    Ok(Arc::new(u))
}

/// Sends the backend's replies to the client until the flow idles out or is stopped.
#[allow(clippy::too_many_arguments)]
async fn replies(
    sock: Arc<UdpSocket>,
    peer: SocketAddr,
    flows: Flows,
    upstream: Arc<UdpSocket>,
    last: Arc<AtomicU64>,
    stop: CancellationToken,
    epoch: Instant,
    _lease: Lease,
) {
    let mut buf = vec![0u8; 65536];
    loop {
        let deadline = epoch + Duration::from_millis(last.load(Ordering::Relaxed)) + IDLE;
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until(deadline) => {
                if epoch + Duration::from_millis(last.load(Ordering::Relaxed)) + IDLE <= Instant::now() {
                    break;
                }
            }
            r = upstream.recv(&mut buf) => match r {
                Ok(n) => {
                    last.store(epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
                    if let Err(e) = sock.send_to(&buf[..n], peer).await {
                        tracing::debug!(%peer, error = %e, "udp reply failed");
                    }
                }
                // ICMP unreachable from a backend that went away, and the like.
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "udp upstream failed");
                    break;
                }
            },
        }
    }
    let mut f = lock(&flows);
    if f.get(&peer)
        .is_some_and(|fl| Arc::ptr_eq(&fl.upstream, &upstream))
    {
        f.remove(&peer);
    }
}
