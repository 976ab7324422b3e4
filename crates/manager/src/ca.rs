//! The CA signer: issues node certificates from CSRs.
//!
//! A joining node presents a join token and a CSR; the token decides the role (worker or
//! manager token), a Node object is created for it and its certificate is signed with
//! CN=node ID, O=cluster ID, OU=role. A member renewing presents its current identity
//! (from its mTLS certificate) and gets a certificate for the role the store says it has,
//! so a promotion or demotion takes effect at the next renewal.

use std::time::Duration;

use swarmd_pki::{sign_node_csr, token_matches};
use swarmd_store::ReadTx;
use swarmd_store::{ProposeError, Store};
use swarmd_types::models::{NodeSpec, NodeSpecAvailabilityEnum, NodeSpecRoleEnum, TlsInfo};

use crate::ca_rotation::{Signer, issued_tls_info, trust_roots};
use swarmd_types::{ManagerInfo, Node, NodeDescription, NodeState, NodeStatus, Role, ids};

/// Why a certificate was not issued.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CaError {
    /// Docker's wording for a wrong or rotated-away token.
    #[error("A valid join token is necessary to join this cluster")]
    InvalidToken,
    #[error("This node is not a swarm manager.")]
    NoCluster,
    #[error("node {0} is not a member of this swarm")]
    UnknownNode(String),
    #[error("certificate signing failed: {0}")]
    Signing(String),
    /// A request field the CA cannot take (Docker's message).
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Propose(#[from] ProposeError),
}

/// A signed certificate for a node.
#[derive(Debug, Clone, PartialEq)]
pub struct Issued {
    pub node_id: String,
    pub role: Role,
    pub cert_pem: String,
    pub root_ca_pem: String,
    /// For managers: the Raft member ID the node runs with.
    pub raft_id: Option<u64>,
}

/// A Raft member ID no node of the swarm uses: random, so a node demoted and promoted
/// again never comes back under an ID its old (wiped) log voted with.
pub fn new_raft_id(t: &ReadTx<'_>) -> u64 {
    loop {
        let id: u64 = rand::random();
        let taken = t
            .nodes
            .values()
            .any(|n| n.manager.as_ref().is_some_and(|m| m.raft_id == id));
        if id != 0 && !taken {
            return id;
        }
    }
}

/// Docker's default node certificate lifetime.
pub const DEFAULT_CERT_EXPIRY: Duration = Duration::from_secs(90 * 24 * 3600);

fn pki_role(r: Role) -> swarmd_pki::Role {
    match r {
        Role::Manager => swarmd_pki::Role::Manager,
        Role::Worker => swarmd_pki::Role::Worker,
    }
}

/// What a certificate is issued with: the signer (the new root's key during a rotation),
/// the roots the node is to trust, the TLS info recorded on the node, the cluster ID and
/// the certificates' lifetime.
struct Material {
    signer: Signer,
    trust_roots: String,
    tls_info: TlsInfo,
    cluster_id: String,
    expiry: Duration,
}

impl Material {
    fn sign(&self, csr_pem: &str, node_id: &str, role: Role) -> Result<String, CaError> {
        let cert = sign_node_csr(
            &self.signer.ca,
            csr_pem,
            node_id,
            &self.cluster_id,
            pki_role(role),
            self.expiry,
        )
        .map_err(|e| CaError::Signing(e.to_string()))?;
        Ok(self.signer.with_chain(cert))
    }
}

fn ca_material(store: &Store) -> Result<Material, CaError> {
    let (root, cluster_id, expiry) = store
        .view(|t| {
            t.cluster().map(|c| {
                (
                    c.root_ca.clone(),
                    c.id.clone(),
                    c.spec
                        .ca_config
                        .as_ref()
                        .and_then(|c| c.node_cert_expiry)
                        .filter(|e| *e > 0)
                        .map(|e| Duration::from_nanos(e as u64))
                        .unwrap_or(DEFAULT_CERT_EXPIRY),
                )
            })
        })
        .ok_or(CaError::NoCluster)?;
    Ok(Material {
        signer: Signer::of(&root).map_err(|e| CaError::Signing(e.to_string()))?,
        trust_roots: trust_roots(&root),
        tls_info: issued_tls_info(&root),
        cluster_id,
        expiry,
    })
}

