//! bollard over streams the manager dials itself: TLS with its own rustls config
//! (`swarmd manage --tls`), or a [`Dialer`]'s stream to a swarm node's engine (issue 17).
//!
//! Not bollard's `ssl` feature: that one always verifies engines against the CA plus the
//! system's roots (classic's `--tls` without `--tlsverify` verifies nothing), re-reads the
//! key files on every handshake and panics without a process-wide crypto provider. Here
//! each request dials the engine with [`swarmd_engine_api::tls::dial`], the same dialler
//! the API's proxy uses, so both talk to engines with one config. A dialed engine's
//! requests go through the same [`Dialer`] the API's proxy is given.
//!
//! No pooling: one stream per request, HTTP/1 with upgrades. The refresh loop makes a
//! handful of calls a minute and an events stream holds its own connection, as with
//! bollard's own TLS client.

use std::future::Future;
use std::io;
use std::sync::Arc;

use bollard::{BollardRequest, ClientVersion, Docker};
use hyper::Response;
use hyper::body::Incoming;
use hyper::header::{HOST, HeaderValue};
use hyper_util::rt::TokioIo;
use swarmd_engine_api::dial::{Dialer, EngineStream};

/// The Host header sent to a dialed engine: it listens on a unix socket behind its agent,
/// where the docker CLI sends this name too.
const DIALED_HOST: &str = "docker";

/// A bollard client whose every request goes over a fresh TLS connection to `addr`
/// (`host:port`).
pub(super) fn tls(
    addr: &str,
    config: Arc<rustls::ClientConfig>,
    timeout_secs: u64,
    version: &ClientVersion,
) -> Result<Docker, bollard::errors::Error> {
    let target = addr.to_owned();
    let dial = move || {
        let config = config.clone();
        let addr = target.clone();
        async move {
            let stream: EngineStream =
                Box::new(swarmd_engine_api::tls::dial(&config, &addr).await?);
            Ok(stream)
        }
    };
    over_streams(
        dial,
        &format!("https://{addr}"),
        addr,
        timeout_secs,
        version,
    )
}

/// A bollard client whose every request goes over a fresh stream from `dialer` to
/// `upstream` (`node://<ID>`).
pub(super) fn dialed(
    upstream: &str,
    dialer: Arc<dyn Dialer>,
    timeout_secs: u64,
    version: &ClientVersion,
) -> Result<Docker, bollard::errors::Error> {
    let target = upstream.to_owned();
    let dial = move || {
        let dialer = dialer.clone();
        let upstream = target.clone();
        async move { dialer.dial(&upstream).await }
    };
    // bollard only builds absolute URIs from the base, which `send` cuts to origin form.
    over_streams(
        dial,
        &format!("http://{DIALED_HOST}"),
        DIALED_HOST,
        timeout_secs,
        version,
    )
}

/// bollard with a custom transport: each request on a new stream from `dial`, with `host`
/// as its Host header.
fn over_streams<D, F>(
    dial: D,
    base_url: &str,
    host: &str,
    timeout_secs: u64,
    version: &ClientVersion,
) -> Result<Docker, bollard::errors::Error>
where
    D: Fn() -> F + Send + Sync + 'static,
    F: Future<Output = io::Result<EngineStream>> + Send + 'static,
{
    let host = HeaderValue::from_str(host).ok();
    let transport = move |req: BollardRequest| {
        let stream = dial();
        let host = host.clone();
        async move { send(stream.await?, host, req).await }
    };
    Docker::connect_with_custom_transport(transport, Some(base_url), timeout_secs, version)
}

async fn send(
    stream: EngineStream,
    host: Option<HeaderValue>,
    req: BollardRequest,
) -> Result<Response<Incoming>, bollard::errors::Error> {
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "engine connection ended");
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
    if let Some(host) = host {
        parts.headers.insert(HOST, host);
    }
    Ok(sender
        .send_request(hyper::Request::from_parts(parts, body))
        .await?)
}
