//! The docker executor: runs tasks as containers of the local Docker Engine (bollard).
//!
//! Containers follow Docker's own swarm conventions (name `<service>.<slot>.<task id>`,
//! `com.docker.swarm.*` labels), so `docker ps` on the engine looks as it does under Docker
//! swarm mode. The task ID label is the key: every controller finds its container by it,
//! which makes all steps idempotent and lets a restarted agent adopt running containers.
//! The node ID label keeps several swarmd nodes sharing one engine apart.
//!
//! Published target ports are bound to ephemeral host ports on the node address
//! (`PortBindings {"80/tcp": [{HostIp: node_addr, HostPort: ""}]}`); the routing mesh
//! forwards to the host ports that `status()` reports.

use std::collections::HashMap;
use std::sync::Arc;

use bollard::Docker;
use bollard::query_parameters::ListContainersOptions;
use bollard_stubs::models::ContainerSummary;
use swarmd_types::NodeDescription;

use super::{Controller, ExecError, Executor, LABEL_NODE_ID, LABEL_TASK_ID, TaskRuntime};

mod controller;
mod engine_error;
mod events;
pub mod overlay;

pub use controller::DockerController;
use engine_error::map_err;
use events::EngineEvents;

/// The engine's default socket.
pub const DEFAULT_SOCKET: &str = "unix:///var/run/docker.sock";
/// Request timeout for ordinary engine calls (seconds). Long calls (stop) get their own.
const REQUEST_TIMEOUT_SECS: u64 = 120;

/// Runs tasks as containers of a local Docker Engine.
pub struct DockerExecutor {
    docker: Docker,
    node_id: String,
    /// The one event stream the controllers wait on (instead of a `wait` call each).
    events: Arc<EngineEvents>,
}

impl Drop for DockerExecutor {
    fn drop(&mut self) {
        self.events.close();
    }
}

impl DockerExecutor {
    /// Connects to the engine at `socket` (`unix:///var/run/docker.sock` or a path),
    /// negotiates the API version (engines as old as 1.41 are in use) and checks that the
    /// engine answers. `node_id` scopes the containers this executor lists and adopts.
    pub async fn connect(socket: &str, node_id: impl Into<String>) -> Result<Self, ExecError> {
        let docker =
            Docker::connect_with_unix(socket, REQUEST_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
                .map_err(map_err)?
                .negotiate_version()
                .await
                .map_err(map_err)?;
        docker.ping().await.map_err(map_err)?;
        Ok(Self::with_client(docker, node_id))
    }

    /// Uses an already connected (and version-negotiated) client.
    pub fn with_client(docker: Docker, node_id: impl Into<String>) -> Self {
        let node_id = node_id.into();
        DockerExecutor {
            events: EngineEvents::new(docker.clone(), node_id.clone()),
            docker,
            node_id,
        }
    }

    /// How many containers have a task waiting on their events (diagnostics and tests).
    pub fn watched(&self) -> usize {
        self.events.watched()
    }

    /// The engine client, for callers that proxy other engine endpoints.
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    async fn list(&self) -> Result<Vec<ContainerSummary>, ExecError> {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![
                LABEL_TASK_ID.to_string(),
                format!("{LABEL_NODE_ID}={}", self.node_id),
            ],
        )]);
        self.docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(map_err)
    }
}

#[async_trait::async_trait]
impl Executor for DockerExecutor {
    async fn describe(&self) -> Result<NodeDescription, ExecError> {
        let info = self.docker.info().await.map_err(map_err)?;
        let engine_labels = info
            .labels
            .unwrap_or_default()
            .into_iter()
            .map(|l| match l.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (l, String::new()),
            })
            .collect();
        Ok(NodeDescription {
            hostname: info.name.unwrap_or_default(),
            os: info.os_type.unwrap_or_else(|| "linux".into()),
            architecture: info
                .architecture
                .unwrap_or_else(|| std::env::consts::ARCH.into()),
            nano_cpus: info.ncpu.unwrap_or(0) * 1_000_000_000,
            memory_bytes: info.mem_total.unwrap_or(0),
            engine_version: info.server_version.unwrap_or_default(),
            engine_labels,
            executor: "docker".into(),
            tls_info: None,
        })
    }

    fn controller(&self, rt: &TaskRuntime) -> Arc<dyn Controller> {
        Arc::new(DockerController::new(
            self.docker.clone(),
            Arc::clone(&self.events),
            rt.clone(),
        ))
    }

    async fn list_tasks(&self) -> Result<Vec<String>, ExecError> {
        Ok(self
            .list()
            .await?
            .into_iter()
            .filter_map(|c| c.labels.and_then(|mut l| l.remove(LABEL_TASK_ID)))
            .collect())
    }

    async fn containers(&self) -> Result<Vec<ContainerSummary>, ExecError> {
        self.list().await
    }
}
