//! Certificates for TLS tests (`swarmd manage --tlsverify`, `dockerd --tlsverify`): a CA
//! and leaf certificates it signs, written as the PEM files Docker's tools take.
//!
//! Every leaf is good for both TLS sides (serverAuth and clientAuth), as a classic Swarm
//! manager's one certificate must be: it serves the API and identifies the manager to its
//! engines.

use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// A test CA (ECDSA P-256, as `docker`'s docs make with openssl, give or take the curve).
#[derive(Debug, Clone)]
pub struct TestCa {
    cert_pem: String,
    key_pem: String,
}

/// A leaf certificate's files: `cert` (PEM), `key` (PKCS#8 PEM), and the CA's `ca.pem`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCa {
    pub fn new() -> anyhow::Result<TestCa> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "swarmd test CA");
        params.distinguished_name = dn;
        let cert = params.self_signed(&key)?;
        Ok(TestCa {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// The CA certificate (PEM).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Signs a certificate for `names` (IP addresses become IP SANs, the rest DNS names)
    /// and writes `<stem>-cert.pem`, `<stem>-key.pem` and `ca.pem` into `dir`.
    pub fn issue(&self, dir: &Path, stem: &str, names: &[&str]) -> anyhow::Result<CertFiles> {
        let ca_key = KeyPair::from_pem(&self.key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, ca_key)?;
        let key = KeyPair::generate()?;
        let sans: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(sans)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, stem);
        params.distinguished_name = dn;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &issuer)?;
        let files = CertFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join(format!("{stem}-cert.pem")),
            key: dir.join(format!("{stem}-key.pem")),
        };
        write(&files.ca, &self.cert_pem)?;
        write(&files.cert, &cert.pem())?;
        write(&files.key, &key.serialize_pem())?;
        Ok(files)
    }
}

fn write(path: &Path, pem: &str) -> anyhow::Result<()> {
    std::fs::write(path, pem).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_pem_files_signed_by_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new().unwrap();
        let files = ca
            .issue(dir.path(), "engine", &["127.0.0.1", "node-0"])
            .unwrap();
        let cert = std::fs::read_to_string(&files.cert).unwrap();
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(
            std::fs::read_to_string(&files.key)
                .unwrap()
                .contains("PRIVATE KEY")
        );
        assert_eq!(std::fs::read_to_string(&files.ca).unwrap(), ca.cert_pem());
        assert_ne!(cert, ca.cert_pem());
    }
}
