//! The cluster port: this node's certificates, the manager's gRPC server (dispatcher, CA,
//! Raft and write forwarding over mutual TLS) and the join handshake of a new node.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use swarmd_manager::ca::{self as ca_signer, CaError};
use swarmd_raft::RaftNode;
use swarmd_rpc::{
    CaClient, CaService, CertificateDer, IssueRequest, IssuedCertificate, PeerIdentity, PeerInfo,
    RoleAuthorizer, RpcChannel, RpcError, RpcServer, Services,
};
use swarmd_store::Store;
use swarmd_types::Role;
use swarmd_types::dispatcher::DispatcherApi;
use tokio_util::sync::CancellationToken;

use crate::raft_glue::manager_client_options as client_options;

/// This node's key, certificate and the swarm's root, kept under `swarm/certs/`.
#[derive(Debug, Clone)]
pub struct NodeCerts {
    pub key_pem: String,
    pub cert_pem: String,
    pub root_pem: String,
}

fn certs_dir(swarm_dir: &Path) -> PathBuf {
    swarm_dir.join("certs")
}

impl NodeCerts {
    pub fn load(swarm_dir: &Path) -> anyhow::Result<NodeCerts> {
        let d = certs_dir(swarm_dir);
        let read = |f: &str| {
            std::fs::read_to_string(d.join(f))
                .with_context(|| format!("reading {}", d.join(f).display()))
        };
        Ok(NodeCerts {
            key_pem: read("node.key")?,
            cert_pem: read("node.crt")?,
            root_pem: read("ca.crt")?,
        })
    }

    /// Writes the files (the key readable by root only).
    pub fn save(&self, swarm_dir: &Path) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let d = certs_dir(swarm_dir);
        std::fs::create_dir_all(&d)?;
        for (name, body, mode) in [
            ("node.key", &self.key_pem, 0o600),
            ("node.crt", &self.cert_pem, 0o644),
            ("ca.crt", &self.root_pem, 0o644),
        ] {
            let path = d.join(name);
            std::fs::write(&path, body)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
        }
        Ok(())
    }

    /// The swarm's ID, from this node's certificate (its O field).
    pub fn cluster_id(&self) -> anyhow::Result<String> {
        Ok(swarmd_pki::parse_node_identity_pem(&self.cert_pem)?.cluster_id)
    }

    /// The client TLS config for calls to managers.
    pub fn client_config(&self) -> anyhow::Result<Arc<rustls::ClientConfig>> {
        Ok(swarmd_pki::client_config(
            &self.cert_pem,
            &self.key_pem,
            &self.root_pem,
        )?)
    }
}

/// The manager's CA service: joins (with a token) and renewals (with a certificate).
struct CaServiceImpl {
    store: Store,
}

fn ca_rpc_error(e: CaError) -> RpcError {
    match e {
        CaError::InvalidToken => RpcError::InvalidArgument(e.to_string()),
        CaError::NoCluster => RpcError::Unavailable(e.to_string()),
        CaError::UnknownNode(_) => RpcError::PermissionDenied(e.to_string()),
        CaError::Signing(m) => RpcError::InvalidArgument(m),
        CaError::Propose(p) => RpcError::Unavailable(p.to_string()),
    }
}

#[async_trait::async_trait]
impl CaService for CaServiceImpl {
    async fn issue_node_certificate(
        &self,
        peer: PeerInfo,
        req: IssueRequest,
    ) -> Result<IssuedCertificate, RpcError> {
        let issued = match (&peer.identity, &req.token) {
            // A member renewing: the store decides its role.
            (Some(id), _) => {
                ca_signer::issue_for_member(&self.store, &id.node_id, &req.csr_pem, &req.addr)
                    .await
                    .map_err(ca_rpc_error)?
            }
            (None, Some(token)) => {
                ca_signer::issue_for_join(&self.store, token, &req.csr_pem, &req.addr)
                    .await
                    .map_err(ca_rpc_error)?
            }
            (None, None) => {
                return Err(RpcError::InvalidArgument(CaError::InvalidToken.to_string()));
            }
        };
        Ok(IssuedCertificate {
            cert_pem: issued.cert_pem,
            root_ca_pem: issued.root_ca_pem,
            node_id: issued.node_id,
            role: issued.role,
            raft_id: issued.raft_id,
        })
    }

