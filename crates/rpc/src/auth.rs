//! Who is calling, and may they: the per-RPC authorization hook.
//!
//! The server takes the client certificate chain from the TLS session of the connection
//! an RPC arrived on and hands it, with the RPC's [`RpcKind`], to an [`Authorizer`] before
//! the handler runs. The authorizer belongs to the composition root; the pki crate's
//! certificate parsing plugs in through [`RoleAuthorizer`] (a closure from certificate
//! chain to [`PeerIdentity`]), so this crate never parses certificates itself and does
//! not depend on the pki crate.

use std::fmt;
use std::sync::Arc;

use rustls_pki_types::CertificateDer;
use swarmd_types::Role;
use tonic::Status;

/// Every RPC the cluster port serves, so an authorizer can decide per method (a worker may
/// heartbeat but not append raft entries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RpcKind {
    DispatcherSession,
    DispatcherHeartbeat,
    DispatcherAssignments,
    DispatcherUpdateTaskStatus,
    DispatcherLogSubscriptions,
    DispatcherPublishLogs,
    DispatcherSubscribeLogs,
    RaftAppendEntries,
    RaftVote,
    RaftInstallSnapshot,
    /// Certificate issuing. Callable without a certificate (the join token authenticates);
    /// the CA service decides the role from the token, or from the caller's certificate
    /// when renewing.
    CaIssueNodeCertificate,
    /// The root CA certificate; public by design (joiners pin it by the token's digest).
    CaGetRootCa,
    ControlPropose,
    ControlReadIndex,
    /// An agent's standing request for tunnels to its engine (its own node only).
    EnginesOffers,
    /// An agent opening a tunnel it was asked for (its own node only).
    EnginesAccept,
    /// A stream to any node's engine, or to the leader's pool API: managers only.
    EnginesOpen,
}

impl RpcKind {
    /// Every RPC, for lookups by path.
    pub const ALL: [RpcKind; 17] = [
        RpcKind::DispatcherSession,
        RpcKind::DispatcherHeartbeat,
        RpcKind::DispatcherAssignments,
        RpcKind::DispatcherUpdateTaskStatus,
        RpcKind::DispatcherLogSubscriptions,
        RpcKind::DispatcherPublishLogs,
        RpcKind::DispatcherSubscribeLogs,
        RpcKind::RaftAppendEntries,
        RpcKind::RaftVote,
        RpcKind::RaftInstallSnapshot,
        RpcKind::CaIssueNodeCertificate,
        RpcKind::CaGetRootCa,
        RpcKind::ControlPropose,
        RpcKind::ControlReadIndex,
        RpcKind::EnginesOffers,
        RpcKind::EnginesAccept,
        RpcKind::EnginesOpen,
    ];

    /// The RPC a request path (`/swarmd.v1.Raft/Vote`) names; `None` for anything else.
    /// The server authorizes by this before reading a request body.
    pub fn from_path(path: &str) -> Option<RpcKind> {
        RpcKind::ALL.into_iter().find(|rpc| rpc.path() == path)
    }

    /// The gRPC method path, for logs and error messages.
    pub fn path(self) -> &'static str {
        match self {
            RpcKind::DispatcherSession => "/swarmd.v1.Dispatcher/Session",
            RpcKind::DispatcherHeartbeat => "/swarmd.v1.Dispatcher/Heartbeat",
            RpcKind::DispatcherAssignments => "/swarmd.v1.Dispatcher/Assignments",
            RpcKind::DispatcherUpdateTaskStatus => "/swarmd.v1.Dispatcher/UpdateTaskStatus",
            RpcKind::DispatcherLogSubscriptions => "/swarmd.v1.Dispatcher/LogSubscriptions",
            RpcKind::DispatcherPublishLogs => "/swarmd.v1.Dispatcher/PublishLogs",
            RpcKind::DispatcherSubscribeLogs => "/swarmd.v1.Dispatcher/SubscribeLogs",
            RpcKind::RaftAppendEntries => "/swarmd.v1.Raft/AppendEntries",
            RpcKind::RaftVote => "/swarmd.v1.Raft/Vote",
            RpcKind::RaftInstallSnapshot => "/swarmd.v1.Raft/InstallSnapshot",
            RpcKind::CaIssueNodeCertificate => "/swarmd.v1.Ca/IssueNodeCertificate",
            RpcKind::CaGetRootCa => "/swarmd.v1.Ca/GetRootCa",
            RpcKind::ControlPropose => "/swarmd.v1.Control/Propose",
            RpcKind::ControlReadIndex => "/swarmd.v1.Control/ReadIndex",
            RpcKind::EnginesOffers => "/swarmd.v1.Engines/Offers",
            RpcKind::EnginesAccept => "/swarmd.v1.Engines/Accept",
            RpcKind::EnginesOpen => "/swarmd.v1.Engines/Open",
        }
    }

    /// The least a caller needs for this RPC under swarm's rules (the policy of
    /// [`RoleAuthorizer`]).
    pub fn required(self) -> Requirement {
        match self {
            RpcKind::CaIssueNodeCertificate | RpcKind::CaGetRootCa => Requirement::Anyone,
            RpcKind::DispatcherSession
            | RpcKind::DispatcherHeartbeat
            | RpcKind::DispatcherAssignments
            | RpcKind::DispatcherUpdateTaskStatus
            | RpcKind::DispatcherLogSubscriptions
            | RpcKind::DispatcherPublishLogs
            | RpcKind::EnginesOffers
            | RpcKind::EnginesAccept => Requirement::AnyNode,
            RpcKind::DispatcherSubscribeLogs
            | RpcKind::RaftAppendEntries
            | RpcKind::RaftVote
            | RpcKind::RaftInstallSnapshot
            | RpcKind::ControlPropose
            | RpcKind::ControlReadIndex
            | RpcKind::EnginesOpen => Requirement::Manager,
        }
    }
}

