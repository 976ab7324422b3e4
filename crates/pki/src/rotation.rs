//! Root CA material a user brings (`docker swarm ca --rotate --ca-cert --ca-key`), checked
//! as swarmkit's controlapi checks it before a root rotation, with its messages, and the
//! cross-signed intermediate that lets old and new certificates verify during a rotation.

use rcgen::KeyPair;

use crate::{PkiError, RootCaMaterial, digest_of_der, load_certs};

/// A new root must stay valid for at least a year (swarmkit's `minRootExpiration`).
const MIN_ROOT_VALIDITY: time::Duration = time::Duration::days(365);

/// Checks a root CA certificate and key given for the swarm, as swarmkit's
/// `validateCAConfig` does: one certificate, a self-signed CA, valid for at least a year,
/// and the key is the certificate's. Returns the material to sign with.
pub fn check_signing_root(cert_pem: &str, key_pem: &str) -> Result<RootCaMaterial, PkiError> {
    let certs = load_certs(cert_pem)
        .map_err(|e| PkiError::InvalidRoot(format!("invalid root certificates: {e}")))?;
    if certs.len() != 1 {
        return Err(PkiError::InvalidRoot(
            "the desired CA certificate cannot contain multiple certificates".into(),
        ));
    }
    let der = certs[0].to_vec();
    let (_, x509) = x509_parser::parse_x509_certificate(&der)
        .map_err(|_| PkiError::InvalidRoot("could not parse the desired CA certificate".into()))?;
    let self_signed = x509.subject() == x509.issuer() && x509.verify_signature(None).is_ok();
    if !x509.is_ca() || !self_signed {
        return Err(PkiError::InvalidRoot(
            "error while validating Root CA Certificate: x509: certificate signed by unknown authority".into(),
        ));
    }
    let not_after = x509.validity().not_after.to_datetime();
    if not_after < time::OffsetDateTime::now_utc() + MIN_ROOT_VALIDITY {
        return Err(PkiError::InvalidRoot(
            "CA certificate expires too soon".into(),
        ));
    }
    let key = key_pair_of(key_pem)
        .map_err(|e| PkiError::InvalidRoot(format!("malformed private key: {e}")))?;
    if x509.public_key().raw != rcgen::PublicKeyData::subject_public_key_info(&key).as_slice() {
        return Err(PkiError::InvalidRoot("certificate key mismatch".into()));
    }
    // Stored re-encoded, so the same certificate always compares (and digests) the same.
    let cert_pem = cert_pem_of_der(&der);
    Ok(RootCaMaterial {
        cert_pem,
        key_pem: key.serialize_pem(),
        digest: digest_of_der(&der),
        cert_der: der,
    })
}

