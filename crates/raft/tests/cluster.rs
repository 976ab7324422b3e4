//! Three managers in one process, each with its own directory and store, replicating over
//! REAL gRPC + mutual TLS on 127.0.0.1 (throwaway CA and node certificates from rcgen):
//! membership changes, replication, leader failover without losing acknowledged writes, and
//! fast failure without a quorum.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use swarmd_raft::{DataKey, MANAGER_SERVER_NAME, NetworkConfig, RaftConfig, RaftNode};
use swarmd_rpc::{Authorizer, PeerInfo, RpcKind, RpcServer, ServerOptions, Services, Status};
use swarmd_store::{Batch, MemoryStore, ProposeError, Proposer, StoreAction};
use swarmd_types::models::ServiceSpec;
use swarmd_types::{Service, timefmt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Upper bound for anything a test waits for; reached only when something is broken.
const DEADLINE: Duration = Duration::from_secs(30);
/// Proposals give up after this; the no-quorum checks assert they never take much longer.
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(3);

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Lets every caller through: the certificate chain was already verified by TLS against the
/// test CA; role checks are the rpc crate's business and tested there.
struct PermissiveTestAuthorizer;

impl Authorizer for PermissiveTestAuthorizer {
    fn authorize(
        &self,
        _rpc: RpcKind,
        _peer: Option<&[CertificateDer<'static>]>,
    ) -> Result<PeerInfo, Status> {
        Ok(PeerInfo::anonymous())
    }
}

/// A throwaway swarm CA issuing manager certificates (SAN `swarm-manager`).
struct Pki {
    roots: Arc<RootCertStore>,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "swarm-ca");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(ca.der().clone()).unwrap();
        Pki {
            roots: Arc::new(roots),
            ca,
        }
    }

    /// Server and client TLS configs of manager `id`, sharing one node certificate.
    fn manager(&self, id: u64) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec![MANAGER_SERVER_NAME.into()]).unwrap();
        p.distinguished_name
            .push(DnType::CommonName, format!("node{id}"));
        p.distinguished_name
            .push(DnType::OrganizationalUnitName, "swarm-manager");
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = p.signed_by(&key, &self.ca).unwrap();
        let chain = vec![cert.der().clone()];
        let key_der = || PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let verifier = WebPkiClientVerifier::builder(self.roots.clone())
            .build()
            .unwrap();
        let server = ServerConfig::builder()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key_der())
            .unwrap();
        let client = ClientConfig::builder()
            .with_root_certificates(self.roots.clone())
            .with_client_auth_cert(chain, key_der())
            .unwrap();
        (Arc::new(server), Arc::new(client))
    }
}