impl fmt::Display for RpcKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.path())
    }
}

/// What an RPC asks of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// No certificate needed.
    Anyone,
    /// A valid node certificate of this swarm, worker or manager.
    AnyNode,
    /// A manager certificate.
    Manager,
}

/// A caller's identity as read from its certificate: CN = node ID, OU = role, O = cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    pub node_id: String,
    pub role: Role,
    pub cluster_id: String,
}

/// What a handler learns about its caller, as the authorizer established it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerInfo {
    /// `None`: an unauthenticated caller the authorizer let through (a joiner).
    pub identity: Option<PeerIdentity>,
}

impl PeerInfo {
    pub fn anonymous() -> Self {
        PeerInfo { identity: None }
    }
    pub fn node_id(&self) -> Option<&str> {
        self.identity.as_ref().map(|i| i.node_id.as_str())
    }
    pub fn role(&self) -> Option<Role> {
        self.identity.as_ref().map(|i| i.role)
    }
}

/// Decides whether a caller may make an RPC.
///
/// `peer` is the client's certificate chain (leaf first) as the TLS handshake verified it
/// against the server's `rustls::ServerConfig`; `None` when the client presented none
/// (possible only if that config makes client auth optional). Return `PermissionDenied`
/// (or `Unauthenticated`) to refuse; the handler then never runs.
pub trait Authorizer: Send + Sync + 'static {
    fn authorize(
        &self,
        rpc: RpcKind,
        peer: Option<&[CertificateDer<'static>]>,
    ) -> Result<PeerInfo, Status>;
}