/// Signs a certificate for a node that joins with `token`. Creates the node object, with
/// the availability it asked for (`swarm join --availability`, as swarmkit's CA records
/// it); a manager gets its Raft ID and `addr` (its cluster address, which Raft peers dial)
/// recorded in the same write, so the leader's membership reconciler can add it.
pub async fn issue_for_join(
    store: &Store,
    token: &str,
    csr_pem: &str,
    addr: &str,
    availability: Option<&str>,
) -> Result<Issued, CaError> {
    let availability = crate::control::swarm_options::availability(availability)
        .map_err(CaError::Invalid)?
        .unwrap_or(NodeSpecAvailabilityEnum::ACTIVE);
    let role = store
        .view(|t| {
            t.cluster().map(|c| {
                if token_matches(token, &c.join_tokens.manager) {
                    Some(Role::Manager)
                } else if token_matches(token, &c.join_tokens.worker) {
                    Some(Role::Worker)
                } else {
                    None
                }
            })
        })
        .ok_or(CaError::NoCluster)?
        .ok_or(CaError::InvalidToken)?;
    let material = ca_material(store)?;
    let node_id = ids::new_id();
    let cert_pem = material.sign(csr_pem, &node_id, role)?;
    if role == Role::Manager && addr.is_empty() {
        return Err(CaError::Signing(
            "a manager must give the address its peers reach it at".into(),
        ));
    }
    let mut node = Node {
        id: node_id.clone(),
        meta: Default::default(),
        spec: NodeSpec {
            name: None,
            labels: Some(Default::default()),
            role: Some(match role {
                Role::Manager => NodeSpecRoleEnum::MANAGER,
                Role::Worker => NodeSpecRoleEnum::WORKER,
            }),
            availability: Some(availability),
        },
        description: NodeDescription {
            tls_info: Some(material.tls_info.clone()),
            ..Default::default()
        },
        status: NodeStatus {
            state: NodeState::Unknown,
            message: String::new(),
            addr: String::new(),
        },
        manager: None,
        role,
    };
    let raft_id = store
        .update(|t, tx| {
            let raft_id = (role == Role::Manager).then(|| new_raft_id(t));
            node.manager = raft_id.map(|raft_id| ManagerInfo {
                raft_id,
                addr: addr.to_string(),
            });
            tx.create(node.clone());
            Ok::<_, ProposeError>(raft_id)
        })
        .await?;
    Ok(Issued {
        node_id,
        role,
        cert_pem,
        root_ca_pem: material.trust_roots,
        raft_id,
    })
}

/// Signs a renewed certificate for an existing member, with the role the store records.
///
/// A manager without a Raft ID yet (a worker just promoted) gets one here, with `addr` as
/// its cluster address: this is how a promoted node learns the ID to start Raft with.
pub async fn issue_for_member(
    store: &Store,
    node_id: &str,
    csr_pem: &str,
    addr: &str,
) -> Result<Issued, CaError> {
    let role = store
        .view(|t| t.nodes.get(node_id).map(|n| n.role))
        .ok_or_else(|| CaError::UnknownNode(node_id.to_string()))?;
    let material = ca_material(store)?;
    let raft_id = match role {
        Role::Worker => None,
        Role::Manager => Some(
            store
                .update(|t, tx| {
                    let Some(node) = t.nodes.get(node_id) else {
                        return Ok(Err(CaError::UnknownNode(node_id.to_string())));
                    };
                    if let Some(m) = &node.manager {
                        return Ok(Ok(m.raft_id));
                    }
                    if addr.is_empty() {
                        return Ok(Err(CaError::Signing(
                            "a manager must give the address its peers reach it at".into(),
                        )));
                    }
                    let raft_id = new_raft_id(t);
                    let mut node = node.clone();
                    node.manager = Some(ManagerInfo {
                        raft_id,
                        addr: addr.to_string(),
                    });
                    tx.update(node);
                    Ok::<_, ProposeError>(Ok(raft_id))
                })
                .await??,
        ),
    };
    let cert_pem = material.sign(csr_pem, node_id, role)?;
    record_tls_info(store, node_id, &material.tls_info).await?;
    Ok(Issued {
        node_id: node_id.to_string(),
        role,
        cert_pem,
        root_ca_pem: material.trust_roots,
        raft_id,
    })
}

