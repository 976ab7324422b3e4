//! The Dispatcher service: [`DispatcherApi`] served over gRPC, and consumed remotely.
//!
//! The agent talks to a remote manager through [`RemoteDispatcher`] exactly as it talks to
//! an in-process one; the manager serves any `Arc<dyn DispatcherApi>` through
//! [`DispatcherServer`]. Domain messages travel as serde_json (see the proto's header).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::{Stream, StreamExt};
use swarmd_types::dispatcher::{
    AssignmentsMessage, BrokerSubscription, DispatchError, DispatchStream, DispatcherApi,
    LogSubscription, PublishLogs, PublishedLine, SessionMessage, SessionRequest, TaskStatusUpdate,
};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::auth::{Authorizer, PeerInfo, RpcKind};
use crate::client::RpcChannel;
use crate::error::{dispatch_error_from_status, dispatch_status};
use crate::pb;
use crate::pb::dispatcher_client::DispatcherClient;
use crate::server::{authorize, decode_json, encode_json};

type GrpcStream<T> = std::pin::Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Session ID → node ID of the sessions opened through this server and still open, so a
/// node can only heartbeat, fetch assignments and report statuses on its own session.
type SessionOwners = Arc<Mutex<HashMap<String, String>>>;

/// Serves a [`DispatcherApi`] on the network.
///
/// Besides translating, it binds sessions to certificates: the node ID in a session
/// request must be the caller's (from [`PeerInfo`]), and calls naming a session must come
/// from the node that opened it. Streams end when the server shuts down so a graceful
/// shutdown is not held up by agents' long-lived sessions.
pub struct DispatcherServer {
    api: Arc<dyn DispatcherApi>,
    authorizer: Arc<dyn Authorizer>,
    owners: SessionOwners,
    shutdown: CancellationToken,
}

impl DispatcherServer {
    pub fn new(
        api: Arc<dyn DispatcherApi>,
        authorizer: Arc<dyn Authorizer>,
        shutdown: CancellationToken,
    ) -> Self {
        DispatcherServer {
            api,
            authorizer,
            owners: Arc::default(),
            shutdown,
        }
    }

    /// Authorizes the call and checks that `session_id` belongs to the caller.
    ///
    /// A caller without identity is possible only if the authorizer lets anonymous callers
    /// use the dispatcher (tests); then only the dispatcher's own session check applies.
    fn authorize_session<T>(
        &self,
        rpc: RpcKind,
        req: &Request<T>,
        session_id: &str,
    ) -> Result<(), Status> {
        let peer = authorize(&*self.authorizer, rpc, req)?;
        let Some(node_id) = peer.node_id() else {
            return Ok(());
        };
        let owners = self.owners.lock().unwrap_or_else(PoisonError::into_inner);
        match owners.get(session_id) {
            Some(owner) if owner == node_id => Ok(()),
            Some(_) => Err(Status::permission_denied(format!(
                "session {session_id} belongs to another node"
            ))),
            // Not opened through this server (or already closed): as good as unknown.
            None => Err(dispatch_status(&DispatchError::SessionInvalid)),
        }
    }
}

/// Forgets a session's owner when its stream ends (client gone or session closed).
struct OwnerGuard {
    owners: SessionOwners,
    session_id: Option<String>,
}

impl OwnerGuard {
    fn record(&mut self, session_id: &str, node_id: &str) {
        if self.session_id.as_deref() == Some(session_id) {
            return;
        }
        let mut owners = self.owners.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = self.session_id.take() {
            owners.remove(&old);
        }
        owners.insert(session_id.to_string(), node_id.to_string());
        self.session_id = Some(session_id.to_string());
    }
}

impl Drop for OwnerGuard {
    fn drop(&mut self) {
        if let Some(id) = self.session_id.take() {
            self.owners
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&id);
        }
    }
}