impl<A: Authorizer + ?Sized> Authorizer for Arc<A> {
    fn authorize(
        &self,
        rpc: RpcKind,
        peer: Option<&[CertificateDer<'static>]>,
    ) -> Result<PeerInfo, Status> {
        (**self).authorize(rpc, peer)
    }
}

/// Swarm's policy, given a way to read identities from certificates: each RPC requires
/// what [`RpcKind::required`] says, and the identity read from the chain becomes the
/// handler's [`PeerInfo`].
///
/// `identify` is where the pki crate plugs in (CN/OU/O of the leaf, checked against the
/// cluster and against removed nodes); returning `None` means "not a node certificate of
/// this swarm".
pub struct RoleAuthorizer<F> {
    identify: F,
}

impl<F> RoleAuthorizer<F>
where
    F: Fn(&[CertificateDer<'static>]) -> Option<PeerIdentity> + Send + Sync + 'static,
{
    pub fn new(identify: F) -> Self {
        RoleAuthorizer { identify }
    }
}

impl<F> Authorizer for RoleAuthorizer<F>
where
    F: Fn(&[CertificateDer<'static>]) -> Option<PeerIdentity> + Send + Sync + 'static,
{
    fn authorize(
        &self,
        rpc: RpcKind,
        peer: Option<&[CertificateDer<'static>]>,
    ) -> Result<PeerInfo, Status> {
        let identity = peer.filter(|c| !c.is_empty()).and_then(&self.identify);
        match (rpc.required(), identity) {
            (Requirement::Anyone, identity) => Ok(PeerInfo { identity }),
            (_, None) => Err(Status::unauthenticated(format!(
                "{rpc} requires a node certificate of this swarm"
            ))),
            (Requirement::AnyNode, Some(identity)) => Ok(PeerInfo {
                identity: Some(identity),
            }),
            (Requirement::Manager, Some(identity)) if identity.role == Role::Manager => {
                Ok(PeerInfo {
                    identity: Some(identity),
                })
            }
            (Requirement::Manager, Some(identity)) => Err(Status::permission_denied(format!(
                "{rpc} is for managers; node {} has a {} certificate",
                identity.node_id,
                identity.role.as_str()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authz() -> RoleAuthorizer<impl Fn(&[CertificateDer<'static>]) -> Option<PeerIdentity>> {
        // The fake "certificate" is the role name in its DER bytes.
        RoleAuthorizer::new(|chain: &[CertificateDer<'static>]| {
            let role = match chain[0].as_ref() {
                b"manager" => Role::Manager,
                b"worker" => Role::Worker,
                _ => return None,
            };
            Some(PeerIdentity {
                node_id: "n1".into(),
                role,
                cluster_id: "c".into(),
            })
        })
    }

    #[test]
    fn worker_cannot_call_manager_rpcs_but_can_use_the_dispatcher() {
        let a = authz();
        let worker = [CertificateDer::from(b"worker".to_vec())];
        let manager = [CertificateDer::from(b"manager".to_vec())];
        for rpc in [
            RpcKind::RaftAppendEntries,
            RpcKind::RaftVote,
            RpcKind::RaftInstallSnapshot,
            RpcKind::ControlPropose,
            RpcKind::EnginesOpen,
        ] {
            let err = a.authorize(rpc, Some(&worker)).unwrap_err();
            assert_eq!(err.code(), tonic::Code::PermissionDenied, "{rpc}");
            assert!(a.authorize(rpc, Some(&manager)).is_ok(), "{rpc}");
        }
        let info = a
            .authorize(RpcKind::DispatcherHeartbeat, Some(&worker))
            .unwrap();
        assert_eq!(info.node_id(), Some("n1"));
        assert_eq!(info.role(), Some(Role::Worker));
    }

    /// The gate answers a path it has no `RpcKind` for with Unimplemented, so a method
    /// added to the proto but not here would be unreachable: every one must have a kind.
    #[test]
    fn every_method_of_the_proto_has_an_rpc_kind() {
        let proto = include_str!("../../../proto/swarmd.proto");
        let mut service = None;
        let mut paths = Vec::new();
        for line in proto.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("service ") {
                service = rest.split_whitespace().next();
            } else if let Some(rest) = line.strip_prefix("rpc ") {
                let method = rest.split('(').next().unwrap_or_default().trim();
                let service = service.expect("an rpc inside a service");
                paths.push(format!("/swarmd.v1.{service}/{method}"));
            }
        }
        for path in &paths {
            assert!(RpcKind::from_path(path).is_some(), "{path} has no RpcKind");
        }
        assert_eq!(paths.len(), RpcKind::ALL.len(), "{paths:?}");
    }

    #[test]
    fn every_rpc_is_found_by_its_path_and_only_the_ca_is_public() {
        for rpc in RpcKind::ALL {
            assert_eq!(RpcKind::from_path(rpc.path()), Some(rpc));
            // Anonymous callers reach only the Ca service, whose messages the server caps
            // at `ca::MAX_MESSAGE_BYTES`.
            assert_eq!(
                rpc.required() == Requirement::Anyone,
                rpc.path().starts_with("/swarmd.v1.Ca/"),
                "{rpc}"
            );
        }
        assert_eq!(RpcKind::from_path("/swarmd.v1.Raft/Nope"), None);
        assert_eq!(RpcKind::from_path("/swarmd.v1.Raft/Vote/"), None);
    }

    #[test]
    fn no_or_foreign_certificate_only_reaches_the_public_ca_rpcs() {
        let a = authz();
        let foreign = [CertificateDer::from(b"other".to_vec())];
        for peer in [None, Some(&foreign[..])] {
            let err = a.authorize(RpcKind::DispatcherSession, peer).unwrap_err();
            assert_eq!(err.code(), tonic::Code::Unauthenticated);
            assert_eq!(
                a.authorize(RpcKind::CaGetRootCa, peer).unwrap(),
                PeerInfo::anonymous()
            );
            assert!(a.authorize(RpcKind::CaIssueNodeCertificate, peer).is_ok());
        }
    }
}
