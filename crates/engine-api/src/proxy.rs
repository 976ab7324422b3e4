//! Forwarding container/image/exec/... calls to the local Docker Engine.
//!
//! With the docker executor, `docker run/ps/logs/exec` on a swarmd node should behave as on
//! the engine itself, so those requests are forwarded over the engine's unix socket: method,
//! path, query, headers and body, streamed both ways without buffering (logs -f, events,
//! wait, pull progress). Requests that upgrade the connection (`attach`, `exec/{id}/start`
//! with `Upgrade: tcp`, BuildKit's `/session` and `/grpc`) are answered with the engine's
//! `101` and then spliced byte for byte.
//!
//! The same forwarding serves `swarmd manage` (classic Swarm), whose engines are reached over
//! TCP: an upstream written `tcp://host:port` is dialled over TCP, anything else is a unix
//! socket path. With [`EngineProxy::with_tls`] (`swarmd manage --tls`), every TCP upstream
//! is dialled over TLS with the manager's certificate; upgraded connections are spliced
//! over it the same way. Upstreams written `node://ID` or `pool://leader` (a swarm node's
//! engine, the leader's pool API: see [`crate::dial`]) are opened by the proxy's
//! [`Dialer`] ([`EngineProxy::with_dialer`]).
//!
//! One deliberate change: the version prefix. The CLI talks to us at our newest version
//! (1.50), but the engine may be older (Debian's docker.io 20.10 speaks 1.41) and would
//! refuse "client version 1.50 is too new". The proxy learns the engine's version from its
//! `/_ping` once and lowers newer prefixes to it; older prefixes pass unchanged.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Uri, header};
use axum::response::IntoResponse;
use futures::StreamExt;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpStream, UnixStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::dial::{Dialer, is_dialed};
use crate::error::ApiError;
use crate::version::{RequestVersion, compare_versions};

/// Headers that describe one hop, not the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Forwards requests to engines on unix sockets or TCP (optionally TLS). Connection
/// drivers and upgraded splices run on `tracker` and stop on `cancel`.
pub struct EngineProxy {
    /// The API version of each engine socket seen so far.
    versions: Mutex<HashMap<String, String>>,
    /// TLS towards `tcp://` upstreams (classic's engines); none: plain TCP.
    tls: Option<Arc<rustls::ClientConfig>>,
    /// Opens `node://` and `pool://` upstreams; none: they are unreachable.
    dialer: Option<Arc<dyn Dialer>>,
    tracker: TaskTracker,
    cancel: CancellationToken,
}

impl EngineProxy {
    pub fn new(tracker: TaskTracker, cancel: CancellationToken) -> Self {
        EngineProxy {
            versions: Mutex::new(HashMap::new()),
            tls: None,
            dialer: None,
            tracker,
            cancel,
        }
    }

    /// Dials `tcp://` upstreams over TLS with `tls` (see [`crate::tls::TlsConfigs`]);
    /// `None` keeps plain TCP.
    pub fn with_tls(mut self, tls: Option<Arc<rustls::ClientConfig>>) -> Self {
        self.tls = tls;
        self
    }

    /// Opens `node://` and `pool://` upstreams with `dialer`.
    pub fn with_dialer(mut self, dialer: Option<Arc<dyn Dialer>>) -> Self {
        self.dialer = dialer;
        self
    }

    /// Forwards `req` (whose URI has had its version prefix removed) to the engine at
    /// `socket`. Failures to reach the engine become a 502 with the reason.
    pub async fn forward(
        &self,
        socket: &str,
        req: Request<Body>,
        version: &RequestVersion,
    ) -> Response<Body> {
        match self.try_forward(socket, req, version).await {
            Ok(resp) => resp,
            Err(e) => e.into_response(),
        }
    }

