//! The leader's tunnel hub: who can be asked for a tunnel to its engine, and which asked-for
//! tunnels are awaited (issue 17).
//!
//! Workers listen on no port, so a manager cannot dial a node's agent: each agent keeps a
//! standing subscription on the leader ([`TunnelHub::subscribe`]), the leader asks through
//! it for a tunnel by ID ([`TunnelHub::open`]) and the agent answers by opening that tunnel
//! ([`TunnelHub::accept`]). A tunnel ID is bound to the node it was asked of, so no other
//! node can answer (or spoil) it. Pure bookkeeping over channels: what a tunnel carries is
//! `T`, the RPC layer's business.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::sync::{mpsc, oneshot};

/// How long the leader waits for a node to open a tunnel it asked for.
pub const ACCEPT_WITHIN: Duration = Duration::from_secs(5);

/// Tunnel requests queued for one node that has not read them yet; beyond this the node
/// is not keeping up and further opens fail at once.
const OFFER_QUEUE: usize = 64;

/// Why a tunnel could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    /// The node keeps no subscription with this manager (down, or on another leader).
    #[error("node {0} is not connected")]
    NotConnected(String),
    /// The node did not open the tunnel in time.
    #[error("node {node} did not open the tunnel within {within:?}")]
    Timeout { node: String, within: Duration },
    /// The node answered that it cannot reach its engine.
    #[error("node {node} cannot reach its engine: {reason}")]
    Refused { node: String, reason: String },
    /// The node has [`OFFER_QUEUE`] requests it has not read.
    #[error("node {0} is not taking tunnels")]
    Busy(String),
    /// An answer to a tunnel that was not asked of this node (or no longer awaited).
    #[error("tunnel {tunnel} was not asked of node {node}")]
    NotAsked { tunnel: String, node: String },
}

/// A node's subscription as the hub holds it.
struct Offer {
    generation: u64,
    tx: mpsc::Sender<String>,
}

/// An asked-for tunnel: the node it was asked of and who waits for it.
struct Pending<T> {
    node_id: String,
    tx: oneshot::Sender<Result<T, String>>,
}

type OfferMap = Arc<Mutex<HashMap<String, Offer>>>;
type PendingMap<T> = Arc<Mutex<HashMap<String, Pending<T>>>>;

fn lock<V>(m: &Mutex<V>) -> MutexGuard<'_, V> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// See the module's documentation. Cheap to clone; clones share the bookkeeping.
pub struct TunnelHub<T> {
    offers: OfferMap,
    pending: PendingMap<T>,
    generation: Arc<AtomicU64>,
}

impl<T> Clone for TunnelHub<T> {
    fn clone(&self) -> Self {
        TunnelHub {
            offers: self.offers.clone(),
            pending: self.pending.clone(),
            generation: self.generation.clone(),
        }
    }
}

impl<T: Send + 'static> Default for TunnelHub<T> {
    fn default() -> Self {
        TunnelHub {
            offers: Arc::default(),
            pending: Arc::default(),
            generation: Arc::default(),
        }
    }
}

