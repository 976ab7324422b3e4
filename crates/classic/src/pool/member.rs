//! One engine's supervised task: refresh, follow its events until the next refresh is
//! due, and publish what it learns for the API and the scheduler to read.

use std::ops::ControlFlow;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rand::Rng;
use tokio::sync::{Notify, broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::events::RefreshRequest;
use super::{Engine, PoolConfig};
use crate::discovery::{EngineAddr, EngineState, PoolMember};
use crate::scheduler::model::Node;

/// What the pool knows of one engine at a moment: the scheduler's node and its health,
/// as `docker info` shows them.
#[derive(Debug, Clone)]
pub struct EngineSnapshot {
    pub addr: EngineAddr,
    pub node: Node,
    pub state: EngineState,
    pub failures: u32,
    /// The last failed call's error, cleared by a successful refresh.
    pub last_error: Option<String>,
    /// When the last full refresh succeeded.
    pub updated_at: Option<SystemTime>,
    /// The engine's `ServerVersion` from `/info`.
    pub server_version: String,
    /// The pool member's host facts ([`crate::discovery::Discovery::Members`]); `None` for
    /// engines of a discovery URL. [`super::Pool::engines`] has them applied to `node`.
    pub member: Option<PoolMember>,
}

impl EngineSnapshot {
    pub(super) fn new(addr: EngineAddr) -> Self {
        Self {
            node: Node {
                addr: addr.to_string(),
                ..Node::default()
            },
            addr,
            state: EngineState::Pending,
            failures: 0,
            last_error: None,
            updated_at: None,
            server_version: String::new(),
            member: None,
        }
    }

    /// The snapshot with its member's facts applied to its node (see `overlay.rs`).
    pub(super) fn with_member_facts(mut self) -> Self {
        if let Some(m) = &self.member {
            super::overlay::apply(&mut self.node, m);
        }
        self
    }
}

/// An engine's health changed (classic's `engine_connect` / `engine_disconnect` /
/// `engine_reconnect` cluster events), for the watchdog. Sent when the shared view
/// changes, so a reader that then calls [`super::Pool::engines`] sees `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolEvent {
    pub addr: EngineAddr,
    pub from: EngineState,
    pub to: EngineState,
}

/// After an event stream breaks, how long before the next refresh: long enough not to
/// spin on a dead engine, short enough that `--engine-failure-retry` failures in a row
/// flag it unhealthy within seconds (classic's event monitor reacted as fast).
const RETRY_AFTER_BROKEN_STREAM: Duration = Duration::from_secs(1);

/// How soon an engine that is not healthy is tried again after `failures` failed tries
/// ([`PoolConfig::unhealthy_retry`]): `base`, doubling up to 16 times it.
fn unhealthy_retry(base: Duration, failures: u32) -> Duration {
    base.saturating_mul(1 << failures.min(4))
}

/// Runs until `cancel` (the engine left the discovery, or the manager stops).
pub(super) async fn run(
    addr: EngineAddr,
    view: Arc<RwLock<EngineSnapshot>>,
    config: PoolConfig,
    events: broadcast::Sender<PoolEvent>,
    (mut requests, wake): (mpsc::UnboundedReceiver<RefreshRequest>, Arc<Notify>),
    cancel: CancellationToken,
) {
    let mut engine = match Engine::with_transport(
        addr.clone(),
        config.timeout,
        config.failure_retry,
        config.tls.clone(),
        config.dialer.clone(),
    ) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(engine = %addr, error = %e, "engine address unusable");
            if let Ok(mut v) = view.write() {
                v.last_error = Some(e.to_string());
            }
            return;
        }
    };
    loop {
        let since = unix_now();
        let before = engine.health().state();
        let result = engine.refresh().await;
        log_state_change(
            &addr,
            before,
            engine.health().state(),
            engine.health().failures(),
        );
        publish(
            &view,
            &engine,
            result.as_ref().err().map(ToString::to_string),
            true,
            &events,
        );
        if let Err(e) = &result {
            tracing::debug!(engine = %addr, error = %e, "engine refresh failed");
        }
        let wait = engine
            .health()
            .refresh_wait(config.refresh, rand::rng().random());
        let wait = match config.unhealthy_retry {
            Some(base) if !engine.health().is_healthy() => {
                wait.min(unhealthy_retry(base, engine.health().failures()))
            }
            _ => wait,
        };
        if engine.health().is_healthy() {
            let watch = engine.watch_events(Some(since), Some(&mut requests), |_, node| {
                if let Ok(mut v) = view.write() {
                    v.node = node.clone();
                }
                ControlFlow::Continue(())
            });
            let broken = tokio::select! {
                _ = cancel.cancelled() => return,
                r = tokio::time::timeout(wait, watch) => match r {
                    Ok(Err(e)) => Some(e),
                    // The refresh is due (or the watch ended on its own).
                    Err(_) | Ok(Ok(())) => None,
                },
            };
            if let Some(e) = broken {
                tracing::info!(engine = %addr, error = %e, "engine event stream broke");
                publish(&view, &engine, Some(e.to_string()), false, &events);
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(RETRY_AFTER_BROKEN_STREAM.min(wait)) => {}
                }
            }
        } else {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
                _ = wake.notified() => {}
            }
        }
    }
}

/// Copies the engine's node and health into the shared view, and tells subscribers when
/// the state changed (none listening is fine).
fn publish(
    view: &RwLock<EngineSnapshot>,
    engine: &Engine,
    error: Option<String>,
    refreshed: bool,
    events: &broadcast::Sender<PoolEvent>,
) {
    let Ok(mut v) = view.write() else { return };
    v.node = engine.node().clone();
    let from = v.state;
    v.state = engine.health().state();
    if from != v.state {
        let _ = events.send(PoolEvent {
            addr: v.addr.clone(),
            from,
            to: v.state,
        });
    }
    v.failures = engine.health().failures();
    v.server_version = engine.server_version().to_owned();
    match error {
        Some(e) => v.last_error = Some(e),
        None if refreshed => {
            v.last_error = None;
            v.updated_at = Some(SystemTime::now());
        }
        None => {}
    }
}

/// Classic's log lines for health changes.
fn log_state_change(addr: &EngineAddr, before: EngineState, after: EngineState, failures: u32) {
    match (before, after) {
        (b, a) if b == a => {}
        (EngineState::Pending, EngineState::Healthy) => {
            tracing::info!(engine = %addr, "engine validated")
        }
        (_, EngineState::Healthy) => {
            tracing::info!(engine = %addr, "Engine came back to life. Hooray!")
        }
        (_, EngineState::Unhealthy) => tracing::warn!(
            engine = %addr,
            failures,
            "Flagging engine as unhealthy. Connect failed {failures} times"
        ),
        (_, state) => tracing::info!(engine = %addr, %state, "engine state changed"),
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
