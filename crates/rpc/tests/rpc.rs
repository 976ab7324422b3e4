//! Real gRPC over real TLS on 127.0.0.1: a throwaway CA, server and node certificates made
//! with rcgen, servers on ephemeral ports, and the typed clients calling them.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use swarmd_manager::tunnels::{ACCEPT_WITHIN, TunnelHub};
use swarmd_rpc::{
    CaClient, CaService, ClientOptions, Code, EnginesClient, EnginesService, IssueRequest,
    IssuedCertificate, PeerIdentity, PeerInfo, RaftClient, RaftService, RemoteDispatcher,
    RemoteProposer, RoleAuthorizer, RpcChannel, RpcError, RpcServer, Services, Status, TunnelError,
    Upstream,
};
use swarmd_store::{Batch, LocalProposer, MemoryStore, ProposeError, StoreAction, StoreError};
use swarmd_types::dispatcher::{
    Assignment, AssignmentAction, AssignmentChange, AssignmentsKind, AssignmentsMessage,
    DispatchError, DispatchStream, DispatcherApi, SessionMessage, SessionRequest, TaskStatusUpdate,
};
use swarmd_types::models::{ServiceSpec, TaskState};
use swarmd_types::{Node, Role, Service, Task, TaskStatus};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Upper bound for anything a test waits for; reached only when something is broken.
const BOUND: Duration = Duration::from_secs(20);

/// The size of the largest single allocation (or reallocation) this test process has
/// made: a server that reserved a peer's announced message size would show here.
static LARGEST_ALLOCATION: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, recording [`LARGEST_ALLOCATION`].
struct Probe;

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Probe {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST_ALLOCATION.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST_ALLOCATION.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST_ALLOCATION.fetch_max(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Probe = Probe;

// --- PKI -----------------------------------------------------------------------------------

/// A throwaway swarm CA with a server certificate for 127.0.0.1 and node certificates.
struct Pki {
    roots: Arc<RootCertStore>,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: Vec<u8>,
    nodes: HashMap<&'static str, (CertificateDer<'static>, Vec<u8>)>,
    /// Leaf DER → identity: stands in for the pki crate's certificate parsing.
    identities: Arc<HashMap<Vec<u8>, PeerIdentity>>,
}

impl Pki {
    fn new() -> Pki {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "swarm-ca");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(ca.der().clone()).unwrap();

        let server_key = KeyPair::generate().unwrap();
        let mut sp = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
        sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = sp.signed_by(&server_key, &ca).unwrap();

        let mut nodes = HashMap::new();
        let mut identities = HashMap::new();
        for (node_id, role) in [("m1", Role::Manager), ("w1", Role::Worker)] {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.distinguished_name.push(DnType::CommonName, node_id);
            p.distinguished_name.push(
                DnType::OrganizationalUnitName,
                format!("swarm-{}", role.as_str()),
            );
            p.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ClientAuth,
                ExtendedKeyUsagePurpose::ServerAuth,
            ];
            let cert = p.signed_by(&key, &ca).unwrap();
            identities.insert(
                cert.der().to_vec(),
                PeerIdentity {
                    node_id: node_id.into(),
                    role,
                    cluster_id: "cluster1".into(),
                },
            );
            nodes.insert(node_id, (cert.der().clone(), key.serialize_der()));
        }
        Pki {
            roots: Arc::new(roots),
            server_chain: vec![server_cert.der().clone()],
            server_key: server_key.serialize_der(),
            nodes,
            identities: Arc::new(identities),
        }
    }

    /// `optional_client_auth`: joiners without a certificate may connect (for the CA).
    fn server_config(&self, optional_client_auth: bool) -> Arc<ServerConfig> {
        let verifier = WebPkiClientVerifier::builder(self.roots.clone());
        let verifier = if optional_client_auth {
            verifier.allow_unauthenticated().build()
        } else {
            verifier.build()
        }
        .unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key.clone()));
        Arc::new(
            ServerConfig::builder()
                .with_client_cert_verifier(verifier)
                .with_single_cert(self.server_chain.clone(), key)
                .unwrap(),
        )
    }

    /// `node`: whose certificate to present; `None` for no client certificate.
    fn client_config(&self, node: Option<&str>) -> Arc<ClientConfig> {
        let builder = ClientConfig::builder().with_root_certificates(self.roots.clone());
        Arc::new(match node {
            Some(n) => {
                let (cert, key) = &self.nodes[n];
                let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.clone()));
                builder
                    .with_client_auth_cert(vec![cert.clone()], key)
                    .unwrap()
            }
            None => builder.with_no_client_auth(),
        })
    }

    fn authorizer(&self) -> Arc<dyn swarmd_rpc::Authorizer> {
        let ids = self.identities.clone();
        Arc::new(RoleAuthorizer::new(
            move |chain: &[CertificateDer<'static>]| ids.get(chain[0].as_ref()).cloned(),
        ))
    }

    fn channel(&self, addr: SocketAddr, node: Option<&str>) -> RpcChannel {
        let options = ClientOptions {
            connect_timeout: Duration::from_secs(5),
            call_timeout: Duration::from_secs(5),
            ..ClientOptions::default()
        };
        RpcChannel::new(&addr.to_string(), self.client_config(node), options).unwrap()
    }
}

