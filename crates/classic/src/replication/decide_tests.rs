use std::collections::BTreeSet;
use std::time::Duration;

use super::*;

const TTL: Duration = Duration::from_secs(20);

fn engine(i: u16) -> EngineAddr {
    EngineAddr::Tcp {
        host: format!("10.0.0.{i}"),
        port: 2375,
    }
}

/// A view of `healthy` engines of which those in `read` answered: `(engine, holder)`,
/// holder "" meaning no lock; lock IDs are `<holder>@<engine>`.
fn view(healthy: usize, read: &[(u16, &str)]) -> LockView {
    LockView {
        healthy,
        read: read
            .iter()
            .map(|(i, h)| EngineLock {
                engine: engine(*i),
                lock: (!h.is_empty()).then(|| Lock {
                    id: format!("{h}@{i}"),
                    holder: (*h).to_owned(),
                }),
                strays: vec![],
            })
            .collect(),
    }
}

fn lock(i: u16, h: &str) -> LockRef {
    LockRef {
        engine: engine(i),
        id: format!("{h}@{i}"),
    }
}

fn dead(hs: &[&str]) -> BTreeSet<String> {
    hs.iter().map(|h| (*h).to_owned()).collect()
}

#[test]
fn a_majority_is_strictly_more_than_half_of_the_healthy_engines() {
    assert!(is_majority(1, 1));
    assert!(!is_majority(1, 2));
    assert!(is_majority(2, 2));
    assert!(is_majority(2, 3));
    assert!(!is_majority(2, 4));
    assert!(!is_majority(0, 0));
}

#[test]
fn an_engine_that_did_not_answer_counts_against_every_holder() {
    assert_eq!(view(3, &[(1, "a"), (2, "a")]).majority_holder(), Some("a"));
    assert_eq!(view(4, &[(1, "a"), (2, "a")]).majority_holder(), None);
}

#[test]
fn a_primary_keeps_its_role_only_while_it_holds_a_majority() {
    assert_eq!(
        standing("a", &view(3, &[(1, "a"), (2, "a"), (3, "b")])),
        Standing::Primary
    );
    // One engine of two came back holding another's lock: no majority, step down and
    // release, nobody to follow.
    assert_eq!(
        standing("a", &view(2, &[(1, "a"), (2, "b")])),
        Standing::Lost {
            release: vec![lock(1, "a")],
            primary: None
        }
    );
    // Another manager took over the engines.
    assert_eq!(
        standing("a", &view(3, &[(1, "a"), (2, "b"), (3, "b")])),
        Standing::Lost {
            release: vec![lock(1, "a")],
            primary: Some("b".into())
        }
    );
}

#[test]
fn a_replica_follows_a_live_majority_holder() {
    let v = view(2, &[(1, "p"), (2, "p")]);
    assert_eq!(
        replica_step("r", &v, &dead(&[]), Duration::ZERO, TTL),
        ReplicaStep::Follow("p".into())
    );
}

#[test]
fn a_replica_whose_own_locks_hold_a_majority_leads() {
    let v = view(2, &[(1, "r"), (2, "r")]);
    assert_eq!(
        replica_step("r", &v, &dead(&[]), Duration::ZERO, TTL),
        ReplicaStep::Lead
    );
}

#[test]
fn a_dead_primary_s_locks_are_released_then_the_replica_runs() {
    let v = view(3, &[(1, "p"), (2, "p"), (3, "r")]);
    assert_eq!(
        replica_step("r", &v, &dead(&["p"]), Duration::ZERO, TTL),
        ReplicaStep::Elect {
            release: vec![lock(3, "r"), lock(1, "p"), lock(2, "p")]
        }
    );
}

#[test]
fn with_no_lock_anywhere_a_replica_runs_at_once() {
    assert_eq!(
        replica_step(
            "r",
            &view(2, &[(1, ""), (2, "")]),
            &dead(&[]),
            Duration::ZERO,
            TTL
        ),
        ReplicaStep::Elect { release: vec![] }
    );
}

#[test]
fn a_live_candidate_without_majority_is_waited_for_at_most_a_ttl() {
    let v = view(3, &[(1, "c"), (2, ""), (3, "")]);
    assert_eq!(
        replica_step("r", &v, &dead(&[]), TTL / 2, TTL),
        ReplicaStep::Wait
    );
    assert_eq!(
        replica_step("r", &v, &dead(&[]), TTL, TTL),
        ReplicaStep::Elect { release: vec![] }
    );
    // A dead one is not waited for.
    assert_eq!(
        replica_step("r", &v, &dead(&["c"]), Duration::ZERO, TTL),
        ReplicaStep::Elect {
            release: vec![lock(1, "c")]
        }
    );
}

#[test]
fn without_healthy_engines_nobody_runs() {
    assert_eq!(
        replica_step("r", &view(0, &[]), &dead(&["p"]), TTL, TTL),
        ReplicaStep::Wait
    );
}

#[test]
fn the_backoff_stays_within_a_third_of_the_ttl() {
    assert_eq!(backoff(TTL, 0.0), Duration::ZERO);
    assert!(backoff(TTL, 0.999) <= TTL / 3);
    assert_eq!(backoff(TTL, 7.0), TTL / 3);
}

#[test]
fn a_stray_counts_for_nobody_and_goes_with_its_holder_s_locks() {
    let mut v = view(2, &[(1, "a"), (2, "b")]);
    let stray = Lock {
        id: "stray".into(),
        holder: "b".into(),
    };
    v.read[0].strays.push(stray);
    assert_eq!(v.held_by("b"), 1);
    assert_eq!(v.majority_holder(), None);
    let stray = LockRef {
        engine: engine(1),
        id: "stray".into(),
    };
    assert_eq!(v.strays_of("b"), std::slice::from_ref(&stray));
    assert_eq!(v.locks_of("b"), [lock(2, "b"), stray]);
    assert_eq!(v.strays_of("a"), []);
}
