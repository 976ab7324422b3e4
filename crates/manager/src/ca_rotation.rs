//! Root CA rotation, as swarmkit does it (controlapi/ca_rotation.go, ca/reconciler.go).
//!
//! `swarm ca --rotate` (or a new `--ca-cert/--ca-key`) starts a rotation: the cluster's root
//! CA gains a [`RootRotation`] holding the new root and its certificate cross-signed by the
//! old root. From then on the CA signs with the new key and appends the cross-signed
//! certificate, so a certificate it issues verifies against the old root and the new one;
//! nodes trust both ([`trust_roots`]). Sessions carry the roots to trust, so every node,
//! seeing them change, renews its certificate. Once every node's certificate comes from the
//! new root ([`CompleteRotation`], on the leader), the new root becomes the root, the join tokens
//! are regenerated with its digest, and the nodes renew once more to trust it alone.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use swarmd_pki::{PkiError, RootCaMaterial};
use swarmd_store::{Event, ReadTx};
use swarmd_types::models::TlsInfo;
use swarmd_types::{JoinTokens, Node, Object, RootCa, RootRotation};

use crate::reconcile::{Plan, ReconcileError, Reconciler, Scope, StepResult, Touch};

/// The roots a node is to trust, as one PEM: the root, and the new root too while a
/// rotation runs. The CA hands it out with every certificate and sessions carry it: a node
/// whose roots differ renews its certificate.
pub fn trust_roots(root: &RootCa) -> String {
    match &root.root_rotation {
        Some(r) => {
            let mut both = root.cert_pem.clone();
            if !both.ends_with('\n') {
                both.push('\n');
            }
            both.push_str(&r.cert_pem);
            both
        }
        None => root.cert_pem.clone(),
    }
}

/// What the CA signs node certificates with.
pub struct Signer {
    pub ca: RootCaMaterial,
    /// Sent after every certificate signed (the cross-signed new root during a rotation).
    pub chain: Option<String>,
}

impl Signer {
    /// The new root's key during a rotation, the root's otherwise.
    pub fn of(root: &RootCa) -> Result<Self, PkiError> {
        Ok(match &root.root_rotation {
            Some(r) => Signer {
                ca: RootCaMaterial::from_pem(&r.cert_pem, &r.key_pem)?,
                chain: Some(r.cross_signed_pem.clone()),
            },
            None => Signer {
                ca: RootCaMaterial::from_pem(&root.cert_pem, &root.key_pem)?,
                chain: None,
            },
        })
    }

    /// A signed certificate as the node is to present it.
    pub fn with_chain(&self, cert_pem: String) -> String {
        match &self.chain {
            Some(chain) => format!("{cert_pem}{chain}"),
            None => cert_pem,
        }
    }
}

/// TLS info as Docker shows it (`node inspect`, `/info`): the roots trusted, and the issuer
/// of the certificate (raw subject and SubjectPublicKeyInfo, base64), here the certificate
/// `issuer_pem`.
pub fn tls_info(trust_roots: &str, issuer_pem: &str) -> TlsInfo {
    let (subject, key) = swarmd_pki::subject_and_key(issuer_pem).unwrap_or_default();
    TlsInfo {
        trust_root: Some(trust_roots.to_string()),
        cert_issuer_subject: Some(STANDARD.encode(subject)),
        cert_issuer_public_key: Some(STANDARD.encode(key)),
    }
}

/// What the CA records on a node when it issues it a certificate (swarmkit's nodes report
/// it; here the issuer knows it first-hand).
pub fn issued_tls_info(root: &RootCa) -> TlsInfo {
    let issuer = match &root.root_rotation {
        Some(r) => &r.cert_pem,
        None => &root.cert_pem,
    };
    tls_info(&trust_roots(root), issuer)
}

/// A rotation from `current` to `new`, or to a newly generated root.
pub fn start(current: &RootCa, new: Option<RootCaMaterial>) -> Result<RootRotation, PkiError> {
    let new = match new {
        Some(n) => n,
        None => swarmd_pki::generate_root_ca()?,
    };
    let old = RootCaMaterial::from_pem(&current.cert_pem, &current.key_pem)?;
    let cross_signed_pem = swarmd_pki::cross_sign(&new, &old)?;
    Ok(RootRotation {
        cert_pem: new.cert_pem,
        key_pem: new.key_pem,
        cross_signed_pem,
    })
}

/// Whether `node` has a certificate issued by the certificate `issuer_pem`'s key.
fn has_issuer(node: &Node, issuer: &TlsInfo) -> bool {
    node.description.tls_info.as_ref().is_some_and(|t| {
        t.cert_issuer_public_key == issuer.cert_issuer_public_key
            && t.cert_issuer_subject == issuer.cert_issuer_subject
    })
}

/// The rotation in progress and how many nodes still have a certificate from the old root.
fn progress(t: &ReadTx<'_>) -> Option<(RootCa, usize)> {
    let c = t.cluster()?;
    let r = c.root_ca.root_rotation.as_ref()?;
    let want = tls_info("", &r.cert_pem);
    let pending = t.nodes.values().filter(|n| !has_issuer(n, &want)).count();
    Some((c.root_ca.clone(), pending))
}

/// The leader's rotation reconciler: completes a rotation once every node (down ones too,
/// as swarmkit) has a certificate from the new root. The new root becomes the root and
/// the join tokens carry its digest; the old tokens stop working.
pub struct CompleteRotation;

