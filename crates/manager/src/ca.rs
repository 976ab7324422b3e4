//! The CA signer: issues node certificates from CSRs.
//!
//! A joining node presents a join token and a CSR; the token decides the role (worker or
//! manager token), a Node object is created for it and its certificate is signed with
//! CN=node ID, O=cluster ID, OU=role. A member renewing presents its current identity
//! (from its mTLS certificate) and gets a certificate for the role the store says it has,
//! so a promotion or demotion takes effect at the next renewal.

use std::time::Duration;

use swarmd_pki::{RootCaMaterial, sign_node_csr, token_matches};
use swarmd_store::{ProposeError, Store};
use swarmd_types::models::{NodeSpec, NodeSpecAvailabilityEnum, NodeSpecRoleEnum};
use swarmd_types::{Node, NodeState, NodeStatus, Role, ids};

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
}

/// Docker's default node certificate lifetime.
pub const DEFAULT_CERT_EXPIRY: Duration = Duration::from_secs(90 * 24 * 3600);

fn pki_role(r: Role) -> swarmd_pki::Role {
    match r {
        Role::Manager => swarmd_pki::Role::Manager,
        Role::Worker => swarmd_pki::Role::Worker,
    }
}

fn ca_material(store: &Store) -> Result<(RootCaMaterial, String, Duration), CaError> {
    let (cert, key, cluster_id, expiry) = store
        .view(|t| {
            t.cluster().map(|c| {
                (
                    c.root_ca.cert_pem.clone(),
                    c.root_ca.key_pem.clone(),
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
    let ca = RootCaMaterial::from_pem(&cert, &key).map_err(|e| CaError::Signing(e.to_string()))?;
    Ok((ca, cluster_id, expiry))
}

/// Signs a certificate for a node that joins with `token`. Creates the node object.
pub async fn issue_for_join(
    store: &Store,
    token: &str,
    csr_pem: &str,
    addr: &str,
) -> Result<Issued, CaError> {
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
    let (ca, cluster_id, expiry) = ca_material(store)?;
    let node_id = ids::new_id();
    let cert_pem = sign_node_csr(&ca, csr_pem, &node_id, &cluster_id, pki_role(role), expiry)
        .map_err(|e| CaError::Signing(e.to_string()))?;
    let node = Node {
        id: node_id.clone(),
        meta: Default::default(),
        spec: NodeSpec {
            name: None,
            labels: Some(Default::default()),
            role: Some(match role {
                Role::Manager => NodeSpecRoleEnum::MANAGER,
                Role::Worker => NodeSpecRoleEnum::WORKER,
            }),
            availability: Some(NodeSpecAvailabilityEnum::ACTIVE),
        },
        description: Default::default(),
        status: NodeStatus {
            state: NodeState::Unknown,
            message: String::new(),
            addr: addr.to_string(),
        },
        manager: None,
        role,
    };
    store
        .update(|_, tx| {
            tx.create(node.clone());
            Ok::<_, ProposeError>(())
        })
        .await?;
    Ok(Issued {
        node_id,
        role,
        cert_pem,
        root_ca_pem: ca.cert_pem.clone(),
    })
}

/// Signs a renewed certificate for an existing member, with the role the store records.
pub fn issue_for_member(store: &Store, node_id: &str, csr_pem: &str) -> Result<Issued, CaError> {
    let role = store
        .view(|t| t.nodes.get(node_id).map(|n| n.role))
        .ok_or_else(|| CaError::UnknownNode(node_id.to_string()))?;
    let (ca, cluster_id, expiry) = ca_material(store)?;
    let cert_pem = sign_node_csr(&ca, csr_pem, node_id, &cluster_id, pki_role(role), expiry)
        .map_err(|e| CaError::Signing(e.to_string()))?;
    Ok(Issued {
        node_id: node_id.to_string(),
        role,
        cert_pem,
        root_ca_pem: ca.cert_pem.clone(),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::control::{Control, InitParams};
    use swarmd_store::{LocalProposer, MemoryStore};

    async fn cluster() -> Store {
        let mem = Arc::new(MemoryStore::new());
        let store = Store::new(mem.clone(), Arc::new(LocalProposer::new(mem)));
        Control::new(store.clone())
            .init_cluster(InitParams {
                node_id: "manager1".into(),
                description: Default::default(),
                node_addr: "127.0.0.1".into(),
                listen_addr: "127.0.0.1:2377".into(),
                spec: Default::default(),
                availability: None,
                default_addr_pool: vec![],
                subnet_size: 0,
                data_path_port: 0,
            })
            .await
            .unwrap();
        store
    }

    #[tokio::test]
    async fn token_decides_role_and_node_is_created() {
        let store = cluster().await;
        let (worker, manager) = store.view(|t| {
            let c = t.cluster().unwrap();
            (c.join_tokens.worker.clone(), c.join_tokens.manager.clone())
        });
        let csr = swarmd_pki::generate_node_key_and_csr(None).unwrap();
        let w = issue_for_join(&store, &worker, &csr.csr_pem, "127.0.0.2")
            .await
            .unwrap();
        assert_eq!(w.role, Role::Worker);
        let id = swarmd_pki::parse_node_identity_pem(&w.cert_pem).unwrap();
        assert_eq!(id.node_id, w.node_id);
        assert_eq!(id.role, swarmd_pki::Role::Worker);
        assert!(store.view(|t| t.nodes.contains_key(&w.node_id)));

        let m = issue_for_join(&store, &manager, &csr.csr_pem, "127.0.0.3")
            .await
            .unwrap();
        assert_eq!(m.role, Role::Manager);

        let bad = issue_for_join(&store, "SWMTKN-1-nope", &csr.csr_pem, "x").await;
        assert_eq!(bad.unwrap_err(), CaError::InvalidToken);
        assert_eq!(
            store.view(|t| t.nodes.len()),
            3,
            "a refused join creates nothing"
        );

        let renewed = issue_for_member(&store, &w.node_id, &csr.csr_pem).unwrap();
        assert_eq!(renewed.role, Role::Worker);
        assert!(matches!(
            issue_for_member(&store, "ghost", &csr.csr_pem),
            Err(CaError::UnknownNode(_))
        ));
    }
}
