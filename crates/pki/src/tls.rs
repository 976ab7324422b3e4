//! rustls configurations for node-to-node mutual TLS, and the pinned-root verifier a joining
//! node uses before it has the swarm's root certificate.
//!
//! Every config is built with an explicit ring [`CryptoProvider`], so it works whatever
//! provider (if any) is installed as the process default. [`install_crypto_provider`] is
//! still offered for libraries that build their own rustls configs from the default.
//!
//! All configs advertise ALPN `h2`, as tonic's gRPC transport needs.

use std::error::Error as StdError;
use std::sync::{Arc, OnceLock, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, OtherError, RootCertStore, ServerConfig,
    SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::node::MANAGER_OU;
use crate::{PkiError, digest_of_der, parse_join_token};

/// The TLS server name every client verifies a manager against: managers' certificates carry
/// it as a DNS SAN, so the address actually dialed does not matter (as in swarmkit).
pub const MANAGER_SERVER_NAME: &str = MANAGER_OU;

/// [`MANAGER_SERVER_NAME`] as a rustls server name, for `TlsConnector::connect`.
pub fn manager_server_name() -> ServerName<'static> {
    ServerName::try_from(MANAGER_SERVER_NAME).expect("swarm-manager is a valid DNS name")
}

/// ALPN protocols offered and accepted: gRPC runs over HTTP/2.
fn alpn() -> Vec<Vec<u8>> {
    vec![b"h2".to_vec()]
}

/// The ring provider all our configs use.
fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// Installs ring as the process-wide rustls provider. Idempotent; if a provider is already
/// installed (ours or another), it is left in place.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// All certificates in a PEM bundle, in order. Errors if there are none.
pub fn load_certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::InvalidCertificate(e.to_string()))?;
    if certs.is_empty() {
        return Err(PkiError::InvalidCertificate("no certificate in PEM".into()));
    }
    Ok(certs)
}

/// The private key in a PEM (PKCS#8, SEC1 or PKCS#1).
pub fn load_private_key(pem: &str) -> Result<PrivateKeyDer<'static>, PkiError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| PkiError::InvalidKey(e.to_string()))
}

/// A trust store holding every certificate of `root_ca_pem` (several during a root rotation).
fn root_store(root_ca_pem: &str) -> Result<Arc<RootCertStore>, PkiError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(root_ca_pem)? {
        roots.add(cert)?;
    }
    Ok(Arc::new(roots))
}

/// The node's chain to present: its certificate(s), then the root(s) unless already there.
/// Sending the root lets a joining node, which only knows the root's digest, find and pin it
/// ([`PinnedRootVerifier`]); verifiers that already trust the root ignore the extra cert.
fn presented_chain(
    node_cert_pem: &str,
    root_ca_pem: &str,
) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let mut chain = load_certs(node_cert_pem)?;
    for root in load_certs(root_ca_pem)? {
        if !chain.contains(&root) {
            chain.push(root);
        }
    }
    Ok(chain)
}

fn server_config_inner(
    node_cert_pem: &str,
    node_key_pem: &str,
    root_ca_pem: &str,
    allow_anonymous: bool,
) -> Result<Arc<ServerConfig>, PkiError> {
    let mut verifier =
        WebPkiClientVerifier::builder_with_provider(root_store(root_ca_pem)?, provider());
    if allow_anonymous {
        verifier = verifier.allow_unauthenticated();
    }
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier.build()?)
        .with_single_cert(
            presented_chain(node_cert_pem, root_ca_pem)?,
            load_private_key(node_key_pem)?,
        )?;
    config.alpn_protocols = alpn();
    Ok(Arc::new(config))
}

/// Server side of node-to-node mTLS: clients must present a certificate chained to the swarm
/// root. Authorization by role is left to each RPC ([`crate::role_of_peer`]).
pub fn server_config(
    node_cert_pem: &str,
    node_key_pem: &str,
    root_ca_pem: &str,
) -> Result<Arc<ServerConfig>, PkiError> {
    server_config_inner(node_cert_pem, node_key_pem, root_ca_pem, false)
}

/// Like [`server_config`], but a client may also connect WITHOUT a certificate: a joining
/// node has none yet and calls the CA with only its join token. A client that does present a
/// certificate is still verified against the root. Every RPC served on such a listener must
/// itself refuse anonymous callers unless it is a join-path RPC
/// ([`crate::role_of_peer`] returns [`PkiError::NoPeerCertificate`] for them).
pub fn server_config_allowing_anonymous(
    node_cert_pem: &str,
    node_key_pem: &str,
    root_ca_pem: &str,
) -> Result<Arc<ServerConfig>, PkiError> {
    server_config_inner(node_cert_pem, node_key_pem, root_ca_pem, true)
}

