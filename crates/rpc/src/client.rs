//! Client channels: one lazily connected HTTP/2 connection per peer, over TLS with a
//! `rustls::ClientConfig` from outside, shared by the typed clients of every service.

use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::ServerName;
use tonic::transport::{Channel, Endpoint};

use crate::tls::{TlsConnectorService, client_config_with_h2};

/// Default largest message, both ways. tonic's own default (4 MiB) is too small for a
/// node's complete assignment set or a raft snapshot of a large cluster.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// How clients connect and how long they wait.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// TCP connect plus TLS handshake.
    pub connect_timeout: Duration,
    /// Deadline of every unary call, and for a streaming call the time until the stream is
    /// open (its messages then flow as long as the stream lives). Sent to the server as
    /// `grpc-timeout` on unary calls.
    pub call_timeout: Duration,
    /// HTTP/2 pings on an otherwise quiet connection, so an agent notices a dead manager
    /// under a long-lived session stream without waiting for TCP timeouts.
    pub keepalive_interval: Duration,
    /// How long a ping may go unanswered before the connection is declared dead.
    pub keepalive_timeout: Duration,
    /// The name the server certificate must carry; `None`: the host of the address.
    pub server_name: Option<ServerName<'static>>,
    pub max_message_bytes: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(5),
            call_timeout: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(10),
            server_name: None,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        }
    }
}

/// Why a channel could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("invalid peer address {addr:?}: {reason}")]
    InvalidAddress { addr: String, reason: String },
}

/// A connection to one peer (`host:port`), made on first use and remade after failures.
/// Cheap to clone; all clones share the connection.
#[derive(Debug, Clone)]
pub struct RpcChannel {
    pub(crate) channel: Channel,
    pub(crate) options: ClientOptions,
    addr: String,
}

impl RpcChannel {
    /// A channel to `addr` (`host:port`, IPv6 as `[::1]:2377`). Nothing is dialled yet: an
    /// unreachable peer shows up as the first call's error, and the channel reconnects by
    /// itself on later calls.
    pub fn new(
        addr: &str,
        tls: Arc<rustls::ClientConfig>,
        options: ClientOptions,
    ) -> Result<Self, ClientError> {
        let invalid = |reason: String| ClientError::InvalidAddress {
            addr: addr.to_string(),
            reason,
        };
        // The scheme only tells hyper how to frame requests; TLS is ours (the connector).
        let endpoint =
            Endpoint::from_shared(format!("http://{addr}")).map_err(|e| invalid(e.to_string()))?;
        if endpoint.uri().port_u16().is_none() {
            return Err(invalid("no port".into()));
        }
        let endpoint = endpoint
            .http2_keep_alive_interval(options.keepalive_interval)
            .keep_alive_timeout(options.keepalive_timeout)
            .keep_alive_while_idle(true)
            .tcp_nodelay(true);
        let connector = TlsConnectorService {
            tls: client_config_with_h2(tls),
            server_name: options.server_name.clone(),
            connect_timeout: options.connect_timeout,
        };
        Ok(RpcChannel {
            channel: endpoint.connect_with_connector_lazy(connector),
            options,
            addr: addr.to_string(),
        })
    }

    /// The peer's address as given.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// A unary request with the call deadline set.
    pub(crate) fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        req.set_timeout(self.options.call_timeout);
        req
    }
}