/// A root's private key in any PEM form openssl and cfssl write: PKCS#8 as is, SEC1 (`EC
/// PRIVATE KEY`) and PKCS#1 (`RSA PRIVATE KEY`) wrapped into PKCS#8 first, since rcgen (on
/// ring) reads PKCS#8 only. Stored afterwards as PKCS#8.
fn key_pair_of(key_pem: &str) -> Result<KeyPair, rcgen::Error> {
    use rustls_pki_types::PrivateKeyDer;
    use rustls_pki_types::pem::PemObject;
    // DER: ecPublicKey with P-256, with P-384; rsaEncryption with its NULL parameters.
    const EC_P256: &[u8] = &[
        0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
        0x3d, 0x03, 0x01, 0x07,
    ];
    const EC_P384: &[u8] = &[
        0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00,
        0x22,
    ];
    const RSA: &[u8] = &[
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let algorithms: &[&[u8]] = match PrivateKeyDer::from_pem_slice(key_pem.as_bytes()) {
        Ok(PrivateKeyDer::Sec1(_)) => &[EC_P256, EC_P384],
        Ok(PrivateKeyDer::Pkcs1(_)) => &[RSA],
        _ => return KeyPair::from_pem(key_pem),
    };
    let inner = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|_| rcgen::Error::CouldNotParseKeyPair)?;
    let mut last = rcgen::Error::CouldNotParseKeyPair;
    for alg in algorithms {
        let pkcs8 = der(
            0x30,
            &[
                &[0x02, 0x01, 0x00][..],
                &der(0x30, &[alg]),
                &der(0x04, &[inner.secret_der()]),
            ],
        );
        match KeyPair::try_from(pkcs8.as_slice()) {
            Ok(k) => return Ok(k),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// One DER value: `tag`, the length of `parts` together, then `parts`.
fn der(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut out = vec![tag];
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

/// The new root's certificate signed by the old root's key (swarmkit's
/// `CrossSignedCACert`): same subject, key and CA constraints as `new_root`, issuer the old
/// root. Appended to the certificates signed during a rotation, it lets a node that still
/// trusts only the old root verify them; a node that trusts the new root verifies them
/// directly.
pub fn cross_sign(
    new_root: &RootCaMaterial,
    old_root: &RootCaMaterial,
) -> Result<String, PkiError> {
    let bad = |e: &dyn std::fmt::Display| PkiError::InvalidCertificate(e.to_string());
    let (_, x509) = x509_parser::parse_x509_certificate(&new_root.cert_der).map_err(|e| bad(&e))?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = name_of(x509.subject())?;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = x509.validity().not_before.to_datetime();
    params.not_after = x509.validity().not_after.to_datetime();
    // The new root's own key identifier, which the certificates it signs name as their
    // authority's.
    if let Some(ski) = x509
        .iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(id) => {
                Some(id.0.to_vec())
            }
            _ => None,
        })
    {
        params.key_identifier_method = rcgen::KeyIdMethod::PreSpecified(ski);
    }
    params.use_authority_key_identifier_extension = true;
    let new_key =
        KeyPair::from_pem(&new_root.key_pem).map_err(|e| PkiError::InvalidKey(e.to_string()))?;
    let old_key =
        KeyPair::from_pem(&old_root.key_pem).map_err(|e| PkiError::InvalidKey(e.to_string()))?;
    let issuer =
        rcgen::Issuer::from_ca_cert_pem(&old_root.cert_pem, old_key).map_err(|e| bad(&e))?;
    let cert = params.signed_by(&new_key, &issuer)?;
    Ok(cert_pem_of_der(cert.der()))
}

/// A certificate's subject as rcgen writes it, attribute by attribute with the same string
/// types (as rcgen reads an issuer's name), so certificates that name it as their issuer
/// match it byte for byte.
fn name_of(name: &x509_parser::x509::X509Name<'_>) -> Result<rcgen::DistinguishedName, PkiError> {
    use x509_parser::der_parser::asn1_rs::Tag;
    let unsupported = || PkiError::InvalidRoot("could not parse the desired CA certificate".into());
    let mut dn = rcgen::DistinguishedName::new();
    for attr in name.iter_attributes() {
        let oid: Vec<u64> = attr.attr_type().iter().ok_or_else(unsupported)?.collect();
        let text = std::str::from_utf8(attr.attr_value().data).map_err(|_| unsupported())?;
        let value = match attr.attr_value().header.tag() {
            Tag::PrintableString => {
                rcgen::DnValue::PrintableString(text.try_into().map_err(|_| unsupported())?)
            }
            Tag::Ia5String => {
                rcgen::DnValue::Ia5String(text.try_into().map_err(|_| unsupported())?)
            }
            Tag::Utf8String => rcgen::DnValue::Utf8String(text.to_string()),
            _ => return Err(unsupported()),
        };
        dn.push(rcgen::DnType::from_oid(&oid), value);
    }
    Ok(dn)
}

/// A DER certificate as PEM with `\n` line ends, as rcgen writes the certificates swarmd
/// generates (the `pem` crate's default is `\r\n`), so `docker swarm ca` shows a root the
/// same way whoever made it.
pub fn cert_pem_of_der(der: &[u8]) -> String {
    let config = ::pem::EncodeConfig::new().set_line_ending(::pem::LineEnding::LF);
    ::pem::encode_config(&::pem::Pem::new("CERTIFICATE", der.to_vec()), config)
}

/// The raw subject and SubjectPublicKeyInfo of the first certificate in `pem`: what a
/// node certificate's issuer must match to have been issued by that CA.
pub fn subject_and_key(pem: &str) -> Result<(Vec<u8>, Vec<u8>), PkiError> {
    let der = load_certs(pem)?[0].to_vec();
    let (_, x509) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| PkiError::InvalidCertificate(e.to_string()))?;
    Ok((
        x509.tbs_certificate.subject.as_raw().to_vec(),
        x509.tbs_certificate.subject_pki.raw.to_vec(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate_root_ca;
    use rcgen::CertificateParams;

    fn root_valid_for(days: i64) -> (String, String) {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "my-ca");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(days);
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A certificate signed with the new root's key during a rotation, sent with the
    /// cross-signed intermediate, verifies against the old root alone, the new root alone
    /// and both; without the intermediate it does not verify against the old root.
    #[test]
    fn the_cross_signed_root_bridges_old_and_new_trust() {
        let old = generate_root_ca().unwrap();
        let new = generate_root_ca().unwrap();
        let cross = cross_sign(&new, &old).unwrap();
        let (new_subject, new_key) = subject_and_key(&new.cert_pem).unwrap();
        assert_eq!(subject_and_key(&cross).unwrap(), (new_subject, new_key));

        let key = crate::generate_node_key_and_csr(None).unwrap();
        let leaf = crate::sign_node_csr(
            &new,
            &key.csr_pem,
            "node1",
            "cluster1",
            crate::Role::Manager,
            std::time::Duration::from_secs(3600),
        )
        .unwrap();
        let verifies = |chain: &str, roots: &str| {
            let certs = load_certs(chain).unwrap();
            let mut store = rustls::RootCertStore::empty();
            for r in load_certs(roots).unwrap() {
                store.add(r).unwrap();
            }
            let parsed = rustls::server::ParsedCertificate::try_from(&certs[0]).unwrap();
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &parsed,
                &store,
                &certs[1..],
                rustls_pki_types::UnixTime::now(),
                rustls::crypto::ring::default_provider()
                    .signature_verification_algorithms
                    .all,
            )
            .is_ok()
        };
        let with_cross = format!("{leaf}{cross}");
        assert!(verifies(&with_cross, &old.cert_pem));
        assert!(verifies(&with_cross, &new.cert_pem));
        assert!(verifies(
            &with_cross,
            &format!("{}{}", old.cert_pem, new.cert_pem)
        ));
        assert!(
            !verifies(&leaf, &old.cert_pem),
            "the control: no bridge, no trust"
        );
        assert!(verifies(&leaf, &new.cert_pem));
    }

    /// One DER value at the start of `input`: (its content, what follows it).
    fn take_der(input: &[u8]) -> (&[u8], &[u8]) {
        let (len, head) = match input[1] {
            n if n < 0x80 => (n as usize, 2),
            n => {
                let k = (n & 0x7f) as usize;
                let len = input[2..2 + k]
                    .iter()
                    .fold(0usize, |acc, b| (acc << 8) | *b as usize);
                (len, 2 + k)
            }
        };
        (&input[head..head + len], &input[head + len..])
    }

    /// A root key as openssl's `ecparam -genkey` writes it (SEC1, `EC PRIVATE KEY`) is
    /// read, as swarmkit reads it, and is the same key as its PKCS#8 form.
    #[test]
    fn a_sec1_root_key_is_read() {
        let root = generate_root_ca().unwrap();
        let pkcs8 = KeyPair::from_pem(&root.key_pem).unwrap().serialize_der();
        // PrivateKeyInfo: SEQUENCE { version, algorithm, OCTET STRING { ECPrivateKey } }.
        let (info, _) = take_der(&pkcs8);
        let (_, rest) = take_der(info);
        let (_, rest) = take_der(rest);
        let (sec1, _) = take_der(rest);
        let sec1_pem = ::pem::encode(&::pem::Pem::new("EC PRIVATE KEY", sec1.to_vec()));
        assert!(KeyPair::from_pem(&sec1_pem).is_err(), "rcgen alone cannot");
        let key = key_pair_of(&sec1_pem).expect("a SEC1 P-256 key");
        assert_eq!(
            key.public_key_pem(),
            KeyPair::from_pem(&root.key_pem).unwrap().public_key_pem()
        );
        let given = check_signing_root(&root.cert_pem, &sec1_pem).unwrap();
        assert!(
            given.key_pem.contains("BEGIN PRIVATE KEY"),
            "stored as PKCS#8"
        );
        let relabelled = sec1_pem.replace("EC PRIVATE", "RSA PRIVATE");
        assert!(key_pair_of(&relabelled).is_err());
    }

    #[test]
    fn a_given_root_is_checked_with_swarmkits_messages() {
        let (cert, key) = root_valid_for(3650);
        let ok = check_signing_root(&cert, &key).unwrap();
        assert_eq!(ok.digest, crate::ca_digest_of(&cert).unwrap());
        assert_eq!(
            ok.cert_pem, cert,
            "stored as given (rcgen and swarmd write LF PEM)"
        );

        let other = generate_root_ca().unwrap();
        let msg = |c: &str, k: &str| check_signing_root(c, k).unwrap_err().to_string();
        assert_eq!(msg(&cert, &other.key_pem), "certificate key mismatch");
        assert_eq!(
            msg(&format!("{cert}{}", other.cert_pem), &key),
            "the desired CA certificate cannot contain multiple certificates"
        );
        let (short, short_key) = root_valid_for(200);
        assert_eq!(msg(&short, &short_key), "CA certificate expires too soon");
        assert!(msg(&cert, "junk").starts_with("malformed private key"));
        assert!(msg("junk", &key).starts_with("invalid root certificates"));
        // A leaf is not a root.
        let leaf_key = crate::generate_node_key_and_csr(None).unwrap();
        let leaf = crate::sign_node_csr(
            &other,
            &leaf_key.csr_pem,
            "node1",
            "cluster1",
            crate::Role::Worker,
            std::time::Duration::from_secs(3600 * 24 * 400),
        )
        .unwrap();
        assert!(msg(&leaf, &leaf_key.key_pem).starts_with("error while validating Root CA"));
    }
}
