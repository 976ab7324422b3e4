//! Role changes the swarm records for this node (`node promote`/`demote`): watched from
//! the sessions, and taken on by restarting the membership in the new role.

use std::sync::{Arc, Weak};
use std::time::Duration;

use swarmd_types::Role;
use swarmd_types::dispatcher::SessionMessage;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::cluster;

use super::assembly::RaftStart;
use super::{NodePhase, NodeState, SwarmNode, swarm_dir, write_state};

impl SwarmNode {
    /// Takes on the role the swarm now records for this node (`node promote/demote`):
    /// renews the certificate for it, restarts this node's components in the new role
    /// (the tasks keep running and are re-adopted) and, for a demoted manager, drops its
    /// Raft data.
    ///
    /// Boxed: it restarts the membership whose watcher calls it, a cycle an `async fn`
    /// cannot express.
    fn change_role(
        self: Arc<Self>,
        role: Role,
        managers: Vec<String>,
    ) -> futures::future::BoxFuture<'static, ()> {
        Box::pin(async move { self.change_role_now(role, managers).await })
    }

    async fn change_role_now(&self, role: Role, managers: Vec<String>) {
        let _g = self.lifecycle.lock().await;
        let Some(active) = self.active() else { return };
        if active.state.role == role {
            return;
        }
        tracing::info!(
            from = active.state.role.as_str(),
            to = role.as_str(),
            "the swarm changed this node's role"
        );
        let dir = swarm_dir(&self.config.data_root);
        let own = active.state.advertise_addr.clone();
        let others: Vec<String> = managers.iter().filter(|a| **a != own).cloned().collect();
        let granted = {
            let mut tries = 0;
            loop {
                tries += 1;
                let certs = match self.seal.load(&dir) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::error!(error = %e, "role change: no certificate");
                        return;
                    }
                };
                match cluster::renew_certificate(&certs, &others, &own).await {
                    // The manager answering may not have applied the change yet.
                    Ok(g) if g.role == role => break g,
                    Ok(_) => tracing::debug!("the CA does not see the new role yet"),
                    Err(e) => tracing::warn!(error = %e, "role change: renewing the certificate"),
                }
                if tries >= 60 {
                    tracing::error!("role change abandoned: no certificate for the new role");
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        };
        self.stop_active(&active).await;
        if role == Role::Worker {
            let _ = std::fs::remove_dir_all(dir.join("raft"));
        }
        let state = NodeState {
            role,
            raft_id: granted.raft_id.unwrap_or(0),
            manager_addrs: if managers.is_empty() {
                active.state.manager_addrs.clone()
            } else {
                managers
            },
            ..active.state.clone()
        };
        let restarted = async {
            self.seal.save(&dir, &granted.certs)?;
            write_state(&dir, &state)?;
            self.activate(state.clone(), RaftStart::Existing).await
        }
        .await;
        match restarted {
            Ok(a) => {
                self.set_phase(NodePhase::Active(a));
                tracing::info!(role = role.as_str(), "now running as {}", role.as_str());
            }
            Err(e) => {
                self.set_phase(NodePhase::Inactive);
                tracing::error!(error = %format!("{e:#}"), "could not restart in the new role; restart swarmd to retry");
            }
        }
    }
}

/// Watches the node as the managers record it and switches this node's role when it
/// differs from the one it runs (`node promote/demote`). Ends with the membership.
pub(super) async fn watch_role(
    node: Weak<SwarmNode>,
    mut latest: watch::Receiver<Option<SessionMessage>>,
    running: Role,
    cancel: CancellationToken,
) {
    loop {
        let wanted = latest
            .borrow_and_update()
            .as_ref()
            .map(|m| (m.node.role, m.managers.clone()));
        if let Some((role, managers)) = wanted
            && role != running
        {
            let Some(node) = node.upgrade() else { return };
            // Detached: the change stops this membership, and with it this watcher.
            tokio::spawn(async move { node.change_role(role, managers).await });
            return;
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = latest.changed() => if r.is_err() { return },
        }
    }
}
