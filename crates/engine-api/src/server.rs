//! Listening: unix sockets (the CLI's default transport) and TCP, in the clear or over TLS
//! (`swarmd manage --tls`, see [`crate::tls`]).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::ServiceExt;
use axum::body::Body;
use axum::http::Request;
use tokio::net::{TcpListener, UnixListener};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backend::Backend;
use crate::router::ApiApp;
use crate::tls::TlsListener;

/// How long in-flight requests get to finish after `cancel` before `serve` returns anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Where to listen, in Docker's `-H` notation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

impl ListenAddr {
    /// Parses `unix:///run/swarmd.sock`, `tcp://127.0.0.1:2375`, `/path.sock` or
    /// `host:port`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(p) = s.strip_prefix("unix://") {
            return Ok(ListenAddr::Unix(PathBuf::from(p)));
        }
        if s.starts_with('/') {
            return Ok(ListenAddr::Unix(PathBuf::from(s)));
        }
        let addr = s.strip_prefix("tcp://").unwrap_or(s);
        addr.parse::<SocketAddr>()
            .map(ListenAddr::Tcp)
            .map_err(|e| format!("invalid listen address {s:?}: {e}"))
    }
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Unix(p) => write!(f, "unix://{}", p.display()),
            ListenAddr::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

/// A bound listener. Binding is separate from serving so the caller sees address errors
/// at startup and can print the actual TCP port (for `:0`).
pub enum Listener {
    Unix(UnixListener, PathBuf),
    Tcp(TcpListener),
}

impl Listener {
    /// Binds `addr`. A unix socket path left over from a previous run is removed first
    /// (only if it is a socket), and the new socket is made `0660`.
    pub async fn bind(addr: &ListenAddr) -> io::Result<Listener> {
        match addr {
            ListenAddr::Unix(path) => {
                remove_stale_socket(path)?;
                if let Some(dir) = path.parent()
                    && !dir.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(dir)?;
                }
                let l = UnixListener::bind(path)?;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
                Ok(Listener::Unix(l, path.clone()))
            }
            ListenAddr::Tcp(a) => Ok(Listener::Tcp(TcpListener::bind(a).await?)),
        }
    }

    /// The bound address (with the real port for TCP).
    pub fn local_addr(&self) -> io::Result<ListenAddr> {
        match self {
            Listener::Unix(_, p) => Ok(ListenAddr::Unix(p.clone())),
            Listener::Tcp(l) => l.local_addr().map(ListenAddr::Tcp),
        }
    }
}

/// Parses and binds every `-H` address (`unix://...`, `tcp://...`), failing on the first
/// that cannot be bound.
pub async fn bind_all(hosts: &[String]) -> io::Result<Vec<Listener>> {
    let mut out = Vec::with_capacity(hosts.len());
    for h in hosts {
        let addr =
            ListenAddr::parse(h).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let l = Listener::bind(&addr)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("{addr}: {e}")))?;
        out.push(l);
    }
    Ok(out)
}

/// One listener's server, in the clear or behind TLS, until `shutdown`.
fn serve_one<L>(
    l: L,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: ApiApp,
    shutdown: tokio_util::sync::WaitForCancellationFutureOwned,
) -> io::Result<ServerFuture>
where
    L: axum::serve::Listener,
    L::Addr: Clone + std::fmt::Debug + Sync,
{
    let make = ServiceExt::<Request<Body>>::into_make_service(app);
    Ok(match tls {
        None => {
            Box::pin(async move { axum::serve(l, make).with_graceful_shutdown(shutdown).await })
        }
        Some(config) => {
            let l = TlsListener::new(l, config)?;
            Box::pin(async move { axum::serve(l, make).with_graceful_shutdown(shutdown).await })
        }
    })
}

/// Serves `app` on one stream that is not a listener's connection: a request forwarded by
/// another manager through the cluster's mutual TLS (`pool://leader`, see [`crate::dial`]).
/// HTTP/1 with upgrades (attach, exec), until the peer closes the stream or `cancel`
/// fires.
pub async fn serve_stream(
    stream: crate::dial::EngineStream,
    app: ApiApp,
    cancel: CancellationToken,
) {
    let app = tower::ServiceExt::map_request(app, |req: Request<hyper::body::Incoming>| {
        req.map(Body::new)
    });
    let service = hyper_util::service::TowerToHyperService::new(app);
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "forwarded API connection ended");
            }
        }
        _ = cancel.cancelled() => conn.as_mut().graceful_shutdown(),
    }
}

/// A listener's server running.
type ServerFuture = std::pin::Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