impl<T: Send + 'static> TunnelHub<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Node `node_id`'s standing subscription: the IDs of the tunnels it is asked to open.
    /// It replaces the node's previous one (whose stream then ends) and is removed when the
    /// returned stream is dropped.
    pub fn subscribe(&self, node_id: &str) -> Offers {
        let (tx, rx) = mpsc::channel(OFFER_QUEUE);
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        lock(&self.offers).insert(node_id.to_string(), Offer { generation, tx });
        tracing::debug!(node.id = %node_id, "node subscribed for tunnels");
        Offers {
            rx,
            offers: self.offers.clone(),
            node_id: node_id.to_string(),
            generation,
        }
    }

    /// Asks node `node_id` for a tunnel and waits up to `within` for it to open it. Fails
    /// at once when the node keeps no subscription here.
    pub async fn open(&self, node_id: &str, within: Duration) -> Result<T, HubError> {
        let not_connected = || HubError::NotConnected(node_id.to_string());
        let offer = lock(&self.offers).get(node_id).map(|o| o.tx.clone());
        let offer = offer.ok_or_else(not_connected)?;
        let tunnel_id = swarmd_types::ids::new_id();
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(
            tunnel_id.clone(),
            Pending {
                node_id: node_id.to_string(),
                tx,
            },
        );
        // From here the entry leaves with this call, however it ends (answered, timed
        // out, refused, or the caller gone).
        let _forget = Forget {
            pending: self.pending.clone(),
            tunnel_id: tunnel_id.clone(),
        };
        offer.try_send(tunnel_id.clone()).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => HubError::Busy(node_id.to_string()),
            mpsc::error::TrySendError::Closed(_) => not_connected(),
        })?;
        tracing::debug!(node.id = %node_id, tunnel = %tunnel_id, "tunnel asked for");
        match tokio::time::timeout(within, rx).await {
            Ok(Ok(Ok(tunnel))) => Ok(tunnel),
            Ok(Ok(Err(reason))) => Err(HubError::Refused {
                node: node_id.to_string(),
                reason,
            }),
            // The entry was taken without an answer: cannot happen while `_forget` lives.
            Ok(Err(_)) => Err(not_connected()),
            Err(_) => Err(HubError::Timeout {
                node: node_id.to_string(),
                within,
            }),
        }
    }

    /// Node `node_id` answers tunnel `tunnel_id`: the tunnel, or why it cannot open it.
    /// Refused when that tunnel was not asked of this node or is no longer awaited; the
    /// refused node's answer then changes nothing.
    pub fn accept(
        &self,
        node_id: &str,
        tunnel_id: &str,
        answer: Result<T, String>,
    ) -> Result<(), HubError> {
        let not_asked = || HubError::NotAsked {
            tunnel: tunnel_id.to_string(),
            node: node_id.to_string(),
        };
        let pending = {
            let mut pending = lock(&self.pending);
            match pending.get(tunnel_id) {
                Some(p) if p.node_id == node_id => pending.remove(tunnel_id),
                _ => None,
            }
        };
        let pending = pending.ok_or_else(not_asked)?;
        pending.tx.send(answer).map_err(|_| not_asked())
    }

    /// The nodes subscribed now.
    pub fn connected(&self) -> Vec<String> {
        let mut nodes: Vec<String> = lock(&self.offers).keys().cloned().collect();
        nodes.sort();
        nodes
    }

    /// How many asked-for tunnels are awaited now.
    pub fn awaited(&self) -> usize {
        lock(&self.pending).len()
    }
}

/// Removes an asked-for tunnel when its `open` call ends.
struct Forget<T> {
    pending: PendingMap<T>,
    tunnel_id: String,
}

impl<T> Drop for Forget<T> {
    fn drop(&mut self) {
        lock(&self.pending).remove(&self.tunnel_id);
    }
}

/// A node's subscription: the tunnel IDs it is asked to open. Ends when a newer
/// subscription of the node replaces it; dropping it unsubscribes the node.
pub struct Offers {
    rx: mpsc::Receiver<String>,
    offers: OfferMap,
    node_id: String,
    generation: u64,
}