#[tonic::async_trait]
impl pb::dispatcher_server::Dispatcher for DispatcherServer {
    type SessionStream = GrpcStream<pb::SessionMessage>;
    type AssignmentsStream = GrpcStream<pb::AssignmentsMessage>;
    type LogSubscriptionsStream = GrpcStream<pb::LogSubscriptionMessage>;
    type SubscribeLogsStream = GrpcStream<pb::PublishedLineMessage>;

    async fn subscribe_logs(
        &self,
        req: Request<pb::SubscribeLogsRequest>,
    ) -> Result<Response<Self::SubscribeLogsStream>, Status> {
        authorize(&*self.authorizer, RpcKind::DispatcherSubscribeLogs, &req)?;
        let sub: BrokerSubscription = decode_json(&req.get_ref().json, "log subscription")?;
        let stream = self
            .api
            .subscribe_logs(sub)
            .await
            .map_err(|e| dispatch_status(&e))?;
        let out = stream
            .map(|item| match item {
                Ok(line) => Ok(pb::PublishedLineMessage {
                    json: encode_json(&line, "log line")?,
                }),
                Err(e) => Err(dispatch_status(&e)),
            })
            .take_until(self.shutdown.clone().cancelled_owned());
        Ok(Response::new(Box::pin(out)))
    }

    async fn session(
        &self,
        req: Request<pb::SessionRequest>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let peer: PeerInfo = authorize(&*self.authorizer, RpcKind::DispatcherSession, &req)?;
        let sreq: SessionRequest = decode_json(&req.get_ref().json, "session request")?;
        if let Some(node_id) = peer.node_id()
            && node_id != sreq.node_id
        {
            return Err(Status::permission_denied(format!(
                "node {node_id} cannot open a session as node {}",
                sreq.node_id
            )));
        }
        let node_id = sreq.node_id.clone();
        let stream = self
            .api
            .session(sreq)
            .await
            .map_err(|e| dispatch_status(&e))?;
        let mut guard = OwnerGuard {
            owners: self.owners.clone(),
            session_id: None,
        };
        let out = stream
            .map(move |item| match item {
                Ok(msg) => {
                    guard.record(&msg.session_id, &node_id);
                    let json = encode_json(&msg, "session message")?;
                    Ok(pb::SessionMessage { json })
                }
                Err(e) => Err(dispatch_status(&e)),
            })
            .take_until(self.shutdown.clone().cancelled_owned());
        Ok(Response::new(Box::pin(out)))
    }

    async fn heartbeat(
        &self,
        req: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let session_id = &req.get_ref().session_id;
        self.authorize_session(RpcKind::DispatcherHeartbeat, &req, session_id)?;
        let period = self
            .api
            .heartbeat(session_id)
            .await
            .map_err(|e| dispatch_status(&e))?;
        Ok(Response::new(pb::HeartbeatResponse {
            period_ms: u64::try_from(period.as_millis()).unwrap_or(u64::MAX),
        }))
    }

    async fn assignments(
        &self,
        req: Request<pb::AssignmentsRequest>,
    ) -> Result<Response<Self::AssignmentsStream>, Status> {
        let session_id = &req.get_ref().session_id;
        self.authorize_session(RpcKind::DispatcherAssignments, &req, session_id)?;
        let stream = self
            .api
            .assignments(session_id)
            .await
            .map_err(|e| dispatch_status(&e))?;
        let out = stream
            .map(|item| match item {
                Ok(msg) => Ok(pb::AssignmentsMessage {
                    json: encode_json(&msg, "assignments message")?,
                }),
                Err(e) => Err(dispatch_status(&e)),
            })
            .take_until(self.shutdown.clone().cancelled_owned());
        Ok(Response::new(Box::pin(out)))
    }

