//! swarmd's node-to-node RPC: gRPC (tonic) over mutual TLS on the cluster port.
//!
//! Five services, defined in `proto/swarmd.proto`:
//! - **Dispatcher** — the agent ⇄ dispatcher protocol ([`DispatcherApi`]):
//!   [`DispatcherServer`] serves any implementation, [`RemoteDispatcher`] is one.
//! - **Raft** — openraft's RPCs as opaque bytes: [`RaftService`] / [`RaftClient`].
//! - **Ca** — join/renew certificates and the root CA: [`CaService`] / [`CaClient`].
//! - **Control** — followers forward store proposals to the leader:
//!   [`ProposeServer`] serves any [`Proposer`], [`RemoteProposer`] is one.
//! - **Engines** — byte streams to nodes' engines through their agents:
//!   [`EnginesServer`] serves any [`EnginesService`], [`EnginesClient`] calls it; a call's
//!   frames are a [`Tunnel`] (`AsyncRead + AsyncWrite`).
//!
//! Domain values travel as serde_json inside thin protobuf messages (the proto's header
//! says why). TLS configurations come from outside (the pki crate) as
//! `Arc<rustls::ServerConfig>` / `Arc<rustls::ClientConfig>`; the server accepts TLS itself
//! and gives tonic finished connections, tagging each with the client's certificate chain
//! ([`TlsPeer`]). Before tonic reads a request body, the [`Authorizer`] turns that chain
//! into a [`PeerInfo`] or refuses the call (a tower layer, so a refused peer cannot make
//! the server buffer a message); the calls open to peers without a certificate (the Ca
//! service) accept only small messages ([`ca::MAX_MESSAGE_BYTES`]).
//! Typed errors cross the wire intact (see [`error`]).
//!
//! A rustls `CryptoProvider` must be chosen before building configs; swarmd uses ring
//! (installed at startup by the binary).
//!
//! [`DispatcherApi`]: swarmd_types::dispatcher::DispatcherApi
//! [`Proposer`]: swarmd_store::Proposer

pub mod auth;
pub mod ca;
pub mod client;
pub mod control;
pub mod dispatcher;
pub mod engines;
pub mod error;
mod gate;
pub mod raft;
pub mod server;
pub mod tls;
pub mod tunnel;

/// Code generated from `proto/swarmd.proto`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("swarmd.v1");
}

pub use auth::{Authorizer, PeerIdentity, PeerInfo, Requirement, RoleAuthorizer, RpcKind};
pub use ca::{CaClient, CaServer, CaService, IssueRequest, IssuedCertificate};
pub use client::{ClientError, ClientOptions, DEFAULT_MAX_MESSAGE_BYTES, RpcChannel};
pub use control::{ProposeServer, RemoteProposer};
pub use dispatcher::{DispatcherServer, RemoteDispatcher};
pub use engines::{EnginesClient, EnginesServer, EnginesService};
pub use error::{
    RpcError, TunnelError, dispatch_error_from_status, dispatch_status, propose_error_from_status,
    propose_status,
};
pub use raft::{RaftClient, RaftServer, RaftService};
pub use server::{RpcServer, ServeError, ServerOptions, Services, serve};
pub use tls::{ConnectFailed, TlsPeer};
pub use tunnel::{Tunnel, TunnelIo, Upstream, splice};

// What implementors of this crate's traits need, so they do not depend on tonic or
// rustls-pki-types themselves.
pub use bytes::Bytes;
pub use rustls_pki_types::CertificateDer;
pub use tonic::{Code, Status};
