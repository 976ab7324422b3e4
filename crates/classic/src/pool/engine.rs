//! One engine handle: dial, bounded calls, and the full refresh classic runs every
//! refresh interval.

mod transport;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::{ListContainersOptions, ListImagesOptions};
use swarmd_engine_api::dial::Dialer;

use super::EngineError;
use crate::discovery::{EngineAddr, EngineHealth, EngineState, Transition};
use crate::engine::info::InfoError;
use crate::scheduler::model::Node;

/// The manager's handle on one engine and its view of it.
pub struct Engine {
    addr: EngineAddr,
    pub(super) docker: Docker,
    timeout: Duration,
    negotiated: bool,
    pub(super) node: Node,
    pub(super) health: EngineHealth,
    /// `ServerVersion` from the last `/info`, for `docker info`'s per-engine block.
    server_version: String,
}

impl Engine {
    /// A handle on the engine at `addr`. Nothing is dialled yet (the first
    /// [`Engine::refresh`] validates the engine); `timeout` bounds every call, and
    /// `failure_retry` is `--engine-failure-retry`.
    pub fn new(
        addr: EngineAddr,
        timeout: Duration,
        failure_retry: u32,
    ) -> Result<Self, EngineError> {
        Self::with_tls(addr, timeout, failure_retry, None)
    }

