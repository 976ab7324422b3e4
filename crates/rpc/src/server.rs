//! Serving the cluster port: tonic over our TLS acceptor, every RPC authorized before its
//! request is read (see [`crate::gate`]).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Serialize, de::DeserializeOwned};
use swarmd_store::{Proposer, ReadBarrier};
use swarmd_types::dispatcher::DispatcherApi;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::service::Routes;
use tonic::transport::Server;
use tonic::{Request, Status};

use crate::auth::{Authorizer, PeerInfo, RpcKind};
use crate::ca::{CaServer, CaService, MAX_MESSAGE_BYTES as CA_MAX_MESSAGE_BYTES};
use crate::client::DEFAULT_MAX_MESSAGE_BYTES;
use crate::control::ProposeServer;
use crate::dispatcher::DispatcherServer;
use crate::engines::{
    EnginesServer, EnginesService, MAX_MESSAGE_BYTES as ENGINES_MAX_MESSAGE_BYTES,
};
use crate::gate::{Authorized, GateLayer, check};
use crate::pb;
use crate::raft::{RaftServer, RaftService};
use crate::tls::{TlsPeer, accept_tls, server_config_with_h2};

/// How the server treats connections.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// A client must finish its TLS handshake within this, or is dropped.
    pub handshake_timeout: Duration,
    /// After cancellation: how long open calls (and the connections under them) get to
    /// finish before they are cut. Streams (sessions, assignments) end at cancellation.
    pub shutdown_grace: Duration,
    /// HTTP/2 pings to detect dead clients holding streams open.
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    pub max_message_bytes: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            handshake_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(5),
            keepalive_interval: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(10),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        }
    }
}

/// The implementations behind the cluster port. A service left out answers
/// `Unimplemented` (a worker serves nothing; a manager serves everything).
#[derive(Clone, Default)]
pub struct Services {
    pub dispatcher: Option<Arc<dyn DispatcherApi>>,
    pub raft: Option<Arc<dyn RaftService>>,
    pub ca: Option<Arc<dyn CaService>>,
    /// Served as `Control.Propose`: on the leader, the Raft proposer.
    pub proposer: Option<Arc<dyn Proposer>>,
    /// Served as `Control.ReadIndex` (with `proposer`): on the leader, its read barrier.
    pub read_barrier: Option<Arc<dyn ReadBarrier>>,
    /// Served as `Engines`: tunnels to nodes' engines (the leader's hub).
    pub engines: Option<Arc<dyn EnginesService>>,
}

