//! The swarm's PKI: root CA and join tokens.
//!
//! The root CA is ECDSA P-256 with subject CN=swarm-ca, as Docker's. Join tokens follow
//! swarmkit's format `SWMTKN-1-<CA digest in base 36, 50 chars>-<secret, 25 chars>`, so a
//! joining node can pin the CA by the digest it carries.

use rand::Rng;
use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair};
use sha2::{Digest, Sha256};

/// Why a PKI operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("invalid join token")]
    InvalidToken,
}

/// A freshly generated root CA.
#[derive(Debug, Clone)]
pub struct RootCaMaterial {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: Vec<u8>,
    /// `sha256:<hex>` of the DER certificate.
    pub digest: String,
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
        digest: format!("sha256:{}", hex::encode(Sha256::digest(&der))),
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
}
