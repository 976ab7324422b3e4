//! Node certificates: the CSR a node generates, the certificate a manager signs for it, the
//! identity read back from a peer's certificate, and when to renew it.
//!
//! The identity scheme is swarmkit's: CN = node ID, O = cluster ID, OU = `swarm-manager` or
//! `swarm-worker`. The manager decides all three; whatever subject the CSR asks for is
//! ignored, so a node cannot promote itself by asking for OU=swarm-manager.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::Rng;
use rcgen::{
    CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY};
use x509_parser::prelude::{FromDer, X509Certificate, X509CertificationRequest};
use x509_parser::x509::AttributeTypeAndValue;

use crate::{PkiError, RootCaMaterial};

/// OU of manager certificates (swarmkit's `ManagerRole`).
pub const MANAGER_OU: &str = "swarm-manager";
/// OU of worker certificates (swarmkit's `WorkerRole`).
pub const WORKER_OU: &str = "swarm-worker";

/// Default node certificate lifetime, Docker's `--cert-expiry` default (90 days).
pub const DEFAULT_NODE_CERT_VALIDITY: Duration = Duration::from_secs(90 * 24 * 3600);

/// How far `not_before` is backdated, so a peer whose clock is a little behind the issuing
/// manager's does not reject a certificate as "not yet valid" (swarmkit/cfssl use 5 min).
pub const NOT_BEFORE_BACKDATE: Duration = Duration::from_secs(5 * 60);

/// A node's role as carried in its certificate's OU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Role {
    Worker,
    Manager,
}

impl Role {
    /// The certificate OU for this role.
    pub fn ou(self) -> &'static str {
        match self {
            Role::Worker => WORKER_OU,
            Role::Manager => MANAGER_OU,
        }
    }

    /// The role an OU stands for; `None` for anything else.
    pub fn from_ou(ou: &str) -> Option<Role> {
        match ou {
            MANAGER_OU => Some(Role::Manager),
            WORKER_OU => Some(Role::Worker),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Worker => "worker",
            Role::Manager => "manager",
        })
    }
}

/// A node's fresh private key and the CSR for it. The key stays on the node; only
/// `csr_pem` is sent to a manager.
#[derive(Clone)]
pub struct NodeKeyAndCsr {
    /// PKCS#8 PEM of the ECDSA P-256 private key.
    pub key_pem: String,
    /// PKCS#10 PEM.
    pub csr_pem: String,
}

impl fmt::Debug for NodeKeyAndCsr {
    // Never print the private key, even in debug logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeKeyAndCsr")
            .field("key_pem", &"<redacted>")
            .field("csr_pem", &self.csr_pem)
            .finish()
    }
}

/// Generates an ECDSA P-256 key and a CSR for it, on the node.
///
/// `node_id` only fills the CSR's CN as a hint (a joining node does not know its ID yet);
/// the manager sets the real subject when signing.
pub fn generate_node_key_and_csr(node_id: Option<&str>) -> Result<NodeKeyAndCsr, PkiError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, node_id.unwrap_or("swarm-node"));
    params.distinguished_name = dn;
    let csr = params.serialize_request(&key)?;
    Ok(NodeKeyAndCsr {
        key_pem: key.serialize_pem(),
        csr_pem: csr.pem()?,
    })
}

/// Signs a node's CSR now; see [`sign_node_csr_at`].
pub fn sign_node_csr(
    ca: &RootCaMaterial,
    csr_pem: &str,
    node_id: &str,
    cluster_id: &str,
    role: Role,
    validity: Duration,
) -> Result<String, PkiError> {
    sign_node_csr_at(
        ca,
        csr_pem,
        node_id,
        cluster_id,
        role,
        validity,
        SystemTime::now(),
    )
}

