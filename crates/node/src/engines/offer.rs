//! The agent's side of the tunnels: a standing `Offers` subscription on the leader the
//! agent keeps its session with, and for each tunnel asked of it a connection to the local
//! engine spliced with an `Accept` call.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use swarmd_rpc::{EnginesClient, EnginesService, RpcChannel, TunnelError, Upstream, splice};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ExecChoice;
use crate::raft_glue::manager_client_options;

use super::service::LeaderEngines;

/// Bound on connecting to the local engine.
const ENGINE_CONNECT_WITHIN: Duration = Duration::from_secs(5);
/// Pauses between failed subscriptions, doubling up to the second.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Where this node's engine listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EngineEndpoint {
    Unix(PathBuf),
    /// `host:port`.
    Tcp(String),
}

/// The engine a tunnel to this node reaches, or why there is none. Pure.
pub(crate) fn engine_endpoint(
    exec: &ExecChoice,
    socket: Option<&str>,
) -> Result<EngineEndpoint, String> {
    let socket = match exec {
        ExecChoice::Process => {
            return Err("this node runs tasks as host processes: it has no Docker Engine".into());
        }
        ExecChoice::Docker { socket } => socket.as_str(),
        ExecChoice::Given(_) => socket.ok_or("this node has no engine socket")?,
    };
    Ok(match socket.strip_prefix("tcp://") {
        Some(addr) => EngineEndpoint::Tcp(addr.to_string()),
        None => EngineEndpoint::Unix(socket.strip_prefix("unix://").unwrap_or(socket).into()),
    })
}

impl EngineEndpoint {
    /// A new connection to the engine, within [`ENGINE_CONNECT_WITHIN`].
    async fn connect(&self) -> Result<Upstream, String> {
        match tokio::time::timeout(ENGINE_CONNECT_WITHIN, self.clone().dial()).await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => Err(format!("connecting to the engine at {self:?}: {e}")),
            Err(_) => Err(format!(
                "the engine at {self:?} did not accept a connection within {ENGINE_CONNECT_WITHIN:?}"
            )),
        }
    }
}

impl EngineEndpoint {
    async fn dial(self) -> std::io::Result<Upstream> {
        match self {
            EngineEndpoint::Unix(path) => {
                let s = tokio::net::UnixStream::connect(path).await?;
                let s: Upstream = Box::new(s);
                Ok(s)
            }
            EngineEndpoint::Tcp(addr) => {
                let s = tokio::net::TcpStream::connect(addr.as_str()).await?;
                let s: Upstream = Box::new(s);
                Ok(s)
            }
        }
    }
}

/// The leader as this agent reaches it: in process when this node leads, else its
/// cluster port.
enum Leader {
    Here(Arc<LeaderEngines>),
    There(EnginesClient),
}

/// The agent's offer loop (one per membership).
pub(crate) struct EngineOffers {
    pub node_id: String,
    /// This node's cluster address, when it is a manager: a session "with" it is local.
    pub own_addr: Option<String>,
    pub local: Option<Arc<LeaderEngines>>,
    pub tls: Arc<rustls::ClientConfig>,
    pub engine: Result<EngineEndpoint, String>,
    /// The manager the agent's session is with (it follows the leader).
    pub session_with: watch::Receiver<Option<String>>,
    /// Tunnels run here (waited for when the membership stops).
    pub tracker: TaskTracker,
}

