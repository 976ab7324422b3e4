//! The Engines service: streams to a node's Docker Engine through its agent, over the
//! cluster port's mutual TLS (the proto's `Engines` section says how the calls fit).
//!
//! [`EnginesServer`] serves any [`EnginesService`] (the leader's tunnel hub); it binds each
//! call to the caller's certificate (an agent offers and accepts for its own node only,
//! only managers open) and turns the byte-carrying calls into [`Tunnel`]s. [`EnginesClient`]
//! makes the calls: an agent's `offers`/`accept`/`refuse`, a manager's `open`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::{Authorizer, PeerInfo, RpcKind};
use crate::client::RpcChannel;
use crate::error::{TunnelError, tunnel_error_from_status, tunnel_status};
use crate::pb;
use crate::pb::engines_client::EnginesClient as PbClient;
use crate::server::authorize;
use crate::tunnel::{Tunnel, Upstream, outbound, splice};

/// Largest message either side of a tunnel call decodes: data frames are at most
/// [`crate::tunnel::MAX_FRAME`], and workers may call, so no more than that is buffered.
pub const MAX_MESSAGE_BYTES: usize = 2 * crate::tunnel::MAX_FRAME;

/// How long a caller has to send its first frame (the tunnel ID or the target).
const FIRST_FRAME_WITHIN: Duration = Duration::from_secs(5);

/// What the leader does with tunnel calls (its hub), for the callers the certificate names.
#[async_trait]
pub trait EnginesService: Send + Sync + 'static {
    /// The IDs of the tunnels node `node_id` is asked to open, for as long as it should
    /// keep listening (the stream ends when another subscription of the node replaces it,
    /// or this manager stops leading).
    async fn offers(&self, node_id: &str) -> Result<BoxStream<'static, String>, TunnelError>;
    /// Node `node_id` answers tunnel `tunnel_id`: with the stream to its engine, or why it
    /// cannot reach it.
    async fn accept(
        &self,
        node_id: &str,
        tunnel_id: &str,
        engine: Result<Upstream, String>,
    ) -> Result<(), TunnelError>;
    /// A manager's stream to `target` (`node://<ID>` or `pool://leader`).
    async fn open(&self, target: &str) -> Result<Upstream, TunnelError>;
}

type FrameStream = BoxStream<'static, Result<pb::TunnelFrame, Status>>;

/// Serves an [`EnginesService`] on the network.
pub struct EnginesServer {
    api: Arc<dyn EnginesService>,
    authorizer: Arc<dyn Authorizer>,
    shutdown: CancellationToken,
}

impl EnginesServer {
    pub fn new(
        api: Arc<dyn EnginesService>,
        authorizer: Arc<dyn Authorizer>,
        shutdown: CancellationToken,
    ) -> Self {
        EnginesServer {
            api,
            authorizer,
            shutdown,
        }
    }

    /// The caller's node ID; every Engines call needs one.
    fn caller<T>(&self, rpc: RpcKind, req: &Request<T>) -> Result<String, Status> {
        let peer: PeerInfo = authorize(&*self.authorizer, rpc, req)?;
        peer.node_id()
            .map(str::to_string)
            .ok_or_else(|| Status::unauthenticated(format!("{rpc} requires a node certificate")))
    }

    /// A byte-carrying call's caller, first frame and the rest of its frames.
    async fn opening(
        &self,
        rpc: RpcKind,
        req: Request<Streaming<pb::TunnelFrame>>,
    ) -> Result<(String, pb::TunnelFrame, Streaming<pb::TunnelFrame>), Status> {
        let node_id = self.caller(rpc, &req)?;
        let mut inbound = req.into_inner();
        let first = first_frame(&mut inbound).await?;
        Ok((node_id, first, inbound))
    }

