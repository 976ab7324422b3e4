//! A TLS listener for `axum::serve`: handshakes run concurrently (one slow or silent
//! client must not hold up the others' accepts) and each is bounded in time.

use std::fmt::Debug;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::Listener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a client gets to complete its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections whose handshake is done, waiting for `axum::serve` to take them.
const READY_BACKLOG: usize = 64;

/// `inner` with TLS on every connection. Clients whose handshake fails (no or a wrong
/// client certificate with `--tlsverify`, plain HTTP) are logged and dropped, as Go's
/// `http.Server` does.
pub struct TlsListener<L: Listener> {
    ready: mpsc::Receiver<(TlsStream<L::Io>, L::Addr)>,
    local: L::Addr,
}

impl<L> TlsListener<L>
where
    L: Listener,
    L::Addr: Clone + Debug + Sync,
{
    /// Starts accepting on `inner`. The accepting task ends when this listener is dropped.
    pub fn new(mut inner: L, config: Arc<rustls::ServerConfig>) -> io::Result<Self> {
        let local = inner.local_addr()?;
        let (tx, ready) = mpsc::channel(READY_BACKLOG);
        let acceptor = TlsAcceptor::from(config);
        tokio::spawn(async move {
            loop {
                let (io, peer) = tokio::select! {
                    _ = tx.closed() => return,
                    conn = inner.accept() => conn,
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::info!(peer = ?peer, error = %e, "TLS handshake error");
                        }
                        Err(_) => {
                            tracing::info!(peer = ?peer, timeout = ?HANDSHAKE_TIMEOUT, "TLS handshake timed out");
                        }
                    }
                });
            }
        });
        Ok(Self { ready, local })
    }
}

impl<L> Listener for TlsListener<L>
where
    L: Listener,
    L::Addr: Clone + Debug + Sync,
{
    type Io = TlsStream<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accepting task only ends once we are dropped; never reached.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local.clone())
    }
}