    /// One buffered call to the engine (for answers the API merges or inspects, such as
    /// `network ls`): the status and the whole body.
    pub async fn call(
        &self,
        socket: &str,
        method: axum::http::Method,
        path_and_query: &str,
        body: bytes::Bytes,
        version: &RequestVersion,
    ) -> Result<(StatusCode, bytes::Bytes), ApiError> {
        let mut builder = Request::builder().method(method).uri(path_and_query);
        if !body.is_empty()
            && let Some(h) = builder.headers_mut()
        {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        let req = builder
            .body(Body::from(body))
            .map_err(|e| ApiError::internal(format!("building engine request: {e}")))?;
        let resp = self.try_forward(socket, req, version).await?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    format!("error reading the Docker Engine's answer: {e}"),
                )
            })?
            .to_bytes();
        Ok((status, bytes))
    }

    /// [`EngineProxy::forward`] that hands back a failure to reach the upstream instead of
    /// answering it (a classic replica words it as classic did).
    pub async fn try_forward(
        &self,
        socket: &str,
        mut req: Request<Body>,
        version: &RequestVersion,
    ) -> Result<Response<Body>, ApiError> {
        let prefix = match &version.prefix {
            None => None,
            Some(v) => Some(match self.engine_version(socket).await {
                Some(engine) if compare_versions(v, &engine).is_gt() => engine,
                _ => v.clone(),
            }),
        };
        let uri = upstream_uri(req.uri(), prefix.as_deref())?;
        let upgrade = is_upgrade(req.headers());
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));

        let mut sender = self.connect(socket).await?;
        let (parts, body) = req.into_parts();
        let mut builder = Request::builder().method(parts.method).uri(uri);
        if let Some(h) = builder.headers_mut() {
            copy_headers(&parts.headers, h, upgrade);
            if !h.contains_key(header::HOST) {
                h.insert(header::HOST, HeaderValue::from_static("docker"));
            }
        }
        let upstream_req = builder
            .body(body)
            .map_err(|e| ApiError::internal(format!("building engine request: {e}")))?;
        let mut resp = sender.send_request(upstream_req).await.map_err(|e| {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                format!("error talking to the Docker Engine at {socket}: {e}"),
            )
        })?;

        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            let Some(client_upgrade) = client_upgrade else {
                return Err(ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "the Docker Engine switched protocols without being asked to",
                ));
            };
            let engine_upgrade = hyper::upgrade::on(&mut resp);
            let cancel = self.cancel.clone();
            self.tracker.spawn(async move {
                let (client, engine) = match tokio::join!(client_upgrade, engine_upgrade) {
                    (Ok(c), Ok(e)) => (c, e),
                    (c, e) => {
                        tracing::debug!(client = ?c.err(), engine = ?e.err(), "upgrade failed");
                        return;
                    }
                };
                let mut client = TokioIo::new(client);
                let mut engine = TokioIo::new(engine);
                tokio::select! {
                    r = tokio::io::copy_bidirectional(&mut client, &mut engine) => {
                        if let Err(e) = r {
                            tracing::debug!(error = %e, "upgraded stream ended");
                        }
                    }
                    _ = cancel.cancelled() => {}
                }
            });
            let (parts, _) = resp.into_parts();
            let mut out = Response::from_parts(parts, Body::empty());
            // Keep `Connection: Upgrade` / `Upgrade: tcp`: the client checks them.
            out.headers_mut().remove(header::CONTENT_LENGTH);
            return Ok(out);
        }

        let (mut parts, incoming) = resp.into_parts();
        let finite = parts.headers.contains_key(header::CONTENT_LENGTH);
        let mut headers = HeaderMap::new();
        copy_headers(&parts.headers, &mut headers, false);
        parts.headers = headers;
        let body = if finite {
            Body::new(incoming)
        } else {
            // Streams (logs -f, events, wait) end when the server shuts down.
            let stream = incoming
                .into_data_stream()
                .take_until(self.cancel.clone().cancelled_owned());
            Body::from_stream(stream)
        };
        Ok(Response::from_parts(parts, body))
    }

    /// Opens an HTTP/1 connection to the engine; its driver runs on the tracker.
    async fn connect(
        &self,
        socket: &str,
    ) -> Result<hyper::client::conn::http1::SendRequest<Body>, ApiError> {
        let unreachable = |e: std::io::Error| {
            let shown = if socket.starts_with("tcp://") || is_dialed(socket) {
                socket.to_string()
            } else {
                format!("unix://{socket}")
            };
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                format!("Cannot connect to the Docker Engine at {shown}: {e}"),
            )
        };
        let (sender, conn) = match socket.strip_prefix("tcp://") {
            None if is_dialed(socket) => {
                let dialer = self.dialer.as_ref().ok_or_else(|| {
                    unreachable(std::io::Error::other("no dialer for this upstream"))
                })?;
                let stream = dialer.dial(socket).await.map_err(unreachable)?;
                handshake(socket, stream).await?
            }
            Some(addr) => match &self.tls {
                Some(config) => {
                    let stream = crate::tls::dial(config, addr).await.map_err(unreachable)?;
                    handshake(socket, stream).await?
                }
                None => {
                    let stream = TcpStream::connect(addr).await.map_err(unreachable)?;
                    let _ = stream.set_nodelay(true);
                    handshake(socket, stream).await?
                }
            },
            None => {
                let stream = UnixStream::connect(socket).await.map_err(unreachable)?;
                handshake(socket, stream).await?
            }
        };
        let cancel = self.cancel.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                r = conn => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "engine connection ended");
                    }
                }
                _ = cancel.cancelled() => {}
            }
        });
        Ok(sender)
    }

    /// The engine's API version (its `/_ping` `Api-Version`), cached per socket.
    async fn engine_version(&self, socket: &str) -> Option<String> {
        if let Ok(map) = self.versions.lock()
            && let Some(v) = map.get(socket)
        {
            return Some(v.clone());
        }
        let mut sender = self.connect(socket).await.ok()?;
        let req = Request::builder()
            .method("GET")
            .uri("/_ping")
            .header(header::HOST, "docker")
            .body(Body::empty())
            .ok()?;
        let resp = sender.send_request(req).await.ok()?;
        let v = resp
            .headers()
            .get("api-version")?
            .to_str()
            .ok()?
            .to_string();
        // Drain the tiny body so the connection closes cleanly.
        let _ = resp.into_body().collect().await;
        if let Ok(mut map) = self.versions.lock() {
            map.insert(socket.to_string(), v.clone());
        }
        Some(v)
    }
}

