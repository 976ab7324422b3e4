//! The swarm's PKI: root CA, join tokens, node certificates and mutual-TLS configs.
//!
//! The root CA is ECDSA P-256 with subject CN=swarm-ca, as Docker's. Join tokens follow
//! swarmkit's format `SWMTKN-1-<CA digest in base 36, 50 chars>-<secret, 25 chars>`, so a
//! joining node can pin the CA by the digest it carries.
//!
//! Node certificates (see [`node`]) carry the node's identity as swarmkit's do
//! (CN=node ID, O=cluster ID, OU=swarm-manager|swarm-worker); every node-to-node connection
//! is mutual TLS with rustls and the ring provider (see [`tls`]), and each RPC authorizes
//! its caller from the OU of the verified peer certificate ([`role_of_peer`],
//! [`require_manager`]).

pub mod node;
pub mod rotation;
pub mod tls;

use std::fmt;

pub use node::{
    DEFAULT_NODE_CERT_VALIDITY, MANAGER_OU, NOT_BEFORE_BACKDATE, NodeIdentity, NodeKeyAndCsr,
    RenewalJitter, Role, WORKER_OU, authorize_peer, generate_node_key_and_csr, needs_renewal,
    parse_node_identity, parse_node_identity_pem, renewal_deadline, require_manager, role_of_peer,
    sign_node_csr, sign_node_csr_at,
};
pub use rotation::{cert_pem_of_der, check_signing_root, cross_sign, subject_and_key};
pub use tls::{
    LiveCert, MANAGER_SERVER_NAME, PinnedRootVerifier, bootstrap_client_config, client_config,
    install_crypto_provider, live_client_config, live_server_config, load_certs, load_private_key,
    manager_server_name, pinned_root_from_chain, pki_error_in, server_config,
    server_config_allowing_anonymous, verify_root_against_token,
};

use rand::Rng;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, PublicKeyData,
};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Why a PKI operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("invalid join token")]
    InvalidToken,
    /// The CSR does not parse, its self-signature is wrong, or its key is not ECDSA P-256.
    #[error("invalid certificate signing request: {0}")]
    InvalidCsr(String),
    #[error("invalid certificate: {0}")]
    InvalidCertificate(String),
    #[error("invalid private key: {0}")]
    InvalidKey(String),
    /// A root CA given for the swarm is unusable (swarmkit's wording in the message).
    #[error("{0}")]
    InvalidRoot(String),
    /// The CA key is not the key of the CA certificate.
    #[error("the CA private key does not match the CA certificate")]
    CaKeyMismatch,
    #[error("invalid {what} {id:?}")]
    InvalidId { what: &'static str, id: String },
    #[error("certificate validity must be positive")]
    InvalidValidity,
    #[error("invalid CA digest {0:?}: expected sha256:<64 hex digits>")]
    InvalidDigest(String),
    /// A certificate without swarm node identity (CN, O and a swarm OU).
    #[error("not a swarm node certificate: {0}")]
    NotANodeCertificate(String),
    /// The peer connected without a client certificate.
    #[error("the peer presented no certificate")]
    NoPeerCertificate,
    /// The caller's certificate role does not allow this RPC.
    #[error("permission denied: node {node_id} is a {role}, this requires a {required}")]
    PermissionDenied {
        node_id: String,
        role: Role,
        required: Role,
    },
    /// The peer's certificate is for another cluster (O differs).
    #[error("node {node_id} belongs to cluster {cluster_id}, not this one")]
    WrongCluster { node_id: String, cluster_id: String },
    /// The manager's root CA is not the one the join token pins (swarmkit's wording;
    /// `expected` is the hex digest from the token).
    #[error("remote CA does not match fingerprint. Expected: {expected}")]
    CaFingerprintMismatch { expected: String },
    #[error("TLS configuration failed: {0}")]
    Tls(#[from] rustls::Error),
    #[error("TLS verifier configuration failed: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// A root CA: its certificate and private key (kept in the Raft store, on managers only).
#[derive(Clone)]
pub struct RootCaMaterial {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: Vec<u8>,
    /// `sha256:<hex>` of the DER certificate.
    pub digest: String,
}

impl fmt::Debug for RootCaMaterial {
    // The CA key must never end up in a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RootCaMaterial")
            .field("digest", &self.digest)
            .field("key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl RootCaMaterial {
    /// Rebuilds the material from stored PEMs (the cluster object's root CA), checking that
    /// the key belongs to the certificate, so a corrupted store fails here rather than by
    /// issuing certificates nobody can verify.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let certs = load_certs(cert_pem)?;
        let der = certs[0].to_vec();
        let (_, x509) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| PkiError::InvalidCertificate(e.to_string()))?;
        let key = KeyPair::from_pem(key_pem).map_err(|e| PkiError::InvalidKey(e.to_string()))?;
        if x509.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(PkiError::CaKeyMismatch);
        }
        Ok(RootCaMaterial {
            cert_pem: cert_pem.to_string(),
            key_pem: key_pem.to_string(),
            digest: digest_of_der(&der),
            cert_der: der,
        })
    }
}

