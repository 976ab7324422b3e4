//! Autolock on this node: which unlock key (if any) seals `swarm/certs/node.keys`, and the
//! reconciler that keeps that in line with the swarm's setting.
//!
//! The swarm's setting and key live in the replicated cluster object (see
//! `swarmd_manager::control::autolock`). Every manager re-seals its own keys whenever the
//! key it sees differs from the one its file is sealed with; workers are never locked and
//! keep theirs in the clear. A manager that was down during a rotation still has its keys
//! sealed by the previous key: that key unlocks it, and once running it re-seals with the
//! new one, as swarmkit does.

use std::path::Path;
use std::sync::{Arc, Mutex};

use swarmd_crypto::UnlockKey;
use swarmd_store::Store;
use tokio_util::sync::CancellationToken;

use crate::cluster::{KeysError, NodeCerts};
use crate::store_watch::on_every_change;

/// The unlock key the node's keys file is sealed with right now (`None`: in the clear).
/// Cheap to clone; all clones share the state. Its lock is held while the file is read or
/// rewritten, so a certificate renewal and a re-seal never interleave.
#[derive(Clone, Default)]
pub struct SealState(Arc<Mutex<Option<UnlockKey>>>);

impl SealState {
    fn guard(&self) -> std::sync::MutexGuard<'_, Option<UnlockKey>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the key the file is known to be sealed with (after an unlock, or `None`
    /// when a new membership writes its keys in the clear).
    pub fn set(&self, key: Option<UnlockKey>) {
        *self.guard() = key;
    }

    /// Reads the node's certificates and keys.
    pub fn load(&self, swarm_dir: &Path) -> Result<NodeCerts, KeysError> {
        let g = self.guard();
        NodeCerts::load(swarm_dir, g.as_ref())
    }

    /// Writes the node's certificates and keys, sealed as they are now.
    pub fn save(&self, swarm_dir: &Path, certs: &NodeCerts) -> anyhow::Result<()> {
        let g = self.guard();
        certs.save(swarm_dir, g.as_ref())
    }

    /// Re-seals the keys file with `desired` if it is sealed otherwise. Blocking (small
    /// file writes).
    pub fn apply(&self, swarm_dir: &Path, desired: Option<UnlockKey>) -> anyhow::Result<()> {
        let mut g = self.guard();
        if *g == desired {
            return Ok(());
        }
        let certs = NodeCerts::load(swarm_dir, g.as_ref())?;
        certs.save(swarm_dir, desired.as_ref())?;
        tracing::info!(
            sealed = desired.is_some(),
            "node keys re-sealed for the swarm's autolock setting"
        );
        *g = desired;
        Ok(())
    }
}

/// The key a manager's keys should be sealed with, from the cluster object: the swarm's
/// unlock key while autolock is on, none otherwise.
pub fn desired_seal(store: &Store) -> Option<UnlockKey> {
    let key = store.view(|t| t.cluster().map(|c| c.unlock_key.clone()))?;
    desired_from(&key)
}

/// Pure part of [`desired_seal`]: an empty key means autolock is off.
fn desired_from(key: &str) -> Option<UnlockKey> {
    if key.is_empty() {
        return None;
    }
    match UnlockKey::parse(key) {
        Ok(k) => Some(k),
        Err(e) => {
            // Never log the key itself.
            tracing::error!(error = %e, "the cluster's unlock key does not parse; keys left as they are");
            None
        }
    }
}

/// Level-triggered: on a manager, re-evaluates on every store change until `cancel`; on a
/// worker (`store` is `None`), makes sure the keys are in the clear once and returns.
pub async fn keep_keys_sealed(
    swarm_dir: std::path::PathBuf,
    seal: SealState,
    store: Option<Store>,
    cancel: CancellationToken,
) {
    let Some(store) = store else {
        if let Err(e) = seal.apply(&swarm_dir, None) {
            tracing::error!(error = %format!("{e:#}"), "could not store a worker's keys in the clear");
        }
        return;
    };
    on_every_change(&store, &cancel, || async {
        let desired = desired_seal(&store);
        let current = seal.clone();
        let dir = swarm_dir.clone();
        // A transient failure (disk full) is retried on the next change.
        match tokio::task::spawn_blocking(move || current.apply(&dir, desired)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %format!("{e:#}"), "could not re-seal the node's keys")
            }
            Err(e) => tracing::error!(error = %e, "re-sealing task failed"),
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_desired_seal_follows_the_cluster_key() {
        assert!(desired_from("").is_none());
        assert!(desired_from("SWMKEY-1-garbage").is_none());
        let k = UnlockKey::generate();
        assert_eq!(desired_from(&k.to_human()), Some(k));
    }

    #[test]
    fn apply_reseals_and_the_previous_key_no_longer_opens() {
        let dir = tempfile::tempdir().unwrap();
        let certs = NodeCerts {
            key_pem: "k".into(),
            cert_pem: "c".into(),
            root_pem: "r".into(),
            dek: swarmd_crypto::DataKey::generate(),
        };
        let seal = SealState::default();
        seal.save(dir.path(), &certs).unwrap();
        let k1 = UnlockKey::generate();
        seal.apply(dir.path(), Some(k1.clone())).unwrap();
        assert!(matches!(
            NodeCerts::load(dir.path(), None),
            Err(KeysError::Locked)
        ));
        let k2 = UnlockKey::generate();
        seal.apply(dir.path(), Some(k2.clone())).unwrap();
        assert!(matches!(
            NodeCerts::load(dir.path(), Some(&k1)),
            Err(KeysError::WrongKey)
        ));
        assert_eq!(
            NodeCerts::load(dir.path(), Some(&k2)).unwrap().dek,
            certs.dek
        );
        seal.apply(dir.path(), None).unwrap();
        assert_eq!(NodeCerts::load(dir.path(), None).unwrap().dek, certs.dek);
    }
}