    async fn update_task_status(
        &self,
        req: Request<pb::UpdateTaskStatusRequest>,
    ) -> Result<Response<pb::UpdateTaskStatusResponse>, Status> {
        let session_id = &req.get_ref().session_id;
        self.authorize_session(RpcKind::DispatcherUpdateTaskStatus, &req, session_id)?;
        let updates: Vec<TaskStatusUpdate> =
            decode_json(&req.get_ref().json, "task status updates")?;
        self.api
            .update_task_status(session_id, updates)
            .await
            .map_err(|e| dispatch_status(&e))?;
        Ok(Response::new(pb::UpdateTaskStatusResponse {}))
    }
    async fn log_subscriptions(
        &self,
        req: Request<pb::LogSubscriptionsRequest>,
    ) -> Result<Response<Self::LogSubscriptionsStream>, Status> {
        let session_id = &req.get_ref().session_id;
        self.authorize_session(RpcKind::DispatcherLogSubscriptions, &req, session_id)?;
        let stream = self
            .api
            .log_subscriptions(session_id)
            .await
            .map_err(|e| dispatch_status(&e))?;
        let out = stream
            .map(|item| match item {
                Ok(msg) => Ok(pb::LogSubscriptionMessage {
                    json: encode_json(&msg, "log subscription")?,
                }),
                Err(e) => Err(dispatch_status(&e)),
            })
            .take_until(self.shutdown.clone().cancelled_owned());
        Ok(Response::new(Box::pin(out)))
    }

    async fn publish_logs(
        &self,
        req: Request<pb::PublishLogsRequest>,
    ) -> Result<Response<pb::PublishLogsResponse>, Status> {
        let session_id = &req.get_ref().session_id;
        self.authorize_session(RpcKind::DispatcherPublishLogs, &req, session_id)?;
        let logs: PublishLogs = decode_json(&req.get_ref().json, "published logs")?;
        self.api
            .publish_logs(session_id, logs)
            .await
            .map_err(|e| dispatch_status(&e))?;
        Ok(Response::new(pb::PublishLogsResponse {}))
    }
}

/// A manager's dispatcher, over the network. Implements [`DispatcherApi`], so the agent
/// uses it unchanged.
///
/// Every failure comes back as a [`DispatchError`]: the dispatcher's own errors with their
/// variant intact; transport failures, timeouts and refusals as `Unavailable`, which the
/// agent answers by reconnecting with backoff.
#[derive(Debug, Clone)]
pub struct RemoteDispatcher {
    channel: RpcChannel,
}

impl RemoteDispatcher {
    pub fn new(channel: RpcChannel) -> Self {
        RemoteDispatcher { channel }
    }

    /// The manager's address.
    pub fn addr(&self) -> &str {
        self.channel.addr()
    }

    fn client(&self) -> DispatcherClient<tonic::transport::Channel> {
        let max = self.channel.options.max_message_bytes;
        DispatcherClient::new(self.channel.channel.clone())
            .max_decoding_message_size(max)
            .max_encoding_message_size(max)
    }

    /// Opens a server stream within the call deadline. Streams get no `grpc-timeout`: they
    /// live as long as the session.
    async fn open<F, T>(&self, open: F) -> Result<tonic::Streaming<T>, DispatchError>
    where
        F: Future<Output = Result<Response<tonic::Streaming<T>>, Status>>,
    {
        let timeout = self.channel.options.call_timeout;
        match tokio::time::timeout(timeout, open).await {
            Ok(Ok(resp)) => Ok(resp.into_inner()),
            Ok(Err(status)) => Err(dispatch_error_from_status(&status)),
            Err(_) => Err(DispatchError::Unavailable(format!(
                "{} did not open the stream within {timeout:?}",
                self.addr()
            ))),
        }
    }
}

