//! Byte streams to upstreams that are not a socket address: a swarm node's engine reached
//! through the cluster's mutual-TLS connection, or the Raft leader's pool API (issue 17).
//!
//! The engine proxy and the classic pool dial `tcp://` and unix upstreams themselves; an
//! upstream written with one of the schemes below goes to the [`Dialer`] they were given,
//! which returns a stream that carries HTTP/1 (and, after a `101`, upgraded bytes) as a
//! socket would.

use std::io;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite};

/// `node://<node ID>`: that swarm node's Docker Engine, through its agent.
pub const NODE_SCHEME: &str = "node://";

/// `pool://leader`: the pool API (`--pool-host`) of the swarm's Raft leader.
pub const LEADER_POOL: &str = "pool://leader";

/// What a [`Dialer`] hands back: any bidirectional byte stream.
pub trait EngineIo: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> EngineIo for T {}

/// A boxed [`EngineIo`].
pub type EngineStream = Box<dyn EngineIo>;

/// Opens streams to `node://` and `pool://` upstreams.
#[async_trait]
pub trait Dialer: Send + Sync {
    /// A new stream to `upstream` (one of this module's schemes). The error says why the
    /// upstream cannot be reached, in words fit for a 502's message.
    async fn dial(&self, upstream: &str) -> io::Result<EngineStream>;
}

/// Whether `upstream` is one a [`Dialer`] opens (rather than a TCP address or socket path).
pub fn is_dialed(upstream: &str) -> bool {
    upstream.starts_with(NODE_SCHEME) || upstream.starts_with("pool://")
}
