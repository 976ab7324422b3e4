//! **Test support, not for production** (compiled only with the `testing` feature): an
//! in-process Raft transport whose [`Router`] a test controls, to drop, delay and
//! partition messages between managers without sockets.
//!
//! Open each node with [`crate::NetworkFactory::in_process`] through
//! [`crate::RaftNode::open_with_network`], then [`Router::register`] its
//! [`crate::RaftRpcHandler`]. A call then carries exactly the bytes the gRPC transport
//! would send to the target's handler, so encoding, decoding and the error mapping onto
//! openraft (timeout vs. unreachable) are the production ones; only TLS, HTTP/2 and the
//! kernel are left out.
//!
//! Fault model, per call:
//! - either end not registered (crashed or stopped node) → `Unreachable` at once, like a
//!   refused connection;
//! - the link is blocked (one way, a partition, an isolated node) or the message is lost
//!   to random loss → nothing comes back and the caller gets `Timeout` when its deadline
//!   passes, like a packet into the void; a blocked *response* direction loses the reply
//!   after the request was handled (the receiver did act on it);
//! - otherwise the request waits the link's delay, is handled, and the response waits the
//!   reverse link's delay; all of it within the caller's deadline. A request whose link is
//!   cut while it is delayed (in flight) is lost as well.
//!
//! The router's random loss draws from its own seeded generator, so a seed reproduces the
//! same sequence of loss decisions (though not openraft's own timing, which uses an
//! unseeded RNG for election timeouts).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use swarmd_rpc::{Bytes, PeerInfo, RaftService};

use crate::transport::{CallError, RaftLink, RaftTransport, RpcMethod, map_call_result};
use crate::{NetworkFactory, NodeId, RaftRpcHandler};

/// The switchboard between in-process Raft nodes, with fault injection. Cheap to clone;
/// clones share the same state.
#[derive(Clone, Default)]
pub struct Router {
    state: Arc<Mutex<State>>,
}

/// What the router has done so far, to check that a fault actually bit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouterStats {
    /// Requests handed to the target's handler.
    pub delivered: u64,
    /// Requests or responses lost to a blocked link or random loss.
    pub dropped: u64,
    /// Calls refused because one end was not registered.
    pub refused: u64,
    /// InstallSnapshot requests handed to the target (included in `delivered`).
    pub snapshots: u64,
}

#[derive(Default)]
struct State {
    handlers: HashMap<NodeId, RaftRpcHandler>,
    /// Directed links that lose every message.
    blocked: HashSet<(NodeId, NodeId)>,
    /// Nodes cut off from everyone.
    isolated: BTreeSet<NodeId>,
    delays: HashMap<(NodeId, NodeId), Duration>,
    default_delay: Duration,
    /// Probability of losing any one message, in millionths.
    loss_ppm: u32,
    rng: SplitMix64,
    stats: RouterStats,
}

/// What happens to one message.
enum Fate {
    Refused(String),
    Lost,
    Pass(Duration),
}

impl State {
    fn linked(&self, from: NodeId, to: NodeId) -> bool {
        !self.blocked.contains(&(from, to))
            && !self.isolated.contains(&from)
            && !self.isolated.contains(&to)
    }

    fn fate(&mut self, from: NodeId, to: NodeId) -> Fate {
        for (id, side) in [(to, "target"), (from, "sender")] {
            if !self.handlers.contains_key(&id) {
                self.stats.refused += 1;
                return Fate::Refused(format!("node {id} ({side}) is down"));
            }
        }
        let lost = self.loss_ppm > 0 && (self.rng.next() % 1_000_000) < u64::from(self.loss_ppm);
        if !self.linked(from, to) || lost {
            self.stats.dropped += 1;
            return Fate::Lost;
        }
        Fate::Pass(
            self.delays
                .get(&(from, to))
                .copied()
                .unwrap_or(self.default_delay),
        )
    }
}

impl Router {
    /// A router with no faults; random loss (if enabled) seeded with 0.
    pub fn new() -> Self {
        Router::default()
    }

