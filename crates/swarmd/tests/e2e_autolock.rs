//! End to end: autolock with the docker CLI. `swarm init --autolock`, a restart leaves the
//! manager locked (`docker info`, Docker's 503 on every swarm call) until `swarm unlock`
//! with the right key; a wrong key is refused; `unlock-key --rotate` replaces the key the
//! next restart needs; `swarm update --autolock=false` lets the manager start unlocked.

mod common;

use common::{POLL, T, process_node, replicas};
use swarmd_testkit::{Daemon, Executor, unique_loopback, unique_name, wait_until};

const MSG_LOCKED: &str = "Swarm is encrypted and needs to be unlocked before it can be used. Please use \"docker swarm unlock\" to unlock it.";

fn node_state(n: &Daemon) -> String {
    n.docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"])
        .ok()
        .stdout_trimmed()
        .to_string()
}

fn unlock_key(n: &Daemon) -> String {
    n.docker(&["swarm", "unlock-key", "-q"])
        .ok()
        .stdout_trimmed()
        .to_string()
}

/// Restarts the node and checks it comes back locked, refusing swarm calls.
fn restart_locked(n: &mut Daemon) {
    n.restart().expect("swarmd restarts");
    assert_eq!(node_state(n), "locked");
    for args in [
        &["service", "ls"][..],
        &["secret", "ls"],
        &["node", "ls"],
        &["swarm", "unlock-key"],
    ] {
        let out = n.docker(args).fail();
        assert!(out.stderr.contains(MSG_LOCKED), "{args:?}: {}", out.stderr);
    }
}

fn unlock(n: &Daemon, key: &str) -> swarmd_testkit::CmdOutput {
    n.docker_stdin(&["swarm", "unlock"], format!("{key}\n").as_bytes())
}

#[test]
fn autolock_locks_a_restarted_manager_until_it_is_unlocked() {
    let mut n = Daemon::builder(env!("CARGO_BIN_EXE_swarmd"))
        .node_addr(unique_loopback())
        .executor(Executor::Process)
        .hostname(unique_name("lock"))
        .log_level("debug")
        .start()
        .expect("swarmd starts");
    let init = n.docker(&["swarm", "init", "--autolock"]).ok();
    assert!(init.stdout.contains("SWMKEY-1-"), "{}", init.stdout);
    let key = unlock_key(&n);
    assert!(init.stdout.contains(&key), "{}", init.stdout);
    // An active manager is not locked.
    let out = unlock(&n, &key).fail();
    assert!(out.stderr.contains("swarm is not locked"), "{}", out.stderr);

    n.docker_stdin(&["secret", "create", "pw", "-"], b"autolock-secret")
        .ok();
    n.docker(&[
        "service",
        "create",
        "-d",
        "--name",
        "web",
        "--replicas",
        "1",
        "--secret",
        "pw",
        "busybox",
        "sleep",
        "300",
    ])
    .ok();
    wait_until(T, POLL, "service running", || replicas(&n, "web") == "1/1");

    restart_locked(&mut n);
    // The unlock key is on no disk of the node.
    let found = common::grep_tree(n.data_root(), &key);
    assert!(found.is_empty(), "unlock key in {found:?}");
    // A key that does not parse, then a well-formed wrong one.
    let out = unlock(&n, "not-a-key").fail();
    assert!(out.stderr.contains("invalid key string"), "{}", out.stderr);
    let wrong = "SWMKEY-1-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let out = unlock(&n, wrong).fail();
    assert!(
        out.stderr
            .contains("swarm could not be unlocked: invalid key provided"),
        "{}",
        out.stderr
    );
    assert_eq!(node_state(&n), "locked");
    unlock(&n, &key).ok();
    assert_eq!(node_state(&n), "active");
    // Everything is back.
    wait_until(T, POLL, "service running again", || {
        replicas(&n, "web") == "1/1"
    });
    assert_eq!(
        n.docker(&["secret", "ls", "--format", "{{.Name}}"])
            .ok()
            .stdout_trimmed(),
        "pw"
    );
    assert_eq!(unlock_key(&n), key);

    // Rotation: the next restart needs the new key, the old one no longer opens.
    let rotated = n
        .docker(&["swarm", "unlock-key", "--rotate", "-q"])
        .ok()
        .stdout_trimmed()
        .to_string();
    assert!(
        rotated.starts_with("SWMKEY-1-") && rotated != key,
        "{rotated}"
    );
    assert_eq!(unlock_key(&n), rotated);
    restart_locked(&mut n);
    unlock(&n, &key).fail();
    unlock(&n, &rotated).ok();
    assert_eq!(node_state(&n), "active");

    // Autolock off: the keys are stored in the clear again and a restart needs no key.
    n.docker(&["swarm", "update", "--autolock=false"]).ok();
    let out = n.docker(&["swarm", "unlock-key"]).fail();
    assert!(
        out.stderr.contains("no unlock key is set"),
        "{}",
        out.stderr
    );
    n.restart().expect("swarmd restarts");
    assert_eq!(node_state(&n), "active");
    wait_until(T, POLL, "service running after restart", || {
        replicas(&n, "web") == "1/1"
    });

    // And on again with `swarm update`, which prints the new key.
    let out = n.docker(&["swarm", "update", "--autolock=true"]).ok();
    let key3 = unlock_key(&n);
    assert!(out.stdout.contains(&key3), "{}", out.stdout);
    restart_locked(&mut n);
    unlock(&n, &key3).ok();
    assert_eq!(node_state(&n), "active");
    n.docker(&["swarm", "leave", "--force"]).ok();
    // No unlock key ever reached the log, at debug level, nor the data root.
    let log = n.log();
    for k in [&key, &rotated, &key3] {
        assert!(!log.contains(k.as_str()), "unlock key in the log");
    }
}