/// Signs a node's CSR as if at `now`, returning the certificate PEM.
///
/// Only the CSR's public key is used (after checking the CSR's self-signature, which proves
/// the requester holds the private key). The subject is CN=`node_id`, O=`cluster_id`,
/// OU=role; SANs are the role's OU and `node_id` as DNS names, so TLS clients verify a
/// manager with the fixed server name `swarm-manager` whatever address they dialed.
/// Validity runs from `now - NOT_BEFORE_BACKDATE` to `now + validity`.
///
/// Only ECDSA P-256 keys are accepted: that is what swarmd nodes generate and it keeps the
/// set of keys the cluster must verify small.
pub fn sign_node_csr_at(
    ca: &RootCaMaterial,
    csr_pem: &str,
    node_id: &str,
    cluster_id: &str,
    role: Role,
    validity: Duration,
    now: SystemTime,
) -> Result<String, PkiError> {
    validate_id("node ID", node_id)?;
    validate_id("cluster ID", cluster_id)?;
    if validity.is_zero() {
        return Err(PkiError::InvalidValidity);
    }

    let csr = CertificateSigningRequestParams::from_pem(csr_pem)
        .map_err(|e| PkiError::InvalidCsr(e.to_string()))?;
    check_csr_key_is_p256(csr_pem)?;

    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, node_id);
    dn.push(DnType::OrganizationName, cluster_id);
    dn.push(DnType::OrganizationalUnitName, role.ou());
    params.distinguished_name = dn;
    params.subject_alt_names = vec![
        SanType::DnsName(role.ou().try_into()?),
        SanType::DnsName(node_id.try_into()?),
    ];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let now = time::OffsetDateTime::from(now);
    params.not_before = now - NOT_BEFORE_BACKDATE;
    params.not_after = now + validity;
    params.use_authority_key_identifier_extension = true;
    // Random serial: rcgen's default derives it from the public key, which would give a
    // renewed certificate (same key) the same serial as the one it replaces.
    let mut serial = [0u8; 16];
    rand::rng().fill(&mut serial);
    serial[0] &= 0x7f;
    params.serial_number = Some(SerialNumber::from_slice(&serial));

    let ca_key = KeyPair::from_pem(&ca.key_pem).map_err(|e| PkiError::InvalidKey(e.to_string()))?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key)
        .map_err(|e| PkiError::InvalidCertificate(e.to_string()))?;
    let cert = params.signed_by(&csr.public_key, &issuer)?;
    Ok(cert.pem())
}

/// rcgen infers the key type of a CSR from its signature algorithm, which does not pin the
/// curve; read the SPKI to be sure the key really is P-256.
fn check_csr_key_is_p256(csr_pem: &str) -> Result<(), PkiError> {
    let der = ::pem::parse(csr_pem).map_err(|e| PkiError::InvalidCsr(e.to_string()))?;
    let (_, csr) = X509CertificationRequest::from_der(der.contents())
        .map_err(|e| PkiError::InvalidCsr(e.to_string()))?;
    let alg = &csr.certification_request_info.subject_pki.algorithm;
    let curve_ok = alg
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .is_some_and(|oid| oid == OID_EC_P256);
    if alg.algorithm != OID_KEY_TYPE_EC_PUBLIC_KEY || !curve_ok {
        return Err(PkiError::InvalidCsr(
            "only ECDSA P-256 keys are accepted".into(),
        ));
    }
    Ok(())
}

/// IDs become a DNS SAN and subject fields: keep them to what swarm IDs look like.
fn validate_id(what: &'static str, id: &str) -> Result<(), PkiError> {
    let ok = !id.is_empty()
        && id.len() <= 63
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !id.starts_with('-')
        && !id.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(PkiError::InvalidId {
            what,
            id: id.to_string(),
        })
    }
}

/// Who a node certificate says its holder is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    pub node_id: String,
    pub cluster_id: String,
    pub role: Role,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl NodeIdentity {
    /// When this certificate should be renewed; see [`renewal_deadline`].
    ///
    /// The lifetime counts from issuance, not from the backdated `not_before`: with the
    /// backdate in it a short-lived certificate would look due at once.
    pub fn renewal_deadline(&self, jitter: RenewalJitter) -> SystemTime {
        let lifetime = self
            .not_after
            .duration_since(self.not_before)
            .unwrap_or_default()
            .saturating_sub(NOT_BEFORE_BACKDATE);
        renewal_deadline(self.not_after, lifetime, jitter)
    }
}

