//! Keeping this node's certificate valid: renewed before it expires, and at once when a
//! session asks the node to trust other roots (a root rotation).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use swarmd_types::dispatcher::SessionMessage;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::autolock::SealState;
use crate::cluster;
use crate::follow::FollowingDispatcher;

use super::NodeState;

/// Renews this node's certificate before it expires (at a random point between half and
/// four fifths of its lifetime, as swarmkit does), from any manager, and swaps it into
/// every TLS config in place. A renewal that comes back with another role is left to
/// [`watch_role`](super::role::watch_role), which restarts the node in it.
pub(super) async fn renew_certificates(
    dir: PathBuf,
    seal: SealState,
    live: swarmd_pki::LiveCert,
    follow: Arc<FollowingDispatcher>,
    state: NodeState,
    cancel: CancellationToken,
) {
    let mut retry = Duration::from_secs(1);
    let mut latest = follow.latest();
    // The roots a session asked for that this node last renewed for: asked again (a
    // session from a manager that has not caught up), it waits for the next change.
    let mut renewed_for: Option<String> = None;
    loop {
        let certs = match seal.load(&dir) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "certificate renewal: no certificate");
                return;
            }
        };
        let due = match swarmd_pki::parse_node_identity_pem(&certs.cert_pem) {
            Ok(id) => id.renewal_deadline(swarmd_pki::RenewalJitter::random()),
            Err(e) => {
                tracing::error!(error = %e, "certificate renewal: unreadable certificate");
                return;
            }
        };
        let wait = due
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default();
        tracing::debug!(?wait, "next certificate renewal");
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
            roots = other_roots(&mut latest, &certs.root_pem, renewed_for.as_deref()) => {
                tracing::info!("the swarm's root CA changed: renewing the certificate");
                renewed_for = Some(roots);
            }
        }
        let mut managers = follow.managers();
        if managers.is_empty() {
            managers = state.manager_addrs.clone();
        }
        match cluster::renew_certificate(&certs, &managers, &state.advertise_addr).await {
            Ok(g) if g.role == state.role => {
                let swapped = seal.save(&dir, &g.certs).and_then(|_| {
                    Ok(live.replace(&g.certs.cert_pem, &g.certs.key_pem, &g.certs.root_pem)?)
                });
                match swapped {
                    Ok(()) => {
                        retry = Duration::from_secs(1);
                        tracing::info!("node certificate renewed");
                        continue;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "could not install the renewed certificate")
                    }
                }
            }
            Ok(g) => {
                tracing::info!(
                    role = g.role.as_str(),
                    "the swarm records another role; waiting for the role change"
                );
            }
            Err(e) => tracing::warn!(error = %e, "certificate renewal failed; retrying"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(retry) => {}
        }
        retry = (retry * 2).min(Duration::from_secs(30));
    }
}

/// Waits until a session asks this node to trust roots other than `mine` (a root rotation
/// started or ended) and returns them; `skip` is a request already answered. Pends forever
/// once sessions end.
async fn other_roots(
    latest: &mut watch::Receiver<Option<SessionMessage>>,
    mine: &str,
    skip: Option<&str>,
) -> String {
    loop {
        let wanted = latest
            .borrow_and_update()
            .as_ref()
            .and_then(|m| m.trust_roots.clone());
        if let Some(roots) = wanted
            && roots != mine
            && Some(roots.as_str()) != skip
        {
            return roots;
        }
        if latest.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}
