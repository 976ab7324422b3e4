//! The watchdog's supervised task: on every engine state change (and on a timer, so a
//! missed change or a failed move is tried again) it reads the pool, moves what
//! [`plan::moves`] names and removes what [`plan::stale_copies`] names.

use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, RemoveContainerOptions,
};
use bollard_stubs::models::ContainerCreateBody;
use futures::TryStreamExt;
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::body::{BodyError, create_body, for_engine, name_of, request_for};
use super::plan::{self, EngineView, Move, Stale};
use crate::discovery::{EngineAddr, EngineState};
use crate::pool::Pool;
use crate::scheduler::model::Container;
use crate::scheduler::select::{ScheduleError, Scheduler};

/// A pull moves a whole image: far longer than one API call may take.
const PULL_TIMEOUT: Duration = Duration::from_secs(600);

/// What the watchdog needs besides the pool.
#[derive(Clone)]
pub struct Watchdog {
    pub pool: Arc<Pool>,
    /// The manager's scheduler: a moved container goes through the same filters and
    /// strategy as a `docker run`.
    pub scheduler: Scheduler,
    /// The API's scheduling lock, held from ranking the engines to counting the new copy
    /// as pending, so a concurrent `docker run` cannot take the same slot or port.
    pub schedule_lock: Arc<tokio::sync::Mutex<()>>,
    /// Bound on each engine call (`--engine-timeout` style).
    pub timeout: Duration,
    /// How often the pool is looked at when no engine changes state.
    pub interval: Duration,
}

/// Why one container could not be moved; logged, and tried again on the next pass.
#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    #[error("no inspect kept for container {0}")]
    NoInspect(String),
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    /// Classic's (and Docker's) wording for a name taken by another container.
    #[error(
        "Conflict: The name {0} is already assigned. You have to delete (or rename) that container to be able to assign {0} to a container again."
    )]
    NameTaken(String),
    #[error("engine {addr}: {message}")]
    Engine { addr: String, message: String },
}

/// Runs `w` while `role` is primary (started and stopped with it), until `cancel`: only
/// one manager of a pool reschedules (a manager without replication is always primary).
pub async fn run_while_primary(
    w: Watchdog,
    role: tokio::sync::watch::Receiver<crate::view::ManagerRole>,
    cancel: CancellationToken,
) {
    crate::replication::gate::while_primary(role, cancel, move |token| run(w.clone(), token)).await
}

/// Runs until `cancel`. The lead starts it beside the API (see the module docs).
pub async fn run(w: Watchdog, cancel: CancellationToken) {
    let mut changes = w.pool.subscribe();
    tracing::debug!("Watchdog enabled");
    loop {
        w.pass().await;
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = changes.recv() => match r {
                Ok(ev) => tracing::debug!(engine = %ev.addr, from = %ev.from, to = %ev.to, "engine state changed"),
                // Missed changes only mean the next pass reads a newer pool.
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            },
            _ = tokio::time::sleep(w.interval) => {}
        }
    }
}

impl Watchdog {
    /// One look at the pool: every move, then every stale copy.
    pub async fn pass(&self) {
        for m in plan::moves(&self.views()) {
            if let Err(e) = self.move_container(&m).await {
                tracing::error!(
                    container = %m.container.id,
                    engine = %m.from,
                    error = %e,
                    "Failed to reschedule container {}: {e}",
                    m.container.id
                );
            }
        }
        for s in plan::stale_copies(&self.views()) {
            self.remove_stale(&s).await;
        }
    }

    /// The pool's engines with their state and their containers, pending ones included.
    fn views(&self) -> Vec<EngineView> {
        let states: Vec<(EngineAddr, EngineState)> = self
            .pool
            .engines()
            .into_iter()
            .map(|e| (e.addr, e.state))
            .collect();
        self.pool
            .nodes()
            .into_iter()
            .filter_map(|(addr, node)| {
                let state = states.iter().find(|(a, _)| *a == addr)?.1;
                Some(EngineView { addr, state, node })
            })
            .collect()
    }