/// Reads the identity from a DER node certificate.
///
/// This does NOT verify the certificate: use it on certificates rustls has already verified
/// (a session's peer certificates) or that this node issued/holds itself.
pub fn parse_node_identity(cert_der: &[u8]) -> Result<NodeIdentity, PkiError> {
    let (_, cert) = X509Certificate::from_der(cert_der)
        .map_err(|e| PkiError::InvalidCertificate(e.to_string()))?;
    let subject = cert.subject();
    let node_id = single_attr("CN", subject.iter_common_name())?;
    let cluster_id = single_attr("O", subject.iter_organization())?;
    let ou = single_attr("OU", subject.iter_organizational_unit())?;
    let role = Role::from_ou(&ou)
        .ok_or_else(|| PkiError::NotANodeCertificate(format!("unknown OU {ou:?}")))?;
    let validity = cert.validity();
    Ok(NodeIdentity {
        node_id,
        cluster_id,
        role,
        not_before: unix_to_system(validity.not_before.timestamp()),
        not_after: unix_to_system(validity.not_after.timestamp()),
    })
}

/// Reads the identity from a PEM node certificate (the first certificate in `cert_pem`).
pub fn parse_node_identity_pem(cert_pem: &str) -> Result<NodeIdentity, PkiError> {
    let certs = crate::tls::load_certs(cert_pem)?;
    parse_node_identity(&certs[0])
}

/// The identity of a TLS peer from the certificates rustls verified for the session
/// (end entity first). Used by RPC servers to authorize the caller.
///
/// An empty list means the peer connected without a certificate (only possible on a
/// listener built with [`crate::server_config_allowing_anonymous`]): that is
/// [`PkiError::NoPeerCertificate`], which an RPC other than the join-path ones must refuse.
pub fn role_of_peer(certs: &[CertificateDer<'_>]) -> Result<NodeIdentity, PkiError> {
    let leaf = certs.first().ok_or(PkiError::NoPeerCertificate)?;
    parse_node_identity(leaf)
}

/// Refuses a caller that is not a manager (raft, control and manager-only CA RPCs).
pub fn require_manager(identity: &NodeIdentity) -> Result<(), PkiError> {
    match identity.role {
        Role::Manager => Ok(()),
        role => Err(PkiError::PermissionDenied {
            node_id: identity.node_id.clone(),
            role,
            required: Role::Manager,
        }),
    }
}

/// The value of a subject attribute that must appear exactly once.
fn single_attr<'b, 'a: 'b>(
    what: &str,
    mut it: impl Iterator<Item = &'b AttributeTypeAndValue<'a>>,
) -> Result<String, PkiError> {
    let first = it
        .next()
        .ok_or_else(|| PkiError::NotANodeCertificate(format!("no {what}")))?;
    if it.next().is_some() {
        return Err(PkiError::NotANodeCertificate(format!("several {what}s")));
    }
    first
        .as_str()
        .map(str::to_string)
        .map_err(|_| PkiError::NotANodeCertificate(format!("{what} is not a string")))
}