struct Running {
    addr: SocketAddr,
    cancel: CancellationToken,
    handle: JoinHandle<Result<(), swarmd_rpc::ServeError>>,
}

impl Running {
    async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(BOUND, self.handle)
            .await
            .expect("server stops")
            .unwrap()
            .unwrap();
    }
}

async fn start(pki: &Pki, services: Services, optional_client_auth: bool) -> Running {
    let server = RpcServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        pki.server_config(optional_client_auth),
        pki.authorizer(),
        services,
    )
    .await
    .unwrap();
    let addr = server.local_addr().unwrap();
    let cancel = CancellationToken::new();
    let handle = tokio::spawn(server.serve(cancel.clone()));
    Running {
        addr,
        cancel,
        handle,
    }
}

// --- Fakes ---------------------------------------------------------------------------------

/// A dispatcher with one valid session, `s1`, scripted answers and a record of reports.
#[derive(Default)]
struct FakeDispatcher {
    /// What the next heartbeats answer instead of success.
    heartbeat_error: Mutex<Option<DispatchError>>,
    reports: Mutex<Vec<(String, Vec<TaskStatusUpdate>)>>,
}

fn task(id: &str) -> Task {
    Task {
        id: id.into(),
        node_id: "w1".into(),
        ..Default::default()
    }
}

#[async_trait::async_trait]
impl DispatcherApi for FakeDispatcher {
    async fn session(
        &self,
        req: SessionRequest,
    ) -> Result<DispatchStream<SessionMessage>, DispatchError> {
        let first = SessionMessage {
            session_id: "s1".into(),
            node: Node {
                id: req.node_id,
                ..Default::default()
            },
            managers: vec!["127.0.0.1:2377".into()],
            heartbeat_period_ms: 5000,
            ingress: None,
            discovery: None,
            trust_roots: None,
        };
        // The session stays open until the agent (or the server) goes away.
        Ok(futures::stream::iter([Ok(first)])
            .chain(futures::stream::pending())
            .boxed())
    }

    async fn heartbeat(&self, session_id: &str) -> Result<Duration, DispatchError> {
        if let Some(e) = self.heartbeat_error.lock().unwrap().clone() {
            return Err(e);
        }
        if session_id != "s1" {
            return Err(DispatchError::SessionInvalid);
        }
        Ok(Duration::from_millis(5000))
    }

    async fn assignments(
        &self,
        session_id: &str,
    ) -> Result<DispatchStream<AssignmentsMessage>, DispatchError> {
        if session_id != "s1" {
            return Err(DispatchError::SessionInvalid);
        }
        let complete = AssignmentsMessage {
            kind: AssignmentsKind::Complete,
            changes: vec![AssignmentChange {
                action: AssignmentAction::Update,
                assignment: Assignment::Task(task("t1")),
            }],
        };
        let incremental = AssignmentsMessage {
            kind: AssignmentsKind::Incremental,
            changes: vec![AssignmentChange {
                action: AssignmentAction::Remove,
                assignment: Assignment::Task(task("t1")),
            }],
        };
        // Then the session expires: a typed error mid-stream.
        Ok(futures::stream::iter([
            Ok(complete),
            Ok(incremental),
            Err(DispatchError::SessionInvalid),
        ])
        .boxed())
    }

    async fn update_task_status(
        &self,
        session_id: &str,
        updates: Vec<TaskStatusUpdate>,
    ) -> Result<(), DispatchError> {
        self.reports
            .lock()
            .unwrap()
            .push((session_id.to_string(), updates));
        Ok(())
    }
}

/// Answers every raft RPC with "<method>:<caller>:<payload>".
struct EchoRaft;