/// Client side of node-to-node mTLS: presents the node's certificate and verifies the server
/// against the swarm root. Connect with server name [`MANAGER_SERVER_NAME`], which only
/// manager certificates carry, so a worker cannot pose as a manager.
pub fn client_config(
    node_cert_pem: &str,
    node_key_pem: &str,
    root_ca_pem: &str,
) -> Result<Arc<ClientConfig>, PkiError> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(root_store(root_ca_pem)?)
        .with_client_auth_cert(load_certs(node_cert_pem)?, load_private_key(node_key_pem)?)?;
    config.alpn_protocols = alpn();
    Ok(Arc::new(config))
}

/// This node's certificate, key and trust roots as TLS uses them, replaceable in place:
/// configs built over it ([`live_client_config`], [`live_server_config`]) present a renewed
/// certificate and verify peers against the current roots on every new connection without
/// being rebuilt, so nothing that holds one (Raft's transport, the cluster port, the
/// agent's channels) needs restarting. A root rotation changes the roots this way: both
/// roots while it runs, then the new one alone.
#[derive(Debug, Clone)]
pub struct LiveCert(Arc<RwLock<Arc<Live>>>);

/// What a [`LiveCert`] holds at one time.
#[derive(Debug)]
struct Live {
    key: Arc<rustls::sign::CertifiedKey>,
    servers: Arc<rustls::client::WebPkiServerVerifier>,
    clients: Arc<dyn ClientCertVerifier>,
}

impl Live {
    fn new(node_cert_pem: &str, node_key_pem: &str, root_ca_pem: &str) -> Result<Self, PkiError> {
        let roots = root_store(root_ca_pem)?;
        Ok(Live {
            key: certified_key(node_cert_pem, node_key_pem, root_ca_pem)?,
            servers: rustls::client::WebPkiServerVerifier::builder_with_provider(
                roots.clone(),
                provider(),
            )
            .build()
            .map_err(|e| PkiError::Tls(rustls::Error::General(e.to_string())))?,
            clients: WebPkiClientVerifier::builder_with_provider(roots, provider())
                .allow_unauthenticated()
                .build()?,
        })
    }
}

impl LiveCert {
    pub fn new(
        node_cert_pem: &str,
        node_key_pem: &str,
        root_ca_pem: &str,
    ) -> Result<Self, PkiError> {
        Ok(LiveCert(Arc::new(RwLock::new(Arc::new(Live::new(
            node_cert_pem,
            node_key_pem,
            root_ca_pem,
        )?)))))
    }

    /// Swaps in a renewed certificate (checked against its key first) and the roots to
    /// trust from now on.
    pub fn replace(
        &self,
        node_cert_pem: &str,
        node_key_pem: &str,
        root_ca_pem: &str,
    ) -> Result<(), PkiError> {
        let live = Arc::new(Live::new(node_cert_pem, node_key_pem, root_ca_pem)?);
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = live;
        Ok(())
    }

    fn live(&self) -> Arc<Live> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn current(&self) -> Arc<rustls::sign::CertifiedKey> {
        self.live().key.clone()
    }
}

fn certified_key(
    node_cert_pem: &str,
    node_key_pem: &str,
    root_ca_pem: &str,
) -> Result<Arc<rustls::sign::CertifiedKey>, PkiError> {
    Ok(Arc::new(rustls::sign::CertifiedKey::from_der(
        presented_chain(node_cert_pem, root_ca_pem)?,
        load_private_key(node_key_pem)?,
        &provider(),
    )?))
}

impl rustls::client::ResolvesClientCert for LiveCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl rustls::server::ResolvesServerCert for LiveCert {
    fn resolve(
        &self,
        _client_hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.current())
    }
}

/// Verifies servers against the roots the [`LiveCert`] trusts at connection time.
impl ServerCertVerifier for LiveCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.live().servers.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Verifies clients against the roots the [`LiveCert`] trusts at connection time; a client
/// without a certificate (a joining node) is let through, as with
/// [`server_config_allowing_anonymous`]. No root hints are sent: swarmd's clients always
/// present their one certificate.
impl ClientCertVerifier for LiveCert {
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.live()
            .clients
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// [`client_config`] presenting whatever certificate `live` holds at connection time and
/// trusting whatever roots it holds then.
pub fn live_client_config(live: &LiveCert) -> Result<Arc<ClientConfig>, PkiError> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(live.clone()))
        .with_client_cert_resolver(Arc::new(live.clone()));
    config.alpn_protocols = alpn();
    // A resumed session carries the identity of the handshake it resumes: after a renewal
    // (or a promotion) the server must see the new certificate, so never resume.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// [`server_config_allowing_anonymous`] presenting whatever certificate `live` holds at
/// connection time and trusting whatever roots it holds then.
pub fn live_server_config(live: &LiveCert) -> Result<Arc<ServerConfig>, PkiError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(Arc::new(live.clone()))
        .with_cert_resolver(Arc::new(live.clone()));
    config.alpn_protocols = alpn();
    Ok(Arc::new(config))
}

/// Client config for a joining node, which knows only the root's digest from its join token.
/// The server must present a chain containing a certificate with that digest, and its
/// certificate must chain to it ([`PinnedRootVerifier`]). No client certificate is sent.
pub fn bootstrap_client_config(expected_ca_digest: &str) -> Result<Arc<ClientConfig>, PkiError> {
    let verifier = PinnedRootVerifier::new(expected_ca_digest)?;
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = alpn();
    Ok(Arc::new(config))
}