/// swarmkit's `AuthorizeOrgAndRole`: the verified peer must belong to `cluster_id` and have
/// one of `allowed` roles. The usual entry point for an RPC handler.
///
/// Like [`role_of_peer`], it trusts `certs` to have been verified by the TLS layer.
pub fn authorize_peer(
    certs: &[CertificateDer<'_>],
    cluster_id: &str,
    allowed: &[Role],
) -> Result<NodeIdentity, PkiError> {
    let identity = role_of_peer(certs)?;
    if identity.cluster_id != cluster_id {
        return Err(PkiError::WrongCluster {
            node_id: identity.node_id,
            cluster_id: identity.cluster_id,
        });
    }
    if !allowed.contains(&identity.role) {
        return Err(PkiError::PermissionDenied {
            node_id: identity.node_id,
            role: identity.role,
            required: allowed.first().copied().unwrap_or(Role::Manager),
        });
    }
    Ok(identity)
}

fn unix_to_system(ts: i64) -> SystemTime {
    if ts >= 0 {
        UNIX_EPOCH + Duration::from_secs(ts as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(ts.unsigned_abs())
    }
}

/// Where in the renewal window (50%..80% of the lifetime) a certificate is renewed.
///
/// swarmkit picks a random point in that window so that nodes issued certificates together
/// don't all come back to the CA at once. Draw it ONCE per certificate and keep it: drawing a
/// fresh one on every check makes an early renewal ever more likely with each poll.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RenewalJitter(f64);

/// Renewal window bounds as fractions of the lifetime (swarmkit's
/// `CertLowerRotationRange`/`CertUpperRotationRange`).
const RENEW_FROM: f64 = 0.5;
const RENEW_TO: f64 = 0.8;

impl RenewalJitter {
    /// A fixed fraction in `[0, 1]` of the window (0 → 50% of the lifetime, 1 → 80%);
    /// out-of-range values are clamped, NaN counts as 0.
    pub fn new(fraction: f64) -> Self {
        if fraction.is_nan() {
            RenewalJitter(0.0)
        } else {
            RenewalJitter(fraction.clamp(0.0, 1.0))
        }
    }

    /// A random point in the window.
    pub fn random() -> Self {
        RenewalJitter(rand::rng().random_range(0.0..=1.0))
    }

    /// The fraction of the window, in `[0, 1]`.
    pub fn fraction(self) -> f64 {
        self.0
    }
}

/// The instant to renew a certificate valid for `validity` up to `not_after`:
/// `not_after - validity + validity * (0.5 + 0.3 * jitter)`.
pub fn renewal_deadline(
    not_after: SystemTime,
    validity: Duration,
    jitter: RenewalJitter,
) -> SystemTime {
    let at = validity.mul_f64(RENEW_FROM + (RENEW_TO - RENEW_FROM) * jitter.0);
    // `validity - at` cannot underflow: at <= 0.8 * validity.
    not_after
        .checked_sub(validity.saturating_sub(at))
        .unwrap_or(UNIX_EPOCH)
}

/// Whether a certificate valid for `validity` up to `not_after` should be renewed at `now`.
/// Always true once expired.
pub fn needs_renewal(
    not_after: SystemTime,
    now: SystemTime,
    validity: Duration,
    jitter: RenewalJitter,
) -> bool {
    now >= not_after || now >= renewal_deadline(not_after, validity, jitter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate_root_ca;
    use rcgen::PublicKeyData;
    use x509_parser::extensions::GeneralName;

    const NODE: &str = "n0d3id0000000000000000001";
    const CLUSTER: &str = "c1u5ter000000000000000001";

    fn der_of(pem_text: &str) -> Vec<u8> {
        ::pem::parse(pem_text).unwrap().into_contents()
    }

    #[test]
    fn signed_cert_has_swarm_identity_whatever_the_csr_asks() {
        let ca = generate_root_ca().unwrap();
        // The node asks to be a manager of another cluster; the CA must not care.
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "evil");
        dn.push(DnType::OrganizationName, "other-cluster");
        dn.push(DnType::OrganizationalUnitName, MANAGER_OU);
        params.distinguished_name = dn;
        params.subject_alt_names = vec![SanType::DnsName("swarm-manager".try_into().unwrap())];
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let csr = params.serialize_request(&key).unwrap().pem().unwrap();

        let now = SystemTime::now();
        let validity = Duration::from_secs(3600);
        let pem_text =
            sign_node_csr_at(&ca, &csr, NODE, CLUSTER, Role::Worker, validity, now).unwrap();
        let der = der_of(&pem_text);

        let id = parse_node_identity(&der).unwrap();
        assert_eq!(id.node_id, NODE);
        assert_eq!(id.cluster_id, CLUSTER);
        assert_eq!(id.role, Role::Worker);
        let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(secs(id.not_after), secs(now + validity));
        assert_eq!(secs(id.not_before), secs(now - NOT_BEFORE_BACKDATE));
        // Renewal falls between half and four fifths of the issued lifetime.
        let earliest = id.renewal_deadline(RenewalJitter::new(0.0));
        let latest = id.renewal_deadline(RenewalJitter::new(1.0));
        assert_eq!(secs(earliest), secs(now + validity / 2));
        assert_eq!(secs(latest), secs(now + validity.mul_f64(0.8)));

        let (_, x509) = X509Certificate::from_der(&der).unwrap();
        assert_eq!(
            x509.issuer()
                .iter_common_name()
                .next()
                .unwrap()
                .as_str()
                .unwrap(),
            "swarm-ca"
        );
        let sans: Vec<String> = x509
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(|n| match n {
                GeneralName::DNSName(d) => d.to_string(),
                other => panic!("unexpected SAN {other:?}"),
            })
            .collect();
        assert_eq!(sans, vec![WORKER_OU.to_string(), NODE.to_string()]);
        let ku = x509.key_usage().unwrap().unwrap().value;
        assert!(ku.digital_signature() && ku.key_encipherment() && !ku.key_cert_sign());
        let eku = x509.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth);
        assert!(!x509.is_ca());
        // The certificate carries the CSR's key, not some other one.
        assert_eq!(
            x509.public_key().raw,
            key.subject_public_key_info().as_slice()
        );
        // Signed by the root's key.
        let (_, root) = X509Certificate::from_der(&ca.cert_der).unwrap();
        x509.verify_signature(Some(root.public_key())).unwrap();
    }

    #[test]
    fn manager_cert_and_serials_differ_on_renewal() {
        let ca = generate_root_ca().unwrap();
        let kc = generate_node_key_and_csr(Some(NODE)).unwrap();
        let a = sign_node_csr(
            &ca,
            &kc.csr_pem,
            NODE,
            CLUSTER,
            Role::Manager,
            DEFAULT_NODE_CERT_VALIDITY,
        )
        .unwrap();
        let b = sign_node_csr(
            &ca,
            &kc.csr_pem,
            NODE,
            CLUSTER,
            Role::Manager,
            DEFAULT_NODE_CERT_VALIDITY,
        )
        .unwrap();
        let (da, db) = (der_of(&a), der_of(&b));
        assert_eq!(parse_node_identity(&da).unwrap().role, Role::Manager);
        let (_, xa) = X509Certificate::from_der(&da).unwrap();
        let (_, xb) = X509Certificate::from_der(&db).unwrap();
        assert_ne!(xa.raw_serial(), xb.raw_serial());
        assert!(!format!("{kc:?}").contains("PRIVATE KEY"));
        assert!(!format!("{ca:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn garbled_or_unacceptable_csrs_are_errors_not_panics() {
        let ca = generate_root_ca().unwrap();
        let good = generate_node_key_and_csr(None).unwrap().csr_pem;
        let sign = |csr: &str| {
            sign_node_csr(
                &ca,
                csr,
                NODE,
                CLUSTER,
                Role::Worker,
                DEFAULT_NODE_CERT_VALIDITY,
            )
        };

        // Tamper with the signed body: the self-signature no longer verifies.
        let mut der = der_of(&good);
        let mid = der.len() / 2;
        der[mid] ^= 0x01;
        let tampered = ::pem::encode(&::pem::Pem::new("CERTIFICATE REQUEST", der.clone()));
        let truncated = ::pem::encode(&::pem::Pem::new(
            "CERTIFICATE REQUEST",
            der[..der.len() / 3].to_vec(),
        ));
        for bad in [
            "",
            "garbage",
            "-----BEGIN CERTIFICATE REQUEST-----\n!!!!\n-----END CERTIFICATE REQUEST-----\n",
            &tampered,
            &truncated,
            &ca.cert_pem,
        ] {
            assert!(matches!(sign(bad), Err(PkiError::InvalidCsr(_))), "{bad}");
        }

        // A P-384 key is refused: nodes generate P-256.
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let p384 = CertificateParams::default()
            .serialize_request(&key)
            .unwrap()
            .pem()
            .unwrap();
        assert!(matches!(sign(&p384), Err(PkiError::InvalidCsr(_))));

        // IDs end up in a DNS SAN: refuse anything that is not ID-shaped.
        for bad_id in ["", "a b", "../x", "-x", "é"] {
            assert!(matches!(
                sign_node_csr(
                    &ca,
                    &good,
                    bad_id,
                    CLUSTER,
                    Role::Worker,
                    DEFAULT_NODE_CERT_VALIDITY
                ),
                Err(PkiError::InvalidId { .. })
            ));
        }
        assert!(matches!(
            sign_node_csr(&ca, &good, NODE, CLUSTER, Role::Worker, Duration::ZERO),
            Err(PkiError::InvalidValidity)
        ));
        assert!(sign(&good).is_ok());
    }

    #[test]
    fn identity_of_non_node_certs_is_an_error() {
        let ca = generate_root_ca().unwrap();
        assert!(matches!(
            parse_node_identity(&ca.cert_der),
            Err(PkiError::NotANodeCertificate(_))
        ));
        assert!(matches!(
            parse_node_identity(b"\x30\x03garbage"),
            Err(PkiError::InvalidCertificate(_))
        ));
        assert!(matches!(
            role_of_peer(&[]),
            Err(PkiError::NoPeerCertificate)
        ));
    }

    #[test]
    fn authorize_peer_checks_cluster_and_role() {
        let ca = generate_root_ca().unwrap();
        let kc = generate_node_key_and_csr(None).unwrap();
        let pem_text = sign_node_csr(
            &ca,
            &kc.csr_pem,
            NODE,
            CLUSTER,
            Role::Worker,
            DEFAULT_NODE_CERT_VALIDITY,
        )
        .unwrap();
        let certs = [CertificateDer::from(der_of(&pem_text))];
        let id = authorize_peer(&certs, CLUSTER, &[Role::Worker, Role::Manager]).unwrap();
        assert_eq!(id.node_id, NODE);
        assert!(matches!(
            authorize_peer(&certs, CLUSTER, &[Role::Manager]),
            Err(PkiError::PermissionDenied {
                role: Role::Worker,
                required: Role::Manager,
                ..
            })
        ));
        assert!(matches!(
            authorize_peer(&certs, "othercluster", &[Role::Worker]),
            Err(PkiError::WrongCluster { .. })
        ));
        assert!(matches!(
            authorize_peer(&[], CLUSTER, &[Role::Worker]),
            Err(PkiError::NoPeerCertificate)
        ));
    }

    #[test]
    fn require_manager_refuses_workers() {
        let mut id = NodeIdentity {
            node_id: NODE.into(),
            cluster_id: CLUSTER.into(),
            role: Role::Worker,
            not_before: UNIX_EPOCH,
            not_after: UNIX_EPOCH,
        };
        let err = require_manager(&id).unwrap_err();
        assert!(matches!(
            err,
            PkiError::PermissionDenied {
                role: Role::Worker,
                required: Role::Manager,
                ..
            }
        ));
        assert!(err.to_string().contains(NODE));
        id.role = Role::Manager;
        require_manager(&id).unwrap();
    }

    #[test]
    fn renewal_happens_between_50_and_80_percent_of_the_lifetime() {
        let h = |n: u64| Duration::from_secs(n * 3600);
        let start = UNIX_EPOCH + h(1_000_000);
        let validity = h(100);
        let not_after = start + validity;
        let at = |hours: u64| start + h(hours);
        let j0 = RenewalJitter::new(0.0);
        let j1 = RenewalJitter::new(1.0);
        let jhalf = RenewalJitter::new(0.5);

        assert_eq!(renewal_deadline(not_after, validity, j0), at(50));
        assert_eq!(renewal_deadline(not_after, validity, j1), at(80));
        assert_eq!(renewal_deadline(not_after, validity, jhalf), at(65));

        let one_s = Duration::from_secs(1);
        assert!(!needs_renewal(not_after, at(50) - one_s, validity, j0));
        assert!(needs_renewal(not_after, at(50), validity, j0));
        assert!(!needs_renewal(not_after, at(80) - one_s, validity, j1));
        assert!(needs_renewal(not_after, at(80), validity, j1));
        assert!(!needs_renewal(not_after, start, validity, j0));
        // Expired: always.
        assert!(needs_renewal(not_after, at(101), validity, j1));
        // Zero lifetime: renew at expiry, and no arithmetic panic.
        assert!(!needs_renewal(
            not_after,
            not_after - one_s,
            Duration::ZERO,
            j0
        ));
        assert!(needs_renewal(not_after, not_after, Duration::ZERO, j0));

        // Jitter is clamped into the window.
        assert_eq!(RenewalJitter::new(7.0), j1);
        assert_eq!(RenewalJitter::new(-1.0), j0);
        assert_eq!(RenewalJitter::new(f64::NAN), j0);
        for _ in 0..100 {
            let f = RenewalJitter::random().fraction();
            assert!((0.0..=1.0).contains(&f));
        }

        // From a real certificate's identity: the backdate is not part of the lifetime.
        let id = NodeIdentity {
            node_id: NODE.into(),
            cluster_id: CLUSTER.into(),
            role: Role::Worker,
            not_before: start - NOT_BEFORE_BACKDATE,
            not_after,
        };
        assert_eq!(id.renewal_deadline(j1), at(80));
    }
}