#[async_trait::async_trait]
impl RaftService for EchoRaft {
    async fn append_entries(&self, peer: PeerInfo, payload: Bytes) -> Result<Bytes, RpcError> {
        Ok(echo("append", &peer, &payload))
    }
    async fn vote(&self, peer: PeerInfo, payload: Bytes) -> Result<Bytes, RpcError> {
        Ok(echo("vote", &peer, &payload))
    }
    async fn install_snapshot(&self, _: PeerInfo, _: Bytes) -> Result<Bytes, RpcError> {
        Err(RpcError::FailedPrecondition("no snapshot wanted".into()))
    }
}

fn echo(method: &str, peer: &PeerInfo, payload: &[u8]) -> Bytes {
    let who = peer.node_id().unwrap_or("-");
    Bytes::from(format!(
        "{method}:{who}:{}",
        String::from_utf8_lossy(payload)
    ))
}

/// A CA that accepts the token "good" and always issues worker certificates.
struct FakeCa;

#[async_trait::async_trait]
impl CaService for FakeCa {
    async fn issue_node_certificate(
        &self,
        peer: PeerInfo,
        req: IssueRequest,
    ) -> Result<IssuedCertificate, RpcError> {
        if req.token.as_deref() != Some("good") {
            return Err(RpcError::Unauthenticated("bad join token".into()));
        }
        assert!(peer.identity.is_none(), "a joiner has no certificate");
        Ok(IssuedCertificate {
            cert_pem: format!("signed({})", req.csr_pem),
            root_ca_pem: "ROOT".into(),
            node_id: "new-node".into(),
            role: if req.addr.is_empty() {
                Role::Worker
            } else {
                Role::Manager
            },
            // Echoes the address's port as a raft id: proves both fields cross the wire.
            raft_id: req.addr.rsplit(':').next().and_then(|p| p.parse().ok()),
        })
    }
    async fn root_ca(&self, _: PeerInfo) -> Result<String, RpcError> {
        Ok("ROOT".into())
    }
}

fn session_request(node_id: &str) -> SessionRequest {
    SessionRequest {
        node_id: node_id.into(),
        description: Default::default(),
        addr: "127.0.0.5".into(),
    }
}

fn create_service(id: &str, name: &str) -> Batch {
    Batch {
        actions: vec![StoreAction::Create(
            Service {
                id: id.into(),
                spec: ServiceSpec {
                    name: Some(name.into()),
                    ..Default::default()
                },
                ..Default::default()
            }
            .into(),
        )],
        proposed_at: "2024-01-01T00:00:00Z".into(),
    }
}

// --- Tests ---------------------------------------------------------------------------------

#[tokio::test]
async fn remote_dispatcher_speaks_the_whole_protocol() {
    let pki = Pki::new();
    let fake = Arc::new(FakeDispatcher::default());
    let server = start(&pki, Services::new().dispatcher(fake.clone()), false).await;
    let remote = RemoteDispatcher::new(pki.channel(server.addr, Some("w1")));

    // Session: the first message carries the session ID and the node.
    let mut session = remote.session(session_request("w1")).await.unwrap();
    let first = session.next().await.unwrap().unwrap();
    assert_eq!(first.session_id, "s1");
    assert_eq!(first.node.id, "w1");
    assert_eq!(first.managers, vec!["127.0.0.1:2377".to_string()]);

    // Heartbeat.
    assert_eq!(
        remote.heartbeat("s1").await.unwrap(),
        Duration::from_millis(5000)
    );

    // Assignments: Complete, then Incremental, then the typed error that ended the stream.
    let mut assignments = remote.assignments("s1").await.unwrap();
    let complete = assignments.next().await.unwrap().unwrap();
    assert_eq!(complete.kind, AssignmentsKind::Complete);
    assert_eq!(complete.changes[0].assignment, Assignment::Task(task("t1")));
    let incremental = assignments.next().await.unwrap().unwrap();
    assert_eq!(incremental.kind, AssignmentsKind::Incremental);
    assert_eq!(incremental.changes[0].action, AssignmentAction::Remove);
    assert_eq!(
        assignments.next().await.unwrap().unwrap_err(),
        DispatchError::SessionInvalid
    );

    // Status reports arrive intact.
    let update = TaskStatusUpdate {
        task_id: "t1".into(),
        status: TaskStatus {
            state: TaskState::RUNNING,
            message: "started".into(),
            ..Default::default()
        },
    };
    remote
        .update_task_status("s1", vec![update.clone()])
        .await
        .unwrap();
    assert_eq!(
        *fake.reports.lock().unwrap(),
        vec![("s1".to_string(), vec![update])]
    );

    // The dispatcher's own errors keep their variant across the wire.
    for err in [
        DispatchError::SessionInvalid,
        DispatchError::NotLeader {
            leader_addr: Some("127.0.0.2:2377".into()),
        },
        DispatchError::NodeRemoved("w1".into()),
    ] {
        *fake.heartbeat_error.lock().unwrap() = Some(err.clone());
        assert_eq!(remote.heartbeat("s1").await.unwrap_err(), err);
    }
    *fake.heartbeat_error.lock().unwrap() = None;

    drop(session);
    server.stop().await;
}