/// The HTTP/1 handshake over an open stream; the returned connection future drives it,
/// upgrades included.
async fn handshake<S>(
    socket: &str,
    stream: S,
) -> Result<
    (
        hyper::client::conn::http1::SendRequest<Body>,
        std::pin::Pin<Box<dyn Future<Output = hyper::Result<()>> + Send>>,
    ),
    ApiError,
>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                format!("handshake with the Docker Engine at {socket} failed: {e}"),
            )
        })?;
    Ok((sender, Box::pin(conn.with_upgrades())))
}

/// Whether a request asks to switch protocols (`Connection: Upgrade` + `Upgrade: ...`).
fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Copies end-to-end headers; with `keep_upgrade` the `Connection`/`Upgrade` pair too.
fn copy_headers(from: &HeaderMap, to: &mut HeaderMap, keep_upgrade: bool) {
    for (name, value) in from {
        let n = name.as_str();
        let hop = HOP_BY_HOP.contains(&n);
        if hop && !(keep_upgrade && (n == "connection" || n == "upgrade")) {
            continue;
        }
        to.append(name.clone(), value.clone());
    }
}

/// The path the engine sees: our (prefix-less) path under `prefix`, with the query.
fn upstream_uri(uri: &Uri, prefix: Option<&str>) -> Result<Uri, ApiError> {
    let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let s = match prefix {
        Some(v) => format!("/v{v}{pq}"),
        None => pq.to_string(),
    };
    s.parse::<Uri>()
        .map_err(|e| ApiError::bad_request(format!("invalid request path: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_paths_keep_query_and_prefix() {
        let uri: Uri = "/containers/json?all=1".parse().unwrap();
        assert_eq!(
            upstream_uri(&uri, Some("1.41")).unwrap().to_string(),
            "/v1.41/containers/json?all=1"
        );
        assert_eq!(
            upstream_uri(&uri, None).unwrap().to_string(),
            "/containers/json?all=1"
        );
    }

    #[test]
    fn upgrade_detection_and_hop_headers() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("tcp"));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        assert!(is_upgrade(&h));
        let mut out = HeaderMap::new();
        copy_headers(&h, &mut out, true);
        assert!(out.contains_key(header::UPGRADE));
        assert!(!out.contains_key(header::TRANSFER_ENCODING));
        let mut out = HeaderMap::new();
        copy_headers(&h, &mut out, false);
        assert!(!out.contains_key(header::UPGRADE));
        assert!(out.contains_key(header::CONTENT_TYPE));
        let mut plain = HeaderMap::new();
        plain.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        assert!(!is_upgrade(&plain));
    }

    /// A dialer that serves each stream with a tiny HTTP/1 server naming the upstream.
    struct EchoDialer;

    #[async_trait::async_trait]
    impl Dialer for EchoDialer {
        async fn dial(&self, upstream: &str) -> std::io::Result<crate::dial::EngineStream> {
            if upstream == "node://gone" {
                return Err(std::io::Error::other("node gone has no engine"));
            }
            let (ours, theirs) = tokio::io::duplex(4096);
            let name = upstream.to_owned();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let text = format!("{name} {}", req.uri());
                    async move { Ok::<_, std::convert::Infallible>(Response::new(Body::from(text))) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(theirs), svc)
                    .await;
            });
            Ok(Box::new(ours))
        }
    }

    /// `node://` upstreams go to the dialer (with the version prefix lowered as for any
    /// engine); an unreachable one is a 502 naming it; without a dialer, a 502 too.
    #[tokio::test]
    async fn dialed_upstreams_go_through_the_dialer() {
        let proxy = EngineProxy::new(TaskTracker::new(), CancellationToken::new())
            .with_dialer(Some(Arc::new(EchoDialer)));
        async fn info(
            p: &EngineProxy,
            upstream: &str,
        ) -> Result<(StatusCode, bytes::Bytes), ApiError> {
            let v = RequestVersion { prefix: None };
            let get = axum::http::Method::GET;
            p.call(upstream, get, "/info", bytes::Bytes::new(), &v)
                .await
        }
        let (status, body) = info(&proxy, "node://n1").await.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(&body[..], b"node://n1 /info");

        let err = info(&proxy, "node://gone").await.unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_GATEWAY);
        assert!(
            err.message.contains("node://gone: node gone has no engine"),
            "{}",
            err.message
        );

        let plain = EngineProxy::new(TaskTracker::new(), CancellationToken::new());
        let err = info(&plain, "node://n1").await.unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_GATEWAY);
    }
}
