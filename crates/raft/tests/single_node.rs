//! One-manager Raft: writes go through openraft into redb and the store; restarts, snapshots
//! and corruption behave.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use swarmd_raft::{DataKey, RaftConfig, RaftError, RaftNode};
use swarmd_store::{Batch, MemoryStore, ProposeError, Proposer, Store, StoreAction, StoreError};
use swarmd_types::models::ServiceSpec;
use swarmd_types::{Kind, Service, Task, timefmt};

/// Upper bound for any condition a test waits on; generous for a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(30);

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

fn config(dir: &Path) -> RaftConfig {
    RaftConfig::new(dir, DataKey::from_bytes([1; 32]), 1, "127.0.0.1:2377")
}

fn service(id: &str, name: &str) -> Service {
    Service {
        id: id.into(),
        spec: ServiceSpec {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn task(id: &str, service_id: &str, slot: u64) -> Task {
    Task {
        id: id.into(),
        service_id: service_id.into(),
        service_name: "web".into(),
        slot,
        ..Default::default()
    }
}

fn batch(actions: Vec<StoreAction>) -> Batch {
    Batch {
        actions,
        proposed_at: timefmt::now(),
    }
}

async fn open_leader(cfg: RaftConfig) -> (Arc<RaftNode>, Arc<MemoryStore>) {
    let mem = Arc::new(MemoryStore::new());
    let node = Arc::new(RaftNode::open(cfg, mem.clone()).await.expect("open"));
    node.initialize_single().await.expect("initialize");
    node.wait_for_leader(DEADLINE).await.expect("leader");
    (node, mem)
}

type State = (BTreeMap<String, Service>, BTreeMap<String, Task>, u64);

fn state(mem: &MemoryStore) -> State {
    mem.view(|t| (t.services.clone(), t.tasks.clone(), t.applied_index()))
}

/// The same objects, applied at least as far: a restarted node elects itself, which can
/// append its new term's blank entry before the caller looks.
fn assert_same_objects(now: &State, before: &State) {
    assert_eq!((&now.0, &now.1), (&before.0, &before.1));
    assert!(now.2 >= before.2, "applied {} < {}", now.2, before.2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proposals_apply_with_the_log_index_as_version() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let (node, mem) = open_leader(config(dir.path())).await;
    assert!(node.is_leader());
    assert!(*node.leader_watch().borrow());
    assert!(node.is_initialized().await.unwrap());
    // Idempotent.
    node.initialize_single().await.unwrap();

    let idx = node
        .propose(batch(vec![StoreAction::Create(
            service("s1", "web").into(),
        )]))
        .await
        .unwrap();
    assert_eq!(mem.view(|t| t.services["s1"].meta.version), idx);
    assert_eq!(mem.applied_index(), idx);

    // Through the store's writer API, as the manager uses it.
    let store = Store::new(mem.clone(), node.clone());
    store
        .update(|_, tx| {
            tx.create(task("t1", "s1", 1));
            tx.create(task("t2", "s1", 2));
            Ok::<_, ProposeError>(())
        })
        .await
        .unwrap();
    let (v1, v2, applied) = mem.view(|t| {
        (
            t.tasks["t1"].meta.version,
            t.tasks["t2"].meta.version,
            t.applied_index(),
        )
    });
    assert_eq!(v1, v2);
    assert_eq!(v1, applied);
    assert!(v1 > idx);
    assert_eq!(mem.view(|t| t.tasks_of_service("s1").count()), 2);

    // A duplicate name is rejected by apply: a certain, typed failure.
    let err = node
        .propose(batch(vec![StoreAction::Create(
            service("s2", "web").into(),
        )]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ProposeError::Store(StoreError::NameConflict {
                kind: Kind::Service,
                ..
            })
        ),
        "{err:?}"
    );
    assert!(mem.view(|t| !t.services.contains_key("s2")));

    // A rejected entry still consumed its index; the next write gets a later one.
    let next = node
        .propose(batch(vec![StoreAction::Create(
            service("s3", "api").into(),
        )]))
        .await
        .unwrap();
    assert!(next > v1 + 1);

    let read_at = node.ensure_linearizable().await.unwrap();
    assert!(read_at >= next);
    assert_eq!(node.leader(), Some((1, "127.0.0.1:2377".into())));

    node.shutdown().await;
    assert!(!*node.leader_watch().borrow());
    let err = node
        .propose(batch(vec![StoreAction::Create(service("s4", "x").into())]))
        .await
        .unwrap_err();
    assert!(matches!(err, ProposeError::Unavailable(_)), "{err:?}");
    assert!(matches!(
        node.ensure_linearizable().await,
        Err(ProposeError::Unavailable(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_restores_the_store_and_accepts_new_writes() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let (node, mem) = open_leader(config(dir.path())).await;
    for i in 0..5 {
        let sid = format!("svc{i}");
        node.propose(batch(vec![
            StoreAction::Create(service(&sid, &format!("name{i}")).into()),
            StoreAction::Create(task(&format!("task{i}"), &sid, 1).into()),
        ]))
        .await
        .unwrap();
    }
    // An update and a remove, so replay covers every action kind.
    let mut s0 = mem.view(|t| t.services["svc0"].clone());
    s0.spec_version += 1;
    node.propose(batch(vec![
        StoreAction::Update(s0.into()),
        StoreAction::Remove {
            kind: Kind::Task,
            id: "task4".into(),
        },
    ]))
    .await
    .unwrap();
    let before = state(&mem);
    node.shutdown().await;

    // Same directory, fresh store: Raft rebuilds it.
    let mem2 = Arc::new(MemoryStore::new());
    let node2 = Arc::new(
        RaftNode::open(config(dir.path()), mem2.clone())
            .await
            .unwrap(),
    );
    assert_same_objects(&state(&mem2), &before);
    assert_eq!(
        mem2.view(|t| t.id_by_name(Kind::Service, "name3").map(str::to_string)),
        Some("svc3".into())
    );
    assert!(node2.is_initialized().await.unwrap());
    node2.initialize_single().await.unwrap();
    node2.wait_for_leader(DEADLINE).await.unwrap();
    let idx = node2
        .propose(batch(vec![StoreAction::Create(
            service("after", "after").into(),
        )]))
        .await
        .unwrap();
    assert!(idx > before.2);
    assert_eq!(mem2.view(|t| t.services["after"].meta.version), idx);
    let before2 = state(&mem2);

    // Dropped without shutdown: the file is released and the state is still all there.
    drop(node2);
    let mem3 = Arc::new(MemoryStore::new());
    let node3 = RaftNode::open(config(dir.path()), mem3.clone())
        .await
        .unwrap();
    assert_same_objects(&state(&mem3), &before2);
    node3.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_purge_the_log_and_restore_on_restart() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.snapshot_every = 10;
    cfg.keep_logs_after_snapshot = 2;
    let (node, mem) = open_leader(cfg.clone()).await;
    let mut last = 0;
    for i in 0..50 {
        last = node
            .propose(batch(vec![StoreAction::Create(
                service(&format!("s{i}"), &format!("n{i}")).into(),
            )]))
            .await
            .unwrap();
    }
    // Wait (bounded) for a snapshot near the end and the purge behind it.
    let m = node
        .raft()
        .wait(Some(DEADLINE))
        .metrics(
            |m| {
                m.snapshot.as_ref().is_some_and(|s| s.index + 10 >= last)
                    && m.purged.as_ref().is_some_and(|p| p.index + 20 >= last)
            },
            "snapshot and purge",
        )
        .await
        .unwrap();
    let on_disk = node.log_entries_on_disk().await.unwrap();
    assert!(on_disk < 50, "log not purged: {on_disk} entries on disk");
    let before = state(&mem);
    node.shutdown().await;

    let mem2 = Arc::new(MemoryStore::new());
    let node2 = RaftNode::open(cfg, mem2.clone()).await.unwrap();
    assert_same_objects(&state(&mem2), &before);
    assert_eq!(mem2.view(|t| t.services.len()), 50);
    let m2 = node2.metrics();
    assert!(
        m2.snapshot >= m.snapshot,
        "snapshot kept: {:?} vs {:?}",
        m2.snapshot,
        m.snapshot
    );
    let on_disk = node2.log_entries_on_disk().await.unwrap();
    assert!(on_disk < 50, "{on_disk} entries on disk after restart");
    node2.wait_for_leader(DEADLINE).await.unwrap();
    let idx = node2
        .propose(batch(vec![StoreAction::Create(
            service("late", "late").into(),
        )]))
        .await
        .unwrap();
    assert!(idx > last);
    node2.shutdown().await;
}

/// `docker swarm update --snapshot-interval 5`: the running node snapshots by the new
/// interval and keeps the new number of entries behind the snapshot, no restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_follow_a_changed_interval_while_running() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.snapshot_every = 1000;
    cfg.keep_logs_after_snapshot = 500;
    let (node, _mem) = open_leader(cfg.clone()).await;
    let mut last = 0;
    for i in 0..20 {
        last = node
            .propose(batch(vec![StoreAction::Create(
                service(&format!("s{i}"), &format!("n{i}")).into(),
            )]))
            .await
            .unwrap();
    }
    assert_eq!(
        node.metrics().snapshot,
        None,
        "20 entries < the interval of 1000"
    );

    node.set_log_policy(swarmd_raft::LogPolicy {
        interval: 5,
        keep_logs: 3,
        keep_old_snapshots: 2,
    });
    let m = node
        .raft()
        .wait(Some(DEADLINE))
        .metrics(
            |m| {
                m.snapshot.as_ref().is_some_and(|s| s.index + 5 > last)
                    && m.purged.as_ref().map(|p| p.index)
                        == m.snapshot.as_ref().map(|s| s.index - 3)
            },
            "a snapshot by the new interval and a purge 3 entries behind it",
        )
        .await
        .unwrap();
    let snap = m.snapshot.unwrap().index;
    // Five more entries: the next snapshot, by the interval alone.
    for i in 0..5 {
        last = node
            .propose(batch(vec![StoreAction::Create(
                service(&format!("t{i}"), &format!("m{i}")).into(),
            )]))
            .await
            .unwrap();
    }
    node.raft()
        .wait(Some(DEADLINE))
        .metrics(
            |m| {
                m.snapshot
                    .as_ref()
                    .is_some_and(|s| s.index >= snap + 5 && s.index <= last)
            },
            "the next snapshot 5 entries later",
        )
        .await
        .unwrap();
    // Ten more: two more snapshots, of which the old ones beyond two are dropped.
    for i in 0..10 {
        last = node
            .propose(batch(vec![StoreAction::Create(
                service(&format!("u{i}"), &format!("o{i}")).into(),
            )]))
            .await
            .unwrap();
    }
    node.raft()
        .wait(Some(DEADLINE))
        .metrics(
            |m| m.snapshot.as_ref().is_some_and(|s| s.index + 5 > last),
            "a snapshot within 5 entries of the end",
        )
        .await
        .unwrap();
    assert_eq!(
        node.old_snapshots_on_disk().await.unwrap(),
        2,
        "--max-snapshots 2"
    );
    node.shutdown().await;
    // The old snapshots are sealed like the current one: a restart verifies and opens them.
    let node2 = RaftNode::open(cfg, Arc::new(MemoryStore::new()))
        .await
        .unwrap();
    assert_eq!(node2.old_snapshots_on_disk().await.unwrap(), 2);
    node2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_file_fails_to_open_instead_of_serving_bad_data() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let marker = "zzcorruptionmarkerzz";
    let (node, _mem) = open_leader(config(dir.path())).await;
    node.propose(batch(vec![StoreAction::Create(
        service("s1", marker).into(),
    )]))
    .await
    .unwrap();
    node.shutdown().await;

    let path = dir.path().join(swarmd_raft::storage::DB_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    // Encryption at rest: the service's name is nowhere in the file.
    assert!(
        !bytes.windows(marker.len()).any(|w| w == marker.as_bytes()),
        "plaintext in the raft file"
    );
    // Flip one bit in every page after the header: whichever pages hold data now fail.
    for at in (4096 + 100..bytes.len()).step_by(4096) {
        bytes[at] ^= 0x20;
    }
    std::fs::write(&path, &bytes).unwrap();

    let mem2 = Arc::new(MemoryStore::new());
    let err = RaftNode::open(config(dir.path()), mem2.clone())
        .await
        .expect_err("a corrupted file must not open");
    // redb's page checksums catch this one (two-phase commit turns it into an error rather
    // than a fallback to the previous commit); our record checksums are tested in-crate.
    assert!(matches!(err, RaftError::Corrupt { .. }), "{err:?}");
    assert_eq!(
        mem2.applied_index(),
        0,
        "nothing may be applied from a corrupt file"
    );
    assert!(mem2.view(|t| t.services.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_requires_a_fresh_store() {
    let dir = tempfile::tempdir().unwrap();
    let mem = Arc::new(MemoryStore::new());
    mem.advance(3);
    let err = RaftNode::open(config(dir.path()), mem).await.unwrap_err();
    assert!(matches!(err, RaftError::StoreNotEmpty(3)), "{err:?}");
}

/// Without a quorum there is no leader: writes and read barriers fail fast with a certain
/// error instead of hanging until the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_quorum_writes_fail_fast() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let mem = Arc::new(MemoryStore::new());
    let node = RaftNode::open(config(dir.path()), mem.clone())
        .await
        .unwrap();

    // Not initialized yet: no leader anywhere.
    let started = std::time::Instant::now();
    let err = node
        .propose(batch(vec![StoreAction::Create(
            service("s1", "web").into(),
        )]))
        .await
        .unwrap_err();
    assert!(matches!(err, ProposeError::Unavailable(_)), "{err:?}");

    // Two voters, the other unreachable: this node can never win an election.
    let members = BTreeMap::from([
        (
            1,
            swarmd_raft::Member {
                addr: "127.0.0.1:2377".into(),
            },
        ),
        (
            2,
            swarmd_raft::Member {
                addr: "127.0.0.2:2377".into(),
            },
        ),
    ]);
    node.raft().initialize(members).await.unwrap();
    let err = node
        .propose(batch(vec![StoreAction::Create(
            service("s1", "web").into(),
        )]))
        .await
        .unwrap_err();
    assert!(matches!(err, ProposeError::Unavailable(_)), "{err:?}");
    assert!(matches!(
        node.ensure_linearizable().await,
        Err(ProposeError::Unavailable(_))
    ));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(!node.is_leader());
    assert!(mem.view(|t| t.services.is_empty()));
    node.shutdown().await;
}