#[tokio::test]
async fn sessions_are_bound_to_the_callers_certificate() {
    let pki = Pki::new();
    let fake = Arc::new(FakeDispatcher::default());
    let server = start(&pki, Services::new().dispatcher(fake.clone()), false).await;
    let worker = RemoteDispatcher::new(pki.channel(server.addr, Some("w1")));
    let manager = RemoteDispatcher::new(pki.channel(server.addr, Some("m1")));

    // m1 cannot open a session as w1: refused before the dispatcher runs.
    let err = match manager.session(session_request("w1")).await {
        Ok(_) => panic!("a session for another node's ID was opened"),
        Err(e) => e,
    };
    assert!(
        matches!(&err, DispatchError::Unavailable(m) if m.contains("PermissionDenied")),
        "{err:?}"
    );

    // w1's session may not be used by m1, nor before it is opened.
    assert_eq!(
        worker.heartbeat("s1").await.unwrap_err(),
        DispatchError::SessionInvalid
    );
    let mut session = worker.session(session_request("w1")).await.unwrap();
    assert_eq!(session.next().await.unwrap().unwrap().session_id, "s1");
    worker.heartbeat("s1").await.unwrap();
    let err = manager
        .update_task_status("s1", Vec::new())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DispatchError::Unavailable(m) if m.contains("PermissionDenied")),
        "{err:?}"
    );
    assert!(fake.reports.lock().unwrap().is_empty());

    drop(session);
    server.stop().await;
}

#[tokio::test]
async fn remote_proposer_applies_and_store_errors_round_trip() {
    let pki = Pki::new();
    let mem = Arc::new(MemoryStore::new());
    let local = Arc::new(LocalProposer::new(mem.clone()));
    let server = start(&pki, Services::new().proposer(local), false).await;
    let remote = RemoteProposer::new(pki.channel(server.addr, Some("m1")));

    use swarmd_store::Proposer as _;
    let index = remote.propose(create_service("a", "web")).await.unwrap();
    assert_eq!(index, 1);
    assert!(mem.view(|t| t.services.contains_key("a")));

    let err = remote
        .propose(create_service("b", "web"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            ProposeError::Store(StoreError::NameConflict { name, .. }) if name == "web"
        ),
        "{err:?}"
    );
    assert!(mem.view(|t| !t.services.contains_key("b")));

    server.stop().await;
}

#[tokio::test]
async fn authorizer_refusals_are_permission_denied() {
    let pki = Pki::new();
    let mem = Arc::new(MemoryStore::new());
    let services = Services::new()
        .raft(Arc::new(EchoRaft))
        .proposer(Arc::new(LocalProposer::new(mem.clone())));
    let server = start(&pki, services, false).await;

    // A manager reaches raft; the handler learns who called.
    let manager = RaftClient::new(pki.channel(server.addr, Some("m1")));
    let reply = manager.vote(Bytes::from_static(b"{}")).await.unwrap();
    assert_eq!(&reply[..], b"vote:m1:{}");
    let reply = manager
        .with_timeout(Duration::from_secs(3))
        .append_entries(Bytes::from_static(b"[1]"))
        .await
        .unwrap();
    assert_eq!(&reply[..], b"append:m1:[1]");
    assert_eq!(
        manager.install_snapshot(Bytes::new()).await.unwrap_err(),
        RpcError::FailedPrecondition("no snapshot wanted".into())
    );

    // A worker certificate may not call raft or propose.
    let worker = RaftClient::new(pki.channel(server.addr, Some("w1")));
    let err = worker.vote(Bytes::from_static(b"{}")).await.unwrap_err();
    assert!(matches!(err, RpcError::PermissionDenied(_)), "{err:?}");
    use swarmd_store::Proposer as _;
    let worker_proposer = RemoteProposer::new(pki.channel(server.addr, Some("w1")));
    let err = worker_proposer
        .propose(create_service("a", "web"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProposeError::Unavailable(m) if m.contains("PermissionDenied")),
        "{err:?}"
    );
    assert_eq!(
        mem.applied_index(),
        0,
        "the refused proposal was not applied"
    );

    server.stop().await;
}