    /// [`Engine::new`], and with `tls` (`--tls`/`--tlsverify`) a TCP engine is dialled
    /// over TLS with it, as classic did with its one TLS config (see
    /// `swarmd_engine_api::tls`).
    pub fn with_tls(
        addr: EngineAddr,
        timeout: Duration,
        failure_retry: u32,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<Self, EngineError> {
        Self::with_transport(addr, timeout, failure_retry, tls, None)
    }

    /// [`Engine::with_tls`], and an [`EngineAddr::Dialed`] engine is reached through
    /// `dialer` (without one, such an address is refused).
    pub fn with_transport(
        addr: EngineAddr,
        timeout: Duration,
        failure_retry: u32,
        tls: Option<Arc<rustls::ClientConfig>>,
        dialer: Option<Arc<dyn Dialer>>,
    ) -> Result<Self, EngineError> {
        // bollard's own timeout is whole seconds; ours (below) is the precise bound.
        let secs = timeout.as_secs().max(1);
        // Start at the oldest API the pool supports (engine 20.10 speaks 1.41); the first
        // call negotiates up to what the engine offers.
        let version = &bollard::ClientVersion {
            major_version: 1,
            minor_version: 41,
        };
        let docker = match &addr {
            EngineAddr::Unix(path) => Docker::connect_with_unix(path, secs, version),
            EngineAddr::Tcp { .. } => match tls {
                Some(config) => transport::tls(&addr.to_string(), config, secs, version),
                None => Docker::connect_with_http(&format!("http://{addr}"), secs, version),
            },
            EngineAddr::Dialed(upstream) => match dialer {
                Some(dialer) => transport::dialed(upstream, dialer, secs, version),
                None => {
                    return Err(EngineError::Client {
                        addr: addr.to_string(),
                        message: "no dialer for this engine".to_owned(),
                    });
                }
            },
        }
        .map_err(|e| EngineError::Client {
            addr: addr.to_string(),
            message: e.to_string(),
        })?;
        Ok(Self {
            node: Node {
                addr: addr.to_string(),
                ..Node::default()
            },
            addr,
            docker,
            timeout,
            negotiated: false,
            health: EngineHealth::new(failure_retry),
            server_version: String::new(),
        })
    }

    pub fn addr(&self) -> &EngineAddr {
        &self.addr
    }

    /// The engine's API client, for callers outside the refresh loop (the watchdog's
    /// create, start and remove); bound each call with your own timeout.
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    /// The scheduler's view of this engine as of the last refresh.
    pub fn node(&self) -> &Node {
        &self.node
    }

    pub fn health(&self) -> &EngineHealth {
        &self.health
    }

    /// The engine's `ServerVersion` as of the last full refresh.
    pub fn server_version(&self) -> &str {
        &self.server_version
    }

    /// Classic's periodic refresh: `/info`, every container (inspecting those
    /// [`Node::to_inspect`] names), then the images. Validating a pending engine inspects
    /// every container, as classic's connect does; afterwards only new and restarting ones
    /// are, as in classic's refresh loop, since events re-inspect on state changes.
    ///
    /// On success a pending engine becomes healthy (`Validated`) and an unhealthy one
    /// comes back (`Reconnected`); a connection error or timeout counts one failure (an
    /// `Unhealthy` transition shows in [`Engine::health`]). An engine whose ID changed goes
    /// back to pending. The node is only replaced when every call succeeded.
    pub async fn refresh(&mut self) -> Result<Option<Transition>, EngineError> {
        let result = self.full_refresh().await;
        let transition = self.record(&result, true);
        result.map(|()| transition)
    }

    pub(super) async fn full_refresh(&mut self) -> Result<(), EngineError> {
        let full = self.health.state() == EngineState::Pending;
        self.negotiate().await?;
        let docker = self.docker.clone();
        let info = self.call("GET /info", docker.info()).await?;
        let mut node = self.node.clone();
        node.apply_info(&info)?;
        let server_version = info.server_version.clone().unwrap_or_default();
        let summaries = self
            .call(
                "GET /containers/json",
                docker.list_containers(Some(ListContainersOptions {
                    all: true,
                    ..Default::default()
                })),
            )
            .await?;
        let mut inspects = HashMap::new();
        for id in node.to_inspect(&summaries, full) {
            // A container removed between the listing and its inspect is left out, as
            // classic does; only a dead engine fails the refresh.
            match self
                .call(
                    "GET /containers/{id}/json",
                    docker.inspect_container(&id, None),
                )
                .await
            {
                Ok(i) => {
                    inspects.insert(id, i);
                }
                Err(e) if e.is_connection_error() => return Err(e),
                Err(e) => tracing::debug!(error = %e, "container vanished during refresh"),
            }
        }
        node.merge_containers(&summaries, &inspects);
        let images = self
            .call(
                "GET /images/json",
                docker.list_images(None::<ListImagesOptions>),
            )
            .await?;
        node.set_images(&images);
        self.node = node;
        self.server_version = server_version;
        Ok(())
    }

    /// Feeds a call's outcome to the health state machine and the node's indicator. Only
    /// a full refresh (`validating`) has checked the engine's ID and so may validate a
    /// pending engine; any other success just clears the failure count.
    pub(super) fn record<T>(
        &mut self,
        result: &Result<T, EngineError>,
        validating: bool,
    ) -> Option<Transition> {
        let transition = match result {
            Ok(_) if validating && self.health.state() == EngineState::Pending => {
                self.health.validation_complete()
            }
            Ok(_) => self.health.on_success(),
            Err(EngineError::Info(InfoError::IdChanged { .. })) => {
                self.health.revalidate();
                None
            }
            Err(e) if e.is_connection_error() => self.health.on_connection_error(),
            Err(_) => None,
        };
        self.node.health = i64::from(self.health.health_indicator());
        transition
    }

    /// Settles the API version once per handle, so newer engines get their full API.
    async fn negotiate(&mut self) -> Result<(), EngineError> {
        if !self.negotiated {
            let docker = self.docker.clone();
            self.docker = self
                .call("GET /version", docker.negotiate_version())
                .await?;
            self.negotiated = true;
        }
        Ok(())
    }

    /// One engine call, bounded by the handle's timeout.
    pub(super) async fn call<T>(
        &self,
        call: &'static str,
        fut: impl Future<Output = Result<T, bollard::errors::Error>>,
    ) -> Result<T, EngineError> {
        let addr = self.addr.to_string();
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r.map_err(|e| EngineError::from_bollard(&addr, call, e)),
            Err(_) => Err(EngineError::Timeout {
                addr,
                call,
                timeout: self.timeout,
            }),
        }
    }
}
