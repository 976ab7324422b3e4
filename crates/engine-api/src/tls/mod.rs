//! TLS for the Docker API the way classic Swarm's `swarm manage --tls/--tlsverify` does it
//! (classic's `cli/manage.go` `loadTLSConfig`): one certificate and key serve the API to
//! clients AND identify the manager to its engines.
//!
//! With `verify` (`--tlsverify`) clients must present a certificate signed by the CA, and
//! engines are verified against the same CA (and their address). Without it (`--tls`) the
//! API asks for no client certificate and engines' certificates are not checked (classic's
//! `InsecureSkipVerify`): the traffic is encrypted, nobody is authenticated.
//!
//! The files are read and checked once, at startup ([`TlsConfigs::load`]), so a bad path or
//! a key that does not match its certificate stops the daemon with classic's message
//! instead of failing every connection later.

mod configs;
mod dial;
mod files;
mod listener;

use std::path::PathBuf;
use std::sync::Arc;

pub use dial::dial;
pub use listener::TlsListener;

/// The ring provider every config here uses, whatever (if any) the process default is.
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: std::sync::OnceLock<Arc<rustls::crypto::CryptoProvider>> =
        std::sync::OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// `--tlscert`, `--tlskey`, `--tlscacert` and whether `--tlsverify` was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Read only with `verify`, as classic does.
    pub ca: Option<PathBuf>,
    pub verify: bool,
}

/// The loaded TLS settings: the API's server side and the engines' client side.
#[derive(Debug, Clone)]
pub struct TlsConfigs {
    pub server: Arc<rustls::ServerConfig>,
    pub client: Arc<rustls::ClientConfig>,
}

impl TlsConfigs {
    /// Reads and checks the files and builds both sides.
    pub fn load(files: &TlsFiles) -> Result<Self, TlsError> {
        let key = Arc::new(files::certified_key(&files.cert, &files.key)?);
        let roots = match (&files.ca, files.verify) {
            (Some(ca), true) => Some(files::ca_roots(ca)?),
            (None, true) => return Err(TlsError::Ca("no CA certificate given".to_string())),
            (_, false) => None,
        };
        Ok(Self {
            server: configs::server(key.clone(), roots.clone())?,
            client: configs::client(key, roots)?,
        })
    }
}

/// Why the TLS files cannot be used, in classic Swarm's words.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// `reason` is Go's `tls.LoadX509KeyPair` wording.
    #[error("Couldn't load X509 key pair ({cert}, {key}): {reason}. Key encrypted?")]
    KeyPair {
        cert: String,
        key: String,
        reason: String,
    },
    #[error("Couldn't read CA certificate: {0}")]
    Ca(String),
    #[error("TLS configuration: {0}")]
    Config(String),
}

#[cfg(test)]
mod tests;
