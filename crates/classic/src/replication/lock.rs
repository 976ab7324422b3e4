//! The primary lock on one engine: a network named [`LOCK_NAME`] labelled with its
//! holder's advertise address. Free of I/O: what a lock network looks like, which of an
//! engine's networks is the lock, and the body that creates one.

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The lock network's name; an engine refuses a second network of that name.
pub const LOCK_NAME: &str = "swarmd-manage-primary";

/// The label naming the lock's holder (its `--advertise` address).
pub const HOLDER_LABEL: &str = "com.docker.swarm.primary";

/// One engine's lock as read from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    /// The network's ID: deleting by ID only removes this very lock (compare-and-delete).
    pub id: String,
    /// The holder's advertise address (empty if the label is missing).
    pub holder: String,
}

/// Whether a network from an engine's listing is a lock.
fn is_lock(network: &Value) -> bool {
    network.get("Name").and_then(Value::as_str) == Some(LOCK_NAME)
}

/// Whether a network of the managers' merged listing is a lock (hidden from `docker
/// network ls`): there a local network's name carries its engine's (`node-0/NAME`).
pub fn is_listed_lock(network: &Value) -> bool {
    network
        .get("Name")
        .and_then(Value::as_str)
        .is_some_and(|n| n.rsplit('/').next() == Some(LOCK_NAME))
}

/// The engine's lock networks among its `networks` (a `GET /networks` answer), the lock
/// first. A 20.10 engine checks the name, then creates, without holding a lock across
/// both: two racing creates can both land (seen in the live tests). Then the oldest
/// network (then the smallest ID) is the lock, the same answer for every reader, and the
/// others are strays their creators delete.
pub fn locks_in(networks: &[Value]) -> Vec<Lock> {
    let mut found: Vec<(OffsetDateTime, Lock)> = networks
        .iter()
        .filter(|n| is_lock(n))
        .filter_map(|n| {
            let id = n.get("Id")?.as_str()?.to_owned();
            let created = n
                .get("Created")
                .and_then(Value::as_str)
                .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
                .unwrap_or(OffsetDateTime::UNIX_EPOCH);
            let holder = n
                .get("Labels")
                .and_then(|l| l.get(HOLDER_LABEL))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            Some((created, Lock { id, holder }))
        })
        .collect();
    found.sort_by(|(ca, a), (cb, b)| ca.cmp(cb).then_with(|| a.id.cmp(&b.id)));
    found.into_iter().map(|(_, lock)| lock).collect()
}

/// The engine's lock: the first of [`locks_in`].
pub fn lock_of(networks: &[Value]) -> Option<Lock> {
    locks_in(networks).into_iter().next()
}

/// `POST /networks/create` body for `holder`'s lock. `CheckDuplicate` makes a 20.10
/// engine refuse an existing name (newer engines always do); `ConfigOnly` keeps the
/// network inert: no bridge, no subnet taken from the engine's address pools.
pub fn create_body(holder: &str) -> Value {
    json!({
        "Name": LOCK_NAME,
        "CheckDuplicate": true,
        "ConfigOnly": true,
        "Labels": { HOLDER_LABEL: holder },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(name: &str, id: &str, created: &str, holder: &str) -> Value {
        json!({"Name": name, "Id": id, "Created": created, "Labels": {HOLDER_LABEL: holder}})
    }

    #[test]
    fn the_lock_is_the_network_named_exactly_so() {
        let nets = [
            net(
                "swarmd-manage-primary-x",
                "a",
                "2026-01-01T00:00:00Z",
                "m1:1",
            ),
            net("bridge", "b", "2026-01-01T00:00:00Z", ""),
        ];
        assert_eq!(lock_of(&nets), None);
        let nets = [
            nets[0].clone(),
            net(LOCK_NAME, "c", "2026-01-01T00:00:00Z", "m2:2"),
        ];
        assert_eq!(
            lock_of(&nets),
            Some(Lock {
                id: "c".into(),
                holder: "m2:2".into()
            })
        );
        assert!(is_lock(&nets[1]) && !is_lock(&nets[0]));
        let listed = |n: &str| is_listed_lock(&json!({ "Name": n }));
        assert!(listed("node-0/swarmd-manage-primary") && listed(LOCK_NAME));
        assert!(!listed("node-0/swarmd-manage-primary-x") && !listed("node-0/bridge"));
    }

    #[test]
    fn of_two_racing_locks_the_oldest_wins_whatever_the_order() {
        // Go trims trailing zeros of the nanoseconds: compared as text, ".2627Z" would
        // sort after ".26271Z".
        let older = net(LOCK_NAME, "ffff", "2026-01-01T00:00:09.2627Z", "old:1");
        let newer = net(LOCK_NAME, "0000", "2026-01-01T00:00:09.26271Z", "new:1");
        for nets in [[older.clone(), newer.clone()], [newer, older]] {
            assert_eq!(lock_of(&nets).unwrap().holder, "old:1");
        }
        let a = net(LOCK_NAME, "bbb", "2026-01-01T00:00:00Z", "b:1");
        let b = net(LOCK_NAME, "aaa", "2026-01-01T00:00:00Z", "a:1");
        assert_eq!(lock_of(&[a.clone(), b.clone()]).unwrap().id, "aaa");
        let ids: Vec<String> = locks_in(&[a, b]).into_iter().map(|l| l.id).collect();
        assert_eq!(ids, ["aaa", "bbb"], "the lock, then the strays");
    }

    #[test]
    fn a_lock_without_label_has_no_holder() {
        let n = json!({"Name": LOCK_NAME, "Id": "x", "Created": "2026-01-01T00:00:00Z"});
        assert_eq!(lock_of(&[n]).unwrap().holder, "");
    }

    #[test]
    fn the_create_body_is_an_inert_duplicate_checked_network() {
        let b = create_body("10.0.0.1:4000");
        assert_eq!(b["Name"], LOCK_NAME);
        assert_eq!(b["CheckDuplicate"], true);
        assert_eq!(b["ConfigOnly"], true);
        assert_eq!(b["Labels"][HOLDER_LABEL], "10.0.0.1:4000");
    }
}
