//! The operations that move a node between phases: `swarm init` (and
//! `--force-new-cluster`), `swarm join`, `swarm unlock`, `swarm leave`, and why each fails.

use std::time::Duration;

use swarmd_agent::Executor;
use swarmd_crypto::UnlockKey;
use swarmd_manager::control::swarm_options::InitRequestOptions;
use swarmd_types::{Role, RootCa, ids};

use crate::cluster;

use super::assembly::RaftStart;
use super::{ManagerParts, NodePhase, NodeState, SwarmNode, swarm_dir, write_state};

/// How long a joining manager waits to be added to Raft and catch up before `swarm join`
/// reports that it goes on in the background (as Docker does).
const MANAGER_JOIN_WAIT: Duration = Duration::from_secs(60);

impl SwarmNode {
    /// `swarm unlock`: opens the node's keys with `key` and starts the membership.
    pub async fn unlock(&self, key: &str) -> Result<(), UnlockError> {
        let _g = self.lifecycle.lock().await;
        let Some(state) = self.locked() else {
            return Err(UnlockError::NotLocked);
        };
        let key = UnlockKey::parse(key).map_err(|e| UnlockError::Invalid(e.to_string()))?;
        let dir = swarm_dir(&self.config.data_root);
        match cluster::NodeCerts::load(&dir, Some(&key)) {
            Ok(_) => {}
            Err(cluster::KeysError::WrongKey) => return Err(UnlockError::WrongKey),
            Err(e) => return Err(UnlockError::Other(e.to_string())),
        }
        self.seal.set(Some(key));
        let active = self
            .activate(state, RaftStart::Existing)
            .await
            .map_err(|e| UnlockError::Other(format!("{e:#}")))?;
        self.set_phase(NodePhase::Active(active));
        tracing::info!("swarm unlocked");
        Ok(())
    }

