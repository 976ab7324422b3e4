//! bollard over TLS with the manager's own rustls config (`swarmd manage --tls`).
//!
//! Not bollard's `ssl` feature: that one always verifies engines against the CA plus the
//! system's roots (classic's `--tls` without `--tlsverify` verifies nothing), re-reads the
//! key files on every handshake and panics without a process-wide crypto provider. Here
//! each request dials the engine with [`swarmd_engine_api::tls::dial`], the same dialler
//! the API's proxy uses, so both talk to engines with one config.

use std::sync::Arc;

use bollard::{BollardRequest, ClientVersion, Docker};
use hyper::Response;
use hyper::body::Incoming;
use hyper::header::{HOST, HeaderValue};
use hyper_util::rt::TokioIo;

/// A bollard client whose every request goes over a fresh TLS connection to `addr`
/// (`host:port`). No pooling: the refresh loop makes a handful of calls a minute and an
/// events stream holds its own connection, as with bollard's own TLS client.
pub(super) fn connect(
    addr: &str,
    config: Arc<rustls::ClientConfig>,
    timeout_secs: u64,
    version: &ClientVersion,
) -> Result<Docker, bollard::errors::Error> {
    let target = addr.to_owned();
    let transport = move |req: BollardRequest| {
        let config = config.clone();
        let addr = target.clone();
        async move { send(&config, &addr, req).await }
    };
    Docker::connect_with_custom_transport(
        transport,
        Some(format!("https://{addr}")),
        timeout_secs,
        version,
    )
}

async fn send(
    config: &Arc<rustls::ClientConfig>,
    addr: &str,
    req: BollardRequest,
) -> Result<Response<Incoming>, bollard::errors::Error> {
    let stream = swarmd_engine_api::tls::dial(config, addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "engine TLS connection ended");
        }
    });
    let (mut parts, body) = req.into_parts();
    // bollard wrote an absolute `https://host:port/v1.xx/...`; the wire wants origin form.
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    parts.uri = path.parse()?;
    if let Ok(host) = HeaderValue::from_str(addr) {
        parts.headers.insert(HOST, host);
    }
    Ok(sender
        .send_request(hyper::Request::from_parts(parts, body))
        .await?)
}