impl Services {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn dispatcher(mut self, api: Arc<dyn DispatcherApi>) -> Self {
        self.dispatcher = Some(api);
        self
    }
    pub fn raft(mut self, raft: Arc<dyn RaftService>) -> Self {
        self.raft = Some(raft);
        self
    }
    pub fn ca(mut self, ca: Arc<dyn CaService>) -> Self {
        self.ca = Some(ca);
        self
    }
    pub fn proposer(mut self, proposer: Arc<dyn Proposer>) -> Self {
        self.proposer = Some(proposer);
        self
    }
    pub fn read_barrier(mut self, barrier: Arc<dyn ReadBarrier>) -> Self {
        self.read_barrier = Some(barrier);
        self
    }
    pub fn engines(mut self, engines: Arc<dyn EnginesService>) -> Self {
        self.engines = Some(engines);
        self
    }
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("binding the rpc listener on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("rpc server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// A bound, not yet serving, RPC server. Binding first lets the caller learn the port
/// (`:0` in tests) and fail early on an address in use.
pub struct RpcServer {
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    authorizer: Arc<dyn Authorizer>,
    services: Services,
    options: ServerOptions,
}

impl RpcServer {
    pub async fn bind(
        addr: SocketAddr,
        tls: Arc<rustls::ServerConfig>,
        authorizer: Arc<dyn Authorizer>,
        services: Services,
    ) -> Result<Self, ServeError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        Ok(Self::from_listener(listener, tls, authorizer, services))
    }

    pub fn from_listener(
        listener: TcpListener,
        tls: Arc<rustls::ServerConfig>,
        authorizer: Arc<dyn Authorizer>,
        services: Services,
    ) -> Self {
        RpcServer {
            listener,
            tls,
            authorizer,
            services,
            options: ServerOptions::default(),
        }
    }

    pub fn with_options(mut self, options: ServerOptions) -> Self {
        self.options = options;
        self
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `cancel` fires, then stops accepting, ends open streams, lets unary
    /// calls finish within `shutdown_grace`, cuts whatever is left and returns.
    pub async fn serve(self, cancel: CancellationToken) -> Result<(), ServeError> {
        let RpcServer {
            listener,
            tls,
            authorizer,
            services,
            options,
        } = self;
        let tracker = TaskTracker::new();
        let abort = CancellationToken::new();
        let incoming = accept_tls(
            listener,
            server_config_with_h2(tls),
            options.handshake_timeout,
            cancel.clone(),
            abort.clone(),
            &tracker,
        );
        let routes = routes(&services, &authorizer, &cancel, options.max_message_bytes);
        let server = Server::builder()
            .http2_keepalive_interval(Some(options.keepalive_interval))
            .http2_keepalive_timeout(Some(options.keepalive_timeout))
            // Authorization before tonic reads (and sizes its buffer for) any message.
            .layer(GateLayer::new(authorizer))
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, cancel.clone().cancelled_owned());
        tokio::pin!(server);
        let grace_over = async {
            cancel.cancelled().await;
            tokio::time::sleep(options.shutdown_grace).await;
        };
        let result = tokio::select! {
            r = &mut server => r,
            _ = grace_over => {
                tracing::debug!("rpc shutdown grace over; closing remaining connections");
                abort.cancel();
                (&mut server).await
            }
        };
        abort.cancel();
        tracker.close();
        tracker.wait().await;
        result.map_err(ServeError::Transport)
    }
}

/// Binds `addr` and serves `services` over TLS until `cancel` fires.
pub async fn serve(
    addr: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    authorizer: Arc<dyn Authorizer>,
    services: Services,
    cancel: CancellationToken,
) -> Result<(), ServeError> {
    RpcServer::bind(addr, tls, authorizer, services)
        .await?
        .serve(cancel)
        .await
}

fn routes(
    services: &Services,
    authorizer: &Arc<dyn Authorizer>,
    shutdown: &CancellationToken,
    max: usize,
) -> Routes {
    let mut routes = Routes::builder();
    if let Some(api) = &services.dispatcher {
        let svc = DispatcherServer::new(api.clone(), authorizer.clone(), shutdown.clone());
        routes.add_service(
            pb::dispatcher_server::DispatcherServer::new(svc)
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        );
    }
    if let Some(raft) = &services.raft {
        let svc = RaftServer::new(raft.clone(), authorizer.clone());
        routes.add_service(
            pb::raft_server::RaftServer::new(svc)
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        );
    }
    if let Some(ca) = &services.ca {
        let svc = CaServer::new(ca.clone(), authorizer.clone());
        // Callable without a certificate: a small cap, whatever `max` allows others.
        routes.add_service(
            pb::ca_server::CaServer::new(svc)
                .max_decoding_message_size(CA_MAX_MESSAGE_BYTES)
                .max_encoding_message_size(max),
        );
    }
    if let Some(proposer) = &services.proposer {
        let svc = ProposeServer::new(
            proposer.clone(),
            services.read_barrier.clone(),
            authorizer.clone(),
        );
        routes.add_service(
            pb::control_server::ControlServer::new(svc)
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        );
    }
    if let Some(engines) = &services.engines {
        let svc = EnginesServer::new(engines.clone(), authorizer.clone(), shutdown.clone());
        // Workers call it too: frames are small, and so is what one may make us buffer.
        routes.add_service(
            pb::engines_server::EnginesServer::new(svc)
                .max_decoding_message_size(ENGINES_MAX_MESSAGE_BYTES)
                .max_encoding_message_size(ENGINES_MAX_MESSAGE_BYTES),
        );
    }
    routes.routes()
}

/// Who is calling `rpc`: the verdict the [`GateLayer`] reached before the body was read,
/// or, for a handler served without the gate (a router built elsewhere), the authorizer's
/// verdict on the certificate chain of the connection `req` came on.
pub(crate) fn authorize<T>(
    authorizer: &dyn Authorizer,
    rpc: RpcKind,
    req: &Request<T>,
) -> Result<PeerInfo, Status> {
    if let Some(done) = req.extensions().get::<Authorized>()
        && done.rpc == rpc
    {
        return Ok(done.peer.clone());
    }
    check(authorizer, rpc, req.extensions().get::<TlsPeer>())
}

/// Decodes a `bytes json` payload; a bad one is the caller's fault.
pub(crate) fn decode_json<T: DeserializeOwned>(json: &[u8], what: &str) -> Result<T, Status> {
    serde_json::from_slice(json)
        .map_err(|e| Status::invalid_argument(format!("undecodable {what}: {e}")))
}

/// Encodes a `bytes json` payload; failing here is our bug.
pub(crate) fn encode_json<T: Serialize>(value: &T, what: &str) -> Result<Bytes, Status> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| Status::internal(format!("encoding {what}: {e}")))
}