impl Stream for Offers {
    type Item = String;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<String>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for Offers {
    fn drop(&mut self) {
        let mut offers = lock(&self.offers);
        if offers
            .get(&self.node_id)
            .is_some_and(|o| o.generation == self.generation)
        {
            offers.remove(&self.node_id);
            tracing::debug!(node.id = %self.node_id, "node unsubscribed from tunnels");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn a_node_without_a_subscription_fails_at_once() {
        let hub = TunnelHub::<u32>::new();
        let err = hub.open("w1", ACCEPT_WITHIN).await.unwrap_err();
        assert_eq!(err, HubError::NotConnected("w1".into()));
        assert_eq!(err.to_string(), "node w1 is not connected");
        assert_eq!(hub.awaited(), 0);
    }

    #[tokio::test]
    async fn the_asked_node_answers_and_nothing_stays_behind() {
        let hub = TunnelHub::<u32>::new();
        let mut offers = hub.subscribe("w1");
        let opener = spawn_open(&hub);
        let id = offers.next().await.unwrap();
        assert_eq!(hub.awaited(), 1);
        // Another node cannot answer it, nor can an unknown ID be answered; the tunnel
        // stays awaited for its node.
        for (node, tunnel) in [("m1", id.as_str()), ("w1", "nope")] {
            assert_eq!(
                hub.accept(node, tunnel, Ok(7)),
                Err(HubError::NotAsked {
                    tunnel: tunnel.into(),
                    node: node.into()
                })
            );
        }
        assert_eq!(hub.awaited(), 1);
        hub.accept("w1", &id, Ok(42)).unwrap();
        assert_eq!(opener.await.unwrap(), Ok(42));
        assert_eq!(hub.awaited(), 0);
        // Answered once only.
        assert!(hub.accept("w1", &id, Ok(1)).is_err());
    }

    #[tokio::test]
    async fn a_refusal_carries_the_nodes_reason() {
        let hub = TunnelHub::<u32>::new();
        let mut offers = hub.subscribe("w1");
        let opener = spawn_open(&hub);
        let id = offers.next().await.unwrap();
        hub.accept("w1", &id, Err("no engine".into())).unwrap();
        let err = opener.await.unwrap().unwrap_err();
        assert_eq!(
            err.to_string(),
            "node w1 cannot reach its engine: no engine"
        );
        assert_eq!(hub.awaited(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unanswered_tunnel_times_out_and_is_forgotten() {
        let hub = TunnelHub::<u32>::new();
        let mut offers = hub.subscribe("w1");
        let err = hub.open("w1", ACCEPT_WITHIN).await.unwrap_err();
        assert!(matches!(err, HubError::Timeout { .. }), "{err}");
        assert_eq!(hub.awaited(), 0);
        // A late answer is refused, not kept.
        let id = offers.next().await.unwrap();
        assert!(hub.accept("w1", &id, Ok(1)).is_err());
        assert_eq!(hub.awaited(), 0);
    }

    #[tokio::test]
    async fn a_cancelled_open_is_forgotten() {
        let hub = TunnelHub::<u32>::new();
        let mut offers = hub.subscribe("w1");
        let opener = spawn_open(&hub);
        let id = offers.next().await.unwrap();
        assert_eq!(hub.awaited(), 1);
        opener.abort();
        let _ = opener.await;
        assert_eq!(hub.awaited(), 0);
        assert!(hub.accept("w1", &id, Ok(1)).is_err());
    }

    #[tokio::test]
    async fn a_new_subscription_replaces_the_old_and_dropping_unsubscribes() {
        let hub = TunnelHub::<u32>::new();
        let mut old = hub.subscribe("w1");
        let mut new = hub.subscribe("w1");
        assert_eq!(old.next().await, None, "the replaced stream ends");
        drop(old);
        assert_eq!(hub.connected(), ["w1"], "the old one's end leaves the new");
        let opener = spawn_open(&hub);
        let id = new.next().await.unwrap();
        hub.accept("w1", &id, Ok(3)).unwrap();
        assert_eq!(opener.await.unwrap(), Ok(3));
        drop(new);
        assert!(hub.connected().is_empty());
        assert_eq!(
            hub.open("w1", ACCEPT_WITHIN).await,
            Err(HubError::NotConnected("w1".into()))
        );
    }

    #[tokio::test]
    async fn a_node_that_reads_no_requests_is_busy_not_a_leak() {
        let hub = TunnelHub::<u32>::new();
        let _offers = hub.subscribe("w1");
        let mut waiting = Vec::new();
        for _ in 0..OFFER_QUEUE {
            waiting.push(spawn_open(&hub));
        }
        wait_awaited(&hub, OFFER_QUEUE).await;
        assert_eq!(
            hub.open("w1", ACCEPT_WITHIN).await,
            Err(HubError::Busy("w1".into()))
        );
        assert_eq!(hub.awaited(), OFFER_QUEUE);
        for w in waiting {
            w.abort();
            let _ = w.await;
        }
        assert_eq!(hub.awaited(), 0);
    }

    /// Opens a tunnel to w1 in a task of its own.
    fn spawn_open(hub: &TunnelHub<u32>) -> tokio::task::JoinHandle<Result<u32, HubError>> {
        let hub = hub.clone();
        tokio::spawn(async move { hub.open("w1", ACCEPT_WITHIN).await })
    }

    /// Yields until `n` tunnels are awaited (the spawned opens have run).
    async fn wait_awaited(hub: &TunnelHub<u32>, n: usize) {
        for _ in 0..10_000 {
            if hub.awaited() == n {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("{} awaited, not {n}", hub.awaited());
    }
}