/// `sha256:<hex>` of a DER certificate: the CA digest join tokens carry.
pub fn digest_of_der(der: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(der)))
}

/// `sha256:<hex>` of the (first) certificate in a PEM.
pub fn ca_digest_of(cert_pem: &str) -> Result<String, PkiError> {
    Ok(digest_of_der(&load_certs(cert_pem)?[0]))
}

/// Whether a presented join token is the current one, comparing the whole token in constant
/// time so response timing does not leak how much of a guessed secret was right.
/// (Lengths may leak, but a token's length is public: it is fixed by the format.)
pub fn token_matches(presented: &str, current: &str) -> bool {
    presented.as_bytes().ct_eq(current.as_bytes()).into()
}

/// Root CA validity: 20 years, as swarmkit's default.
const ROOT_CA_DAYS: i64 = 20 * 365;

/// Generates the swarm's root CA.
pub fn generate_root_ca() -> Result<RootCaMaterial, PkiError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "swarm-ca");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(ROOT_CA_DAYS);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key)?;
    let der = cert.der().to_vec();
    Ok(RootCaMaterial {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        digest: digest_of_der(&der),
        cert_der: der,
    })
}

const TOKEN_PREFIX: &str = "SWMTKN-1-";
const DIGEST_LEN: usize = 50;
const SECRET_LEN: usize = 25;
const BASE36: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// A new join token for the CA with this `sha256:<hex>` digest.
pub fn generate_join_token(ca_digest: &str) -> Result<String, PkiError> {
    let hex_digest = ca_digest
        .strip_prefix("sha256:")
        .ok_or(PkiError::InvalidToken)?;
    let bytes = hex::decode(hex_digest).map_err(|_| PkiError::InvalidToken)?;
    let digest36 = to_base36(&bytes);
    let mut rng = rand::rng();
    let secret: String = (0..SECRET_LEN)
        .map(|_| BASE36[rng.random_range(0..36)] as char)
        .collect();
    Ok(format!("{TOKEN_PREFIX}{digest36:0>DIGEST_LEN$}-{secret}"))
}

/// A parsed join token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedToken {
    /// `sha256:<hex>` of the CA certificate the token pins.
    pub ca_digest: String,
    pub secret: String,
}

/// Parses `SWMTKN-1-<digest>-<secret>`; anything else is `InvalidToken`.
pub fn parse_join_token(token: &str) -> Result<ParsedToken, PkiError> {
    let rest = token
        .strip_prefix(TOKEN_PREFIX)
        .ok_or(PkiError::InvalidToken)?;
    let (digest36, secret) = rest.split_once('-').ok_or(PkiError::InvalidToken)?;
    let ok36 = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
    };
    if digest36.len() != DIGEST_LEN
        || secret.len() != SECRET_LEN
        || !ok36(digest36)
        || !ok36(secret)
    {
        return Err(PkiError::InvalidToken);
    }
    let bytes = from_base36(digest36, 32).ok_or(PkiError::InvalidToken)?;
    Ok(ParsedToken {
        ca_digest: format!("sha256:{}", hex::encode(bytes)),
        secret: secret.to_string(),
    })
}