#[tokio::test]
async fn client_without_certificate_is_refused_when_client_auth_is_required() {
    let pki = Pki::new();
    let fake = Arc::new(FakeDispatcher::default());
    let server = start(&pki, Services::new().dispatcher(fake), false).await;
    let anonymous = RemoteDispatcher::new(pki.channel(server.addr, None));
    let err = anonymous.heartbeat("s1").await.unwrap_err();
    // TLS 1.3: the server's verdict arrives as an alert after the client's handshake.
    assert!(
        matches!(&err, DispatchError::Unavailable(m) if m.contains("CertificateRequired")),
        "{err:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn joiner_without_certificate_reaches_the_ca_only() {
    let pki = Pki::new();
    let services = Services::new()
        .ca(Arc::new(FakeCa))
        .raft(Arc::new(EchoRaft));
    let server = start(&pki, services, true).await;

    let joiner = CaClient::new(pki.channel(server.addr, None));
    assert_eq!(joiner.root_ca().await.unwrap(), "ROOT");
    let issued = joiner
        .issue_node_certificate(IssueRequest {
            token: Some("good".into()),
            csr_pem: "CSR".into(),
            role_hint: Some(Role::Worker),
            node_id: None,
            addr: String::new(),
            availability: None,
        })
        .await
        .unwrap();
    assert_eq!(issued.cert_pem, "signed(CSR)");
    assert_eq!(issued.node_id, "new-node");
    assert_eq!(issued.role, Role::Worker);
    assert_eq!(issued.raft_id, None);
    let manager = joiner
        .issue_node_certificate(IssueRequest {
            token: Some("good".into()),
            csr_pem: "CSR".into(),
            role_hint: Some(Role::Manager),
            node_id: None,
            addr: "127.0.0.9:4242".into(),
            availability: None,
        })
        .await
        .unwrap();
    assert_eq!(manager.role, Role::Manager);
    assert_eq!(manager.raft_id, Some(4242));
    let err = joiner
        .issue_node_certificate(IssueRequest {
            token: Some("rotated".into()),
            csr_pem: "CSR".into(),
            role_hint: None,
            node_id: None,
            addr: String::new(),
            availability: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err, RpcError::Unauthenticated("bad join token".into()));

    // The same anonymous connection cannot reach raft.
    let raft = RaftClient::new(pki.channel(server.addr, None));
    let err = raft.vote(Bytes::new()).await.unwrap_err();
    assert!(matches!(err, RpcError::Unauthenticated(_)), "{err:?}");

    server.stop().await;
}

#[tokio::test]
async fn unreachable_leader_means_certainly_not_applied() {
    let pki = Pki::new();
    // A port that nothing listens on any more.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    use swarmd_store::Proposer as _;
    let remote = RemoteProposer::new(pki.channel(addr, Some("m1")));
    let err = remote
        .propose(create_service("a", "web"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProposeError::Unavailable(m) if m.contains("cannot reach the leader")),
        "{err:?}"
    );
    let dispatcher = RemoteDispatcher::new(pki.channel(addr, Some("w1")));
    let err = dispatcher.heartbeat("s1").await.unwrap_err();
    assert!(matches!(err, DispatchError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn shutdown_ends_open_sessions_and_returns() {
    let pki = Pki::new();
    let fake = Arc::new(FakeDispatcher::default());
    let server = start(&pki, Services::new().dispatcher(fake), false).await;
    let remote = RemoteDispatcher::new(pki.channel(server.addr, Some("w1")));
    let mut session = remote.session(session_request("w1")).await.unwrap();
    session.next().await.unwrap().unwrap();

    server.stop().await;
    // The agent sees its session end (cleanly or with an error) and would reconnect.
    let end = tokio::time::timeout(BOUND, session.next())
        .await
        .expect("session ends");
    assert!(!matches!(end, Some(Ok(_))), "{end:?}");
}

// --- Authorization before decoding -----------------------------------------------------------

/// A raft service that only counts how often a handler reached it.
#[derive(Default)]
struct CountingRaft(AtomicUsize);

#[async_trait::async_trait]
impl RaftService for CountingRaft {
    async fn append_entries(&self, _: PeerInfo, _: Bytes) -> Result<Bytes, RpcError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(Bytes::new())
    }
    async fn vote(&self, _: PeerInfo, _: Bytes) -> Result<Bytes, RpcError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(Bytes::new())
    }
    async fn install_snapshot(&self, _: PeerInfo, _: Bytes) -> Result<Bytes, RpcError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(Bytes::new())
    }
}

/// [`FakeCa`], counting the certificate requests that reached it.
#[derive(Default)]
struct CountingCa(AtomicUsize);

#[async_trait::async_trait]
impl CaService for CountingCa {
    async fn issue_node_certificate(
        &self,
        peer: PeerInfo,
        req: IssueRequest,
    ) -> Result<IssuedCertificate, RpcError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        FakeCa.issue_node_certificate(peer, req).await
    }
    async fn root_ca(&self, peer: PeerInfo) -> Result<String, RpcError> {
        FakeCa.root_ca(peer).await
    }
}

type RawBody =
    StreamBody<Pin<Box<dyn Stream<Item = Result<Frame<Bytes>, Infallible>> + Send + 'static>>>;

/// A bare HTTP/2 connection over TLS (with `node`'s certificate, or none), to send gRPC
/// frames the typed clients never would: a header announcing more than ever follows.
async fn raw_h2(
    pki: &Pki,
    addr: SocketAddr,
    node: Option<&str>,
) -> hyper::client::conn::http2::SendRequest<RawBody> {
    let mut tls = (*pki.client_config(node)).clone();
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap();
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    send
}

/// A gRPC request to `path` whose body is `chunks` and then nothing more, and no end of
/// stream: a client still "sending".
fn hanging_request(addr: SocketAddr, path: &str, chunks: Vec<Bytes>) -> http::Request<RawBody> {
    let frames = futures::stream::iter(chunks.into_iter().map(|c| Ok(Frame::data(c))));
    let body: Pin<Box<dyn Stream<Item = _> + Send>> =
        Box::pin(frames.chain(futures::stream::pending()));
    http::Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(StreamBody::new(body))
        .unwrap()
}

/// The 5-byte gRPC frame header: uncompressed, `len` bytes of message follow.
fn frame_header(len: u32) -> Bytes {
    let mut h = vec![0u8];
    h.extend_from_slice(&len.to_be_bytes());
    Bytes::from(h)
}

/// The call's gRPC status: from the headers of a trailers-only answer, else the trailers.
async fn grpc_status(resp: http::Response<Incoming>) -> Status {
    if let Some(status) = Status::from_header_map(resp.headers()) {
        return status;
    }
    let body = tokio::time::timeout(BOUND, resp.into_body().collect())
        .await
        .expect("the answer ends")
        .unwrap();
    Status::from_header_map(body.trailers().expect("trailers")).expect("a grpc-status")
}

/// A peer that may not call raft announces a 60 MiB message (under the 64 MiB limit a
/// manager accepts from managers) and then sends only a little of it: it is refused at
/// once, from its certificate alone, and the server never allocates the 60 MiB. Were the
/// body read first, tonic would reserve the 60 MiB and wait for the rest, and no answer
/// would come. (No other test here allocates anywhere near 60 MiB.)
#[tokio::test]
async fn refused_peers_get_their_answer_before_their_message_is_read() {
    let pki = Pki::new();
    let raft = Arc::new(CountingRaft::default());
    let services = Services::new().raft(raft.clone()).ca(Arc::new(FakeCa));
    let server = start(&pki, services, true).await;
    let announced = 60 * 1024 * 1024;
    for (who, path, want) in [
        (None, "/swarmd.v1.Raft/AppendEntries", Code::Unauthenticated),
        (
            None,
            "/swarmd.v1.Raft/InstallSnapshot",
            Code::Unauthenticated,
        ),
        (Some("w1"), "/swarmd.v1.Raft/Vote", Code::PermissionDenied),
        (None, "/swarmd.v1.Raft/NoSuchMethod", Code::Unimplemented),
    ] {
        let mut h2 = raw_h2(&pki, server.addr, who).await;
        let chunks = vec![frame_header(announced), Bytes::from(vec![b'x'; 16 * 1024])];
        let call = h2.send_request(hanging_request(server.addr, path, chunks));
        let resp = tokio::time::timeout(Duration::from_secs(5), call)
            .await
            .unwrap_or_else(|_| panic!("{path} by {who:?}: no answer while the body is open"))
            .unwrap();
        let status = grpc_status(resp).await;
        assert_eq!(status.code(), want, "{path} by {who:?}: {status:?}");
    }
    let largest = LARGEST_ALLOCATION.load(Ordering::Relaxed);
    assert!(
        largest < announced as usize,
        "an allocation of {largest} bytes: the announced message was reserved"
    );

    // A complete large message is refused the same way by the typed client.
    let anonymous = RaftClient::new(pki.channel(server.addr, None));
    let err = anonymous
        .append_entries(Bytes::from(vec![b'x'; 8 * 1024 * 1024]))
        .await
        .unwrap_err();
    assert!(matches!(err, RpcError::Unauthenticated(_)), "{err:?}");

    assert_eq!(raft.0.load(Ordering::SeqCst), 0, "no raft handler ran");
    // The gate lets allowed callers through, with their identity.
    let manager = RaftClient::new(pki.channel(server.addr, Some("m1")));
    manager.vote(Bytes::from_static(b"{}")).await.unwrap();
    assert_eq!(raft.0.load(Ordering::SeqCst), 1);
    server.stop().await;
}

/// The CA's RPCs are open to peers without a certificate, so they decode only small
/// messages: a join request beyond `ca::MAX_MESSAGE_BYTES` is refused before the CA sees
/// it; a realistic one (and a generous one) goes through.
#[tokio::test]
async fn oversize_join_requests_are_refused_before_the_ca_sees_them() {
    let pki = Pki::new();
    let ca = Arc::new(CountingCa::default());
    let server = start(&pki, Services::new().ca(ca.clone()), true).await;
    let joiner = CaClient::new(pki.channel(server.addr, None));
    let request = |csr_len: usize| IssueRequest {
        token: Some("good".into()),
        csr_pem: "C".repeat(csr_len),
        role_hint: Some(Role::Worker),
        node_id: None,
        addr: String::new(),
        availability: None,
    };

    let limit = swarmd_rpc::ca::MAX_MESSAGE_BYTES;
    for csr_len in [1024, limit / 2] {
        joiner
            .issue_node_certificate(request(csr_len))
            .await
            .unwrap();
    }
    assert_eq!(ca.0.load(Ordering::SeqCst), 2);

    // (Not unwrap_err: an accepted request would print a 64 KiB certificate.)
    let Err(err) = joiner.issue_node_certificate(request(limit + 1)).await else {
        panic!("a request over ca::MAX_MESSAGE_BYTES reached the CA");
    };
    assert!(
        matches!(&err, RpcError::InvalidArgument(m) if m.contains("message length too large")),
        "{err:?}"
    );
    // On the wire it is OutOfRange, also when the message is only announced.
    let mut h2 = raw_h2(&pki, server.addr, None).await;
    let chunks = vec![frame_header(4 * 1024 * 1024), Bytes::from_static(b"x")];
    let call = h2.send_request(hanging_request(
        server.addr,
        "/swarmd.v1.Ca/IssueNodeCertificate",
        chunks,
    ));
    let resp = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .expect("an answer while the body is open")
        .unwrap();
    let status = grpc_status(resp).await;
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert_eq!(
        ca.0.load(Ordering::SeqCst),
        2,
        "the CA saw no oversize request"
    );
    server.stop().await;
}

// --- Engines -------------------------------------------------------------------------------

/// The leader's tunnel hub behind the Engines service, as a leading manager serves it; it
/// counts the opens that reached it.
#[derive(Default)]
struct HubEngines {
    hub: TunnelHub<Upstream>,
    opens: AtomicUsize,
}

#[async_trait::async_trait]
impl EnginesService for HubEngines {
    async fn offers(
        &self,
        node_id: &str,
    ) -> Result<futures::stream::BoxStream<'static, String>, TunnelError> {
        Ok(self.hub.subscribe(node_id).boxed())
    }
    async fn accept(
        &self,
        node_id: &str,
        tunnel_id: &str,
        engine: Result<Upstream, String>,
    ) -> Result<(), TunnelError> {
        self.hub
            .accept(node_id, tunnel_id, engine)
            .map_err(|e| TunnelError::Refused(e.to_string()))
    }
    async fn open(&self, target: &str) -> Result<Upstream, TunnelError> {
        self.opens.fetch_add(1, Ordering::SeqCst);
        let node = target
            .strip_prefix("node://")
            .ok_or_else(|| TunnelError::Invalid(target.into()))?;
        self.hub
            .open(node, ACCEPT_WITHIN)
            .await
            .map_err(|e| TunnelError::Unavailable(e.to_string()))
    }
}