    /// `swarm init`: a one-manager swarm with this node as leader.
    pub async fn init(
        &self,
        listen_addr: String,
        advertise_addr: String,
        spec: swarmd_types::models::SwarmSpec,
        options: InitRequestOptions,
    ) -> Result<String, InitError> {
        let _g = self.lifecycle.lock().await;
        // A locked member is still one: `init`/`join` would wipe its state.
        if !matches!(self.phase(), NodePhase::Inactive) {
            return Err(InitError::AlreadyInSwarm);
        }
        let options = options.check().map_err(InitError::Invalid)?;
        swarmd_manager::control::validate_swarm_spec(&spec)
            .map_err(|e| InitError::Invalid(e.to_string()))?;
        // Checked before anything is created, so a refused init leaves no swarm behind.
        let root = init_root(&spec).map_err(|e| InitError::Invalid(e.to_string()))?;
        let force_rotate = swarmd_manager::control::ca_config::force_rotate(&spec);
        let state = NodeState {
            node_id: ids::new_id(),
            listen_addr,
            advertise_addr: advertise_addr.clone(),
            role: Role::Manager,
            manager_addrs: vec![advertise_addr],
            raft_id: new_raft_id(),
        };
        let dir = swarm_dir(&self.config.data_root);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| InitError::Other(e.to_string()))?;
        let cert_expiry = spec
            .ca_config
            .as_ref()
            .and_then(|c| c.node_cert_expiry)
            .filter(|e| *e > 0)
            .map(|e| Duration::from_nanos(e as u64))
            .unwrap_or(swarmd_manager::ca::DEFAULT_CERT_EXPIRY);
        let active = match self
            .activate(
                state.clone(),
                RaftStart::Init {
                    cert_expiry,
                    root: root.map(Box::new),
                    force_rotate,
                    options,
                },
            )
            .await
        {
            Ok(a) => a,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(InitError::Other(format!("{e:#}")));
            }
        };
        // Apply the requested spec over the defaults set at init.
        if let (true, Some(m)) = (spec != Default::default(), active.mgr.as_ref()) {
            let (version, current) = m.store.view(|t| {
                t.cluster()
                    .map(|c| (c.meta.version, c.spec.clone()))
                    .unwrap_or_default()
            });
            let merged = swarmd_manager::control::swarm_spec::merge_swarm_spec(current, spec);
            if let Err(e) = m
                .control()
                .update_swarm(version, merged, false, false, false)
                .await
            {
                tracing::warn!(error = %e, "could not apply the init spec");
            }
        }
        // As Docker's init waits for its node to be ready: return once this node's own
        // session has registered it, so a `node update` right after init does not race the
        // dispatcher's first status write ("update out of sequence").
        if let Some(m) = active.mgr.as_ref() {
            wait_node_ready(&m.store, &state.node_id, INIT_READY_WAIT).await;
        }
        write_state(&dir, &state).map_err(|e| InitError::Other(e.to_string()))?;
        self.set_phase(NodePhase::Active(active));
        // `swarm init --autolock`: sealed before the CLI asks for the key.
        self.reconcile_seal();
        tracing::info!(node.id = %state.node_id, "swarm initialized");
        Ok(state.node_id)
    }

    /// `swarm init --force-new-cluster` on a manager: keeps everything the swarm stored
    /// (services, tasks, nodes, the CA and tokens) and starts a new Raft cluster with this
    /// manager alone, for a swarm that lost its quorum. The other managers are recorded as
    /// workers; they can be promoted again once they rejoin.
    pub async fn force_new_cluster(&self) -> Result<String, InitError> {
        let _g = self.lifecycle.lock().await;
        let Some(active) = self.active() else {
            return Err(InitError::NotInSwarm);
        };
        let Some(m) = &active.mgr else {
            return Err(InitError::Other(
                "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.".into(),
            ));
        };
        let tables = m.store.memory().snapshot().tables;
        if tables.cluster().is_none() {
            return Err(InitError::Other(
                "this manager holds no swarm state to keep".into(),
            ));
        }
        tracing::warn!("forcing a new one-manager cluster from this manager's state");
        self.stop_active(&active).await;
        let dir = swarm_dir(&self.config.data_root);
        let old_raft = dir.join("raft");
        let kept = dir.join("raft.before-force-new-cluster");
        let _ = std::fs::remove_dir_all(&kept);
        std::fs::rename(&old_raft, &kept).map_err(|e| InitError::Other(e.to_string()))?;
        let state = NodeState {
            raft_id: new_raft_id(),
            manager_addrs: vec![active.state.advertise_addr.clone()],
            ..active.state.clone()
        };
        match self
            .activate(state.clone(), RaftStart::ForceNew(Box::new(tables)))
            .await
        {
            Ok(a) => {
                write_state(&dir, &state).map_err(|e| InitError::Other(e.to_string()))?;
                let _ = std::fs::remove_dir_all(&kept);
                self.set_phase(NodePhase::Active(a));
                tracing::info!(raft_id = state.raft_id, "new cluster formed");
                Ok(state.node_id)
            }
            Err(e) => {
                // Put the old Raft data back: a restart finds the swarm as it was.
                let _ = std::fs::remove_dir_all(&old_raft);
                let _ = std::fs::rename(&kept, &old_raft);
                self.set_phase(NodePhase::Inactive);
                Err(InitError::Other(format!(
                    "{e:#}; restart swarmd to resume the old cluster"
                )))
            }
        }
    }

    /// `swarm join`: gets a certificate from the manager at `remote` (pinning its CA by
    /// the token) and starts the agent against it; a manager also starts Raft and waits
    /// until the leader has added it and it has caught up. Leaves the node as it was when
    /// the join is refused.
    pub async fn join(
        &self,
        token: &str,
        remote: &str,
        listen_addr: String,
        advertise_addr: String,
        availability: Option<String>,
    ) -> Result<(), JoinFailure> {
        let _g = self.lifecycle.lock().await;
        if !matches!(self.phase(), NodePhase::Inactive) {
            return Err(JoinFailure::AlreadyInSwarm);
        }
        // Checked here as moby's node runner does, before the manager is asked.
        swarmd_manager::control::swarm_options::availability(availability.as_deref())
            .map_err(JoinFailure::Invalid)?;
        let granted = cluster::request_certificate(token, remote, &advertise_addr, availability)
            .await
            .map_err(JoinFailure::Join)?;
        let dir = swarm_dir(&self.config.data_root);
        let _ = std::fs::remove_dir_all(&dir);
        let node_id = granted.node_id.clone();
        let state = NodeState {
            node_id: node_id.clone(),
            listen_addr,
            advertise_addr,
            role: granted.role,
            manager_addrs: vec![remote.to_string()],
            raft_id: granted.raft_id.unwrap_or(0),
        };
        let started = async {
            std::fs::create_dir_all(&dir)?;
            self.seal.set(None);
            self.seal.save(&dir, &granted.certs)?;
            let active = self.activate(state.clone(), RaftStart::Existing).await?;
            write_state(&dir, &state)?;
            anyhow::Ok(active)
        }
        .await;
        let active = match started {
            Ok(active) => active,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(JoinFailure::Other(format!("{e:#}")));
            }
        };
        self.set_phase(NodePhase::Active(active.clone()));
        tracing::info!(node.id = %node_id, manager = %remote, role = granted.role.as_str(), "joined the swarm");
        if let Some(m) = &active.mgr {
            wait_caught_up(m, &node_id, MANAGER_JOIN_WAIT)
                .await
                .map_err(JoinFailure::StillJoining)?;
        }
        Ok(())
    }

    /// `swarm leave`: stops the tasks, the agent, the manager and Raft, and forgets the
    /// swarm's state.
    pub async fn leave(&self, force: bool) -> Result<(), LeaveError> {
        let _g = self.lifecycle.lock().await;
        if self.locked().is_some() {
            if !force {
                return Err(LeaveError::Manager(
                    "Swarm is encrypted and locked. Please unlock it first or use `--force` to ignore this message.".into(),
                ));
            }
            self.set_phase(NodePhase::Inactive);
            self.seal.set(None);
            let _ = std::fs::remove_dir_all(swarm_dir(&self.config.data_root));
            tracing::info!("left the swarm (it was locked)");
            return Ok(());
        }
        let Some(active) = self.active() else {
            return Err(LeaveError::NotInSwarm);
        };
        if !force && let Some(m) = &active.mgr {
            let (reachable, unreachable) = m.store.view(|t| {
                let managers = t.nodes.values().filter(|n| n.role == Role::Manager);
                managers.fold((0, 0), |(r, u), n| {
                    if n.status.state == swarmd_types::NodeState::Ready {
                        (r + 1, u)
                    } else {
                        (r, u + 1)
                    }
                })
            });
            return Err(LeaveError::Manager(leave_refusal(reachable, unreachable)));
        }
        self.stop_active(&active).await;
        let executor = active.agent.executor().clone();
        remove_all_tasks(executor.as_ref()).await;
        self.set_phase(NodePhase::Inactive);
        self.seal.set(None);
        let _ = std::fs::remove_dir_all(swarm_dir(&self.config.data_root));
        tracing::info!("left the swarm");
        Ok(())
    }
}