/// One manager: its Raft node, store and cluster-port server.
struct Manager {
    id: u64,
    addr: String,
    node: Arc<RaftNode>,
    store: Arc<MemoryStore>,
    cancel: CancellationToken,
    server: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Manager {
    async fn start(pki: &Pki, id: u64) -> Manager {
        let dir = tempfile::tempdir().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let (server_tls, client_tls) = pki.manager(id);
        let mut cfg = RaftConfig::new(
            dir.path(),
            DataKey::from_bytes([id as u8; 32]),
            id,
            addr.to_string(),
        )
        .with_network(NetworkConfig::new(client_tls));
        cfg.heartbeat_interval = Duration::from_millis(100);
        cfg.election_timeout_min = Duration::from_millis(600);
        cfg.election_timeout_max = Duration::from_millis(1200);
        cfg.propose_timeout = PROPOSE_TIMEOUT;
        cfg.catch_up_timeout = DEADLINE;
        let store = Arc::new(MemoryStore::new());
        let node = Arc::new(RaftNode::open(cfg, store.clone()).await.expect("open"));
        let services = Services::new().raft(Arc::new(node.rpc_handler()));
        let server = RpcServer::from_listener(
            listener,
            server_tls,
            Arc::new(PermissiveTestAuthorizer),
            services,
        )
        .with_options(ServerOptions {
            shutdown_grace: Duration::from_millis(100),
            ..ServerOptions::default()
        });
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        let server = tokio::spawn(async move {
            if let Err(e) = server.serve(c).await {
                panic!("rpc server failed: {e}");
            }
        });
        Manager {
            id,
            addr: addr.to_string(),
            node,
            store,
            cancel,
            server: Some(server),
            _dir: dir,
        }
    }

    /// Like a crash as far as the peers can tell: the port closes and Raft stops.
    async fn stop(&mut self) {
        self.cancel.cancel();
        if let Some(s) = self.server.take() {
            tokio::time::timeout(DEADLINE, s)
                .await
                .expect("server stops")
                .unwrap();
        }
        self.node.shutdown().await;
    }

    fn has_service(&self, id: &str) -> bool {
        self.store.view(|t| t.services.contains_key(id))
    }

    async fn wait_applied(&self, index: u64) {
        self.node
            .raft()
            .wait(Some(DEADLINE))
            .applied_index_at_least(Some(index), format!("node {} applies {index}", self.id))
            .await
            .unwrap();
    }
}

fn create(id: &str) -> Batch {
    Batch {
        actions: vec![StoreAction::Create(
            Service {
                id: id.into(),
                spec: ServiceSpec {
                    name: Some(format!("svc-{id}")),
                    ..Default::default()
                },
                ..Default::default()
            }
            .into(),
        )],
        proposed_at: timefmt::now(),
    }
}

/// Waits until one of `managers` is ready as leader; returns its index in the slice.
async fn wait_for_new_leader(managers: &[&Manager]) -> usize {
    let start = Instant::now();
    let mut watches: Vec<_> = managers.iter().map(|m| m.node.leader_watch()).collect();
    loop {
        if let Some(i) = watches.iter().position(|w| *w.borrow()) {
            return i;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "no new leader within {DEADLINE:?}"
        );
        let changes = watches.iter_mut().map(|w| Box::pin(w.changed()));
        let _ = tokio::time::timeout(
            DEADLINE - start.elapsed(),
            futures::future::select_all(changes),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_managers_replicate_fail_over_and_fail_fast_without_quorum() {
    init_tracing();
    let pki = Pki::new();
    let mut m1 = Manager::start(&pki, 1).await;
    let m2 = Manager::start(&pki, 2).await;
    let m3 = Manager::start(&pki, 3).await;
    assert!(!m2.node.is_initialized().await.unwrap());

    // --- Form the cluster: 1 initializes alone, then adds 2 and 3 as voters. ------------
    m1.node.initialize_single().await.unwrap();
    m1.node.add_voter(2, m2.addr.clone()).await.unwrap();
    m1.node.add_voter(3, m3.addr.clone()).await.unwrap();
    // Idempotent.
    m1.node.add_voter(3, m3.addr.clone()).await.unwrap();
    let mut members = m1.node.members();
    members.sort();
    assert_eq!(
        members,
        vec![
            (1, m1.addr.clone(), true),
            (2, m2.addr.clone(), true),
            (3, m3.addr.clone(), true),
        ]
    );
    assert!(m2.node.is_initialized().await.unwrap());
    assert!(m1.node.is_leader());

    // A follower refuses writes and points at the leader.
    let err = m2.node.propose(create("nope")).await.unwrap_err();
    assert!(
        matches!(&err, ProposeError::NotLeader { leader_addr: Some(a) } if *a == m1.addr),
        "{err:?}"
    );

    // --- Proposals on the leader reach every store. -------------------------------------
    let mut acked = Vec::new();
    let mut last = 0;
    for i in 0..5 {
        let id = format!("s{i}");
        last = m1.node.propose(create(&id)).await.unwrap();
        acked.push(id);
    }
    for m in [&m1, &m2, &m3] {
        m.wait_applied(last).await;
        for id in &acked {
            assert!(m.has_service(id), "node {} lacks {id}", m.id);
        }
    }

    // --- The leader goes away: a new one is elected and accepts writes. ------------------
    m1.stop().await;
    let down = Instant::now();
    let survivors = [&m2, &m3];
    let leader = survivors[wait_for_new_leader(&survivors).await];
    let elected = down.elapsed();
    assert!(
        elected < Duration::from_secs(10),
        "election took {elected:?}"
    );
    let idx = leader.node.propose(create("after-failover")).await.unwrap();
    acked.push("after-failover".into());
    let first_write = down.elapsed();
    eprintln!(
        "leader loss: node {} elected after {elected:?}, first write after {first_write:?}",
        leader.id
    );
    // Nothing acknowledged is lost.
    for id in &acked {
        assert!(leader.has_service(id), "new leader lacks acknowledged {id}");
    }
    let follower = if leader.id == 2 { &m3 } else { &m2 };
    follower.wait_applied(idx).await;
    assert!(follower.has_service("after-failover"));
    let mut members = leader.node.members();
    members.sort();
    assert_eq!(members.len(), 3);

    // --- Only one of three alive: proposals fail fast, never hang. ----------------------
    let (leader_id, follower_id) = (leader.id, follower.id);
    let (mut lone, mut dead) = if leader_id == 2 { (m2, m3) } else { (m3, m2) };
    assert_eq!((lone.id, dead.id), (leader_id, follower_id));
    dead.stop().await;
    for attempt in 0..3 {
        let start = Instant::now();
        let res = tokio::time::timeout(
            PROPOSE_TIMEOUT + Duration::from_secs(2),
            lone.node.propose(create(&format!("no-quorum-{attempt}"))),
        )
        .await
        .expect("a proposal without quorum must not hang");
        let took = start.elapsed();
        let err = res.expect_err("no quorum, no commit");
        assert!(
            matches!(
                err,
                ProposeError::Unavailable(_) | ProposeError::OutcomeUnknown(_)
            ),
            "attempt {attempt}: {err:?}"
        );
        assert!(
            took <= PROPOSE_TIMEOUT + Duration::from_millis(500),
            "attempt {attempt} took {took:?}"
        );
        eprintln!("no quorum: attempt {attempt} failed after {took:?}: {err}");
    }
    // Acknowledged writes are all still there.
    for id in &acked {
        assert!(lone.has_service(id));
    }
    lone.stop().await;
}

/// Membership shrinks as well as grows: a removed voter is gone from the membership and the
/// remaining two still commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn remove_voter_shrinks_the_cluster() {
    init_tracing();
    let pki = Pki::new();
    let mut m1 = Manager::start(&pki, 1).await;
    let mut m2 = Manager::start(&pki, 2).await;
    let mut m3 = Manager::start(&pki, 3).await;
    m1.node.initialize_single().await.unwrap();
    m1.node.add_voter(2, m2.addr.clone()).await.unwrap();
    m1.node.add_voter(3, m3.addr.clone()).await.unwrap();

    // Only on the leader.
    let err = m2.node.remove_voter(3).await.unwrap_err();
    assert!(
        matches!(
            err,
            swarmd_raft::RaftError::NotLeader {
                leader_id: Some(1),
                ..
            }
        ),
        "{err:?}"
    );

    m1.node.remove_voter(3).await.unwrap();
    let mut members = m1.node.members();
    members.sort();
    assert_eq!(
        members,
        vec![(1, m1.addr.clone(), true), (2, m2.addr.clone(), true)]
    );
    // Removing again is a no-op.
    m1.node.remove_voter(3).await.unwrap();
    m3.stop().await;

    let idx = m1.node.propose(create("two-of-two")).await.unwrap();
    m2.wait_applied(idx).await;
    assert!(m2.has_service("two-of-two"));
    m1.stop().await;
    m2.stop().await;
}