/// Big-endian bytes to base 36 (no leading zeros).
fn to_base36(bytes: &[u8]) -> String {
    let mut num: Vec<u8> = bytes.to_vec();
    let mut out = Vec::new();
    while num.iter().any(|&b| b != 0) {
        let mut rem: u32 = 0;
        for b in num.iter_mut() {
            let cur = (rem << 8) | *b as u32;
            *b = (cur / 36) as u8;
            rem = cur % 36;
        }
        out.push(BASE36[rem as usize]);
    }
    if out.is_empty() {
        out.push(b'0');
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// Base 36 to `len` big-endian bytes; `None` if it doesn't fit.
fn from_base36(s: &str, len: usize) -> Option<Vec<u8>> {
    let mut num = vec![0u8; len];
    for c in s.bytes() {
        let d = BASE36.iter().position(|&x| x == c)? as u32;
        let mut carry = d;
        for b in num.iter_mut().rev() {
            let cur = (*b as u32) * 36 + carry;
            *b = (cur & 0xff) as u8;
            carry = cur >> 8;
        }
        if carry != 0 {
            return None;
        }
    }
    Some(num)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_ca_and_token_round_trip() {
        let ca = generate_root_ca().unwrap();
        assert!(ca.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        let token = generate_join_token(&ca.digest).unwrap();
        assert!(token.starts_with("SWMTKN-1-"));
        assert_eq!(token.len(), "SWMTKN-1-".len() + 50 + 1 + 25);
        let parsed = parse_join_token(&token).unwrap();
        assert_eq!(parsed.ca_digest, ca.digest);
        assert_ne!(generate_join_token(&ca.digest).unwrap(), token);
    }

    #[test]
    fn garbled_tokens_are_rejected() {
        for bad in [
            "",
            "SWMTKN-1-",
            "SWMTKN-2-abc-def",
            "SWMTKN-1-zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz-0123456789abcdefghijklmno",
            "SWMTKN-1-0000000000000000000000000000000000000000000000000A-0123456789abcdefghijklmno",
        ] {
            assert!(parse_join_token(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn token_matches_compares_whole_tokens() {
        let ca = generate_root_ca().unwrap();
        let t = generate_join_token(&ca.digest).unwrap();
        assert!(token_matches(&t, &t.clone()));
        assert!(!token_matches(
            &t,
            &generate_join_token(&ca.digest).unwrap()
        ));
        assert!(!token_matches(&t[..t.len() - 1], &t));
        assert!(!token_matches("", &t));
        let mut flipped = t.clone().into_bytes();
        flipped[12] = if flipped[12] == b'0' { b'1' } else { b'0' };
        assert!(!token_matches(std::str::from_utf8(&flipped).unwrap(), &t));
    }

    #[test]
    fn root_is_checked_against_the_token_digest() {
        let ca = generate_root_ca().unwrap();
        let other = generate_root_ca().unwrap();
        assert_eq!(ca_digest_of(&ca.cert_pem).unwrap(), ca.digest);
        let token = generate_join_token(&ca.digest).unwrap();
        verify_root_against_token(&ca.cert_pem, &token).unwrap();
        let err = verify_root_against_token(&other.cert_pem, &token).unwrap_err();
        let hex = ca.digest.strip_prefix("sha256:").unwrap();
        assert_eq!(
            err.to_string(),
            format!("remote CA does not match fingerprint. Expected: {hex}")
        );
        assert!(matches!(
            verify_root_against_token(&ca.cert_pem, "SWMTKN-1-nope"),
            Err(PkiError::InvalidToken)
        ));
        assert!(verify_root_against_token("not a pem", &token).is_err());
    }

    #[test]
    fn root_material_round_trips_through_pem_and_checks_the_key() {
        let ca = generate_root_ca().unwrap();
        let other = generate_root_ca().unwrap();
        let back = RootCaMaterial::from_pem(&ca.cert_pem, &ca.key_pem).unwrap();
        assert_eq!(back.digest, ca.digest);
        assert_eq!(back.cert_der, ca.cert_der);
        assert!(matches!(
            RootCaMaterial::from_pem(&ca.cert_pem, &other.key_pem),
            Err(PkiError::CaKeyMismatch)
        ));
        assert!(RootCaMaterial::from_pem(&ca.cert_pem, "junk").is_err());
    }
}
