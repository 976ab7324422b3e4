//! The local-engine proxy against a tiny in-test "engine" on a unix socket: version
//! clamping, bodies both ways, an upgraded (attach-style) stream, a long-lived stream, and
//! shutdown with streams still open.

mod common;

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::FakeBackend;
use futures::StreamExt;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use swarmd_engine_api::{ListenAddr, Listener, LocalEngine, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

type EngineBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn full(b: impl Into<Bytes>) -> EngineBody {
    Full::new(b.into()).boxed()
}

/// The fake engine: speaks API 1.41, echoes requests, upper-cases upgraded streams, and
/// holds `/events` open after one event.
async fn engine(req: Request<Incoming>) -> Result<Response<EngineBody>, Infallible> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    if path == "/_ping" {
        return Ok(Response::builder()
            .header("Api-Version", "1.41")
            .body(full("OK"))
            .unwrap());
    }
    if path.ends_with("/attach") {
        let on_upgrade = hyper::upgrade::on(req);
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let mut io = TokioIo::new(upgraded);
            let mut buf = [0u8; 64];
            while let Ok(n) = io.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let upper: Vec<u8> = buf[..n].to_ascii_uppercase();
                if io.write_all(&upper).await.is_err() {
                    break;
                }
            }
        });
        return Ok(Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("Content-Type", "application/vnd.docker.raw-stream")
            .header("Connection", "Upgrade")
            .header("Upgrade", "tcp")
            .body(full(""))
            .unwrap());
    }
    if path.ends_with("/events") {
        let first = futures::stream::once(async {
            Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"{\"status\":\"start\"}\n")))
        });
        let body = StreamBody::new(first.chain(futures::stream::pending()));
        return Ok(Response::builder()
            .header("Content-Type", "application/json")
            .body(BodyExt::boxed(body))
            .unwrap());
    }
    let method = req.method().to_string();
    let ua = req
        .headers()
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let echo = json!({
        "method": method,
        "path": path,
        "query": query,
        "ua": ua,
        "body": String::from_utf8_lossy(&body),
    });
    Ok(Response::builder()
        .header("Content-Type", "application/json")
        .body(full(echo.to_string()))
        .unwrap())
}

fn start_engine(path: &Path, cancel: CancellationToken) {
    let listener = UnixListener::bind(path).unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                r = listener.accept() => match r { Ok(s) => s, Err(_) => return },
                _ = cancel.cancelled() => return,
            };
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), hyper::service::service_fn(engine))
                    .with_upgrades()
                    .await;
            });
        }
    });
}

struct Harness {
    api: PathBuf,
    cancel: CancellationToken,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

async fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let engine_sock = dir.path().join("engine.sock");
    let api = dir.path().join("api.sock");
    let cancel = CancellationToken::new();
    start_engine(&engine_sock, cancel.clone());
    let fake = FakeBackend::manager();
    fake.with(|st| {
        st.engine = Some(LocalEngine::Docker {
            socket_path: engine_sock.to_string_lossy().into_owned(),
        })
    });
    let listener = Listener::bind(&ListenAddr::Unix(api.clone()))
        .await
        .unwrap();
    let server = tokio::spawn(serve(vec![listener], Arc::new(fake), cancel.clone()));
    Harness {
        api,
        cancel,
        server,
        _dir: dir,
    }
}

async fn client(sock: &Path) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let stream = UnixStream::connect(sock).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn.with_upgrades());
    sender
}

async fn get_json(sock: &Path, method: &str, uri: &str, body: &str) -> Value {
    let mut c = client(sock).await;
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "docker")
        .header("user-agent", "Docker-Client/28.2.2 (linux)")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let resp = c.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn forwards_requests_with_clamped_versions() {
    let h = harness().await;
    let v = get_json(&h.api, "GET", "/v1.50/containers/json?all=1", "").await;
    assert_eq!(v["path"], "/v1.41/containers/json");
    assert_eq!(v["query"], "all=1");
    assert_eq!(v["ua"], "Docker-Client/28.2.2 (linux)");
    let v = get_json(&h.api, "GET", "/v1.30/containers/json", "").await;
    assert_eq!(v["path"], "/v1.30/containers/json");
    let v = get_json(&h.api, "GET", "/containers/c1/json", "").await;
    assert_eq!(v["path"], "/containers/c1/json");
    let v = get_json(
        &h.api,
        "POST",
        "/v1.50/containers/create?name=c1",
        r#"{"Image":"busybox","Cmd":["sleep","100"]}"#,
    )
    .await;
    assert_eq!(v["method"], "POST");
    assert_eq!(v["query"], "name=c1");
    assert_eq!(v["body"], r#"{"Image":"busybox","Cmd":["sleep","100"]}"#);
    let v = get_json(&h.api, "GET", "/v1.50/distribution/busybox:latest/json", "").await;
    assert_eq!(v["path"], "/v1.41/distribution/busybox:latest/json");
    h.cancel.cancel();
    h.server.await.unwrap().unwrap();
}

#[tokio::test]
async fn upgrades_round_trip() {
    let h = harness().await;
    let mut c = client(&h.api).await;
    let req = Request::builder()
        .method("POST")
        .uri("/v1.50/containers/abc/attach?stream=1&stdout=1&stderr=1")
        .header("host", "docker")
        .header("connection", "Upgrade")
        .header("upgrade", "tcp")
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = c.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(resp.headers()["upgrade"], "tcp");
    assert_eq!(
        resp.headers()["content-type"],
        "application/vnd.docker.raw-stream"
    );
    let upgraded = hyper::upgrade::on(resp).await.unwrap();
    let mut io = TokioIo::new(upgraded);
    io.write_all(b"hello").await.unwrap();
    let mut buf = [0u8; 5];
    tokio::time::timeout(Duration::from_secs(5), io.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"HELLO");
    io.write_all(b"again").await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), io.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"AGAIN");
    h.cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), h.server)
        .await
        .expect("serve returns after cancel even with an upgraded stream open")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn long_lived_streams_flow_and_end_on_shutdown() {
    let h = harness().await;
    let mut c = client(&h.api).await;
    let req = Request::builder()
        .uri("/v1.50/events")
        .header("host", "docker")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(5), c.send_request(req))
        .await
        .expect("headers arrive before the stream ends")
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("first event is not buffered")
        .unwrap()
        .unwrap();
    assert_eq!(
        frame.into_data().unwrap(),
        Bytes::from_static(b"{\"status\":\"start\"}\n")
    );
    h.cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), h.server)
        .await
        .expect("serve returns promptly with an open event stream")
        .unwrap()
        .unwrap();
    assert!(!h.api.exists(), "the socket file is removed on shutdown");
}

#[tokio::test]
async fn unreachable_engine_is_a_502() {
    let dir = tempfile::tempdir().unwrap();
    let api = dir.path().join("api.sock");
    let fake = FakeBackend::manager();
    fake.with(|st| {
        st.engine = Some(LocalEngine::Docker {
            socket_path: dir
                .path()
                .join("missing.sock")
                .to_string_lossy()
                .into_owned(),
        })
    });
    let cancel = CancellationToken::new();
    let listener = Listener::bind(&ListenAddr::Unix(api.clone()))
        .await
        .unwrap();
    let server = tokio::spawn(serve(vec![listener], Arc::new(fake), cancel.clone()));
    let mut c = client(&api).await;
    let req = Request::builder()
        .uri("/v1.50/containers/json")
        .header("host", "docker")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = c.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    let body: Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("Cannot connect to the Docker Engine"),
        "{body}"
    );
    cancel.cancel();
    server.await.unwrap().unwrap();
}