    async fn root_ca(&self, _peer: PeerInfo) -> Result<String, RpcError> {
        self.store
            .view(|t| t.cluster().map(|c| c.root_ca.cert_pem.clone()))
            .ok_or_else(|| RpcError::Unavailable("This node is not a swarm manager.".into()))
    }
}

/// Reads the caller's identity from its verified certificate; only this swarm's nodes
/// that are still members count, and a manager certificate counts only while the store
/// still records the node as a manager (a demoted node keeps its old certificate until
/// renewal).
fn identify(
    store: Store,
    cluster_id: String,
) -> impl Fn(&[CertificateDer<'static>]) -> Option<PeerIdentity> + Send + Sync + 'static {
    move |chain| {
        let id = swarmd_pki::role_of_peer(chain).ok()?;
        if id.cluster_id != cluster_id {
            return None;
        }
        let cert_role = match id.role {
            swarmd_pki::Role::Manager => Role::Manager,
            swarmd_pki::Role::Worker => Role::Worker,
        };
        // A manager that just joined has no replica yet: the certificate alone (signed by
        // this swarm's CA) lets the leader replicate to it.
        let (has_cluster, recorded) = store.view(|t| {
            (
                t.cluster().is_some(),
                t.nodes.get(&id.node_id).map(|n| n.role),
            )
        });
        let role = match (has_cluster, recorded) {
            (false, _) => cert_role,
            // A removed node's certificate stays valid until it expires; membership decides.
            (true, None) => return None,
            (true, Some(Role::Worker)) => Role::Worker,
            (true, Some(Role::Manager)) => cert_role,
        };
        Some(PeerIdentity {
            node_id: id.node_id,
            role,
            cluster_id: id.cluster_id,
        })
    }
}

/// Binds the cluster port and serves the dispatcher, the CA, Raft and write forwarding
/// until `cancel` fires.
pub async fn serve_cluster_port(
    addr: SocketAddr,
    certs: &NodeCerts,
    live: &swarmd_pki::LiveCert,
    store: Store,
    raft: Arc<RaftNode>,
    dispatcher: Arc<dyn DispatcherApi>,
    cancel: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let tls = swarmd_pki::live_server_config(live, &certs.root_pem)?;
    let authorizer = Arc::new(RoleAuthorizer::new(identify(
        store.clone(),
        certs.cluster_id()?,
    )));
    let services = Services::new()
        .dispatcher(dispatcher)
        .raft(Arc::new(raft.rpc_handler()))
        // Forwarded writes go straight into this node's Raft: a follower answers NotLeader
        // and the caller follows, so a write is never forwarded twice.
        .proposer(raft)
        .ca(Arc::new(CaServiceImpl { store }));
    let server = RpcServer::bind(addr, tls, authorizer, services)
        .await
        .map_err(|e| anyhow::anyhow!("listen tcp {addr}: {e}"))?;
    tracing::info!(%addr, "cluster port listening");
    Ok(tokio::spawn(async move {
        if let Err(e) = server.serve(cancel).await {
            tracing::error!(error = %e, "cluster port stopped");
        }
    }))
}

/// Why joining failed, in the words the user sees.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("invalid join token")]
    BadToken,
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Unreachable(String),
}

/// What the CA gave a joining or renewing node.
pub struct Granted {
    pub certs: NodeCerts,
    pub node_id: String,
    pub role: Role,
    pub raft_id: Option<u64>,
}

/// Asks the manager at `remote` for a certificate, pinning its CA by the token's digest.
/// `addr` is this node's cluster address (recorded for managers).
pub async fn request_certificate(
    token: &str,
    remote: &str,
    addr: &str,
) -> Result<Granted, JoinError> {
    let parsed = swarmd_pki::parse_join_token(token).map_err(|_| JoinError::BadToken)?;
    let tls = swarmd_pki::bootstrap_client_config(&parsed.ca_digest)
        .map_err(|e| JoinError::Refused(e.to_string()))?;
    let channel = RpcChannel::new(remote, tls, client_options())
        .map_err(|e| JoinError::Unreachable(e.to_string()))?;
    let key = swarmd_pki::generate_node_key_and_csr(None)
        .map_err(|e| JoinError::Refused(e.to_string()))?;
    let issued = CaClient::new(channel)
        .issue_node_certificate(IssueRequest {
            token: Some(token.to_string()),
            csr_pem: key.csr_pem.clone(),
            role_hint: None,
            node_id: None,
            addr: addr.to_string(),
        })
        .await
        .map_err(|e| match e {
            // A CA that doesn't match the token's digest fails the TLS handshake.
            RpcError::Unavailable(m) | RpcError::DeadlineExceeded(m)
                if m.contains("CaFingerprintMismatch")
                    || m.contains("remote CA does not match fingerprint") =>
            {
                JoinError::Refused(
                    swarmd_pki::PkiError::CaFingerprintMismatch {
                        expected: parsed.ca_digest.trim_start_matches("sha256:").to_string(),
                    }
                    .to_string(),
                )
            }
            RpcError::Unavailable(m) | RpcError::DeadlineExceeded(m) => JoinError::Unreachable(m),
            other => JoinError::Refused(rpc_message(&other)),
        })?;
    // The root the manager handed over must be the one the token pins.
    swarmd_pki::verify_root_against_token(&issued.root_ca_pem, token)
        .map_err(|e| JoinError::Refused(e.to_string()))?;
    Ok(Granted {
        certs: NodeCerts {
            key_pem: key.key_pem,
            cert_pem: issued.cert_pem,
            root_pem: issued.root_ca_pem,
        },
        node_id: issued.node_id,
        role: issued.role,
        raft_id: issued.raft_id,
    })
}

/// Renews this node's certificate with the first of `managers` that answers, proving
/// who it is with the current one. The new certificate carries the role the swarm now
/// records (so this is how a promotion or demotion reaches the certificate) and, for a
/// manager, its Raft ID. `addr` is this node's cluster address.
pub async fn renew_certificate(
    current: &NodeCerts,
    managers: &[String],
    addr: &str,
) -> anyhow::Result<Granted> {
    let key = swarmd_pki::generate_node_key_and_csr(None)?;
    let mut last = anyhow::anyhow!("no manager to renew the certificate with");
    for m in managers {
        let channel = match RpcChannel::new(m, current.client_config()?, client_options()) {
            Ok(c) => c,
            Err(e) => {
                last = anyhow::anyhow!("{m}: {e}");
                continue;
            }
        };
        let res = CaClient::new(channel)
            .issue_node_certificate(IssueRequest {
                token: None,
                csr_pem: key.csr_pem.clone(),
                role_hint: None,
                node_id: None,
                addr: addr.to_string(),
            })
            .await;
        match res {
            Ok(issued) => {
                return Ok(Granted {
                    certs: NodeCerts {
                        key_pem: key.key_pem,
                        cert_pem: issued.cert_pem,
                        root_pem: issued.root_ca_pem,
                    },
                    node_id: issued.node_id,
                    role: issued.role,
                    raft_id: issued.raft_id,
                });
            }
            Err(e) => last = anyhow::anyhow!("{m}: {}", rpc_message(&e)),
        }
    }
    Err(last)
}

/// Docker's rendering of a manager's gRPC error ("rpc error: code = X desc = ...").
fn rpc_message(e: &RpcError) -> String {
    let (code, desc) = match e {
        RpcError::InvalidArgument(m) => ("InvalidArgument", m),
        RpcError::Unauthenticated(m) => ("Unauthenticated", m),
        RpcError::PermissionDenied(m) => ("PermissionDenied", m),
        RpcError::NotFound(m) => ("NotFound", m),
        RpcError::FailedPrecondition(m) => ("FailedPrecondition", m),
        RpcError::Unavailable(m) => ("Unavailable", m),
        RpcError::DeadlineExceeded(m) => ("DeadlineExceeded", m),
        RpcError::Internal(m) => ("Internal", m),
    };
    format!("rpc error: code = {code} desc = {desc}")
}
