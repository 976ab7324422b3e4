//! The engine's `/events` stream turned into the refreshes classic runs for each event.

use std::collections::HashMap;
use std::ops::ControlFlow;

use bollard::query_parameters::{EventsOptions, ListContainersOptions, ListImagesOptions};
use futures::StreamExt;

use super::{Engine, EngineError};
use crate::engine::event::{Refresh, refresh_for};

/// A request, from the API, to re-read one container now (after a call through the
/// manager changed it), answered on `done` once the node holds the engine's answer.
pub struct RefreshRequest {
    pub id: String,
    pub done: tokio::sync::oneshot::Sender<()>,
}

impl Engine {
    /// Follows the engine's events from `since` (unix seconds; `None` for from now),
    /// running for each the refresh [`refresh_for`] names, then calling `on_refresh` with
    /// the refresh and the updated node; `on_refresh` ends the watch by breaking.
    ///
    /// Opening the stream is bounded by the handle's timeout (whole seconds, at least one);
    /// once open, a stream may rightly stay quiet for hours, so an engine that hangs
    /// without closing it is found by the periodic [`Engine::refresh`], not here.
    ///
    /// Ends with an error when the engine goes away (the stream breaks or closes, or a
    /// refresh cannot reach it), counting one failure; the caller reconnects, passing the
    /// time of the last event it saw as `since` so nothing is missed. Errors the engine
    /// answers with during a refresh are logged and the watch goes on, as classic does.
    pub async fn watch_events(
        &mut self,
        since: Option<i64>,
        requests: Option<&mut tokio::sync::mpsc::UnboundedReceiver<RefreshRequest>>,
        mut on_refresh: impl FnMut(&Refresh, &crate::scheduler::model::Node) -> ControlFlow<()>,
    ) -> Result<(), EngineError> {
        let docker = self.docker.clone();
        let mut stream = docker.events(Some(EventsOptions {
            since: since.map(|s| s.to_string()),
            ..Default::default()
        }));
        let mut requests = requests;
        loop {
            let next = match requests.as_deref_mut() {
                Some(rx) => tokio::select! {
                    ev = stream.next() => Ok(ev),
                    Some(req) = rx.recv() => Err(req),
                },
                None => Ok(stream.next().await),
            };
            let next = match next {
                Ok(ev) => ev,
                Err(req) => {
                    let refresh = Refresh::Container {
                        id: req.id,
                        inspect: true,
                    };
                    let result = self.refresh_one(&refresh).await;
                    self.record(&result, false);
                    if let Err(e) = result {
                        if e.is_connection_error() {
                            return Err(e);
                        }
                        tracing::debug!(error = %e, "requested refresh failed");
                    }
                    let stop = on_refresh(&refresh, &self.node).is_break();
                    let _ = req.done.send(());
                    if stop {
                        return Ok(());
                    }
                    continue;
                }
            };
            let ev = match next {
                Some(Ok(ev)) => ev,
                Some(Err(e)) => {
                    let err = EngineError::from_bollard(&self.addr().to_string(), "GET /events", e);
                    let err = if err.is_connection_error() {
                        err
                    } else {
                        // A stream that breaks mid-body is a lost engine, whatever bollard
                        // calls it: the caller must reconnect either way.
                        EngineError::Connection {
                            addr: self.addr().to_string(),
                            message: err.to_string(),
                        }
                    };
                    let result = Err(err);
                    self.record::<()>(&result, false);
                    return result;
                }
                None => {
                    let result = Err(EngineError::Connection {
                        addr: self.addr().to_string(),
                        message: "the engine closed the event stream".to_owned(),
                    });
                    self.record::<()>(&result, false);
                    return result;
                }
            };
            let Some(refresh) = refresh_for(&ev) else {
                continue;
            };
            let result = self.refresh_one(&refresh).await;
            self.record(&result, false);
            match result {
                Err(e) if e.is_connection_error() => return Err(e),
                Err(e) => tracing::warn!(error = %e, ?refresh, "event refresh failed"),
                Ok(()) => {}
            }
            if on_refresh(&refresh, &self.node).is_break() {
                return Ok(());
            }
        }
    }

    /// Runs the refresh one event implies.
    pub async fn refresh_one(&mut self, refresh: &Refresh) -> Result<(), EngineError> {
        let docker = self.docker.clone();
        match refresh {
            Refresh::Container { id, inspect } => {
                let summaries = self
                    .call(
                        "GET /containers/json",
                        docker.list_containers(Some(ListContainersOptions {
                            all: true,
                            filters: Some(HashMap::from([("id".to_owned(), vec![id.clone()])])),
                            ..Default::default()
                        })),
                    )
                    .await?;
                // A container the node does not know yet has nothing to keep from an
                // earlier inspect, so it is inspected whatever the event.
                let known = self.node.containers.iter().any(|c| c.id == *id);
                let mut summaries = summaries;
                let inspected = if summaries.len() == 1 && (*inspect || !known) {
                    match self
                        .call(
                            "GET /containers/{id}/json",
                            docker.inspect_container(id, None),
                        )
                        .await
                    {
                        Ok(i) => Some(i),
                        // Removed between the listing and the inspect (`docker run --rm`
                        // ends so): gone, not an error.
                        Err(e) if e.is_not_found() => {
                            summaries.clear();
                            None
                        }
                        Err(e) => return Err(e),
                    }
                } else {
                    None
                };
                if !self
                    .node
                    .refresh_container(id, &summaries, inspected.as_ref())
                {
                    // The ID filter matched by prefix: classic refreshes everything.
                    return self.full_refresh().await;
                }
            }
            Refresh::Images => {
                let images = self
                    .call(
                        "GET /images/json",
                        docker.list_images(None::<ListImagesOptions>),
                    )
                    .await?;
                self.node.set_images(&images);
            }
            Refresh::Specs => {
                let info = self.call("GET /info", docker.info()).await?;
                self.node.apply_info(&info)?;
            }
            // The node keeps no networks or volumes yet: nothing to re-read.
            Refresh::Network { .. } | Refresh::Volume { .. } => {}
        }
        Ok(())
    }
}
