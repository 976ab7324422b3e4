//! What every handler of `swarmd manage`'s API gets.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use bytes::Bytes;
use futures::future::join_all;
use swarmd_engine_api::ApiError;
use swarmd_engine_api::proxy::EngineProxy;
use swarmd_engine_api::version::RequestVersion;
use tokio_util::sync::CancellationToken;

use crate::discovery::{EngineAddr, EngineState};
use crate::options::ManageOptions;
use crate::pool::{EngineSnapshot, Pool};
use crate::scheduler::select::Scheduler;
use crate::view::{EngineRef, ManagerHost, ManagerRole};

/// How long a fan-out call (`docker ps`, `images`, ...) waits for one engine before
/// answering without it: one hung engine must not hang every listing.
pub const FAN_OUT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct ClassicState {
    pub pool: Arc<Pool>,
    pub proxy: Arc<EngineProxy>,
    pub scheduler: Scheduler,
    pub options: Arc<ManageOptions>,
    /// The manager's own name (`docker info`'s Name).
    /// The manager's host, build and API versions, for `/info` and `/version`.
    pub host: Arc<ManagerHost>,
    /// Open `/events` streams (`NEventsListener`).
    pub event_listeners: Arc<std::sync::atomic::AtomicUsize>,
    /// Held from scheduling to counting the container as pending, as classic's scheduler
    /// lock: two concurrent creates must not both take the last free port or slot.
    pub schedule_lock: Arc<tokio::sync::Mutex<()>>,
    /// Primary or replica; a replica's requests go to the primary.
    pub role: tokio::sync::watch::Receiver<ManagerRole>,
    pub cancel: CancellationToken,
}

/// The proxy's name for an engine: `tcp://host:port`, the socket path, or a dialed
/// engine's upstream (`node://ID`, which the proxy hands to its dialer).
pub fn upstream(addr: &EngineAddr) -> String {
    match addr {
        EngineAddr::Tcp { .. } => format!("tcp://{addr}"),
        EngineAddr::Unix(path) => path.clone(),
        EngineAddr::Dialed(upstream) => upstream.clone(),
    }
}

/// What classic's `Node` object and event `node` field show of an engine.
pub fn engine_ref(e: &EngineSnapshot) -> EngineRef {
    EngineRef::new(&e.node, engine_ip(e))
}

/// The IP clients reach an engine at: its pool member's address (a swarm node's), else
/// its discovery host.
pub fn engine_ip(e: &EngineSnapshot) -> String {
    match (&e.member, &e.addr) {
        (Some(m), _) if !m.ip.is_empty() => m.ip.clone(),
        (_, EngineAddr::Tcp { host, .. }) => host.clone(),
        (_, EngineAddr::Unix(_)) => "127.0.0.1".to_owned(),
        // A member with no address known: nothing truer to show.
        (_, EngineAddr::Dialed(_)) => String::new(),
    }
}

/// One engine's buffered answer to a fan-out call.
pub struct Answer {
    pub engine: EngineSnapshot,
    pub result: Result<(StatusCode, Bytes), ApiError>,
}

impl ClassicState {
    /// The engines requests may go to: healthy ones (classic skipped the others).
    pub fn healthy_engines(&self) -> Vec<EngineSnapshot> {
        self.pool
            .engines()
            .into_iter()
            .filter(|e| e.state == EngineState::Healthy)
            .collect()
    }

    /// One buffered call to one engine.
    pub async fn call(
        &self,
        addr: &EngineAddr,
        method: Method,
        path_and_query: &str,
        body: Bytes,
        version: &RequestVersion,
    ) -> Result<(StatusCode, Bytes), ApiError> {
        self.proxy
            .call(&upstream(addr), method, path_and_query, body, version)
            .await
    }

    /// The same call to every healthy engine at once, each bounded by
    /// [`FAN_OUT_TIMEOUT`]; answers in the pool's order.
    pub async fn fan_out(
        &self,
        method: Method,
        path_and_query: &str,
        body: Bytes,
        version: &RequestVersion,
    ) -> Vec<Answer> {
        let engines = self.healthy_engines();
        let calls = engines.into_iter().map(|engine| {
            let method = method.clone();
            let body = body.clone();
            async move {
                let call = self.call(&engine.addr, method, path_and_query, body, version);
                let result = match tokio::time::timeout(FAN_OUT_TIMEOUT, call).await {
                    Ok(r) => r,
                    Err(_) => Err(ApiError::new(
                        StatusCode::GATEWAY_TIMEOUT,
                        format!(
                            "engine {} did not answer within {FAN_OUT_TIMEOUT:?}",
                            engine.node.name
                        ),
                    )),
                };
                if let Err(e) = &result {
                    tracing::warn!(engine = %engine.addr, error = %e.message, "fan-out call failed");
                }
                Answer { engine, result }
            }
        });
        join_all(calls).await
    }
}