impl EngineOffers {
    /// Keeps a subscription on the session's manager until `cancel`: subscribes again when
    /// the session moves or the subscription ends, with a growing pause after failures.
    pub(crate) async fn run(mut self, cancel: CancellationToken) {
        let mut pause = RETRY_FIRST;
        loop {
            let addr = tokio::select! {
                () = cancel.cancelled() => return,
                addr = self.session_with.wait_for(Option::is_some) => match addr {
                    Ok(a) => a.clone().unwrap_or_default(),
                    Err(_) => return,
                },
            };
            let subscribed = match self.leader(&addr) {
                Ok(leader) => tokio::select! {
                    () = cancel.cancelled() => return,
                    ids = subscribe(&leader, &self.node_id) => ids.map(|ids| (leader, ids)),
                },
                Err(e) => Err(e),
            };
            match subscribed {
                Ok((leader, ids)) => {
                    pause = RETRY_FIRST;
                    tracing::debug!(manager = %addr, "offering this node's engine for tunnels");
                    let leader = Arc::new(leader);
                    self.serve(leader, ids, &cancel).await;
                }
                Err(e) => {
                    tracing::debug!(manager = %addr, error = %e, "could not offer the engine; retrying");
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(pause) => {}
                        _ = self.session_with.changed() => {}
                    }
                    pause = (pause * 2).min(RETRY_MAX);
                }
            }
        }
    }

    fn leader(&self, addr: &str) -> Result<Leader, TunnelError> {
        if let Some(local) = &self.local
            && self.own_addr.as_deref() == Some(addr)
        {
            return Ok(Leader::Here(local.clone()));
        }
        let channel = RpcChannel::new(addr, self.tls.clone(), manager_client_options())
            .map_err(|e| TunnelError::Unavailable(e.to_string()))?;
        Ok(Leader::There(EnginesClient::new(channel)))
    }

    /// Opens every tunnel asked on `ids` until they end, the session moves or `cancel`.
    async fn serve(
        &mut self,
        leader: Arc<Leader>,
        mut ids: BoxStream<'static, Result<String, TunnelError>>,
        cancel: &CancellationToken,
    ) {
        self.session_with.mark_unchanged();
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = self.session_with.changed() => return,
                id = ids.next() => match id {
                    Some(Ok(id)) => {
                        let (leader, engine) = (leader.clone(), self.engine.clone());
                        let (node_id, cancel) = (self.node_id.clone(), cancel.clone());
                        self.tracker.spawn(async move {
                            tokio::select! {
                                () = cancel.cancelled() => {}
                                () = open_tunnel(leader, node_id, id, engine, cancel.clone()) => {}
                            }
                        });
                    }
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "tunnel subscription failed");
                        return;
                    }
                    None => return,
                },
            }
        }
    }
}

async fn subscribe(
    leader: &Leader,
    node_id: &str,
) -> Result<BoxStream<'static, Result<String, TunnelError>>, TunnelError> {
    match leader {
        Leader::Here(local) => Ok(local.offers(node_id).await?.map(Ok).boxed()),
        Leader::There(client) => client.offers().await,
    }
}

/// Connects to the engine and opens tunnel `id` with it (or refuses it, saying why), then
/// splices the two until both ends close.
async fn open_tunnel(
    leader: Arc<Leader>,
    node_id: String,
    id: String,
    engine: Result<EngineEndpoint, String>,
    cancel: CancellationToken,
) {
    let conn = match engine {
        Ok(endpoint) => endpoint.connect().await,
        Err(reason) => Err(reason),
    };
    if let Err(reason) = &conn {
        tracing::info!(tunnel = %id, %reason, "refusing a tunnel to this node's engine");
    }
    let opened = match (&*leader, conn) {
        (Leader::Here(local), conn) => local.accept(&node_id, &id, conn).await,
        (Leader::There(client), Err(reason)) => client.refuse(&id, &reason).await,
        (Leader::There(client), Ok(conn)) => match client.accept(&id).await {
            Ok(tunnel) => match splice(tunnel, conn, cancel).await {
                Ok((up, down)) => {
                    tracing::debug!(tunnel = %id, up, down, "engine tunnel closed");
                    Ok(())
                }
                Err(e) => {
                    tracing::debug!(tunnel = %id, error = %e, "engine tunnel failed");
                    Ok(())
                }
            },
            Err(e) => Err(e),
        },
    };
    if let Err(e) = opened {
        tracing::info!(tunnel = %id, error = %e, "could not open a tunnel to this node's engine");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engine_is_the_docker_executors_or_the_configured_socket() {
        let docker = ExecChoice::Docker {
            socket: "/run/docker.sock".into(),
        };
        assert_eq!(
            engine_endpoint(&docker, None),
            Ok(EngineEndpoint::Unix("/run/docker.sock".into()))
        );
        let given = ExecChoice::Given(Arc::new(swarmd_agent::exec::fake::FakeExecutor::default()));
        for (socket, want) in [
            ("/e.sock", EngineEndpoint::Unix("/e.sock".into())),
            ("unix:///e.sock", EngineEndpoint::Unix("/e.sock".into())),
            (
                "tcp://10.0.0.1:2375",
                EngineEndpoint::Tcp("10.0.0.1:2375".into()),
            ),
        ] {
            assert_eq!(engine_endpoint(&given, Some(socket)), Ok(want), "{socket}");
        }
        assert!(engine_endpoint(&given, None).is_err());
        let err = engine_endpoint(&ExecChoice::Process, Some("/e.sock")).unwrap_err();
        assert!(err.contains("host processes"), "{err}");
    }
}