/// A worker's certificate may not open tunnels: refused from the certificate alone, with
/// its request still open, and nothing reaches the hub. A manager's open goes through.
#[tokio::test]
async fn a_worker_cannot_open_tunnels_and_is_refused_before_its_frames_are_read() {
    let pki = Pki::new();
    let engines = Arc::new(HubEngines::default());
    let server = start(&pki, Services::new().engines(engines.clone()), false).await;

    let mut h2 = raw_h2(&pki, server.addr, Some("w1")).await;
    let chunks = vec![frame_header(1024 * 1024), Bytes::from_static(b"x")];
    let call = h2.send_request(hanging_request(
        server.addr,
        "/swarmd.v1.Engines/Open",
        chunks,
    ));
    let resp = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .expect("an answer while the body is open")
        .unwrap();
    let status = grpc_status(resp).await;
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    let worker = EnginesClient::new(pki.channel(server.addr, Some("w1")));
    let err = worker.open("node://w1").await.err().expect("refused");
    assert!(matches!(err, TunnelError::Refused(_)), "{err:?}");
    assert_eq!(
        engines.opens.load(Ordering::SeqCst),
        0,
        "no open reached the hub"
    );

    // A manager's open reaches the hub (and fails there: w1 is not subscribed).
    let manager = EnginesClient::new(pki.channel(server.addr, Some("m1")));
    let err = manager
        .open("node://w1")
        .await
        .err()
        .expect("not connected");
    assert_eq!(
        err,
        TunnelError::Unavailable("node w1 is not connected".into())
    );
    assert_eq!(engines.opens.load(Ordering::SeqCst), 1);
    server.stop().await;
}

