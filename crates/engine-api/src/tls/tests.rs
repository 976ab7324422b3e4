//! Loading the files (classic's messages, never a panic) and both sides over loopback:
//! the API refusing clients without a certificate under `--tlsverify`, and the proxy
//! dialling a TLS engine and splicing an upgraded connection through it.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode, header};
use axum::routing::{any, get, post};
use swarmd_testkit::{CertFiles, TestCa};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::proxy::EngineProxy;
use crate::router::ApiApp;
use crate::server::{ListenAddr, Listener, serve_app, serve_app_tls};
use crate::version::RequestVersion;

fn files(f: &CertFiles, verify: bool) -> TlsFiles {
    TlsFiles {
        cert: f.cert.clone(),
        key: f.key.clone(),
        ca: Some(f.ca.clone()),
        verify,
    }
}

fn load_err(files: &TlsFiles) -> String {
    TlsConfigs::load(files).unwrap_err().to_string()
}

#[test]
fn tls_load_refuses_missing_files_in_classics_words() {
    let dir = tempfile::tempdir().unwrap();
    let f = TestCa::new()
        .unwrap()
        .issue(dir.path(), "m", &["127.0.0.1"])
        .unwrap();
    let missing = dir.path().join("nope.pem");
    let err = load_err(&TlsFiles {
        cert: missing.clone(),
        ..files(&f, true)
    });
    assert!(
        err.starts_with(&format!(
            "Couldn't load X509 key pair ({}, {}): open {}: ",
            missing.display(),
            f.key.display(),
            missing.display()
        )) && err.ends_with(". Key encrypted?"),
        "{err}"
    );
    let err = load_err(&TlsFiles {
        ca: Some(missing.clone()),
        ..files(&f, true)
    });
    assert!(
        err.starts_with(&format!(
            "Couldn't read CA certificate: open {}: ",
            missing.display()
        )),
        "{err}"
    );
    // Without --tlsverify classic never reads the CA.
    TlsConfigs::load(&TlsFiles {
        ca: Some(missing),
        ..files(&f, false)
    })
    .unwrap();
}

#[test]
fn tls_load_refuses_a_key_that_is_not_the_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new().unwrap();
    let a = ca.issue(dir.path(), "a", &["127.0.0.1"]).unwrap();
    let b = ca.issue(dir.path(), "b", &["127.0.0.1"]).unwrap();
    let err = load_err(&TlsFiles {
        key: b.key.clone(),
        ..files(&a, true)
    });
    assert!(
        err.contains("tls: private key does not match public key. Key encrypted?"),
        "{err}"
    );
    std::fs::write(&b.key, "not a key\n").unwrap();
    let err = load_err(&files(&b, true));
    assert!(
        err.contains("tls: failed to find any PEM data in key input"),
        "{err}"
    );
    // A certificate where the CA should be is fine (it is one); junk is not.
    std::fs::write(&b.ca, "junk\n").unwrap();
    let err = load_err(&files(&a, true));
    assert!(
        err.starts_with("Couldn't read CA certificate: ") && err.contains("no PEM certificate"),
        "{err}"
    );
    TlsConfigs::load(&files(&a, false)).unwrap();
}

/// A TLS client config for tests: trusts `ca`, presents `cert` if given.
fn test_client(ca: &Path, cert: Option<&CertFiles>) -> Arc<rustls::ClientConfig> {
    match cert {
        Some(c) => TlsConfigs::load(&files(c, true)).unwrap().client,
        None => {
            let roots = files::ca_roots(ca).unwrap();
            Arc::new(
                rustls::ClientConfig::builder_with_provider(provider())
                    .with_safe_default_protocol_versions()
                    .unwrap()
                    .with_root_certificates(roots)
                    .with_no_client_auth(),
            )
        }
    }
}

