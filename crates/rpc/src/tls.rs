//! TLS below tonic, with configurations made elsewhere (the pki crate).
//!
//! tonic's own TLS features build their rustls configs themselves from PEM material and
//! would hide the client certificate chain behind their own types; swarmd's pki layer
//! needs to own the `rustls::ServerConfig`/`ClientConfig` (custom verifiers: CA pinned by
//! a join-token digest, role checks, rotation). So we accept and connect TLS ourselves
//! with tokio-rustls and hand tonic finished streams: on the server through
//! `serve_with_incoming`, on the client through a custom connector.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::{TlsAcceptor, TlsConnector, client, server};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tokio_util::task::TaskTracker;
use tonic::transport::server::Connected;

/// ALPN id of HTTP/2, which gRPC runs on.
const ALPN_H2: &[u8] = b"h2";

/// Pause after a failed `accept()` (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Connections whose TLS handshake finished but that tonic has not picked up yet.
const HANDSHAKEN_QUEUE: usize = 64;

/// What the server knows about the other end of a connection. tonic puts it into every
/// request's extensions (via [`Connected`]); the handlers read the certificate chain from
/// there for the [`Authorizer`](crate::Authorizer).
#[derive(Debug, Clone)]
pub struct TlsPeer {
    pub remote_addr: Option<SocketAddr>,
    /// The client's certificate chain, leaf first, as rustls verified it; `None` if the
    /// client sent none.
    pub certs: Option<Arc<[CertificateDer<'static>]>>,
}

/// A server-side TLS connection, with a switch that fails its reads once the server stops
/// for good (so connections held open by idle clients cannot keep `serve` from returning).
pub(crate) struct TlsConn {
    stream: server::TlsStream<TcpStream>,
    peer: TlsPeer,
    abort: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl Connected for TlsConn {
    type ConnectInfo = TlsPeer;
    fn connect_info(&self) -> TlsPeer {
        self.peer.clone()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.abort.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "rpc server stopped",
            )));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Offers HTTP/2 by ALPN unless the given config already chose protocols.
pub(crate) fn server_config_with_h2(tls: Arc<rustls::ServerConfig>) -> Arc<rustls::ServerConfig> {
    if !tls.alpn_protocols.is_empty() {
        return tls;
    }
    let mut cfg = (*tls).clone();
    cfg.alpn_protocols = vec![ALPN_H2.to_vec()];
    Arc::new(cfg)
}

/// Asks for HTTP/2 by ALPN unless the given config already chose protocols.
pub(crate) fn client_config_with_h2(tls: Arc<rustls::ClientConfig>) -> Arc<rustls::ClientConfig> {
    if !tls.alpn_protocols.is_empty() {
        return tls;
    }
    let mut cfg = (*tls).clone();
    cfg.alpn_protocols = vec![ALPN_H2.to_vec()];
    Arc::new(cfg)
}

/// Accepts TCP connections and completes their TLS handshakes, each in its own task so a
/// slow or hostile client cannot hold up others, yielding only connections whose handshake
/// succeeded in time. Stops accepting when `stop` fires; connections fail when `abort`
/// fires. All tasks belong to `tracker`.
pub(crate) fn accept_tls(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    handshake_timeout: Duration,
    stop: CancellationToken,
    abort: CancellationToken,
    tracker: &TaskTracker,
) -> ReceiverStream<Result<TlsConn, io::Error>> {
    let (tx, rx) = mpsc::channel(HANDSHAKEN_QUEUE);
    let acceptor = TlsAcceptor::from(tls);
    let handshakes = tracker.clone();
    tracker.spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = stop.cancelled() => break,
                r = listener.accept() => r,
            };
            let (tcp, remote) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "rpc accept failed");
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(ACCEPT_ERROR_BACKOFF) => continue,
                    }
                }
            };
            // gRPC messages are small and latency matters (heartbeats, raft).
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            let stop = stop.clone();
            let abort = abort.clone();
            handshakes.spawn(async move {
                let handshake = tokio::time::timeout(handshake_timeout, acceptor.accept(tcp));
                let stream = tokio::select! {
                    _ = stop.cancelled() => return,
                    r = handshake => match r {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(%remote, error = %e, "rpc tls handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%remote, "rpc tls handshake timed out");
                            return;
                        }
                    },
                };
                let certs = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .map(|c| c.iter().map(|c| c.clone().into_owned()).collect());
                let conn = TlsConn {
                    stream,
                    peer: TlsPeer {
                        remote_addr: Some(remote),
                        certs,
                    },
                    abort: Box::pin(abort.cancelled_owned()),
                };
                // Fails only when the server is gone: the connection is dropped with it.
                let _ = tx.send(Ok(conn)).await;
            });
        }
    });
    ReceiverStream::new(rx)
}

/// A client connection failed before any request was sent: TCP connect, TLS handshake, or
/// the connect timeout. Found in a failed call's error chain, it proves the request never
/// reached the server (see `propose_error_from_status`).
#[derive(Debug, thiserror::Error)]
#[error("connecting to {addr}: {source}")]
pub struct ConnectFailed {
    pub addr: String,
    #[source]
    pub source: io::Error,
}

/// The client side: a tower service from URI to TLS stream, for
/// `Endpoint::connect_with_connector_lazy`.
#[derive(Clone)]
pub(crate) struct TlsConnectorService {
    pub tls: Arc<rustls::ClientConfig>,
    /// The name to verify the server certificate against; `None`: the URI's host.
    pub server_name: Option<ServerName<'static>>,
    pub connect_timeout: Duration,
}

impl tower::Service<http::Uri> for TlsConnectorService {
    type Response = TokioIo<client::TlsStream<TcpStream>>;
    type Error = ConnectFailed;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let addr = uri
                .authority()
                .map(|a| a.as_str().to_string())
                .unwrap_or_default();
            let fail = |source: io::Error| ConnectFailed {
                addr: addr.clone(),
                source,
            };
            // `[::1]` in a URI is `::1` to the resolver and to certificate names.
            let host = uri.host().unwrap_or_default();
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = uri.port_u16().ok_or_else(|| {
                fail(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "address has no port",
                ))
            })?;
            let server_name = match this.server_name {
                Some(n) => n,
                None => ServerName::try_from(host.clone())
                    .map_err(|e| fail(io::Error::new(io::ErrorKind::InvalidInput, e)))?,
            };
            let connect = async {
                let tcp = TcpStream::connect((host.as_str(), port)).await?;
                let _ = tcp.set_nodelay(true);
                TlsConnector::from(this.tls).connect(server_name, tcp).await
            };
            match tokio::time::timeout(this.connect_timeout, connect).await {
                Ok(Ok(stream)) => Ok(TokioIo::new(stream)),
                Ok(Err(e)) => Err(fail(e)),
                Err(_) => Err(fail(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no TLS connection within {:?}", this.connect_timeout),
                ))),
            }
        })
    }
}
