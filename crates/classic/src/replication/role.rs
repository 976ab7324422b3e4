//! The manager's role, shared by the election task (the one writer), the API (`/info`,
//! forwarding) and the rescheduler's gate.

use tokio::sync::watch;

use crate::view::ManagerRole;

/// A replica that knows no primary yet (`docker info` shows `Primary:` empty, as classic
/// did before its first election result).
pub fn unknown_primary() -> ManagerRole {
    ManagerRole::Replica {
        primary: String::new(),
    }
}

/// The role of a manager without `--replication`: primary, for good.
pub fn standalone() -> watch::Receiver<ManagerRole> {
    watch::channel(ManagerRole::Primary).1
}

/// Sets the role, logging classic's lines for a change (`Leader Election: Cluster
/// leadership acquired` / `lost`, `New leader elected: ADDR`).
pub fn set(role: &watch::Sender<ManagerRole>, me: &str, new: ManagerRole) {
    let old = role.borrow().clone();
    if old == new {
        return;
    }
    match (&old, &new) {
        (_, ManagerRole::Primary) => {
            tracing::info!(
                advertise = me,
                "Leader Election: Cluster leadership acquired"
            );
            tracing::info!(primary = me, "New leader elected: {me}");
        }
        (ManagerRole::Primary, ManagerRole::Replica { .. }) => {
            tracing::info!(advertise = me, "Leader Election: Cluster leadership lost");
        }
        _ => {}
    }
    if let ManagerRole::Replica { primary } = &new
        && !primary.is_empty()
    {
        tracing::info!(primary = %primary, "New leader elected: {primary}");
    }
    role.send_replace(new);
}