fn remove_stale_socket(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Serves the Docker Engine API on `listeners` until `cancel` fires, then stops accepting,
/// lets in-flight requests finish (streams end at once) for up to [`SHUTDOWN_GRACE`], and
/// removes the unix socket files.
pub async fn serve(
    listeners: Vec<Listener>,
    backend: Arc<dyn Backend>,
    cancel: CancellationToken,
) -> io::Result<()> {
    serve_app(
        listeners,
        |tracker, inner| ApiApp::new(backend, tracker, inner),
        cancel,
    )
    .await
}

/// [`serve`] for any [`ApiApp`]: `make_app` gets the tracker that in-flight streams and
/// upgrades must run on and the token that ends them at shutdown.
pub async fn serve_app(
    listeners: Vec<Listener>,
    make_app: impl FnOnce(TaskTracker, CancellationToken) -> ApiApp,
    cancel: CancellationToken,
) -> io::Result<()> {
    serve_app_tls(listeners, None, make_app, cancel).await
}

/// [`serve_app`], with TLS on every listener when `tls` is given. Unix sockets included,
/// as classic Swarm's `api.NewServer` did: with `--tls` there is no clear-text door.
pub async fn serve_app_tls(
    listeners: Vec<Listener>,
    tls: Option<Arc<rustls::ServerConfig>>,
    make_app: impl FnOnce(TaskTracker, CancellationToken) -> ApiApp,
    cancel: CancellationToken,
) -> io::Result<()> {
    let tracker = TaskTracker::new();
    // Our own child token: it also ends the proxy's splices and streams if serving stops
    // for another reason, without cancelling the caller's other work.
    let inner = cancel.child_token();
    let app = make_app(tracker.clone(), inner.clone());
    let mut sockets = Vec::new();
    let mut servers: Vec<ServerFuture> = Vec::new();
    for l in listeners {
        let shutdown = cancel.clone().cancelled_owned();
        let tls_on = tls.is_some();
        match l {
            Listener::Unix(l, path) => {
                tracing::info!(addr = %format!("unix://{}", path.display()), tls = tls_on, "API listening");
                sockets.push(path);
                servers.push(serve_one(l, tls.clone(), app.clone(), shutdown)?);
            }
            Listener::Tcp(l) => {
                tracing::info!(addr = ?l.local_addr().ok(), tls = tls_on, "API listening");
                servers.push(serve_one(l, tls.clone(), app.clone(), shutdown)?);
            }
        }
    }
    let all = futures::future::join_all(servers);
    let grace = async {
        cancel.cancelled().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    let result = tokio::select! {
        results = all => results.into_iter().collect::<io::Result<Vec<()>>>().map(|_| ()),
        _ = grace => {
            tracing::warn!("API shutdown grace period over; dropping open connections");
            Ok(())
        }
    };
    inner.cancel();
    tracker.close();
    let _ = tokio::time::timeout(Duration::from_secs(1), tracker.wait()).await;
    for p in sockets {
        let _ = std::fs::remove_file(p);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listen_addresses() {
        assert_eq!(
            ListenAddr::parse("unix:///run/swarmd.sock").unwrap(),
            ListenAddr::Unix("/run/swarmd.sock".into())
        );
        assert_eq!(
            ListenAddr::parse("/tmp/x.sock").unwrap(),
            ListenAddr::Unix("/tmp/x.sock".into())
        );
        assert_eq!(
            ListenAddr::parse("tcp://127.0.0.1:2375").unwrap(),
            ListenAddr::Tcp("127.0.0.1:2375".parse().unwrap())
        );
        assert!(ListenAddr::parse("tcp://nope").is_err());
        assert_eq!(
            ListenAddr::parse("tcp://127.0.0.1:2375")
                .unwrap()
                .to_string(),
            "tcp://127.0.0.1:2375"
        );
    }

    #[tokio::test]
    async fn stale_socket_is_replaced_but_files_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("api.sock");
        let first = Listener::bind(&ListenAddr::Unix(sock.clone()))
            .await
            .unwrap();
        drop(first);
        // The file is still there: a second bind must replace it.
        let second = Listener::bind(&ListenAddr::Unix(sock.clone()))
            .await
            .unwrap();
        let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        drop(second);
        let file = dir.path().join("not-a-socket");
        std::fs::write(&file, b"x").unwrap();
        assert!(Listener::bind(&ListenAddr::Unix(file)).await.is_err());
    }

    /// A forwarded stream is served like a listener's connection: version prefix handled,
    /// the app's answer and headers.
    #[tokio::test]
    async fn a_stream_is_served_like_a_connection() {
        use http_body_util::BodyExt;
        let app = ApiApp::from_router(
            axum::Router::new().route("/_ping", axum::routing::get(|| async { "OK" })),
        );
        let (ours, theirs) = tokio::io::duplex(4096);
        let cancel = CancellationToken::new();
        let served = tokio::spawn(serve_stream(Box::new(theirs), app, cancel.clone()));
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(ours))
                .await
                .unwrap();
        tokio::spawn(conn);
        let req = Request::builder()
            .uri("/v1.41/_ping")
            .header("host", "pool")
            .body(Body::empty())
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert!(resp.headers().contains_key("api-version"));
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"OK");
        cancel.cancel();
        served.await.unwrap();
    }
}