/// Decodes a stream of JSON-carrying messages into domain values.
fn decode_stream<P, T>(
    stream: tonic::Streaming<P>,
    json: fn(&P) -> &[u8],
    what: &'static str,
) -> DispatchStream<T>
where
    P: Send + 'static,
    T: serde::de::DeserializeOwned + Send + 'static,
{
    stream
        .map(move |item| match item {
            Ok(msg) => serde_json::from_slice(json(&msg)).map_err(|e| {
                DispatchError::Unavailable(format!("undecodable {what} from the manager: {e}"))
            }),
            Err(status) => Err(dispatch_error_from_status(&status)),
        })
        .boxed()
}

fn encode<T: serde::Serialize>(value: &T) -> Result<bytes::Bytes, DispatchError> {
    serde_json::to_vec(value)
        .map(bytes::Bytes::from)
        .map_err(|e| DispatchError::Unavailable(format!("encoding the request: {e}")))
}

#[async_trait::async_trait]
impl DispatcherApi for RemoteDispatcher {
    async fn session(
        &self,
        req: SessionRequest,
    ) -> Result<DispatchStream<SessionMessage>, DispatchError> {
        let msg = pb::SessionRequest {
            json: encode(&req)?,
        };
        let mut client = self.client();
        let stream = self.open(client.session(msg)).await?;
        Ok(decode_stream(
            stream,
            |m: &pb::SessionMessage| &m.json,
            "session message",
        ))
    }

    async fn heartbeat(&self, session_id: &str) -> Result<Duration, DispatchError> {
        let req = self.channel.request(pb::HeartbeatRequest {
            session_id: session_id.to_string(),
        });
        let resp = self
            .client()
            .heartbeat(req)
            .await
            .map_err(|s| dispatch_error_from_status(&s))?;
        Ok(Duration::from_millis(resp.get_ref().period_ms))
    }

    async fn assignments(
        &self,
        session_id: &str,
    ) -> Result<DispatchStream<AssignmentsMessage>, DispatchError> {
        let msg = pb::AssignmentsRequest {
            session_id: session_id.to_string(),
        };
        let mut client = self.client();
        let stream = self.open(client.assignments(msg)).await?;
        Ok(decode_stream(
            stream,
            |m: &pb::AssignmentsMessage| &m.json,
            "assignments message",
        ))
    }

    async fn update_task_status(
        &self,
        session_id: &str,
        updates: Vec<TaskStatusUpdate>,
    ) -> Result<(), DispatchError> {
        let req = self.channel.request(pb::UpdateTaskStatusRequest {
            session_id: session_id.to_string(),
            json: encode(&updates)?,
        });
        self.client()
            .update_task_status(req)
            .await
            .map_err(|s| dispatch_error_from_status(&s))?;
        Ok(())
    }

    async fn log_subscriptions(
        &self,
        session_id: &str,
    ) -> Result<DispatchStream<LogSubscription>, DispatchError> {
        let msg = pb::LogSubscriptionsRequest {
            session_id: session_id.to_string(),
        };
        let mut client = self.client();
        let stream = self.open(client.log_subscriptions(msg)).await?;
        Ok(decode_stream(
            stream,
            |m: &pb::LogSubscriptionMessage| &m.json,
            "log subscription",
        ))
    }

    async fn subscribe_logs(
        &self,
        sub: BrokerSubscription,
    ) -> Result<DispatchStream<PublishedLine>, DispatchError> {
        let msg = pb::SubscribeLogsRequest {
            json: encode(&sub)?,
        };
        let mut client = self.client();
        let stream = self.open(client.subscribe_logs(msg)).await?;
        Ok(decode_stream(
            stream,
            |m: &pb::PublishedLineMessage| &m.json,
            "log line",
        ))
    }

    async fn publish_logs(&self, session_id: &str, logs: PublishLogs) -> Result<(), DispatchError> {
        let req = self.channel.request(pb::PublishLogsRequest {
            session_id: session_id.to_string(),
            json: encode(&logs)?,
        });
        self.client()
            .publish_logs(req)
            .await
            .map_err(|s| dispatch_error_from_status(&s))?;
        Ok(())
    }
}