    /// The outgoing frames of a tunnel call, ended by an error if the server shuts down
    /// first (a cut tunnel must not read as a complete one).
    fn until_shutdown(&self, items: FrameStream) -> FrameStream {
        let token = self.shutdown.clone();
        let cut = futures::stream::once(async move {
            token
                .is_cancelled()
                .then(|| Err(Status::unavailable("the manager is shutting down")))
        })
        .filter_map(futures::future::ready);
        items
            .take_until(self.shutdown.clone().cancelled_owned())
            .chain(cut)
            .boxed()
    }
}

/// The first frame of a tunnel call: what it names (`open`), and its `error`.
async fn first_frame(inbound: &mut Streaming<pb::TunnelFrame>) -> Result<pb::TunnelFrame, Status> {
    match tokio::time::timeout(FIRST_FRAME_WITHIN, inbound.message()).await {
        Ok(Ok(Some(frame))) if !frame.open.is_empty() => Ok(frame),
        Ok(Ok(_)) => Err(tunnel_status(&TunnelError::Invalid(
            "a tunnel call's first frame must name what it opens".into(),
        ))),
        Ok(Err(status)) => Err(status),
        Err(_) => Err(tunnel_status(&TunnelError::Invalid(format!(
            "no first frame within {FIRST_FRAME_WITHIN:?}"
        )))),
    }
}

fn server_data(data: Bytes) -> Result<pb::TunnelFrame, Status> {
    Ok(pb::TunnelFrame {
        data,
        ..Default::default()
    })
}

fn server_failed(reason: String) -> Result<pb::TunnelFrame, Status> {
    Err(Status::aborted(reason))
}

#[tonic::async_trait]
impl pb::engines_server::Engines for EnginesServer {
    type OffersStream = BoxStream<'static, Result<pb::TunnelRequest, Status>>;
    type AcceptStream = FrameStream;
    type OpenStream = FrameStream;

    async fn offers(
        &self,
        req: Request<pb::EngineOffersRequest>,
    ) -> Result<Response<Self::OffersStream>, Status> {
        let node_id = self.caller(RpcKind::EnginesOffers, &req)?;
        let ids = self
            .api
            .offers(&node_id)
            .await
            .map_err(|e| tunnel_status(&e))?;
        let out = ids
            .map(|tunnel_id| Ok(pb::TunnelRequest { tunnel_id }))
            .take_until(self.shutdown.clone().cancelled_owned());
        Ok(Response::new(out.boxed()))
    }

    async fn accept(
        &self,
        req: Request<Streaming<pb::TunnelFrame>>,
    ) -> Result<Response<Self::AcceptStream>, Status> {
        let (node_id, first, inbound) = self.opening(RpcKind::EnginesAccept, req).await?;
        if !first.error.is_empty() {
            self.api
                .accept(&node_id, &first.open, Err(first.error))
                .await
                .map_err(|e| tunnel_status(&e))?;
            return Ok(Response::new(futures::stream::empty().boxed()));
        }
        let (out, items) = outbound(None, server_data, server_failed);
        let tunnel = Tunnel::join(inbound, out);
        self.api
            .accept(&node_id, &first.open, Ok(Box::new(tunnel)))
            .await
            .map_err(|e| tunnel_status(&e))?;
        Ok(Response::new(self.until_shutdown(items.boxed())))
    }

    async fn open(
        &self,
        req: Request<Streaming<pb::TunnelFrame>>,
    ) -> Result<Response<Self::OpenStream>, Status> {
        let (node_id, first, inbound) = self.opening(RpcKind::EnginesOpen, req).await?;
        let target = first.open;
        let upstream = self
            .api
            .open(&target)
            .await
            .map_err(|e| tunnel_status(&e))?;
        let (out, items) = outbound(None, server_data, server_failed);
        let tunnel = Tunnel::join(inbound, out);
        let cancel = self.shutdown.clone();
        tokio::spawn(async move {
            match splice(tunnel, upstream, cancel).await {
                Ok((sent, received)) => {
                    tracing::debug!(caller = %node_id, %target, sent, received, "tunnel closed");
                }
                Err(e) => {
                    tracing::debug!(caller = %node_id, %target, error = %e, "tunnel failed");
                }
            }
        });
        Ok(Response::new(self.until_shutdown(items.boxed())))
    }
}