/// Records on the node the TLS info of the certificate just issued to it (what `node
/// inspect` shows and what the root rotation reconciler waits on). No write when it is
/// already there, so ordinary renewals cost nothing more.
async fn record_tls_info(store: &Store, node_id: &str, tls: &TlsInfo) -> Result<(), CaError> {
    store
        .update(|t, tx| {
            if let Some(n) = t.nodes.get(node_id)
                && n.description.tls_info.as_ref() != Some(tls)
            {
                let mut n = n.clone();
                n.description.tls_info = Some(tls.clone());
                tx.update(n);
            }
            Ok::<_, ProposeError>(())
        })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn cluster() -> Store {
        crate::control::initialised_for_test().await.store().clone()
    }

    #[tokio::test]
    async fn token_decides_role_and_node_is_created() {
        let store = cluster().await;
        let (worker, manager) = store.view(|t| {
            let c = t.cluster().unwrap();
            (c.join_tokens.worker.clone(), c.join_tokens.manager.clone())
        });
        let csr = swarmd_pki::generate_node_key_and_csr(None).unwrap();
        let w = issue_for_join(&store, &worker, &csr.csr_pem, "127.0.0.2", None)
            .await
            .unwrap();
        assert_eq!(w.role, Role::Worker);
        let id = swarmd_pki::parse_node_identity_pem(&w.cert_pem).unwrap();
        assert_eq!(id.node_id, w.node_id);
        assert_eq!(id.role, swarmd_pki::Role::Worker);
        assert!(store.view(|t| t.nodes.contains_key(&w.node_id)));

        assert_eq!(w.raft_id, None);
        let m = issue_for_join(&store, &manager, &csr.csr_pem, "127.0.0.3:2377", None)
            .await
            .unwrap();
        assert_eq!(m.role, Role::Manager);
        let recorded = store.view(|t| t.nodes[&m.node_id].manager.clone()).unwrap();
        assert_eq!(Some(recorded.raft_id), m.raft_id);
        assert_eq!(recorded.addr, "127.0.0.3:2377");
        assert!(
            issue_for_join(&store, &manager, &csr.csr_pem, "", None)
                .await
                .is_err(),
            "a manager without an address cannot join"
        );

        let bad = issue_for_join(&store, "SWMTKN-1-nope", &csr.csr_pem, "x", None).await;
        assert_eq!(bad.unwrap_err(), CaError::InvalidToken);
        assert_eq!(
            store.view(|t| t.nodes.len()),
            3,
            "a refused join creates nothing"
        );

        let renewed = issue_for_member(&store, &w.node_id, &csr.csr_pem, "")
            .await
            .unwrap();
        assert_eq!(renewed.role, Role::Worker);
        assert!(matches!(
            issue_for_member(&store, "ghost", &csr.csr_pem, "").await,
            Err(CaError::UnknownNode(_))
        ));
        // The manager keeps its raft id across renewals.
        let again = issue_for_member(&store, &m.node_id, &csr.csr_pem, "elsewhere:1")
            .await
            .unwrap();
        assert_eq!(again.raft_id, m.raft_id);
    }

    #[tokio::test]
    async fn a_joining_node_starts_with_the_availability_it_asked_for() {
        let store = cluster().await;
        let worker = store.view(|t| t.cluster().unwrap().join_tokens.worker.clone());
        let csr = swarmd_pki::generate_node_key_and_csr(None).unwrap();
        let w = issue_for_join(&store, &worker, &csr.csr_pem, "", Some("Drain"))
            .await
            .unwrap();
        let availability = store.view(|t| t.nodes[&w.node_id].spec.availability);
        assert_eq!(availability, Some(NodeSpecAvailabilityEnum::DRAIN));

        let before = store.view(|t| t.nodes.len());
        let bad = issue_for_join(&store, &worker, &csr.csr_pem, "", Some("nap")).await;
        assert_eq!(
            bad.unwrap_err(),
            CaError::Invalid("invalid Availability: \"nap\"".into())
        );
        assert_eq!(
            store.view(|t| t.nodes.len()),
            before,
            "a refused join creates nothing"
        );
    }

    #[tokio::test]
    async fn promoted_worker_gets_a_raft_id_at_renewal() {
        let store = cluster().await;
        let worker = store.view(|t| t.cluster().unwrap().join_tokens.worker.clone());
        let csr = swarmd_pki::generate_node_key_and_csr(None).unwrap();
        let w = issue_for_join(&store, &worker, &csr.csr_pem, "", None)
            .await
            .unwrap();
        // What the role reconciler does on `node promote`.
        store
            .update(|t, tx| {
                let mut n = t.nodes[&w.node_id].clone();
                n.role = Role::Manager;
                tx.update(n);
                Ok::<_, ProposeError>(())
            })
            .await
            .unwrap();
        let m = issue_for_member(&store, &w.node_id, &csr.csr_pem, "127.0.0.4:2377")
            .await
            .unwrap();
        assert_eq!(m.role, Role::Manager);
        let id = swarmd_pki::parse_node_identity_pem(&m.cert_pem).unwrap();
        assert_eq!(id.role, swarmd_pki::Role::Manager);
        let info = store.view(|t| t.nodes[&w.node_id].manager.clone()).unwrap();
        assert_eq!(Some(info.raft_id), m.raft_id);
        assert_eq!(info.addr, "127.0.0.4:2377");
        let first = store.view(|t| t.nodes["manager1"].manager.clone()).unwrap();
        assert_ne!(first.raft_id, info.raft_id);
    }
}
