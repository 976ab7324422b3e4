//! The cluster port: this node's certificates, the manager's gRPC server (dispatcher, CA,
//! Raft, write forwarding and engine tunnels over mutual TLS) and the join handshake of a new node.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::os::unix::fs::OpenOptionsExt;
use swarmd_crypto::{DataKey, UnlockKey};
use swarmd_manager::ca::{self as ca_signer, CaError};
use swarmd_raft::RaftNode;
use swarmd_rpc::{
    CaClient, CaService, CertificateDer, EnginesService, IssueRequest, IssuedCertificate,
    PeerIdentity, PeerInfo, RoleAuthorizer, RpcChannel, RpcError, RpcServer, Services,
};
use swarmd_store::Store;
use swarmd_types::Role;
use swarmd_types::dispatcher::DispatcherApi;
use tokio_util::sync::CancellationToken;

use crate::raft_glue::manager_client_options as client_options;

/// This node's key, certificate, the swarm's root and the node's data key, kept under
/// `swarm/certs/`.
///
/// The secrets (TLS private key and data key) live together in `node.keys`, as swarmkit keeps
/// its Raft DEK in the TLS key's PEM headers: in the clear (mode 0600) while autolock is off;
/// sealed with the unlock key (XChaCha20-Poly1305) while it is on, so that without the key,
/// which is never written to disk, a stopped manager's data cannot be read.
#[derive(Debug, Clone)]
pub struct NodeCerts {
    pub key_pem: String,
    pub cert_pem: String,
    pub root_pem: String,
    /// Seals this node's Raft log (managers) and agent database (every node).
    pub dek: DataKey,
}

fn certs_dir(swarm_dir: &Path) -> PathBuf {
    swarm_dir.join("certs")
}

/// File holding the node's secrets, see [`NodeCerts`].
const KEYS_FILE: &str = "node.keys";
/// Where swarmd kept the TLS key (alone, in the clear) before encryption at rest.
const LEGACY_KEY_FILE: &str = "node.key";
/// Associated data of the sealed secrets: a sealed blob is only ever read as this file.
const KEYS_AAD: &[u8] = b"swarmd/certs/node.keys/v1";

/// The node's secrets as they are in memory.
#[derive(Serialize, Deserialize)]
struct NodeSecrets {
    tls_key_pem: String,
    dek: String,
}

/// `node.keys` on disk.
#[derive(Serialize, Deserialize)]
#[serde(tag = "storage", rename_all = "snake_case")]
enum KeysFile {
    /// Autolock off: readable by root only.
    Plain(NodeSecrets),
    /// Autolock on: base64 of the secrets' JSON sealed by the unlock key.
    Sealed { sealed: String },
}

/// Why the node's secrets could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// Sealed and no unlock key given: the node is locked.
    #[error("the node's keys are sealed by the swarm's unlock key")]
    Locked,
    /// Sealed and the given key does not open them.
    #[error("swarm could not be unlocked: invalid key provided")]
    WrongKey,
    #[error("{0:#}")]
    Other(#[from] anyhow::Error),
}

/// Writes the secrets as `node.keys` would hold them: sealed by `lock` if given. Pure.
fn keys_file(secrets: &NodeSecrets, lock: Option<&UnlockKey>) -> anyhow::Result<Vec<u8>> {
    let file = match lock {
        None => KeysFile::Plain(NodeSecrets {
            tls_key_pem: secrets.tls_key_pem.clone(),
            dek: secrets.dek.clone(),
        }),
        Some(k) => {
            let json = zeroize::Zeroizing::new(serde_json::to_vec(secrets)?);
            KeysFile::Sealed {
                sealed: base64::engine::general_purpose::STANDARD
                    .encode(k.kek().seal(KEYS_AAD, &json)),
            }
        }
    };
    Ok(serde_json::to_vec(&file)?)
}

