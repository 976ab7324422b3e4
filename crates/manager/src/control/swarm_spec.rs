//! The spec a `swarm init` asks for, laid over the defaults the new cluster starts with.
//!
//! As the daemon's `MergeSwarmSpecToGRPC`: a field the request leaves at Go's zero value
//! keeps the default, any other value replaces it, and `ForceRotate` and
//! `AutoLockManagers` (plain values in Go, so "unset" cannot be told from 0/false) are taken
//! as given. Every field a client can set is carried over, so what `GET /swarm` shows
//! afterwards is what the client sent. The signing CA certificate and key are not carried:
//! a CA given at init belongs to the CA code, which keeps the key out of the spec.

use swarmd_types::models::SwarmSpec;

/// `base` with every field `req` sets.
pub fn merge_swarm_spec(mut base: SwarmSpec, req: SwarmSpec) -> SwarmSpec {
    if req.name.as_deref().is_some_and(|n| !n.is_empty()) {
        base.name = req.name;
    }
    if req.labels.as_ref().is_some_and(|l| !l.is_empty()) {
        base.labels = req.labels;
    }
    if let Some(limit) = req
        .orchestration
        .and_then(|o| o.task_history_retention_limit)
    {
        base.orchestration
            .get_or_insert_with(Default::default)
            .task_history_retention_limit = Some(limit);
    }
    if let Some(r) = req.raft {
        let b = base.raft.get_or_insert_with(Default::default);
        let nonzero = |v: Option<u64>| v.filter(|v| *v != 0);
        if let Some(v) = nonzero(r.snapshot_interval) {
            b.snapshot_interval = Some(v);
        }
        if r.keep_old_snapshots.is_some() {
            b.keep_old_snapshots = r.keep_old_snapshots;
        }
        if let Some(v) = nonzero(r.log_entries_for_slow_followers) {
            b.log_entries_for_slow_followers = Some(v);
        }
        if let Some(v) = r.heartbeat_tick.filter(|v| *v != 0) {
            b.heartbeat_tick = Some(v);
        }
        if let Some(v) = r.election_tick.filter(|v| *v != 0) {
            b.election_tick = Some(v);
        }
    }
    if let Some(p) = req
        .dispatcher
        .and_then(|d| d.heartbeat_period)
        .filter(|p| *p != 0)
    {
        base.dispatcher
            .get_or_insert_with(Default::default)
            .heartbeat_period = Some(p);
    }
    if let Some(c) = req.ca_config {
        let b = base.ca_config.get_or_insert_with(Default::default);
        if let Some(e) = c.node_cert_expiry.filter(|e| *e != 0) {
            b.node_cert_expiry = Some(e);
        }
        b.force_rotate = c.force_rotate;
        if let Some(cas) = c.external_cas.filter(|c| !c.is_empty()) {
            b.external_cas.get_or_insert_with(Vec::new).extend(cas);
        }
    }
    if let Some(e) = req.encryption_config {
        base.encryption_config = Some(e);
    }
    // Not in the daemon's merge (it drops `TaskDefaults` both ways), but a value a client
    // set is kept rather than dropped.
    if let Some(d) = req.task_defaults.filter(|d| d.log_driver.is_some()) {
        base.task_defaults = Some(d);
    }
    base
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::default_swarm_spec;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> SwarmSpec {
        serde_json::from_value(v).unwrap()
    }

    /// Every field a client can set at init reads back as sent.
    #[test]
    fn every_field_set_at_init_is_kept() {
        let req = spec(json!({
            "Name": "default",
            "Labels": {"k": "v"},
            "Orchestration": {"TaskHistoryRetentionLimit": 7},
            "Raft": {"SnapshotInterval": 5000, "KeepOldSnapshots": 2,
                     "LogEntriesForSlowFollowers": 600, "ElectionTick": 20, "HeartbeatTick": 2},
            "Dispatcher": {"HeartbeatPeriod": 7_000_000_000u64},
            "CAConfig": {"NodeCertExpiry": 7_200_000_000_000u64, "ForceRotate": 3,
                         "ExternalCAs": [{"Protocol": "cfssl", "URL": "https://ca.example",
                                          "Options": {"o": "p"}, "CACert": "PEM"}]},
            "TaskDefaults": {"LogDriver": {"Name": "json-file", "Options": {"max-size": "1m"}}},
            "EncryptionConfig": {"AutoLockManagers": true},
        }));
        let merged = merge_swarm_spec(default_swarm_spec(SwarmSpec::default()), req.clone());
        assert_eq!(
            serde_json::to_value(&merged).unwrap(),
            serde_json::to_value(&req).unwrap()
        );
    }

    /// Zero values keep the defaults, as the daemon's merge does; ForceRotate is taken as
    /// given.
    #[test]
    fn zero_values_keep_the_defaults() {
        let base = default_swarm_spec(SwarmSpec::default());
        let req = spec(json!({
            "Raft": {"SnapshotInterval": 0, "ElectionTick": 0},
            "CAConfig": {"NodeCertExpiry": 0, "ForceRotate": 1},
        }));
        let merged = merge_swarm_spec(base.clone(), req);
        assert_eq!(merged.raft, base.raft);
        let ca = merged.ca_config.unwrap();
        assert_eq!(
            ca.node_cert_expiry,
            base.ca_config.unwrap().node_cert_expiry
        );
        assert_eq!(ca.force_rotate, Some(1));
    }
}