/// Serves `router` on 127.0.0.1 (over TLS with `tls`) until the token is cancelled.
async fn serve(
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> (SocketAddr, CancellationToken) {
    let l = Listener::bind(&ListenAddr::Tcp("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let ListenAddr::Tcp(addr) = l.local_addr().unwrap() else {
        unreachable!()
    };
    let cancel = CancellationToken::new();
    let app = ApiApp::from_router(router);
    tokio::spawn(serve_app_tls(vec![l], tls, move |_, _| app, cancel.clone()));
    (addr, cancel)
}

/// One `GET path` with `Connection: close`; the whole answer, or the I/O error.
async fn get_over<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    path: &str,
) -> std::io::Result<String> {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

async fn tls_get(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> std::io::Result<String> {
    let s = dial(&config, &addr.to_string()).await?;
    get_over(s, "/_ping").await
}

fn ping_router() -> Router {
    Router::new().route("/_ping", get(|| async { "OK" }))
}

fn certs() -> (tempfile::TempDir, CertFiles, CertFiles) {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new().unwrap();
    let server = ca.issue(dir.path(), "manager", &["127.0.0.1"]).unwrap();
    let client = ca.issue(dir.path(), "client", &["client"]).unwrap();
    (dir, server, client)
}

#[tokio::test]
async fn tls_verify_serves_only_clients_with_a_certificate_of_the_ca() {
    let (_dir, server, client) = certs();
    let tls = TlsConfigs::load(&files(&server, true)).unwrap();
    let (addr, cancel) = serve(ping_router(), Some(tls.server)).await;

    let answer = tls_get(addr, test_client(&server.ca, Some(&client)))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.ends_with("OK"), "{answer}");

    // No certificate: the handshake (or, with TLS 1.3, the first read) fails.
    match tls_get(addr, test_client(&server.ca, None)).await {
        Ok(a) => assert!(!a.contains("200 OK"), "served without a certificate: {a}"),
        Err(e) => tracing::debug!(error = %e, "refused as expected"),
    }
    // A certificate from another CA is refused too.
    let other_dir = tempfile::tempdir().unwrap();
    let stranger = TestCa::new()
        .unwrap()
        .issue(other_dir.path(), "x", &["x"])
        .unwrap();
    let mut config = (*TlsConfigs::load(&files(&stranger, false)).unwrap().client).clone();
    config.alpn_protocols.clear();
    match tls_get(addr, Arc::new(config)).await {
        Ok(a) => assert!(!a.contains("200 OK"), "served a stranger: {a}"),
        Err(e) => tracing::debug!(error = %e, "refused as expected"),
    }
    // Plain HTTP on the TLS port gets nothing served.
    let plain = get_over(TcpStream::connect(addr).await.unwrap(), "/_ping").await;
    assert!(!plain.unwrap_or_default().contains("200 OK"));
    cancel.cancel();
}

#[tokio::test]
async fn tls_without_verify_serves_clients_without_a_certificate() {
    let (_dir, server, _client) = certs();
    let tls = TlsConfigs::load(&TlsFiles {
        ca: None,
        ..files(&server, false)
    })
    .unwrap();
    let (addr, cancel) = serve(ping_router(), Some(tls.server)).await;
    let answer = tls_get(addr, test_client(&server.ca, None)).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    cancel.cancel();
}

/// An engine stand-in: `POST /upgrade` switches to a raw stream that echoes.
fn echo_engine() -> Router {
    Router::new().route(
        "/upgrade",
        post(|mut req: Request<Body>| async move {
            let on = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(up) = on.await {
                    let mut io = hyper_util::rt::TokioIo::new(up);
                    let mut buf = [0u8; 64];
                    while let Ok(n) = io.read(&mut buf).await {
                        if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            });
            Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header(header::CONNECTION, "Upgrade")
                .header(header::UPGRADE, "tcp")
                .body(Body::empty())
                .unwrap()
        }),
    )
}

#[tokio::test]
async fn tls_proxy_dials_engines_with_the_certificate_and_splices_upgrades() {
    let (_dir, engine_cert, manager_cert) = certs();
    let engine_tls = TlsConfigs::load(&files(&engine_cert, true)).unwrap();
    let (engine, engine_cancel) = serve(echo_engine(), Some(engine_tls.server)).await;
    let upstream = format!("tcp://{engine}");

    // The manager's API, in the clear here, forwarding everything to the TLS engine.
    let manager_tls = TlsConfigs::load(&files(&manager_cert, true)).unwrap();
    let l = Listener::bind(&ListenAddr::Tcp("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let ListenAddr::Tcp(front) = l.local_addr().unwrap() else {
        unreachable!()
    };
    let cancel = CancellationToken::new();
    let client = manager_tls.client.clone();
    tokio::spawn(serve_app(
        vec![l],
        move |tracker, inner| {
            let proxy = Arc::new(EngineProxy::new(tracker, inner).with_tls(Some(client)));
            ApiApp::from_router(Router::new().fallback(any(move |req: Request<Body>| {
                let proxy = proxy.clone();
                let upstream = upstream.clone();
                async move {
                    proxy
                        .forward(&upstream, req, &RequestVersion { prefix: None })
                        .await
                }
            })))
        },
        cancel.clone(),
    ));

    let mut s = TcpStream::connect(front).await.unwrap();
    s.write_all(
        b"POST /upgrade HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n",
    )
    .await
    .unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s.write_all(b"ping over tls").await.unwrap();
    let mut echoed = [0u8; 13];
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        s.read_exact(&mut echoed),
    )
    .await
    .expect("echo within 10s")
    .unwrap();
    assert_eq!(&echoed, b"ping over tls");

    // Without the manager's certificate the engine refuses the proxy: a 502, not a hang.
    let anonymous = EngineProxy::new(
        tokio_util::task::TaskTracker::new(),
        CancellationToken::new(),
    )
    .with_tls(Some(test_client(&engine_cert.ca, None)));
    let err = anonymous
        .call(
            &format!("tcp://{engine}"),
            axum::http::Method::GET,
            "/_ping",
            bytes::Bytes::new(),
            &RequestVersion { prefix: None },
        )
        .await
        .unwrap_err();
    assert_eq!(err.status, StatusCode::BAD_GATEWAY, "{}", err.message);
    cancel.cancel();
    engine_cancel.cancel();
}

/// Reads up to the end of the response head.
async fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), s.read(&mut b))
            .await
            .expect("response head within 10s")
            .unwrap();
        assert!(
            n > 0,
            "connection closed after {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(b[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

#[test]
fn tls_verify_without_a_ca_is_refused_not_a_panic() {
    let (_dir, server, _client) = certs();
    let err = load_err(&TlsFiles {
        ca: None,
        ..files(&server, true)
    });
    assert_eq!(err, "Couldn't read CA certificate: no CA certificate given");
}

#[tokio::test]
async fn tls_engines_are_verified_only_with_tlsverify() {
    let (dir, _server, manager) = certs();
    // An engine whose certificate names another address, from a CA the manager does not
    // know: classic's --tls (InsecureSkipVerify) talks to it anyway, --tlsverify does not.
    let stranger = TestCa::new()
        .unwrap()
        .issue(dir.path(), "elsewhere", &["10.9.9.9"])
        .unwrap();
    let engine = TlsConfigs::load(&TlsFiles {
        ca: None,
        ..files(&stranger, false)
    })
    .unwrap();
    let (addr, cancel) = serve(ping_router(), Some(engine.server)).await;

    let insecure = TlsConfigs::load(&files(&manager, false)).unwrap().client;
    let answer = tls_get(addr, insecure).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");

    let verifying = TlsConfigs::load(&files(&manager, true)).unwrap().client;
    let err = tls_get(addr, verifying).await.unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");
    cancel.cancel();
}
