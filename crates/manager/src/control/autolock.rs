//! The cluster's autolock key: when it exists and when it changes.
//!
//! swarmkit keeps the key in the cluster object (`Cluster.UnlockKeys`), replicated by Raft
//! (and so encrypted at rest by every manager's data key); each manager wraps its own data
//! key with it. Here the decision is a pure function of the spec and the request, so the
//! rules are tested without a store.

use swarmd_crypto::UnlockKey;
use swarmd_types::models::SwarmSpec;

/// Whether `spec` asks for autolocked managers.
pub fn autolock_enabled(spec: &SwarmSpec) -> bool {
    spec.encryption_config
        .as_ref()
        .and_then(|e| e.auto_lock_managers)
        .unwrap_or(false)
}

/// The unlock key the cluster holds after an update: none without autolock; with it, the
/// current key, or a new one when there is none yet or `rotate` asks for it (Docker ignores
/// a rotation request while autolock is off).
pub fn next_unlock_key(autolock: bool, current: &str, rotate: bool) -> String {
    if !autolock {
        return String::new();
    }
    if current.is_empty() || rotate {
        return UnlockKey::generate().to_human().to_string();
    }
    current.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_follows_autolock_and_rotation() {
        assert_eq!(next_unlock_key(false, "SWMKEY-1-old", false), "");
        assert_eq!(next_unlock_key(false, "SWMKEY-1-old", true), "");
        let first = next_unlock_key(true, "", false);
        assert!(UnlockKey::parse(&first).is_ok(), "{first}");
        assert_eq!(next_unlock_key(true, &first, false), first);
        let rotated = next_unlock_key(true, &first, true);
        assert_ne!(rotated, first);
        assert!(UnlockKey::parse(&rotated).is_ok());
    }

    #[test]
    fn autolock_is_read_from_the_spec() {
        let mut spec = SwarmSpec::default();
        assert!(!autolock_enabled(&spec));
        spec.encryption_config = Some(swarmd_types::models::SwarmSpecEncryptionConfig {
            auto_lock_managers: Some(true),
        });
        assert!(autolock_enabled(&spec));
    }
}
