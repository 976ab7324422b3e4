//! The election's I/O: reading, creating and deleting the lock on each engine, and asking
//! another manager whether it is primary. Every call is bounded by `timeout`.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use bytes::Bytes;
use futures::future::join_all;
use serde_json::Value;
use swarmd_engine_api::ApiError;
use swarmd_engine_api::engine_path::EnginePath;
use swarmd_engine_api::proxy::EngineProxy;
use swarmd_engine_api::version::RequestVersion;

use super::decide::{EngineLock, LockRef, LockView};
use super::lock::{LOCK_NAME, Lock, create_body, locks_in};
use crate::api::upstream;
use crate::discovery::EngineAddr;

/// Why one lock call failed; logged, the engine then counts as unread.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{target}: no answer within {timeout:?}")]
    Timeout { target: String, timeout: Duration },
    #[error("{target}: {message}")]
    Call { target: String, message: String },
    #[error("{target}: {status}: {body}")]
    Status {
        target: String,
        status: StatusCode,
        body: String,
    },
}

/// Talks to engines (and managers) for the election.
pub struct LockClient {
    pub proxy: EngineProxy,
    pub timeout: Duration,
}

/// Unversioned: each engine answers at its own API version.
const NO_VERSION: RequestVersion = RequestVersion { prefix: None };

impl LockClient {
    async fn call(
        &self,
        target: &str,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), LockError> {
        let call = self.proxy.call(target, method, path, body, &NO_VERSION);
        match tokio::time::timeout(self.timeout, call).await {
            Err(_) => Err(LockError::Timeout {
                target: target.to_owned(),
                timeout: self.timeout,
            }),
            Ok(Err(ApiError { message, .. })) => Err(LockError::Call {
                target: target.to_owned(),
                message,
            }),
            Ok(Ok(answer)) => Ok(answer),
        }
    }

    /// The engine's lock networks, the lock first.
    pub async fn read(&self, engine: &EngineAddr) -> Result<Vec<Lock>, LockError> {
        let filters = format!(r#"{{"name":["{LOCK_NAME}"]}}"#);
        let path = EnginePath::new(["networks"])
            .query("filters", &filters)
            .build();
        let target = upstream(engine);
        match self.call(&target, Method::GET, &path, Bytes::new()).await? {
            (StatusCode::OK, body) => {
                let nets: Vec<Value> =
                    serde_json::from_slice(&body).map_err(|e| LockError::Call {
                        target: target.clone(),
                        message: format!("network list: {e}"),
                    })?;
                Ok(locks_in(&nets))
            }
            (status, body) => Err(status_error(target, status, &body)),
        }
    }

    /// Creates `holder`'s lock unless the engine already holds one (then a no-op: the
    /// read that follows tells whose it is).
    pub async fn create(&self, engine: &EngineAddr, holder: &str) -> Result<(), LockError> {
        let target = upstream(engine);
        let body = Bytes::from(create_body(holder).to_string());
        match self
            .call(&target, Method::POST, "/networks/create", body)
            .await?
        {
            (s, _) if s.is_success() || s == StatusCode::CONFLICT => Ok(()),
            (status, body) => Err(status_error(target, status, &body)),
        }
    }

    /// Deletes one lock by ID; one already gone (replaced or released) is fine.
    pub async fn remove(&self, lock: &LockRef) -> Result<(), LockError> {
        let target = upstream(&lock.engine);
        let path = EnginePath::new(["networks", lock.id.as_str()]).build();
        match self
            .call(&target, Method::DELETE, &path, Bytes::new())
            .await?
        {
            (s, _) if s.is_success() || s == StatusCode::NOT_FOUND => Ok(()),
            (status, body) => Err(status_error(target, status, &body)),
        }
    }

    /// Every engine's lock at once; `healthy` is the count a majority is taken of.
    pub async fn read_all(&self, engines: &[EngineAddr]) -> LockView {
        let reads = engines
            .iter()
            .map(|e| async move { (e, self.read(e).await) });
        let read = join_all(reads)
            .await
            .into_iter()
            .filter_map(|(engine, r)| match r {
                Ok(mut locks) => {
                    let lock = (!locks.is_empty()).then(|| locks.remove(0));
                    Some(EngineLock {
                        engine: engine.clone(),
                        lock,
                        strays: locks,
                    })
                }
                Err(e) => {
                    tracing::warn!(engine = %engine, error = %e, "cannot read the primary lock");
                    None
                }
            })
            .collect();
        LockView {
            healthy: engines.len(),
            read,
        }
    }

    /// `holder`'s lock on each of `engines` at once.
    pub async fn create_all(&self, engines: &[EngineAddr], holder: &str) {
        let creates = engines
            .iter()
            .map(|e| async move { (e, self.create(e, holder).await) });
        for (engine, r) in join_all(creates).await {
            if let Err(e) = r {
                tracing::warn!(engine = %engine, error = %e, "cannot create the primary lock");
            }
        }
    }

    /// Deletes `locks` at once.
    pub async fn remove_all(&self, locks: &[LockRef]) {
        let removes = locks
            .iter()
            .map(|l| async move { (l, self.remove(l).await) });
        for (lock, r) in join_all(removes).await {
            match r {
                Ok(()) => {
                    tracing::debug!(engine = %lock.engine, id = %lock.id, "primary lock removed")
                }
                Err(e) => {
                    tracing::warn!(engine = %lock.engine, id = %lock.id, error = %e, "cannot remove the primary lock")
                }
            }
        }
    }

    /// Whether the manager at `advertise` answers `/info` with `Role: primary` (a manager
    /// that lost its engines answers, but as a replica: its locks are then stale).
    pub async fn is_primary(&self, advertise: &str) -> bool {
        let target = format!("tcp://{advertise}");
        match self.call(&target, Method::GET, "/info", Bytes::new()).await {
            Ok((StatusCode::OK, body)) => says_primary(&body),
            Ok((status, _)) => {
                tracing::debug!(primary = advertise, %status, "primary's /info failed");
                false
            }
            Err(e) => {
                tracing::debug!(primary = advertise, error = %e, "primary unreachable");
                false
            }
        }
    }
}

/// Whether an `/info` answer's `SystemStatus` starts with `Role: primary`.
pub fn says_primary(info: &[u8]) -> bool {
    serde_json::from_slice::<Value>(info)
        .ok()
        .and_then(|v| {
            v.get("SystemStatus")?
                .as_array()?
                .iter()
                .find(|p| p.get(0).and_then(Value::as_str) == Some("Role"))?
                .get(1)?
                .as_str()
                .map(|r| r == "primary")
        })
        .unwrap_or(false)
}

fn status_error(target: String, status: StatusCode, body: &[u8]) -> LockError {
    LockError::Status {
        target,
        status,
        body: String::from_utf8_lossy(body).trim().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::says_primary;

    #[test]
    fn only_a_role_primary_answer_counts_as_primary() {
        assert!(says_primary(
            br#"{"SystemStatus":[["Role","primary"],["Strategy","spread"]]}"#
        ));
        assert!(!says_primary(
            br#"{"SystemStatus":[["Role","replica"],["Primary","a:1"]]}"#
        ));
        // A plain engine (or a manager without --replication... which has Role too).
        assert!(!says_primary(br#"{"SystemStatus":null}"#));
        assert!(!says_primary(b"not json"));
    }
}