/// Reads `node.keys`, opening it with `lock` if it is sealed. Pure.
fn open_keys_file(bytes: &[u8], lock: Option<&UnlockKey>) -> Result<NodeSecrets, KeysError> {
    let file: KeysFile = serde_json::from_slice(bytes)
        .map_err(|e| anyhow::anyhow!("unreadable {KEYS_FILE}: {e}"))?;
    match file {
        KeysFile::Plain(s) => Ok(s),
        KeysFile::Sealed { sealed } => {
            let Some(k) = lock else {
                return Err(KeysError::Locked);
            };
            let sealed = base64::engine::general_purpose::STANDARD
                .decode(sealed)
                .map_err(|e| anyhow::anyhow!("unreadable {KEYS_FILE}: {e}"))?;
            let json = zeroize::Zeroizing::new(
                k.kek()
                    .open(KEYS_AAD, &sealed)
                    .map_err(|_| KeysError::WrongKey)?,
            );
            Ok(serde_json::from_slice(&json)
                .map_err(|e| anyhow::anyhow!("unreadable sealed {KEYS_FILE}: {e}"))?)
        }
    }
}

/// Whether this node's secrets are sealed (autolock): it starts locked.
pub fn keys_are_sealed(swarm_dir: &Path) -> bool {
    std::fs::read(certs_dir(swarm_dir).join(KEYS_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice::<KeysFile>(&b).ok())
        .is_some_and(|f| matches!(f, KeysFile::Sealed { .. }))
}

impl NodeCerts {
    /// Reads the certificates and the secrets, unsealing them with `lock` when autolocked.
    ///
    /// A data root from before encryption at rest has only `node.key`: its key is kept and
    /// a new data key made (a manager's plaintext Raft log is then refused by Raft itself).
    pub fn load(swarm_dir: &Path, lock: Option<&UnlockKey>) -> Result<NodeCerts, KeysError> {
        let d = certs_dir(swarm_dir);
        let read = |f: &str| {
            std::fs::read_to_string(d.join(f))
                .with_context(|| format!("reading {}", d.join(f).display()))
        };
        let secrets = match std::fs::read(d.join(KEYS_FILE)) {
            Ok(bytes) => open_keys_file(&bytes, lock)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => NodeSecrets {
                tls_key_pem: read(LEGACY_KEY_FILE)?,
                dek: DataKey::generate().to_base64(),
            },
            Err(e) => return Err(anyhow::anyhow!("reading {KEYS_FILE}: {e}").into()),
        };
        Ok(NodeCerts {
            dek: DataKey::from_base64(&secrets.dek)
                .map_err(|e| anyhow::anyhow!("{KEYS_FILE}: {e}"))?,
            key_pem: secrets.tls_key_pem,
            cert_pem: read("node.crt")?,
            root_pem: read("ca.crt")?,
        })
    }

    /// Writes the files (the secrets readable by root only, sealed by `lock` if given),
    /// each replaced atomically.
    pub fn save(&self, swarm_dir: &Path, lock: Option<&UnlockKey>) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let d = certs_dir(swarm_dir);
        std::fs::create_dir_all(&d)?;
        let secrets = NodeSecrets {
            tls_key_pem: self.key_pem.clone(),
            dek: self.dek.to_base64(),
        };
        let keys = keys_file(&secrets, lock)?;
        for (name, body, mode) in [
            (KEYS_FILE, keys.as_slice(), 0o600),
            ("node.crt", self.cert_pem.as_bytes(), 0o644),
            ("ca.crt", self.root_pem.as_bytes(), 0o644),
        ] {
            let path = d.join(name);
            let tmp = d.join(format!(".{name}.tmp"));
            {
                use std::io::Write;
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(mode)
                    .open(&tmp)?;
                f.write_all(body)?;
                f.sync_all()?;
            }
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
            std::fs::rename(&tmp, &path)?;
        }
        match std::fs::remove_file(d.join(LEGACY_KEY_FILE)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
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
        CaError::Signing(m) | CaError::Invalid(m) => RpcError::InvalidArgument(m),
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
            (None, Some(token)) => ca_signer::issue_for_join(
                &self.store,
                token,
                &req.csr_pem,
                &req.addr,
                req.availability.as_deref(),
            )
            .await
            .map_err(ca_rpc_error)?,
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
            .view(|t| {
                t.cluster()
                    .map(|c| swarmd_manager::ca_rotation::trust_roots(&c.root_ca))
            })
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
#[allow(clippy::too_many_arguments)]
pub async fn serve_cluster_port(
    addr: SocketAddr,
    certs: &NodeCerts,
    live: &swarmd_pki::LiveCert,
    store: Store,
    raft: Arc<RaftNode>,
    dispatcher: Arc<dyn DispatcherApi>,
    engines: Arc<dyn EnginesService>,
    cancel: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let tls = swarmd_pki::live_server_config(live)?;
    let authorizer = Arc::new(RoleAuthorizer::new(identify(
        store.clone(),
        certs.cluster_id()?,
    )));
    let services = Services::new()
        .dispatcher(dispatcher)
        .raft(Arc::new(raft.rpc_handler()))
        // Forwarded writes go straight into this node's Raft: a follower answers NotLeader
        // and the caller follows, so a write is never forwarded twice.
        .proposer(raft.clone())
        // Followers' read-index requests, answered by the leader's Raft (a follower answers
        // NotLeader), concurrent ones sharing a round.
        .read_barrier(Arc::new(swarmd_store::Coalesced::new(raft)))
        .ca(Arc::new(CaServiceImpl { store }))
        // Tunnels to nodes' engines, while this manager leads.
        .engines(engines);
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
    availability: Option<String>,
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
            availability,
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
            // A new member: a new data key for its local state.
            dek: DataKey::generate(),
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
                availability: None,
            })
            .await;
        match res {
            Ok(issued) => {
                return Ok(Granted {
                    certs: NodeCerts {
                        key_pem: key.key_pem,
                        cert_pem: issued.cert_pem,
                        root_pem: issued.root_ca_pem,
                        // The data already on disk stays sealed with the same key.
                        dek: current.dek.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn certs() -> NodeCerts {
        NodeCerts {
            key_pem: "-----BEGIN PRIVATE KEY-----\nzzsecretkeyzz\n-----END PRIVATE KEY-----\n"
                .into(),
            cert_pem: "cert".into(),
            root_pem: "root".into(),
            dek: DataKey::generate(),
        }
    }

    fn on_disk(dir: &Path) -> Vec<u8> {
        std::fs::read(certs_dir(dir).join(KEYS_FILE)).unwrap()
    }

    #[test]
    fn plain_keys_round_trip_and_sealed_keys_need_the_unlock_key() {
        let dir = tempfile::tempdir().unwrap();
        let c = certs();
        c.save(dir.path(), None).unwrap();
        assert!(!keys_are_sealed(dir.path()));
        let back = NodeCerts::load(dir.path(), None).unwrap();
        assert_eq!(
            (back.key_pem.as_str(), &back.dek),
            (c.key_pem.as_str(), &c.dek)
        );

        let key = UnlockKey::generate();
        c.save(dir.path(), Some(&key)).unwrap();
        assert!(keys_are_sealed(dir.path()));
        let bytes = on_disk(dir.path());
        assert!(!bytes.windows(13).any(|w| w == b"zzsecretkeyzz"));
        assert!(
            !bytes
                .windows(43)
                .any(|w| *w == c.dek.to_base64().as_bytes()[..43])
        );
        assert!(matches!(
            NodeCerts::load(dir.path(), None),
            Err(KeysError::Locked)
        ));
        assert!(matches!(
            NodeCerts::load(dir.path(), Some(&UnlockKey::generate())),
            Err(KeysError::WrongKey)
        ));
        let back = NodeCerts::load(dir.path(), Some(&key)).unwrap();
        assert_eq!(
            (back.key_pem.as_str(), &back.dek),
            (c.key_pem.as_str(), &c.dek)
        );

        // A tampered sealed file is refused, not read.
        let mut file: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let sealed = file["sealed"].as_str().unwrap().to_string();
        let mut raw = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .unwrap();
        raw[40] ^= 1;
        file["sealed"] = base64::engine::general_purpose::STANDARD.encode(raw).into();
        assert!(matches!(
            open_keys_file(&serde_json::to_vec(&file).unwrap(), Some(&key)),
            Err(KeysError::WrongKey)
        ));
    }

    #[test]
    fn a_legacy_key_file_is_read_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let d = certs_dir(dir.path());
        std::fs::create_dir_all(&d).unwrap();
        for (f, body) in [("node.key", "k"), ("node.crt", "c"), ("ca.crt", "r")] {
            std::fs::write(d.join(f), body).unwrap();
        }
        let c = NodeCerts::load(dir.path(), None).unwrap();
        assert_eq!(c.key_pem, "k");
        c.save(dir.path(), None).unwrap();
        assert!(!d.join("node.key").exists());
        assert_eq!(NodeCerts::load(dir.path(), None).unwrap().dek, c.dek);
    }
}
