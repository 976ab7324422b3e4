//! The Ca service: certificates for joining and renewing nodes, and the root CA.
//!
//! Both RPCs are reachable without a client certificate (a joiner has none yet); the join
//! token, checked by the [`CaService`] implementation in the pki/manager crates, is what
//! authenticates a joiner and decides its role. A renewing node may instead present its
//! current certificate, which then arrives as [`PeerInfo`].

use std::sync::Arc;

use swarmd_types::Role;
use tonic::{Request, Response, Status};

use crate::auth::{Authorizer, PeerInfo, RpcKind};
use crate::client::RpcChannel;
use crate::error::RpcError;
use crate::pb;
use crate::pb::ca_client::CaClient as PbCaClient;
use crate::server::authorize;

/// The largest request the Ca service decodes. Its RPCs are open to peers without a
/// certificate, so this is what an anonymous peer can make a manager buffer per call. A
/// request is a join token (~100 bytes), a PEM CSR (about 0.5 KiB for the P-256 keys
/// swarmd makes, under 2 KiB even for RSA-4096), a node ID and an address: a few KiB at
/// most, so 64 KiB leaves more than tenfold headroom and still refuses anything bulky.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// A certificate request as the CA sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueRequest {
    /// `SWMTKN-1-...`; `None` when renewing with a valid certificate.
    pub token: Option<String>,
    /// PKCS#10 CSR, PEM. The node keeps its private key.
    pub csr_pem: String,
    /// The role the node asks for. A hint only: the token or certificate decides.
    pub role_hint: Option<Role>,
    /// The node ID to keep when renewing; `None` for a new node.
    pub node_id: Option<String>,
    /// The node's cluster address, which Raft peers dial once it is a manager.
    pub addr: String,
    /// A joining node's first availability (`active`, `pause`, `drain`); `None`: active.
    pub availability: Option<String>,
}

/// What the CA issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCertificate {
    pub cert_pem: String,
    pub root_ca_pem: String,
    pub node_id: String,
    pub role: Role,
    /// The manager's Raft member ID; `None` for workers.
    pub raft_id: Option<u64>,
}

/// The CA as the cluster port serves it (implemented with the pki crate on managers).
#[async_trait::async_trait]
pub trait CaService: Send + Sync + 'static {
    /// Checks the token (or `peer`'s certificate) and signs the CSR. Refuse a bad or
    /// rotated token with `Unauthenticated`, a role the caller may not have with
    /// `PermissionDenied`.
    async fn issue_node_certificate(
        &self,
        peer: PeerInfo,
        req: IssueRequest,
    ) -> Result<IssuedCertificate, RpcError>;
    /// The root CA certificate, PEM.
    async fn root_ca(&self, peer: PeerInfo) -> Result<String, RpcError>;
}

fn role_from_pb(role: i32) -> Option<Role> {
    match pb::NodeRole::try_from(role).ok()? {
        pb::NodeRole::Worker => Some(Role::Worker),
        pb::NodeRole::Manager => Some(Role::Manager),
        pb::NodeRole::Unspecified => None,
    }
}

fn role_to_pb(role: Option<Role>) -> i32 {
    let r = match role {
        Some(Role::Worker) => pb::NodeRole::Worker,
        Some(Role::Manager) => pb::NodeRole::Manager,
        None => pb::NodeRole::Unspecified,
    };
    r as i32
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// Serves a [`CaService`] as the `Ca` gRPC service.
pub struct CaServer {
    ca: Arc<dyn CaService>,
    authorizer: Arc<dyn Authorizer>,
}

impl CaServer {
    pub fn new(ca: Arc<dyn CaService>, authorizer: Arc<dyn Authorizer>) -> Self {
        CaServer { ca, authorizer }
    }
}

#[tonic::async_trait]
impl pb::ca_server::Ca for CaServer {
    async fn issue_node_certificate(
        &self,
        req: Request<pb::IssueNodeCertificateRequest>,
    ) -> Result<Response<pb::IssueNodeCertificateResponse>, Status> {
        let peer = authorize(&*self.authorizer, RpcKind::CaIssueNodeCertificate, &req)?;
        let r = req.into_inner();
        let issue = IssueRequest {
            token: non_empty(r.token),
            csr_pem: r.csr_pem,
            role_hint: role_from_pb(r.role),
            node_id: non_empty(r.node_id),
            addr: r.addr,
            availability: non_empty(r.availability),
        };
        let issued = self.ca.issue_node_certificate(peer, issue).await?;
        Ok(Response::new(pb::IssueNodeCertificateResponse {
            cert_pem: issued.cert_pem,
            root_ca_pem: issued.root_ca_pem,
            node_id: issued.node_id,
            role: role_to_pb(Some(issued.role)),
            raft_id: issued.raft_id.unwrap_or(0),
        }))
    }

    async fn get_root_ca(
        &self,
        req: Request<pb::GetRootCaRequest>,
    ) -> Result<Response<pb::GetRootCaResponse>, Status> {
        let peer = authorize(&*self.authorizer, RpcKind::CaGetRootCa, &req)?;
        let root_ca_pem = self.ca.root_ca(peer).await?;
        Ok(Response::new(pb::GetRootCaResponse { root_ca_pem }))
    }
}

/// Calls a manager's `Ca` service. A joiner builds its channel with a `ClientConfig` that
/// pins the CA by the token's digest and carries no client certificate.
#[derive(Debug, Clone)]
pub struct CaClient {
    channel: RpcChannel,
}

impl CaClient {
    pub fn new(channel: RpcChannel) -> Self {
        CaClient { channel }
    }

    fn client(&self) -> PbCaClient<tonic::transport::Channel> {
        PbCaClient::new(self.channel.channel.clone())
    }

    pub async fn issue_node_certificate(
        &self,
        req: IssueRequest,
    ) -> Result<IssuedCertificate, RpcError> {
        let msg = pb::IssueNodeCertificateRequest {
            token: req.token.unwrap_or_default(),
            csr_pem: req.csr_pem,
            role: role_to_pb(req.role_hint),
            node_id: req.node_id.unwrap_or_default(),
            addr: req.addr,
            availability: req.availability.unwrap_or_default(),
        };
        let r = self
            .client()
            .issue_node_certificate(self.channel.request(msg))
            .await?
            .into_inner();
        let role = role_from_pb(r.role)
            .ok_or_else(|| RpcError::Internal("the CA answered without a role".into()))?;
        Ok(IssuedCertificate {
            cert_pem: r.cert_pem,
            root_ca_pem: r.root_ca_pem,
            node_id: r.node_id,
            role,
            raft_id: (r.raft_id != 0).then_some(r.raft_id),
        })
    }

    pub async fn root_ca(&self) -> Result<String, RpcError> {
        let r = self
            .client()
            .get_root_ca(self.channel.request(pb::GetRootCaRequest {}))
            .await?;
        Ok(r.into_inner().root_ca_pem)
    }
}