/// The whole reversed tunnel over real mTLS: w1 subscribes, m1 opens a tunnel to w1, w1 is
/// asked and opens it; only w1 may, and only with the ID it was asked. Bytes cross both
/// ways intact, each end of file is forwarded on its own (half-close), and a node that
/// cannot reach its engine says why.
#[tokio::test]
async fn a_tunnel_is_accepted_only_by_its_node_and_carries_bytes_both_ways() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let pki = Pki::new();
    let engines = Arc::new(HubEngines::default());
    let server = start(&pki, Services::new().engines(engines.clone()), false).await;
    let worker = EnginesClient::new(pki.channel(server.addr, Some("w1")));
    let manager = EnginesClient::new(pki.channel(server.addr, Some("m1")));

    // Answered once the hub holds the subscription.
    let mut offers = worker.offers().await.unwrap();
    assert_eq!(engines.hub.connected(), ["w1"]);
    let opening = tokio::spawn({
        let manager = manager.clone();
        async move { manager.open("node://w1").await }
    });
    let id = tokio::time::timeout(BOUND, offers.next())
        .await
        .expect("w1 is asked")
        .unwrap()
        .unwrap();

    // Another node (m1's certificate), or w1 with an ID it was not asked: refused.
    for (who, tunnel) in [(&manager, id.as_str()), (&worker, "not-asked")] {
        let err = who.accept(tunnel).await.err().expect("refused");
        assert!(
            matches!(&err, TunnelError::Refused(m) if m.contains("was not asked of node")),
            "{err:?}"
        );
    }
    let mut far = worker.accept(&id).await.unwrap();
    let mut near = tokio::time::timeout(BOUND, opening)
        .await
        .expect("the open completes")
        .unwrap()
        .unwrap();
    assert_eq!(engines.hub.awaited(), 0);

    // The far end echoes until its end of file, then closes its side.
    let echo = tokio::spawn(async move {
        let mut got = Vec::new();
        far.read_to_end(&mut got).await.unwrap();
        far.write_all(&got).await.unwrap();
        far.shutdown().await.unwrap();
        got.len()
    });
    let sent: Vec<u8> = (0..700_000u32).map(|i| (i % 253) as u8).collect();
    near.write_all(&sent).await.unwrap();
    near.shutdown().await.unwrap();
    let mut back = Vec::new();
    tokio::time::timeout(BOUND, near.read_to_end(&mut back))
        .await
        .expect("the echo ends")
        .unwrap();
    assert_eq!(echo.await.unwrap(), sent.len());
    assert!(back == sent, "the echo differs ({} bytes back)", back.len());

    // A node without an engine refuses, and the opener learns why.
    let opening = tokio::spawn({
        let manager = manager.clone();
        async move { manager.open("node://w1").await }
    });
    let id = offers.next().await.unwrap().unwrap();
    worker.refuse(&id, "no Docker Engine here").await.unwrap();
    let err = opening.await.unwrap().err().expect("refused");
    assert!(
        matches!(&err, TunnelError::Unavailable(m) if m.contains("no Docker Engine here")),
        "{err:?}"
    );
    server.stop().await;
}