/// Docker's refusal of `swarm leave` on a manager, with its quorum arithmetic.
fn leave_refusal(reachable: usize, unreachable: usize) -> String {
    let mut msg = String::from(
        "You are attempting to leave the swarm on a node that is participating as a manager. ",
    );
    if reachable.saturating_sub(2) <= unreachable {
        if reachable == 1 && unreachable == 0 {
            msg.push_str("Removing the last manager erases all current state of the swarm. Use `--force` to ignore this message. ");
            return msg;
        }
        msg.push_str(&format!(
            "Removing this node leaves {} managers out of {}. Without a Raft quorum your swarm will be inaccessible. ",
            reachable.saturating_sub(1),
            reachable + unreachable
        ));
    }
    msg.push_str("The only way to restore a swarm that has lost consensus is to reinitialize it with `--force-new-cluster`. Use `--force` to suppress this message.");
    msg
}

/// A fresh Raft member ID for the first manager (the CA picks them for the others).
fn new_raft_id() -> u64 {
    loop {
        let id: u64 = rand::random();
        if id != 0 {
            return id;
        }
    }
}

/// Waits until this new manager is a Raft voter and its replica holds the swarm and
/// itself.
async fn wait_caught_up(m: &ManagerParts, node_id: &str, limit: Duration) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + limit;
    let me = m.raft.node_id();
    loop {
        let voter = m.raft.members().iter().any(|(id, _, v)| *id == me && *v);
        let has_state = m
            .store
            .view(|t| t.cluster().is_some() && t.nodes.contains_key(node_id));
        if voter && has_state {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "not yet added to the managers' raft cluster after {limit:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Shuts down and removes every task the executor holds (after leaving a swarm).
/// Stops and removes every task of the executor, all at once: each stop may wait out a
/// grace period, and a node leaving with many tasks should wait for one, not their sum.
async fn remove_all_tasks(executor: &dyn Executor) {
    let ids = executor.list_tasks().await.unwrap_or_default();
    futures::future::join_all(ids.iter().map(|id| async move {
        let rt = swarmd_agent::TaskRuntime::for_existing(id, "127.0.0.1");
        let c = executor.controller(&rt);
        if let Err(e) = c.shutdown(Duration::from_secs(10)).await {
            tracing::warn!(task = %id, error = %e, "stopping task on leave");
        }
        if let Err(e) = c.remove().await {
            tracing::warn!(task = %id, error = %e, "removing task on leave");
        }
    }))
    .await;
}

/// The root CA an init spec gives (`SigningCACert` and `SigningCAKey`), checked as a
/// rotation to it would be: a new swarm takes it as its root at once. `None` when the spec
/// gives none; external CAs and a certificate without its key are refused.
fn init_root(
    spec: &swarmd_types::models::SwarmSpec,
) -> Result<Option<swarmd_pki::RootCaMaterial>, swarmd_manager::control::ControlError> {
    use swarmd_manager::control::ca_config::{CaRequest, plan_ca_change};
    // Against an empty root: any certificate given is a new one.
    let none = RootCa::default();
    let last_forced = swarmd_manager::control::ca_config::force_rotate(spec);
    match plan_ca_change(&none, last_forced, spec.ca_config.as_ref())? {
        CaRequest::NewRoot(root) => Ok(root),
        CaRequest::Keep => Ok(None),
    }
}

/// Why `swarm init` failed.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("already part of a swarm")]
    AlreadyInSwarm,
    #[error("not part of a swarm")]
    NotInSwarm,
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Other(String),
}

/// Why `swarm join` failed.
#[derive(Debug, thiserror::Error)]
pub enum JoinFailure {
    #[error("already part of a swarm")]
    AlreadyInSwarm,
    #[error(transparent)]
    Join(cluster::JoinError),
    /// Joined, but Raft has not taken this manager in yet; it goes on in the background.
    #[error("{0}")]
    StillJoining(String),
    /// A request field Docker refuses (its message).
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Other(String),
}

/// Why `swarm unlock` failed.
#[derive(Debug, thiserror::Error)]
pub enum UnlockError {
    #[error("swarm is not locked")]
    NotLocked,
    /// The key does not parse (Docker: "invalid key string").
    #[error("{0}")]
    Invalid(String),
    /// Docker's 401.
    #[error("swarm could not be unlocked: invalid key provided")]
    WrongKey,
    #[error("{0}")]
    Other(String),
}

/// Why `swarm leave` failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaveError {
    #[error("not part of a swarm")]
    NotInSwarm,
    /// A manager leaves only with `--force`; Docker's explanation.
    #[error("{0}")]
    Manager(String),
}