#[test]
fn a_locked_node_can_leave_only_with_force() {
    let mut n = process_node("lockleave");
    n.docker(&["swarm", "init", "--autolock"]).ok();
    restart_locked(&mut n);
    // Still a member: a new swarm over it is refused, its state kept.
    let out = n.docker(&["swarm", "init"]).fail();
    assert!(
        out.stderr.contains("already part of a swarm"),
        "{}",
        out.stderr
    );
    assert_eq!(node_state(&n), "locked");
    let out = n.docker(&["swarm", "leave"]).fail();
    assert!(out.stderr.contains("--force"), "{}", out.stderr);
    n.docker(&["swarm", "leave", "--force"]).ok();
    assert_eq!(node_state(&n), "inactive");
    // A new swarm starts unlocked.
    n.docker(&["swarm", "init"]).ok();
    n.restart().expect("swarmd restarts");
    assert_eq!(node_state(&n), "active");
    n.docker(&["swarm", "leave", "--force"]).ok();
}

/// Rotation with three managers: a manager that was down while the key rotated still has
/// its keys sealed by the previous key, so the previous key unlocks it; once it runs it
/// re-seals with the new key, and from then on only the new key opens it.
#[test]
fn a_manager_down_during_rotation_unlocks_with_the_previous_key() {
    let a = process_node("rota");
    let b = process_node("rotb");
    let mut c = process_node("rotc");
    a.docker(&["swarm", "init", "--autolock"]).ok();
    let token = a
        .docker(&["swarm", "join-token", "-q", "manager"])
        .ok()
        .stdout_trimmed()
        .to_string();
    let addr = format!("{}:2377", a.node_addr());
    for n in [&b, &c] {
        n.docker(&["swarm", "join", "--token", &token, &addr]).ok();
    }
    let managers_ready = |n: &Daemon| {
        n.docker(&["node", "ls", "--format", "{{.Status}} {{.ManagerStatus}}"])
            .stdout
            .lines()
            .filter(|l| l.starts_with("Ready") && (l.contains("Leader") || l.contains("Reachable")))
            .count()
            == 3
    };
    wait_until(T, POLL, "three managers", || managers_ready(&a));
    let old = unlock_key(&a);
    // c re-seals its keys as soon as its replica holds the key.
    wait_until(T, POLL, "c sees the unlock key", || {
        c.docker(&["swarm", "unlock-key", "-q"]).stdout_trimmed() == old
    });
    c.sigterm().expect("c stops");
    let new = a
        .docker(&["swarm", "unlock-key", "--rotate", "-q"])
        .ok()
        .stdout_trimmed()
        .to_string();
    assert_ne!(new, old);

    c.restart().expect("c restarts");
    assert_eq!(node_state(&c), "locked");
    let out = unlock(&c, &new).fail();
    assert!(
        out.stderr.contains("invalid key provided"),
        "{}",
        out.stderr
    );
    unlock(&c, &old).ok();
    wait_until(T, POLL, "c sees the rotated key", || {
        c.docker(&["swarm", "unlock-key", "-q"]).stdout_trimmed() == new
    });
    wait_until(T, POLL, "three managers again", || managers_ready(&a));

    // c re-seals with the new key as soon as it sees it: after the next restart only the
    // new key opens it. (Re-sealing follows the store; wait for it through the API.)
    restart_until_sealed_with(&mut c, &new, &old);
    for n in [&c, &b, &a] {
        let _ = n.docker(&["swarm", "leave", "--force"]);
    }
}

/// Restarts `n` (locked) and unlocks it with `new`, asserting `old` is refused. Retries the
/// restart while `n` still opens with `old`: re-sealing happens just after `n` sees the new
/// key, which the caller waited for, so one retry at most is expected.
fn restart_until_sealed_with(n: &mut Daemon, new: &str, old: &str) {
    for _ in 0..5 {
        restart_locked(n);
        if unlock(n, old).success() {
            continue;
        }
        unlock(n, new).ok();
        assert_eq!(node_state(n), "active");
        return;
    }
    panic!("the manager never re-sealed its keys with the rotated key");
}