fn client_data(data: Bytes) -> pb::TunnelFrame {
    pb::TunnelFrame {
        data,
        ..Default::default()
    }
}

fn client_failed(error: String) -> pb::TunnelFrame {
    pb::TunnelFrame {
        error,
        ..Default::default()
    }
}

/// The Engines service of one manager, over the network.
#[derive(Debug, Clone)]
pub struct EnginesClient {
    channel: RpcChannel,
}

/// Which byte-carrying call [`EnginesClient::call`] makes.
#[derive(Clone, Copy)]
enum Call {
    Accept,
    Open,
}

impl EnginesClient {
    pub fn new(channel: RpcChannel) -> Self {
        EnginesClient { channel }
    }

    /// The manager's address.
    pub fn addr(&self) -> &str {
        self.channel.addr()
    }

    fn client(&self) -> PbClient<tonic::transport::Channel> {
        PbClient::new(self.channel.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// A call's answer as [`tokio::time::timeout`] gave it, the timeout being the call
    /// deadline (the stream then lives on: streams carry no `grpc-timeout`).
    fn answer<T>(
        &self,
        answer: Result<Result<Response<T>, Status>, tokio::time::error::Elapsed>,
    ) -> Result<T, TunnelError> {
        match answer {
            Ok(Ok(resp)) => Ok(resp.into_inner()),
            Ok(Err(status)) => Err(tunnel_error_from_status(&status)),
            Err(_) => Err(TunnelError::Unavailable(format!(
                "{} did not answer within {:?}",
                self.addr(),
                self.channel.options.call_timeout
            ))),
        }
    }

    /// This node's standing request for tunnels: the IDs the leader asks it to open. An
    /// error item or the end means: subscribe again (on the leader).
    pub async fn offers(
        &self,
    ) -> Result<BoxStream<'static, Result<String, TunnelError>>, TunnelError> {
        let mut client = self.client();
        let within = self.channel.options.call_timeout;
        let answer = tokio::time::timeout(within, client.offers(pb::EngineOffersRequest {})).await;
        let stream = self.answer(answer)?;
        Ok(stream
            .map(|item| match item {
                Ok(req) => Ok(req.tunnel_id),
                Err(status) => Err(tunnel_error_from_status(&status)),
            })
            .boxed())
    }

    /// Opens tunnel `tunnel_id`, which the leader asked of this node: the stream to splice
    /// with the local engine.
    pub async fn accept(&self, tunnel_id: &str) -> Result<Tunnel, TunnelError> {
        self.call(Call::Accept, tunnel_id).await
    }

    /// Answers tunnel `tunnel_id` with why this node cannot reach its engine.
    pub async fn refuse(&self, tunnel_id: &str, reason: &str) -> Result<(), TunnelError> {
        let first = pb::TunnelFrame {
            open: tunnel_id.to_string(),
            error: reason.to_string(),
            ..Default::default()
        };
        let mut client = self.client();
        let within = self.channel.options.call_timeout;
        let call = client.accept(futures::stream::iter([first]));
        self.answer(tokio::time::timeout(within, call).await)
            .map(drop)
    }

    /// A stream to `target` (`node://<ID>`, `pool://leader`) through this manager, which
    /// must be the leader. For managers only.
    pub async fn open(&self, target: &str) -> Result<Tunnel, TunnelError> {
        self.call(Call::Open, target).await
    }

    async fn call(&self, call: Call, open: &str) -> Result<Tunnel, TunnelError> {
        let first = pb::TunnelFrame {
            open: open.to_string(),
            ..Default::default()
        };
        let (out, request) = outbound(Some(first), client_data, client_failed);
        let mut client = self.client();
        let within = self.channel.options.call_timeout;
        let answer = match call {
            Call::Accept => tokio::time::timeout(within, client.accept(request)).await,
            Call::Open => tokio::time::timeout(within, client.open(request)).await,
        };
        let inbound = self.answer(answer)?;
        Ok(Tunnel::join(inbound, out))
    }
}