    /// A router whose random loss decisions follow `seed`.
    pub fn with_seed(seed: u64) -> Self {
        let r = Router::default();
        r.lock().rng = SplitMix64(seed);
        r
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes node `id` reachable through `handler` (after opening it, or reopening it).
    pub fn register(&self, id: NodeId, handler: RaftRpcHandler) {
        self.lock().handlers.insert(id, handler);
    }

    /// Takes node `id` off the network: calls to and from it are refused from now on, as
    /// if its process were gone. Do this before shutting a node down to model a crash.
    pub fn unregister(&self, id: NodeId) {
        self.lock().handlers.remove(&id);
    }

    /// Loses every message from `from` to `to` (one direction only).
    pub fn block(&self, from: NodeId, to: NodeId) {
        self.lock().blocked.insert((from, to));
    }

    /// Lets messages from `from` to `to` through again (undoes [`Router::block`]).
    pub fn unblock(&self, from: NodeId, to: NodeId) {
        self.lock().blocked.remove(&(from, to));
    }

    /// Loses every message between `a` and `b`, both ways.
    pub fn cut(&self, a: NodeId, b: NodeId) {
        let mut s = self.lock();
        s.blocked.insert((a, b));
        s.blocked.insert((b, a));
    }

    /// Splits the network: nodes in different groups cannot talk to each other (in either
    /// direction); links inside a group are left as they are.
    pub fn partition(&self, groups: &[&[NodeId]]) {
        let mut s = self.lock();
        for (i, g) in groups.iter().enumerate() {
            for h in &groups[i + 1..] {
                for &a in g.iter() {
                    for &b in h.iter() {
                        s.blocked.insert((a, b));
                        s.blocked.insert((b, a));
                    }
                }
            }
        }
    }

    /// Cuts node `id` off from every other node, including ones registered later.
    pub fn isolate(&self, id: NodeId) {
        self.lock().isolated.insert(id);
    }

    /// Undoes [`Router::isolate`] for `id`.
    pub fn reconnect(&self, id: NodeId) {
        self.lock().isolated.remove(&id);
    }

    /// Delays every message from `from` to `to` by `delay`.
    pub fn set_delay(&self, from: NodeId, to: NodeId, delay: Duration) {
        self.lock().delays.insert((from, to), delay);
    }

    /// Delay of every link without its own [`Router::set_delay`].
    pub fn set_default_delay(&self, delay: Duration) {
        self.lock().default_delay = delay;
    }

    /// Loses each message with `probability` (0.0 ..= 1.0), drawn from the seeded generator.
    pub fn set_loss(&self, probability: f64) {
        self.lock().loss_ppm = (probability.clamp(0.0, 1.0) * 1_000_000.0) as u32;
    }

    /// Clears every fault (blocks, isolation, delays, loss). Registrations stay.
    pub fn heal(&self) {
        let mut s = self.lock();
        s.blocked.clear();
        s.isolated.clear();
        s.delays.clear();
        s.default_delay = Duration::ZERO;
        s.loss_ppm = 0;
    }

    /// Whether a message from `from` to `to` would be delivered now (both registered, link
    /// not blocked; random loss aside).
    pub fn can_reach(&self, from: NodeId, to: NodeId) -> bool {
        let s = self.lock();
        s.handlers.contains_key(&from) && s.handlers.contains_key(&to) && s.linked(from, to)
    }

    /// Counters of what the router did so far.
    pub fn stats(&self) -> RouterStats {
        self.lock().stats
    }

    /// Carries one call from `from` to `to`, applying the faults in force; bounded by `ttl`.
    pub(crate) async fn deliver(
        &self,
        from: NodeId,
        to: NodeId,
        method: RpcMethod,
        payload: Bytes,
        ttl: Duration,
    ) -> Result<Bytes, CallError> {
        let call = async {
            let fate = {
                let mut s = self.lock();
                match s.fate(from, to) {
                    Fate::Refused(m) => Err(m),
                    Fate::Lost => Ok(None),
                    Fate::Pass(d) => Ok(Some((s.handlers[&to].clone(), d))),
                }
            };
            let (handler, delay) = match fate {
                Err(m) => return Err(CallError::Unreachable(m)),
                Ok(Some(pass)) => pass,
                // Lost: the caller hears nothing until its deadline.
                Ok(None) => return std::future::pending().await,
            };
            tokio::time::sleep(delay).await;
            // Cut while in flight: lost too.
            if !delay.is_zero() && !self.lock().linked(from, to) {
                self.lock().stats.dropped += 1;
                return std::future::pending().await;
            }
            let peer = PeerInfo::anonymous();
            let res = match method {
                RpcMethod::AppendEntries => handler.append_entries(peer, payload).await,
                RpcMethod::Vote => handler.vote(peer, payload).await,
                RpcMethod::InstallSnapshot => handler.install_snapshot(peer, payload).await,
            };
            {
                let mut s = self.lock();
                s.stats.delivered += 1;
                if method == RpcMethod::InstallSnapshot {
                    s.stats.snapshots += 1;
                }
            }
            let back = {
                let mut s = self.lock();
                if !s.handlers.contains_key(&from) {
                    None
                } else {
                    match s.fate(to, from) {
                        Fate::Pass(d) => Some(d),
                        Fate::Refused(_) | Fate::Lost => None,
                    }
                }
            };
            match back {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending::<()>().await,
            }
            map_call_result(Ok(res), ttl, || {
                format!("in-process raft {} {from} -> {to}", method.name())
            })
        };
        match tokio::time::timeout(ttl, call).await {
            Ok(r) => r,
            Err(_) => Err(CallError::Timeout(ttl)),
        }
    }
}

impl NetworkFactory {
    /// **Test transport.** Peers are reached in this process through `router`, which can
    /// drop, delay and partition messages (see [`Router`]). The payloads are the same
    /// bytes the gRPC transport sends, handled by the peer's [`RaftRpcHandler`]; only the
    /// sockets, TLS and HTTP/2 are left out. Open a node with it through
    /// [`crate::RaftNode::open_with_network`].
    pub fn in_process(me: NodeId, router: Router) -> Self {
        NetworkFactory::with_transport(me, Arc::new(router))
    }
}

impl RaftTransport for Router {
    fn link(&self, me: NodeId, target: NodeId, _addr: &str) -> Result<Arc<dyn RaftLink>, String> {
        Ok(Arc::new(RouterLink {
            router: self.clone(),
            me,
            target,
        }))
    }

    fn kind(&self) -> &'static str {
        "in-process (test)"
    }
}

/// One node's way to one peer through the router.
#[derive(Debug)]
struct RouterLink {
    router: Router,
    me: NodeId,
    target: NodeId,
}

#[async_trait::async_trait]
impl RaftLink for RouterLink {
    async fn call(
        &self,
        method: RpcMethod,
        payload: Bytes,
        ttl: Duration,
    ) -> Result<Bytes, CallError> {
        self.router
            .deliver(self.me, self.target, method, payload, ttl)
            .await
    }
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.lock();
        let mut nodes: Vec<_> = s.handlers.keys().copied().collect();
        nodes.sort_unstable();
        f.debug_struct("Router")
            .field("nodes", &nodes)
            .field("blocked", &s.blocked.len())
            .field("isolated", &s.isolated)
            .field("stats", &s.stats)
            .finish_non_exhaustive()
    }
}

/// A tiny seeded generator (SplitMix64) for loss decisions: no dependency, reproducible.
#[derive(Default)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}