#[async_trait::async_trait]
impl Reconciler for CompleteRotation {
    /// The new root's digest, once the rotation's end is written (to log it).
    type Then = Option<String>;
    const NAME: &'static str = "root rotation";

    fn touch(e: &Event) -> Touch<'_> {
        Touch::all_if(matches!(e.object, Object::Node(_) | Object::Cluster(_)))
    }

    /// The join tokens are new random ones on every plan: a plan made again after a
    /// conflict only writes its own.
    fn plan(&self, t: &ReadTx<'_>, _: &Scope) -> Result<Plan<Option<String>>, ReconcileError> {
        let mut plan = Plan::idle();
        let Some((current, pending)) = progress(t) else {
            return Ok(plan);
        };
        if pending > 0 {
            tracing::debug!(pending, "root rotation: nodes still to renew");
            return Ok(plan);
        }
        let (Some(r), Some(c)) = (current.root_rotation, t.cluster()) else {
            return Ok(plan);
        };
        let digest = swarmd_pki::ca_digest_of(&r.cert_pem)?;
        let token = || swarmd_pki::generate_join_token(&digest);
        let mut c = c.clone();
        c.join_tokens = JoinTokens {
            worker: token()?,
            manager: token()?,
        };
        c.root_ca = RootCa {
            cert_pem: r.cert_pem,
            key_pem: r.key_pem,
            digest: digest.clone(),
            last_forced_rotation: current.last_forced_rotation,
            root_rotation: None,
        };
        plan.writes.update(c);
        plan.then = Some(digest);
        Ok(plan)
    }

    async fn then(&self, digest: Option<String>) -> StepResult {
        if let Some(digest) = digest {
            tracing::info!(digest = %digest, "completed root rotation");
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::CompleteRotation;
    use crate::ca::issue_for_member;
    use crate::control::Control;
    use crate::reconcile::{Scope, pass};
    use swarmd_types::Cluster;

    async fn control() -> Control {
        crate::control::initialised_for_test().await
    }

    fn cluster(c: &Control) -> Cluster {
        c.store().view(|t| t.cluster().cloned()).unwrap()
    }

    async fn force_rotate(c: &Control, n: u64) {
        let now = cluster(c);
        let mut spec = now.spec.clone();
        spec.ca_config
            .get_or_insert_with(Default::default)
            .force_rotate = Some(n);
        c.update_swarm(now.meta.version, spec, false, false, false)
            .await
            .unwrap();
    }

    /// swarmkit's rotation: a changed ForceRotate starts one (the root stays, a new one
    /// waits with its cross-signed certificate); the CA then signs with the new key and
    /// sends the cross-signed certificate along; the reconciler completes the rotation only
    /// once every node has a certificate from the new root, and the join tokens change.
    #[tokio::test]
    async fn a_rotation_completes_once_every_node_has_a_certificate_from_the_new_root() {
        let c = control().await;
        let before = cluster(&c);
        force_rotate(&c, 1).await;
        let started = cluster(&c);
        let rotation = started.root_ca.root_rotation.clone().expect("a rotation");
        assert_eq!(started.root_ca.cert_pem, before.root_ca.cert_pem);
        assert_eq!(started.join_tokens, before.join_tokens);
        assert_ne!(rotation.cert_pem, before.root_ca.cert_pem);

        // The same request again starts nothing new.
        force_rotate(&c, 1).await;
        assert_eq!(cluster(&c).root_ca, started.root_ca);

        // manager1 still has its first certificate: the rotation waits.
        pass(&CompleteRotation, c.store(), &Scope::All)
            .await
            .unwrap();
        assert_eq!(cluster(&c).root_ca, started.root_ca, "completed too early");

        let csr = swarmd_pki::generate_node_key_and_csr(None).unwrap();
        let issued = issue_for_member(c.store(), "manager1", &csr.csr_pem, "")
            .await
            .unwrap();
        let chain = swarmd_pki::load_certs(&issued.cert_pem).unwrap();
        assert_eq!(chain.len(), 2, "the certificate and the cross-signed root");
        assert_eq!(
            swarmd_pki::load_certs(&issued.root_ca_pem).unwrap().len(),
            2,
            "both roots to trust"
        );

        pass(&CompleteRotation, c.store(), &Scope::All)
            .await
            .unwrap();
        let done = cluster(&c);
        assert_eq!(done.root_ca.cert_pem, rotation.cert_pem);
        assert_eq!(done.root_ca.root_rotation, None);
        assert_eq!(
            done.root_ca.digest,
            swarmd_pki::ca_digest_of(&rotation.cert_pem).unwrap()
        );
        assert_ne!(done.join_tokens.worker, before.join_tokens.worker);
        let token = swarmd_pki::parse_join_token(&done.join_tokens.worker).unwrap();
        assert_eq!(token.ca_digest, done.root_ca.digest);

        // Renewed now: one certificate from the new root, trusting it alone.
        let issued = issue_for_member(c.store(), "manager1", &csr.csr_pem, "")
            .await
            .unwrap();
        assert_eq!(swarmd_pki::load_certs(&issued.cert_pem).unwrap().len(), 1);
        assert_eq!(issued.root_ca_pem, rotation.cert_pem);
    }
}