/// How long `swarm init` waits for the node's own session to register it.
const INIT_READY_WAIT: Duration = Duration::from_secs(10);

/// Waits until node `id` is READY in the store, or `limit` passes (then init answers anyway:
/// the node is in the swarm, only its first status write is late).
async fn wait_node_ready(store: &swarmd_store::Store, id: &str, limit: Duration) {
    let ready = |t: &swarmd_store::ReadTx<'_>| {
        t.nodes
            .get(id)
            .is_some_and(|n| n.status.state == swarmd_types::NodeState::Ready)
    };
    let (done, mut events) = store.memory().view_and_watch(ready);
    if done {
        return;
    }
    let wait = async {
        // Every commit (or a lag) is a chance the node became ready: look again.
        while !matches!(
            events.recv().await,
            Err(tokio::sync::broadcast::error::RecvError::Closed)
        ) {
            if store.view(ready) {
                return;
            }
        }
    };
    if tokio::time::timeout(limit, wait).await.is_err() {
        tracing::warn!(node.id = %id, "node not ready {limit:?} after init");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leave_refusals_match_docker() {
        assert!(leave_refusal(1, 0).ends_with(
            "Removing the last manager erases all current state of the swarm. Use `--force` to ignore this message. "
        ));
        // 3 of 3 up: leaving keeps a quorum, only the general warning.
        let m = leave_refusal(3, 0);
        assert!(!m.contains("leaves"), "{m}");
        assert!(m.ends_with("Use `--force` to suppress this message."));
        // 2 of 3 up: leaving one leaves 1 of 3.
        assert!(leave_refusal(2, 1).contains(
            "Removing this node leaves 1 managers out of 3. Without a Raft quorum your swarm will be inaccessible. "
        ));
    }
}