    /// Recreates one container on the engine the scheduler picks among the healthy ones,
    /// starts it if it was running, and logs classic's lines.
    async fn move_container(&self, m: &Move) -> Result<(), MoveError> {
        let c = &m.container;
        let inspect = c
            .inspect
            .as_deref()
            .ok_or_else(|| MoveError::NoInspect(c.id.clone()))?;
        let name = name_of(inspect)?;
        let body = create_body(inspect)?;
        let req = request_for(c, &body);
        let (to, to_name, ncpu, token) = {
            let _lock = self.schedule_lock.lock().await;
            let views = self.views();
            let wanted = format!("/{name}");
            if views.iter().any(|v| {
                v.addr != m.from && v.node.containers.iter().any(|k| k.names.contains(&wanted))
            }) {
                return Err(MoveError::NameTaken(name));
            }
            let healthy: Vec<_> = views
                .into_iter()
                .filter(|v| v.state == EngineState::Healthy && v.addr != m.from)
                .collect();
            let nodes: Vec<_> = healthy.iter().map(|v| v.node.clone()).collect();
            let ranked = self.scheduler.select(&nodes, &req, &mut rand::rng())?;
            let chosen = ranked[0];
            let Some(to) = healthy.iter().find(|v| v.node.addr == chosen.addr) else {
                return Err(ScheduleError::NoNodeAvailable.into());
            };
            let pending = Container {
                names: vec![wanted],
                image: req.image.clone(),
                labels: req.labels.clone(),
                cpu_shares: req.cpu_shares,
                memory: req.memory,
                port_bindings: req.port_bindings.clone(),
                exposed_ports: req.exposed_ports.clone(),
                network_mode: req.network_mode.clone(),
                state: "created".into(),
                ..Default::default()
            };
            let token = self.pool.add_pending(&to.addr, pending);
            (to.addr.clone(), to.node.name.clone(), chosen.cpus, token)
        };
        let body = for_engine(&body, req.cpu_shares, ncpu);
        let docker = self.client(&to)?;
        let new_id = match self.create(&docker, &to, &name, body).await {
            Ok(id) => {
                self.pool.pending_created(&token, &id);
                id
            }
            Err(e) => {
                self.pool.end_pending(token);
                return Err(e);
            }
        };
        tracing::info!(
            container = %c.id,
            from = %m.from,
            to = %to,
            new = %new_id,
            "Rescheduled container {} from {} to {} as {}",
            c.id,
            m.from_name,
            to_name,
            new_id
        );
        if c.state == "running" {
            tracing::info!(
                "Container {} was running, starting container {}",
                c.id,
                new_id
            );
            let started = self
                .bounded(&to, docker.start_container(&new_id, None))
                .await;
            if let Err(e) = started {
                tracing::error!(container = %new_id, error = %e, "Failed to start rescheduled container {new_id}: {e}");
            }
        }
        Ok(())
    }

    async fn create(
        &self,
        docker: &Docker,
        to: &EngineAddr,
        name: &str,
        body: Value,
    ) -> Result<String, MoveError> {
        let config: ContainerCreateBody = serde_json::from_value(body)
            .map_err(|e| engine_error(to, format!("create body: {e}")))?;
        let image = config.image.clone().unwrap_or_default();
        let options = CreateContainerOptions {
            name: Some(name.to_owned()),
            ..Default::default()
        };
        let first = tokio::time::timeout(
            self.timeout,
            docker.create_container(Some(options.clone()), config.clone()),
        )
        .await;
        let created = match first {
            // Classic's Engine.CreateContainer: on "not found" the engine pulls the image
            // (no credentials: the watchdog has none) and the create is tried once more.
            Ok(Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            })) if !image.is_empty() => {
                self.pull(docker, to, &image).await?;
                self.bounded(to, docker.create_container(Some(options), config))
                    .await?
            }
            Ok(r) => r.map_err(|e| engine_error(to, e.to_string()))?,
            Err(_) => return Err(self.timed_out(to)),
        };
        Ok(created.id)
    }

    /// `docker pull IMAGE` on one engine, read to its end; bounded by the pull timeout.
    async fn pull(&self, docker: &Docker, to: &EngineAddr, image: &str) -> Result<(), MoveError> {
        tracing::info!(engine = %to, image, "pulling the image of a rescheduled container");
        let options = CreateImageOptions {
            from_image: Some(image.to_owned()),
            ..Default::default()
        };
        let pulled = docker
            .create_image(Some(options), None, None)
            .try_for_each(|_| async { Ok(()) });
        match tokio::time::timeout(PULL_TIMEOUT, pulled).await {
            Ok(r) => r.map_err(|e| engine_error(to, e.to_string())),
            Err(_) => Err(engine_error(
                to,
                format!("pulling {image}: no end within {PULL_TIMEOUT:?}"),
            )),
        }
    }

    /// Classic's `removeDuplicateContainers`: force-removes the stale copy with its
    /// anonymous volumes.
    async fn remove_stale(&self, s: &Stale) {
        tracing::debug!(
            container = %s.id,
            engine = %s.on,
            "container {} was rescheduled on node {}, removing it",
            s.id,
            s.kept_on
        );
        let removed = match self.client(&s.on) {
            Ok(docker) => {
                let options = RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                };
                self.bounded(&s.on, docker.remove_container(&s.id, Some(options)))
                    .await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = removed {
            tracing::error!(
                container = %s.id,
                engine = %s.on,
                error = %e,
                "Failed to remove duplicate container {} on node {}: {e}",
                s.id,
                s.kept_on
            );
        }
    }

    fn client(&self, addr: &EngineAddr) -> Result<Docker, MoveError> {
        // Dialled as the pool dials it: over TLS or through the swarm's dialer.
        self.pool
            .engine(addr, self.timeout, 1)
            .map(|e| e.client().clone())
            .map_err(|e| engine_error(addr, e.to_string()))
    }

    /// One engine call bounded by the watchdog's timeout.
    async fn bounded<T>(
        &self,
        addr: &EngineAddr,
        fut: impl Future<Output = Result<T, bollard::errors::Error>>,
    ) -> Result<T, MoveError> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r.map_err(|e| engine_error(addr, e.to_string())),
            Err(_) => Err(self.timed_out(addr)),
        }
    }

    fn timed_out(&self, addr: &EngineAddr) -> MoveError {
        engine_error(addr, format!("no answer within {:?}", self.timeout))
    }
}

fn engine_error(addr: &EngineAddr, message: String) -> MoveError {
    MoveError::Engine {
        addr: addr.to_string(),
        message,
    }
}