/// Normalizes `sha256:<hex>` (any hex case) and checks its shape.
fn normalize_digest(digest: &str) -> Result<String, PkiError> {
    let hex_part = digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| PkiError::InvalidDigest(digest.to_string()))?;
    Ok(format!("sha256:{}", hex_part.to_ascii_lowercase()))
}

/// Verifies a server during the very first connection of a joining node, trusting the root
/// certificate whose digest was pinned by the join token.
///
/// A root certificate is public, so merely finding one with the right digest in the chain
/// proves nothing: the verifier takes that certificate as the only trust anchor and checks
/// the server's certificate really chains to it (and names [`MANAGER_SERVER_NAME`], or
/// whatever name is dialed), like a normal WebPKI verification. The handshake signature then
/// proves the server holds the key of that certificate.
///
/// If no presented certificate has the digest, the error is
/// [`PkiError::CaFingerprintMismatch`] wrapped in
/// `rustls::Error::InvalidCertificate(CertificateError::Other(..))`; recover it with
/// [`pki_error_in`].
#[derive(Debug)]
pub struct PinnedRootVerifier {
    expected_digest: String,
    provider: Arc<CryptoProvider>,
}

impl PinnedRootVerifier {
    /// A verifier pinning the root with this `sha256:<hex>` digest.
    pub fn new(expected_ca_digest: &str) -> Result<Self, PkiError> {
        Ok(PinnedRootVerifier {
            expected_digest: normalize_digest(expected_ca_digest)?,
            provider: provider(),
        })
    }

    /// The pinned digest, normalized.
    pub fn expected_digest(&self) -> &str {
        &self.expected_digest
    }
}

impl ServerCertVerifier for PinnedRootVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let is_pinned = |c: &CertificateDer<'_>| digest_of_der(c) == self.expected_digest;
        let Some(root) = intermediates.iter().find(|c| is_pinned(c)) else {
            let err = PkiError::CaFingerprintMismatch {
                expected: self.expected_digest["sha256:".len()..].to_string(),
            };
            return Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(err)),
            )));
        };
        let mut roots = RootCertStore::empty();
        roots.add(root.clone().into_owned())?;
        let others: Vec<CertificateDer<'_>> = intermediates
            .iter()
            .filter(|c| !is_pinned(c))
            .cloned()
            .collect();
        let cert = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            &roots,
            &others,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        verify_server_name(&cert, server_name)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The PEM of the certificate with `expected_digest` among a session's peer certificates:
/// after a bootstrap handshake, this is the root CA the joining node should store.
pub fn pinned_root_from_chain(
    certs: &[CertificateDer<'_>],
    expected_digest: &str,
) -> Result<String, PkiError> {
    let expected = normalize_digest(expected_digest)?;
    certs
        .iter()
        .find(|c| digest_of_der(c) == expected)
        .map(|c| ::pem::encode(&::pem::Pem::new("CERTIFICATE", c.to_vec())))
        .ok_or_else(|| PkiError::CaFingerprintMismatch {
            expected: expected["sha256:".len()..].to_string(),
        })
}

/// Checks a root CA certificate fetched from a manager against the digest pinned by a join
/// token, as swarmkit's `GetRemoteCA` does. The root must also parse as a CA certificate.
pub fn verify_root_against_token(root_pem: &str, token: &str) -> Result<(), PkiError> {
    let parsed = parse_join_token(token)?;
    let certs = load_certs(root_pem)?;
    let root = &certs[0];
    let (_, x509) = x509_parser::parse_x509_certificate(root)
        .map_err(|e| PkiError::InvalidCertificate(e.to_string()))?;
    if digest_of_der(root) != parsed.ca_digest {
        return Err(PkiError::CaFingerprintMismatch {
            expected: parsed.ca_digest["sha256:".len()..].to_string(),
        });
    }
    if !x509.is_ca() {
        return Err(PkiError::InvalidCertificate(
            "root certificate is not a CA".into(),
        ));
    }
    Ok(())
}

/// Finds a [`PkiError`] inside an error chain, e.g. the
/// [`PkiError::CaFingerprintMismatch`] a [`PinnedRootVerifier`] raised, as it surfaces from
/// tokio-rustls (an `io::Error` holding a `rustls::Error`) or a transport error wrapping that.
pub fn pki_error_in<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a PkiError> {
    let mut cur: Option<&'a (dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(p) = e.downcast_ref::<PkiError>() {
            return Some(p);
        }
        if let Some(rustls::Error::InvalidCertificate(CertificateError::Other(other))) =
            e.downcast_ref::<rustls::Error>()
        {
            return other.0.downcast_ref::<PkiError>();
        }
        // io::Error::source() skips the wrapped error itself; look inside explicitly.
        let in_io = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| pki_error_in(inner));
        if in_io.is_some() {
            return in_io;
        }
        cur = e.source();
    }
    None
}
