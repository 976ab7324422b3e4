//! Real TLS handshakes over in-memory pipes between configs built by `swarmd_pki`, proving
//! that issued certificates chain to the swarm root and that the verifiers refuse what they
//! must.

use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ServerConfig};
use swarmd_pki::{
    DEFAULT_NODE_CERT_VALIDITY, LiveCert, MANAGER_SERVER_NAME, PkiError, Role, RootCaMaterial,
    bootstrap_client_config, client_config, generate_join_token, generate_node_key_and_csr,
    generate_root_ca, live_client_config, live_server_config, load_certs, parse_join_token,
    pinned_root_from_chain, pki_error_in, require_manager, role_of_peer, server_config,
    server_config_allowing_anonymous, sign_node_csr, sign_node_csr_at, verify_root_against_token,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const CLUSTER: &str = "c1u5ter000000000000000001";

/// A node's certificate and key, obtained through the real CSR flow.
struct NodeCreds {
    cert_pem: String,
    key_pem: String,
}

fn issue_at(
    ca: &RootCaMaterial,
    node_id: &str,
    role: Role,
    validity: Duration,
    at: SystemTime,
) -> NodeCreds {
    let kc = generate_node_key_and_csr(Some(node_id)).unwrap();
    let cert_pem = sign_node_csr_at(ca, &kc.csr_pem, node_id, CLUSTER, role, validity, at).unwrap();
    NodeCreds {
        cert_pem,
        key_pem: kc.key_pem,
    }
}

fn issue(ca: &RootCaMaterial, node_id: &str, role: Role) -> NodeCreds {
    issue_at(
        ca,
        node_id,
        role,
        DEFAULT_NODE_CERT_VALIDITY,
        SystemTime::now(),
    )
}

fn server(ca: &RootCaMaterial, n: &NodeCreds) -> Arc<ServerConfig> {
    server_config(&n.cert_pem, &n.key_pem, &ca.cert_pem).unwrap()
}

fn client(ca: &RootCaMaterial, n: &NodeCreds) -> Arc<ClientConfig> {
    client_config(&n.cert_pem, &n.key_pem, &ca.cert_pem).unwrap()
}

/// What each side saw: the server the client's certificates (empty if anonymous), the client
/// the server's chain. A side counts as successful only once a byte went through, because in
/// TLS 1.3 the client finishes its handshake before the server has judged its certificate.
struct Outcome {
    server: io::Result<Vec<CertificateDer<'static>>>,
    client: io::Result<Vec<CertificateDer<'static>>>,
}

async fn handshake(server_cfg: Arc<ServerConfig>, client_cfg: Arc<ClientConfig>) -> Outcome {
    let (c, s) = tokio::io::duplex(64 * 1024);
    let acceptor = TlsAcceptor::from(server_cfg);
    let connector = TlsConnector::from(client_cfg);
    let server = async move {
        let mut tls = acceptor.accept(s).await?;
        let peer = tls.get_ref().1.peer_certificates().unwrap_or(&[]).to_vec();
        tls.write_all(b"k").await?;
        tls.flush().await?;
        Ok(peer)
    };
    let client = async move {
        let name = ServerName::try_from(MANAGER_SERVER_NAME).unwrap();
        let mut tls = connector.connect(name, c).await?;
        let peer = tls.get_ref().1.peer_certificates().unwrap_or(&[]).to_vec();
        let mut b = [0u8; 1];
        tls.read_exact(&mut b).await?;
        Ok(peer)
    };
    let (server, client) = tokio::join!(server, client);
    Outcome { server, client }
}

/// The rustls error a handshake failed with, for asserting on the reason.
fn tls_error(e: &io::Error) -> String {
    e.get_ref()
        .map(|inner| inner.to_string())
        .unwrap_or_else(|| e.to_string())
}

/// Every swarm root is named CN=swarm-ca, so webpki finds a foreign root by name and then
/// fails on its signature (BadSignature) rather than not finding an issuer at all.
fn not_signed_by_our_root(e: &io::Error) -> bool {
    let msg = tls_error(e);
    msg.contains("BadSignature") || msg.contains("UnknownIssuer")
}

#[tokio::test]
async fn mtls_handshake_succeeds_and_server_sees_the_callers_role() {
    let ca = generate_root_ca().unwrap();
    let manager = issue(&ca, "manager00000000000000001", Role::Manager);
    let worker = issue(&ca, "worker000000000000000001", Role::Worker);

    let out = handshake(server(&ca, &manager), client(&ca, &worker)).await;
    let peer = role_of_peer(&out.server.unwrap()).unwrap();
    assert_eq!(peer.node_id, "worker000000000000000001");
    assert_eq!(peer.cluster_id, CLUSTER);
    assert_eq!(peer.role, Role::Worker);
    assert!(matches!(
        require_manager(&peer),
        Err(PkiError::PermissionDenied { .. })
    ));
    // The client sees the manager's certificate followed by the root.
    let chain = out.client.unwrap();
    assert_eq!(role_of_peer(&chain).unwrap().role, Role::Manager);
    assert_eq!(chain.last().unwrap().as_ref(), ca.cert_der.as_slice());

    let other_manager = issue(&ca, "manager00000000000000002", Role::Manager);
    let out = handshake(server(&ca, &manager), client(&ca, &other_manager)).await;
    let peer = role_of_peer(&out.server.unwrap()).unwrap();
    require_manager(&peer).unwrap();
    out.client.unwrap();
}

#[tokio::test]
async fn client_certificate_from_another_ca_is_rejected() {
    let ca = generate_root_ca().unwrap();
    let foreign_ca = generate_root_ca().unwrap();
    let manager = issue(&ca, "manager00000000000000001", Role::Manager);
    let intruder = issue(&foreign_ca, "manager00000000000000009", Role::Manager);

    // The intruder trusts our root, so only the server's check can stop it.
    let intruder_client =
        client_config(&intruder.cert_pem, &intruder.key_pem, &ca.cert_pem).unwrap();
    for server_cfg in [
        server(&ca, &manager),
        server_config_allowing_anonymous(&manager.cert_pem, &manager.key_pem, &ca.cert_pem)
            .unwrap(),
    ] {
        let out = handshake(server_cfg, intruder_client.clone()).await;
        let err = out.server.unwrap_err();
        assert!(not_signed_by_our_root(&err), "{err}");
        assert!(out.client.is_err());
    }
}

#[tokio::test]
async fn expired_client_certificate_is_rejected() {
    let ca = generate_root_ca().unwrap();
    let manager = issue(&ca, "manager00000000000000001", Role::Manager);
    let two_days_ago = SystemTime::now() - Duration::from_secs(2 * 24 * 3600);
    let stale = issue_at(
        &ca,
        "worker000000000000000001",
        Role::Worker,
        Duration::from_secs(24 * 3600),
        two_days_ago,
    );
    let out = handshake(server(&ca, &manager), client(&ca, &stale)).await;
    let err = out.server.unwrap_err();
    assert!(tls_error(&err).contains("expired"), "{err}");
    assert!(out.client.is_err());
}

#[tokio::test]
async fn a_worker_certificate_cannot_serve_as_a_manager() {
    let ca = generate_root_ca().unwrap();
    let worker = issue(&ca, "worker000000000000000001", Role::Worker);
    let manager = issue(&ca, "manager00000000000000001", Role::Manager);
    let out = handshake(server(&ca, &worker), client(&ca, &manager)).await;
    let err = out.client.unwrap_err();
    assert!(
        tls_error(&err).contains("not valid for name \"swarm-manager\""),
        "{err}"
    );
}

#[tokio::test]
async fn anonymous_clients_only_on_the_join_listener() {
    let ca = generate_root_ca().unwrap();
    let manager = issue(&ca, "manager00000000000000001", Role::Manager);
    let joiner = bootstrap_client_config(&ca.digest).unwrap();

    let out = handshake(server(&ca, &manager), joiner.clone()).await;
    assert!(out.server.is_err());

    let anon_server =
        server_config_allowing_anonymous(&manager.cert_pem, &manager.key_pem, &ca.cert_pem)
            .unwrap();
    let out = handshake(anon_server.clone(), joiner).await;
    let peer_certs = out.server.unwrap();
    assert!(matches!(
        role_of_peer(&peer_certs),
        Err(PkiError::NoPeerCertificate)
    ));
    out.client.unwrap();

    // A node with a certificate is still identified on that listener.
    let worker = issue(&ca, "worker000000000000000001", Role::Worker);
    let out = handshake(anon_server, client(&ca, &worker)).await;
    assert_eq!(
        role_of_peer(&out.server.unwrap()).unwrap().role,
        Role::Worker
    );
}

#[tokio::test]
async fn bootstrap_pins_the_root_from_the_token_then_joins_with_mtls() {
    let ca = generate_root_ca().unwrap();
    let manager = issue(&ca, "manager00000000000000001", Role::Manager);
    let anon_server =
        server_config_allowing_anonymous(&manager.cert_pem, &manager.key_pem, &ca.cert_pem)
            .unwrap();
    let token = generate_join_token(&ca.digest).unwrap();

    // The joiner knows only the token.
    let digest = parse_join_token(&token).unwrap().ca_digest;
    let out = handshake(
        anon_server.clone(),
        bootstrap_client_config(&digest).unwrap(),
    )
    .await;
    out.server.unwrap();
    let root_pem = pinned_root_from_chain(&out.client.unwrap(), &digest).unwrap();
    assert_eq!(
        load_certs(&root_pem).unwrap()[0].as_ref(),
        ca.cert_der.as_slice()
    );
    verify_root_against_token(&root_pem, &token).unwrap();

    // It sends a CSR (over that connection, in the real flow), gets a certificate and from
    // now on talks mutual TLS with the root it pinned.
    let kc = generate_node_key_and_csr(None).unwrap();
    let cert_pem = sign_node_csr(
        &ca,
        &kc.csr_pem,
        "worker000000000000000001",
        CLUSTER,
        Role::Worker,
        DEFAULT_NODE_CERT_VALIDITY,
    )
    .unwrap();
    let cfg = client_config(&cert_pem, &kc.key_pem, &root_pem).unwrap();
    let out = handshake(server(&ca, &manager), cfg).await;
    assert_eq!(
        role_of_peer(&out.server.unwrap()).unwrap().role,
        Role::Worker
    );
    out.client.unwrap();
}

#[tokio::test]
async fn bootstrap_with_a_wrong_digest_fails_with_a_clear_error() {
    let ca = generate_root_ca().unwrap();
    let other_ca = generate_root_ca().unwrap();
    let manager = issue(&ca, "manager00000000000000001", Role::Manager);
    let anon_server =
        server_config_allowing_anonymous(&manager.cert_pem, &manager.key_pem, &ca.cert_pem)
            .unwrap();

    let out = handshake(
        anon_server,
        bootstrap_client_config(&other_ca.digest).unwrap(),
    )
    .await;
    let err = out.client.unwrap_err();
    let pki = pki_error_in(&err).expect("a PkiError in the handshake error");
    let hex = other_ca.digest.strip_prefix("sha256:").unwrap();
    assert!(matches!(pki, PkiError::CaFingerprintMismatch { expected } if expected == hex));
    assert_eq!(
        pki.to_string(),
        format!("remote CA does not match fingerprint. Expected: {hex}")
    );
    assert!(out.server.is_err());

    assert!(matches!(
        bootstrap_client_config("sha256:nothex"),
        Err(PkiError::InvalidDigest(_))
    ));
}

/// The root certificate is public: an impostor can put it in its chain. The pinned verifier
/// must still refuse, because the impostor's certificate does not chain to it.
#[tokio::test]
async fn bootstrap_refuses_an_impostor_presenting_the_real_root() {
    let ca = generate_root_ca().unwrap();
    let impostor_ca = generate_root_ca().unwrap();
    let fake = issue(&impostor_ca, "manager00000000000000001", Role::Manager);
    let mut chain = load_certs(&fake.cert_pem).unwrap();
    chain.push(CertificateDer::from(ca.cert_der.clone()));
    let key = swarmd_pki::load_private_key(&fake.key_pem).unwrap();
    let impostor =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();

    let out = handshake(
        Arc::new(impostor),
        bootstrap_client_config(&ca.digest).unwrap(),
    )
    .await;
    let err = out.client.unwrap_err();
    assert!(not_signed_by_our_root(&err), "{err}");
}

#[test]
fn installing_the_provider_is_idempotent() {
    swarmd_pki::install_crypto_provider();
    swarmd_pki::install_crypto_provider();
    assert!(rustls::crypto::CryptoProvider::get_default().is_some());
}

#[tokio::test]
async fn a_live_certificate_is_replaced_without_rebuilding_configs() {
    let ca = generate_root_ca().unwrap();
    let manager = issue(&ca, "manager00000000000000001", Role::Manager);
    let old = issue(&ca, "worker000000000000000001", Role::Worker);
    let live_server_cert =
        LiveCert::new(&manager.cert_pem, &manager.key_pem, &ca.cert_pem).unwrap();
    let live = LiveCert::new(&old.cert_pem, &old.key_pem, &ca.cert_pem).unwrap();
    let server_cfg = live_server_config(&live_server_cert).unwrap();
    let client_cfg = live_client_config(&live).unwrap();

    let seen = handshake(server_cfg.clone(), client_cfg.clone()).await;
    let before = seen.server.unwrap();
    assert_eq!(role_of_peer(&before).unwrap().role, Role::Worker);

    // Renewed (here: promoted) with a new key: the same configs present the new one.
    let renewed = issue(&ca, "worker000000000000000001", Role::Manager);
    live.replace(&renewed.cert_pem, &renewed.key_pem, &ca.cert_pem)
        .unwrap();
    let seen = handshake(server_cfg.clone(), client_cfg).await;
    let after = seen.server.unwrap();
    assert_ne!(before[0], after[0]);
    assert_eq!(role_of_peer(&after).unwrap().role, Role::Manager);

    // A key that does not match the certificate is refused and the old pair stays.
    assert!(
        live.replace(&renewed.cert_pem, &old.key_pem, &ca.cert_pem)
            .is_err()
    );
    let seen = handshake(server_cfg, live_client_config(&live).unwrap()).await;
    assert_eq!(seen.server.unwrap()[0], after[0]);

    // An anonymous client is still admitted by the live server config (join path).
    let anon = bootstrap_client_config(&ca.digest).unwrap();
    let seen = handshake(live_server_config(&live_server_cert).unwrap(), anon).await;
    assert!(seen.server.unwrap().is_empty());
}

/// A root rotation as the nodes live it, with configs built once: the manager renews first
/// (a certificate from the new key with the cross-signed root, trusting both roots) while a
/// worker still has its old certificate and trusts only the old root; both keep talking.
/// After the rotation (trust: the new root alone) a certificate from the old root is
/// refused, and the worker, renewed, talks again.
#[tokio::test]
async fn a_root_rotation_changes_trust_in_place() {
    let old = generate_root_ca().unwrap();
    let new = generate_root_ca().unwrap();
    let cross = swarmd_pki::cross_sign(&new, &old).unwrap();
    let both = format!("{}{}", old.cert_pem, new.cert_pem);
    let m = issue(&old, "manager00000000000000001", Role::Manager);
    let w = issue(&old, "worker000000000000000001", Role::Worker);
    let manager = LiveCert::new(&m.cert_pem, &m.key_pem, &old.cert_pem).unwrap();
    let worker = LiveCert::new(&w.cert_pem, &w.key_pem, &old.cert_pem).unwrap();
    let (server_cfg, client_cfg) = (
        live_server_config(&manager).unwrap(),
        live_client_config(&worker).unwrap(),
    );
    let talks = |s: &Arc<ServerConfig>, c: &Arc<ClientConfig>| {
        let (s, c) = (s.clone(), c.clone());
        async move {
            let seen = handshake(s, c).await;
            seen.server.is_ok() && seen.client.is_ok()
        }
    };
    assert!(talks(&server_cfg, &client_cfg).await);

    // Rotation running: the manager has a certificate from the new key.
    let m2 = issue(&new, "manager00000000000000001", Role::Manager);
    manager
        .replace(&format!("{}{cross}", m2.cert_pem), &m2.key_pem, &both)
        .unwrap();
    assert!(talks(&server_cfg, &client_cfg).await, "old trust, bridged");

    // Rotation done: the manager trusts the new root alone.
    let m3 = issue(&new, "manager00000000000000001", Role::Manager);
    manager
        .replace(&m3.cert_pem, &m3.key_pem, &new.cert_pem)
        .unwrap();
    let seen = handshake(server_cfg.clone(), client_cfg.clone()).await;
    assert!(
        seen.server.is_err(),
        "a certificate from the old root is refused"
    );

    let w2 = issue(&new, "worker000000000000000001", Role::Worker);
    worker
        .replace(&w2.cert_pem, &w2.key_pem, &new.cert_pem)
        .unwrap();
    assert!(talks(&server_cfg, &client_cfg).await, "both renewed");
}
