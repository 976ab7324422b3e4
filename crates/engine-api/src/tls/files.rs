//! Reading the PEM files, with Go's `crypto/tls` reasons so the messages read like
//! classic's.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::{TlsError, provider};

/// Go's `os.ReadFile` error wording: `open <path>: <reason>`.
fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("open {}: {e}", path.display()))
}

/// The certificate chain and its private key, checked to belong together
/// (`tls.LoadX509KeyPair`).
pub(super) fn certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let fail = |reason: String| TlsError::KeyPair {
        cert: cert.display().to_string(),
        key: key.display().to_string(),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(&read(cert).map_err(fail)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(format!("tls: failed to parse certificate PEM data: {e}")))?;
    if chain.is_empty() {
        return Err(fail(
            "tls: failed to find any PEM data in certificate input".to_string(),
        ));
    }
    let key_der = match PrivateKeyDer::from_pem_slice(&read(key).map_err(fail)?) {
        Ok(k) => k,
        Err(rustls_pki_types::pem::Error::NoItemsFound) => {
            return Err(fail(
                "tls: failed to find any PEM data in key input".to_string(),
            ));
        }
        Err(e) => return Err(fail(format!("tls: failed to parse private key: {e}"))),
    };
    CertifiedKey::from_der(chain, key_der, &provider()).map_err(|e| {
        fail(match e {
            rustls::Error::InconsistentKeys(_) => {
                "tls: private key does not match public key".to_string()
            }
            other => format!("tls: failed to parse private key: {other}"),
        })
    })
}

/// Every certificate of the CA file as trust anchors. Unlike Go's `AppendCertsFromPEM`,
/// which silently keeps nothing from a bad file, a file without a usable certificate is
/// refused here: every verification would fail later with a vaguer message.
pub(super) fn ca_roots(ca: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let pem = read(ca).map_err(TlsError::Ca)?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| TlsError::Ca(format!("{}: {e}", ca.display())))?;
        roots
            .add(cert)
            .map_err(|e| TlsError::Ca(format!("{}: {e}", ca.display())))?;
    }
    if roots.is_empty() {
        return Err(TlsError::Ca(format!(
            "{}: no PEM certificate found",
            ca.display()
        )));
    }
    Ok(Arc::new(roots))
}
