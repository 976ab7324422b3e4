//! Authorization before decoding: a tower layer in front of every gRPC route.
//!
//! tonic decodes a request message completely before the handler runs, and its decoder
//! reserves the whole announced length as soon as the 5-byte gRPC frame header arrives. If
//! the [`Authorizer`] ran only in the handlers, an anonymous peer on the cluster port could
//! make a manager reserve and buffer a message of up to the decoding limit (64 MiB) for
//! any RPC, manager-only ones included, before being refused. This layer sits between the
//! connection and tonic's router: it maps the request path to its [`RpcKind`], runs the
//! authorizer on the connection's certificate chain ([`TlsPeer`]) and answers a refused
//! call at once, with the request body unread; hyper then resets the stream, so the body
//! is never buffered beyond what HTTP/2 flow control already let the client send. An
//! allowed call carries the verdict to its handler ([`Authorized`]), which therefore does
//! not parse the certificate a second time.
//!
//! A path that names no known RPC is answered `Unimplemented` here too (what tonic's router
//! would say), so a method added to the proto but not to [`RpcKind`] can never bypass the
//! check.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::{Either, Ready, ready};
use tonic::Status;
use tonic::body::Body;
use tower::{Layer, Service};

use crate::auth::{Authorizer, PeerInfo, RpcKind};
use crate::tls::TlsPeer;

/// The layer's verdict on an allowed call, left in the request's extensions so the
/// handler learns the caller without asking the authorizer again.
#[derive(Debug, Clone)]
pub(crate) struct Authorized {
    pub rpc: RpcKind,
    pub peer: PeerInfo,
}

/// Wraps tonic's routes in [`Gate`].
#[derive(Clone)]
pub(crate) struct GateLayer {
    authorizer: Arc<dyn Authorizer>,
}

impl GateLayer {
    pub(crate) fn new(authorizer: Arc<dyn Authorizer>) -> Self {
        GateLayer { authorizer }
    }
}

impl<S> Layer<S> for GateLayer {
    type Service = Gate<S>;
    fn layer(&self, inner: S) -> Gate<S> {
        Gate {
            inner,
            authorizer: self.authorizer.clone(),
        }
    }
}

/// Authorizes each call from its path and the connection's certificates, before anything
/// reads the request body.
#[derive(Clone)]
pub(crate) struct Gate<S> {
    inner: S,
    authorizer: Arc<dyn Authorizer>,
}

impl<S, B> Service<http::Request<B>> for Gate<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Either<Ready<Result<http::Response<Body>, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let Some(rpc) = RpcKind::from_path(req.uri().path()) else {
            let status = Status::unimplemented(format!("unknown method {}", req.uri().path()));
            return Either::Left(ready(Ok(status.into_http())));
        };
        let tls = req.extensions().get::<TlsPeer>();
        match check(&*self.authorizer, rpc, tls) {
            Ok(peer) => {
                req.extensions_mut().insert(Authorized { rpc, peer });
                Either::Right(self.inner.call(req))
            }
            Err(status) => Either::Left(ready(Ok(status.into_http()))),
        }
    }
}

/// Runs the authorizer on the certificate chain of a connection, logging a refusal.
pub(crate) fn check(
    authorizer: &dyn Authorizer,
    rpc: RpcKind,
    tls: Option<&TlsPeer>,
) -> Result<PeerInfo, Status> {
    let certs = tls.and_then(|p| p.certs.as_deref());
    authorizer.authorize(rpc, certs).inspect_err(|status| {
        tracing::info!(
            rpc = %rpc,
            remote = ?tls.and_then(|p| p.remote_addr),
            reason = %status.message(),
            "rpc refused"
        );
    })
}
