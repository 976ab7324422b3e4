//! The API's answers to bad input and to a pool whose engines are missing or broken, in
//! process (no Docker Engine): a clear 4xx/5xx with Docker's or classic's words, never a
//! panic or a hang.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::discovery::{Discovery, EngineAddr, RefreshIntervals};
use crate::options::{ManageArgs, ManageOptions};
use crate::pool::{Pool, PoolConfig};

struct Fixture {
    app: swarmd_engine_api::ApiApp,
    cancel: CancellationToken,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn fixture(engines: Vec<EngineAddr>) -> Fixture {
    let cancel = CancellationToken::new();
    let options = ManageOptions::from_args(&ManageArgs {
        discovery: Some("nodes://127.0.0.1:1".into()),
        ..ManageArgs::default()
    })
    .expect("default options");
    let pool = Pool::start(
        PoolConfig {
            timeout: Duration::from_millis(500),
            failure_retry: 1,
            refresh: RefreshIntervals {
                min: Duration::from_millis(100),
                max: Duration::from_millis(200),
            },
            heartbeat: Duration::from_secs(1),
            tls: None,
            dialer: None,
            unhealthy_retry: None,
        },
        Discovery::Nodes(engines),
        cancel.clone(),
    );
    let scheduler = super::scheduler(&options);
    let app = super::app(
        super::Manager {
            pool,
            options: Arc::new(options),
            scheduler,
            schedule_lock: Arc::default(),
            hostname: "manager".into(),
            role: crate::replication::role::standalone(),
        },
        TaskTracker::new(),
        cancel.clone(),
    );
    Fixture { app, cancel }
}

async fn call(f: &Fixture, method: &str, path: &str, body: &str) -> (StatusCode, String) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), f.app.clone().oneshot(req))
        .await
        .expect("the API answers within 10 s")
        .unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn message(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| body.to_owned())
}

#[tokio::test]
async fn malformed_create_bodies_are_400s() {
    let f = fixture(Vec::new());
    let (s, b) = call(&f, "POST", "/v1.41/containers/create", "{not json").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let (s, b) = call(&f, "POST", "/containers/create", "").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        message(&b),
        "config cannot be empty in order to create a container"
    );
}

#[tokio::test]
async fn an_empty_pool_says_no_healthy_node() {
    let f = fixture(Vec::new());
    let (s, b) = call(&f, "POST", "/containers/create", r#"{"Image":"busybox"}"#).await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(message(&b), "No healthy node available in the cluster");
    let (s, b) = call(&f, "GET", "/containers/json?all=1", "").await;
    assert_eq!((s, b.as_str()), (StatusCode::OK, "[]"));
    let (s, b) = call(&f, "GET", "/containers/nope/json", "").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(message(&b), "No such container: nope");
}

#[tokio::test]
async fn bad_filters_and_unknown_routes() {
    let f = fixture(Vec::new());
    let (s, _) = call(&f, "GET", "/containers/json?filters=%7Bnot", "").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, b) = call(&f, "GET", "/swarm", "").await;
    assert_eq!(
        (s, message(&b).as_str()),
        (StatusCode::NOT_FOUND, "page not found")
    );
    let (s, _) = call(&f, "GET", "/v9.99/info", "").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "a version out of range");
}

/// An engine that accepts connections and answers garbage, and one that never answers:
/// `docker info` and `docker ps` still answer, the engines shown with their errors.
#[tokio::test]
async fn broken_engines_never_hang_or_panic_the_api() {
    let garbage = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gaddr = garbage.local_addr().unwrap();
    let saddr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = garbage.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n{garbage!")
                    .await;
            });
        }
    });
    let held = Arc::new(tokio::sync::Mutex::new(Vec::new()));
    let keep = held.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = silent.accept().await {
            keep.lock().await.push(s);
        }
    });
    let f = fixture(vec![
        EngineAddr::parse(&gaddr.to_string()).unwrap(),
        EngineAddr::parse(&saddr.to_string()).unwrap(),
    ]);
    let (s, b) = call(&f, "GET", "/info", "").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let info: Value = serde_json::from_str(&b).unwrap();
    let status = info["SystemStatus"].as_array().unwrap();
    assert!(
        status.iter().any(|p| p[0] == "Nodes" && p[1] == "2"),
        "{status:?}"
    );
    let (s, b) = call(&f, "GET", "/containers/json", "").await;
    assert_eq!((s, b.as_str()), (StatusCode::OK, "[]"));
    let (s, b) = call(&f, "POST", "/containers/create", r#"{"Image":"busybox"}"#).await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(message(&b), "No healthy node available in the cluster");
}
