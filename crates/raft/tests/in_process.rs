//! Cluster scenarios over the in-process test transport with fault injection, on tokio's
//! paused clock: leader and follower loss, quorum loss and recovery, whole-cluster restart,
//! a wiped follower rejoining, removing the leader, and a partition that leaves the old
//! leader in the minority.

mod common;

use std::time::Duration;

use common::*;
use swarmd_raft::RaftError;
use swarmd_raft::testing::Router;
use swarmd_store::ProposeError;
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn leader_down_new_leader_takes_writes_and_nothing_acknowledged_is_lost() {
    init_tracing();
    let mut c = Cluster::new(3).await;
    let mut acked = Vec::new();
    for i in 0..5 {
        let key = format!("before-{i}");
        acked.push((key.clone(), c.write(&key).await));
    }
    let old = c.wait_leader().await;
    let t0 = Instant::now();
    c.stop(old).await;
    let survivors: Vec<_> = c.running();
    let new = c.wait_leader_among(&survivors).await;
    assert_ne!(new, old);
    acked.push(("after".into(), c.write("after").await));
    // Followers wait out the leader lease (ELECTION_MAX since the last heartbeat), then
    // an election timeout, then a (pre-)vote round; this bounds the virtual time of it all.
    let failover = t0.elapsed();
    eprintln!("leader loss: first write after {failover:?} (virtual)");
    assert!(
        failover < ELECTION_MAX * 3,
        "failover took {failover:?} with elections of {ELECTION_MIN:?}..{ELECTION_MAX:?}"
    );
    c.assert_all_present(&acked).await;

    // The old leader comes back as a follower and catches up.
    c.start(old).await;
    c.assert_all_present(&acked).await;
    assert!(!c.node(old).is_leader() || c.wait_leader().await == old);
    c.assert_one_leader_per_term();
    c.shutdown().await;
}

/// Follower loss costs nothing while a quorum remains; a follower that was down briefly
/// catches up from the leader's log, one that was down past the leader's log compaction
/// from a snapshot.
#[tokio::test(start_paused = true)]
async fn follower_down_and_back_catches_up_from_log_then_from_snapshot() {
    init_tracing();
    let opts = Options {
        snapshot_every: 10,
        keep_logs_after_snapshot: 2,
    };
    let mut c = Cluster::with_options(3, opts, Router::new()).await;
    let leader = c.wait_leader().await;
    let f = *c.ids().iter().find(|id| **id != leader).unwrap();
    let mut acked = Vec::new();
    for i in 0..3 {
        let key = format!("a{i}");
        acked.push((key.clone(), c.write(&key).await));
    }

    // Short outage.
    c.stop(f).await;
    for i in 0..3 {
        let key = format!("b{i}");
        acked.push((key.clone(), c.write(&key).await));
    }
    c.start(f).await;
    c.assert_all_present(&acked).await;
    assert_eq!(
        c.router.stats().snapshots,
        0,
        "a short outage is caught up from the log"
    );

    // Longer outage: the leader snapshots and, once its replication stream to the dead
    // follower stops needing them (openraft defers purging entries in flight), purges
    // past what the follower has.
    c.stop(f).await;
    for i in 0..35 {
        let key = format!("c{i}");
        acked.push((key.clone(), c.write(&key).await));
    }
    let leader = c.wait_leader().await;
    let f_applied = c.store(f).applied_index();
    c.wait_until("the leader purges past the follower", || {
        c.node(leader)
            .metrics()
            .purged
            .is_some_and(|p| p.index > f_applied)
    })
    .await;
    let snapshots_before = c.router.stats().snapshots;
    c.start(f).await;
    c.assert_all_present(&acked).await;
    assert!(
        c.router.stats().snapshots > snapshots_before,
        "the follower must have caught up through a snapshot"
    );
    c.assert_one_leader_per_term();
    c.shutdown().await;
}

/// Without a quorum the leader's proposals fail within their bound and soon fail up front
/// with `Unavailable`; reads from the replica still answer; once a quorum is back, writes
/// resume and nothing acknowledged is missing. A refused (`Unavailable`) proposal never
/// shows up later.
#[tokio::test(start_paused = true)]
async fn quorum_loss_fails_fast_reads_answer_and_writes_resume_after_recovery() {
    init_tracing();
    let mut c = Cluster::new(3).await;
    let mut acked = Vec::new();
    for i in 0..3 {
        let key = format!("a{i}");
        acked.push((key.clone(), c.write(&key).await));
    }
    let leader = c.wait_leader().await;
    let followers: Vec<_> = c.ids().into_iter().filter(|id| *id != leader).collect();
    for f in &followers {
        c.stop(*f).await;
    }

    let start = Instant::now();
    let mut refused = Vec::new();
    let mut fast_in_a_row = 0;
    for i in 0.. {
        let key = format!("lost-{i}");
        let t0 = Instant::now();
        let res = c.propose(leader, create(&key)).await;
        let took = t0.elapsed();
        assert!(
            took <= PROPOSE_TIMEOUT + Duration::from_millis(100),
            "attempt {i} took {took:?}"
        );
        match res {
            Ok(index) => panic!("committed {key} at {index} without a quorum"),
            Err(ProposeError::Unavailable(_)) => {
                refused.push(key);
                if took < Duration::from_millis(10) {
                    fast_in_a_row += 1;
                } else {
                    fast_in_a_row = 0;
                }
            }
            Err(ProposeError::OutcomeUnknown(_)) => fast_in_a_row = 0,
            Err(e) => panic!("attempt {i}: unexpected {e:?}"),
        }
        if fast_in_a_row == 3 {
            break;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "proposals never failed fast without a quorum"
        );
    }
    // Reads: the replica still has every acknowledged write.
    for (key, index) in &acked {
        assert_eq!(c.version_of(leader, key), Some(*index));
    }
    // A linearizable read cannot be confirmed, and says so within its bound.
    let read = tokio::time::timeout(CALL_BOUND, c.node(leader).ensure_linearizable())
        .await
        .expect("a read barrier without quorum must not hang");
    assert!(
        matches!(read, Err(ProposeError::Unavailable(_))),
        "{read:?}"
    );

    // One follower back: a quorum again.
    c.start(followers[0]).await;
    acked.push(("recovered".into(), c.write("recovered").await));
    c.assert_all_present(&acked).await;
    c.start(followers[1]).await;
    c.assert_all_present(&acked).await;
    for id in c.ids() {
        for key in &refused {
            assert_eq!(
                c.version_of(id, key),
                None,
                "node {id}: refused proposal {key} was applied"
            );
        }
    }
    c.assert_one_leader_per_term();
    c.shutdown().await;
}

/// All managers stop at once and come back from their disks: a leader is elected and every
/// acknowledged write is on every replica.
#[tokio::test(start_paused = true)]
async fn all_managers_restart_together_and_keep_every_acknowledged_write() {
    init_tracing();
    let mut c = Cluster::new(3).await;
    let mut acked = Vec::new();
    for i in 0..10 {
        let key = format!("a{i}");
        acked.push((key.clone(), c.write(&key).await));
    }
    for id in c.ids() {
        c.stop(id).await;
    }
    for id in c.ids() {
        c.start(id).await;
    }
    c.wait_leader().await;
    c.assert_all_present(&acked).await;
    acked.push(("after-restart".into(), c.write("after-restart").await));
    c.assert_all_present(&acked).await;
    c.assert_one_leader_per_term();
    c.shutdown().await;
}

/// A follower whose disk was wiped is removed and added back as a voter with an empty
/// directory (same Raft id): it rebuilds its replica from the leader — through a snapshot,
/// as the leader compacted its log while the node was out — and votes again.
#[tokio::test(start_paused = true)]
async fn wiped_follower_rejoins_after_remove_and_re_add() {
    init_tracing();
    let opts = Options {
        snapshot_every: 10,
        keep_logs_after_snapshot: 2,
    };
    let mut c = Cluster::with_options(3, opts, Router::new()).await;
    let mut acked = Vec::new();
    for i in 0..5 {
        let key = format!("a{i}");
        acked.push((key.clone(), c.write(&key).await));
    }
    let leader = c.wait_leader().await;
    let f = *c.ids().iter().find(|id| **id != leader).unwrap();
    c.wipe(f).await;
    c.node(leader).remove_voter(f).await.unwrap();
    assert!(c.node(leader).members().iter().all(|(id, _, _)| *id != f));
    for i in 0..25 {
        let key = format!("while-gone-{i}");
        acked.push((key.clone(), c.write(&key).await));
    }
    let leader = c.wait_leader().await;
    c.wait_until("the leader purges its log", || {
        c.node(leader).metrics().purged.is_some_and(|p| p.index > 1)
    })
    .await;
    let snapshots_before = c.router.stats().snapshots;

    c.start(f).await;
    assert!(
        !c.node(f).is_initialized().await.unwrap(),
        "a wiped node starts empty"
    );
    assert_eq!(c.store(f).applied_index(), 0);
    let leader = c.wait_leader().await;
    c.node(leader).add_voter(f, addr(f)).await.unwrap();
    let mut members = c.node(leader).members();
    members.sort();
    assert_eq!(
        members,
        c.ids()
            .into_iter()
            .map(|id| (id, addr(id), true))
            .collect::<Vec<_>>()
    );
    c.assert_all_present(&acked).await;
    assert!(
        c.router.stats().snapshots > snapshots_before,
        "the wiped node must have been sent a snapshot"
    );
    acked.push(("rejoined".into(), c.write("rejoined").await));
    c.assert_all_present(&acked).await;
    c.assert_one_leader_per_term();
    c.shutdown().await;
}

/// Demoting the leader (removing it from the voters) hands leadership to another manager
/// at once;
/// the old leader stops taking writes; promoting it back makes it a voter with every write.
#[tokio::test(start_paused = true)]
async fn removing_the_leader_hands_leadership_over_and_it_can_be_promoted_back() {
    init_tracing();
    let mut c = Cluster::new(3).await;
    let mut acked = vec![("a".to_string(), c.write("a").await)];
    let old = c.wait_leader().await;
    let t0 = Instant::now();
    c.node(old).remove_voter(old).await.unwrap();
    let rest: Vec<_> = c.ids().into_iter().filter(|id| *id != old).collect();
    let new = c.wait_leader_among(&rest).await;
    // Handed over (TransferLeader), not left to the followers' lease and an election
    // timeout, which together take longer than ELECTION_MIN.
    let handover = t0.elapsed();
    assert!(
        handover < ELECTION_MIN,
        "a new leader took {handover:?}: leadership was not transferred"
    );
    assert!(c.node(new).members().iter().all(|(id, _, _)| *id != old));
    c.wait_until("the old leader steps down", || !c.node(old).is_leader())
        .await;
    let refused = c.propose(old, create("on-demoted")).await;
    assert!(
        refused.is_err(),
        "a demoted leader accepted a write: {refused:?}"
    );
    acked.push(("after-demote".into(), c.write("after-demote").await));
    // The removed node no longer receives the log.
    c.assert_present_on(&rest, &acked).await;

    // Promote it back.
    let leader = c.wait_leader_among(&rest).await;
    c.node(leader).add_voter(old, addr(old)).await.unwrap();
    assert_eq!(
        c.node(leader).members().iter().filter(|m| m.2).count(),
        3,
        "three voters again"
    );
    acked.push(("after-promote".into(), c.write("after-promote").await));
    c.assert_all_present(&acked).await;
    assert_eq!(c.version_of(old, "on-demoted"), None);
    c.assert_one_leader_per_term();
    c.shutdown().await;
}

/// A partition leaves the old leader with one follower (2 of 5): it commits nothing, soon
/// refuses writes up front and steps down (its leadership watch turns false, so leader-only
/// components stop), while the majority elects a new leader and takes writes. After healing,
/// the old leader follows, holds every acknowledged write and none of its refused ones.
#[tokio::test(start_paused = true)]
async fn partition_with_old_leader_in_minority_it_refuses_writes_and_steps_down() {
    init_tracing();
    let mut c = Cluster::new(5).await;
    let mut acked = Vec::new();
    for i in 0..3 {
        let key = format!("a{i}");
        acked.push((key.clone(), c.write(&key).await));
    }
    let old = c.wait_leader().await;
    let others: Vec<_> = c.ids().into_iter().filter(|id| *id != old).collect();
    let minority = [old, others[0]];
    let majority = others[1..].to_vec();
    let dropped_before = c.router.stats().dropped;
    c.router.partition(&[&minority, &majority]);

    // The old leader never commits; its proposals end within their bound and soon are
    // refused at once.
    let start = Instant::now();
    let mut minority_keys = Vec::new();
    // (The sampled no-overlap check below starts once the old leader has stepped down; the
    // proposals here are bounded and the majority cannot elect before the lease ends.)
    loop {
        let key = format!("minority-{}", minority_keys.len());
        let t0 = Instant::now();
        let res = c.propose(old, create(&key)).await;
        minority_keys.push(key.clone());
        assert!(res.is_err(), "the minority leader committed {key}: {res:?}");
        if matches!(res, Err(ProposeError::Unavailable(_)))
            && t0.elapsed() < Duration::from_millis(10)
        {
            break;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "the minority leader never refused up front"
        );
    }
    c.wait_until("the minority leader steps down", || {
        !c.node(old).is_leader()
    })
    .await;

    let new = c.wait_leader_among(&majority).await;
    let term_new = c.node(new).metrics().current_term;
    assert!(term_new > c.node(old).metrics().current_term || !c.node(old).is_leader());
    for i in 0..3 {
        let key = format!("majority-{i}");
        acked.push((
            key.clone(),
            c.propose(new, create(&key)).await.expect("majority write"),
        ));
    }
    assert!(
        c.router.stats().dropped > dropped_before,
        "the partition dropped nothing"
    );

    c.router.heal();
    c.assert_all_present(&acked).await;
    assert!(!c.node(old).is_leader() || c.wait_leader().await == old);
    for id in c.ids() {
        for key in &minority_keys {
            assert_eq!(
                c.version_of(id, key),
                None,
                "node {id}: minority write {key} survived"
            );
        }
    }
    c.assert_one_leader_per_term();
    c.shutdown().await;
}

/// The leader lease does not make a healthy leader flap: with slow links (40 ms each way)
/// and no writes for a long while, the leader's watch never changes.
#[tokio::test(start_paused = true)]
async fn healthy_leader_keeps_its_leadership_watch_over_slow_links() {
    init_tracing();
    let mut c = Cluster::new(3).await;
    c.router.set_default_delay(Duration::from_millis(40));
    let leader = c.wait_leader().await;
    let mut watch = c.node(leader).leader_watch();
    watch.mark_unchanged();
    let term = c.node(leader).metrics().current_term;
    // 30 s of idle (virtual) time, heartbeats the only traffic: the watch never changes.
    let flapped = tokio::time::timeout(Duration::from_secs(30), watch.changed()).await;
    assert!(flapped.is_err(), "the leader watch flapped");
    assert!(c.node(leader).is_leader());
    assert_eq!(c.node(leader).metrics().current_term, term);
    let index = c.propose(leader, create("still-leading")).await.unwrap();
    c.assert_all_present(&[("still-leading".into(), index)])
        .await;
    c.shutdown().await;
}

/// A leader whose disk lost its last entry (an append that failed on a full disk, or never
/// reached the disk before a crash) while its followers committed it, restarted before they
/// noticed it was gone. Restored as leader of its old term (openraft's default), it served
/// reads without that entry and wrote a different one under the same log id, which its
/// followers took for the one they had: `scripts/chaos --seed 11` saw a stale read. It must
/// win an election instead, which its shorter log cannot.
#[tokio::test(start_paused = true)]
async fn a_restarted_leader_missing_a_committed_entry_does_not_lead_again() {
    init_tracing();
    let mut c = Cluster::new(3).await;
    let mut acked = vec![("a".to_string(), c.write("a").await)];
    let old = c.wait_leader().await;
    c.stop(old).await;
    let before = c.copy_disk(old);
    c.start(old).await;
    let leader = c.wait_leader().await;
    if leader != old {
        c.node(leader)
            .raft()
            .trigger()
            .transfer_leader(old)
            .await
            .unwrap();
    }
    c.wait_until("the old leader leads again", || c.node(old).is_leader())
        .await;
    let term = c.node(old).metrics().current_term;
    let b = c.propose(old, create("b")).await.unwrap();
    acked.push(("b".into(), b));
    // Both followers hold "b", as when the leader's own append failed and they alone
    // committed it; then the leader's disk turns out not to have it.
    for id in c.ids().into_iter().filter(|id| *id != old) {
        c.wait_applied(id, b).await;
    }
    c.stop(old).await;
    c.set_disk(old, before);
    c.start(old).await;

    let leader = c.wait_leader().await;
    assert_ne!(leader, old, "a leader without a committed entry leads");
    assert!(c.node(leader).metrics().current_term > term);
    acked.push(("c".into(), c.write("c").await));
    c.assert_all_present(&acked).await;
    c.assert_one_leader_per_term();
    c.shutdown().await;
}

/// A leader that restarts after the others moved on to a higher term comes back with its
/// old term's committed vote on disk (openraft demotes it in memory only). Until a quorum
/// acknowledges it, it must not claim leadership: its leadership watch never turns true, so
/// leader-only components do not start on a deposed manager.
#[tokio::test(start_paused = true)]
async fn a_restarted_deposed_leader_never_claims_leadership() {
    init_tracing();
    let mut c = Cluster::new(3).await;
    let mut acked = vec![("a".to_string(), c.write("a").await)];
    let old = c.wait_leader().await;
    c.stop(old).await;
    let rest = c.running();
    let new = c.wait_leader_among(&rest).await;
    acked.push(("b".into(), c.write("b").await));
    assert!(c.node(new).metrics().current_term > 1);

    c.start(old).await;
    let node = c.node(old);
    // A clone of the node's own, never-read receiver: `has_changed` reports any change of
    // the watch since the node opened, even one already reverted.
    let watch = node.leader_watch();
    c.wait_until("the restarted node follows the new leader", || {
        node.metrics().current_leader == Some(new)
    })
    .await;
    c.assert_all_present(&acked).await;
    assert!(!node.is_leader());
    assert!(
        !watch.has_changed().unwrap(),
        "the deposed leader's watch turned true after its restart"
    );
    c.assert_one_leader_per_term();
    c.shutdown().await;
}

/// The removal of a leader can be cut short after its first (joint) step commits, and that
/// manager can later lead again from the old half of the joint membership. A membership
/// change it then starts must neither crash its Raft core (openraft asserts that only a
/// voter appends a membership) nor go through: it finishes its own removal and refuses,
/// and the next leader can make the change.
#[tokio::test(start_paused = true)]
async fn a_leader_whose_removal_was_interrupted_finishes_it_instead_of_crashing() {
    init_tracing();
    let mut c = Cluster::new(3).await;
    let acked = vec![("a".to_string(), c.write("a").await)];
    let l = c.wait_leader().await;
    let others: Vec<_> = c.ids().into_iter().filter(|id| *id != l).collect();
    // Slow links from the leader, so its removal's first step can be seen committed before
    // the second step reaches anyone.
    for o in &others {
        c.router.set_delay(l, *o, Duration::from_millis(50));
    }
    let node = c.node(l);
    let removal = tokio::spawn({
        let node = node.clone();
        async move { node.remove_voter(l).await }
    });
    // The joint step committed and the second step (without `l`) is appended on `l` and on
    // its way: cut `l` off before it arrives.
    c.wait_until("the second step of the removal is appended", || {
        let m = node.metrics();
        let configs = m.membership_config.membership().get_joint_config().clone();
        configs.len() == 1 && !configs[0].contains(&l)
    })
    .await;
    c.router.isolate(l);
    let _ = removal.await.unwrap();

    // The others take over with the joint membership, then hand leadership back to `l`.
    let new = c.wait_leader_among(&others).await;
    c.router.heal();
    // openraft hands leadership only to a manager that has flushed the leader's whole log; an
    // AppendEntries lost in the partition holds its replication until that call's deadline.
    c.wait_until("the old leader follows and has caught up", || {
        let (m, lm) = (c.node(l).metrics(), c.node(new).metrics());
        m.current_leader == Some(new) && m.last_applied == lm.last_applied
    })
    .await;
    c.node(new)
        .raft()
        .trigger()
        .transfer_leader(l)
        .await
        .unwrap();
    c.wait_until("the old leader leads again", || c.node(l).is_leader())
        .await;
    assert_eq!(
        c.node(l)
            .metrics()
            .membership_config
            .membership()
            .get_joint_config()
            .len(),
        2,
        "still in the joint membership"
    );

    let res = tokio::time::timeout(CALL_BOUND * 3, c.node(l).remove_voter(others[1]))
        .await
        .expect("bounded");
    assert!(
        !matches!(res, Err(RaftError::Fatal(_))),
        "the raft core crashed: {res:?}"
    );
    assert!(
        matches!(res, Err(RaftError::Membership(_))),
        "a leaving leader made a membership change: {res:?}"
    );
    // Its own removal completed; the next leader makes the change.
    let next = c.wait_leader_among(&others).await;
    assert!(
        c.node(next).members().iter().all(|m| m.0 != l),
        "{l} still a member"
    );
    let victim = *others.iter().find(|o| **o != next).unwrap();
    c.node(next).remove_voter(victim).await.unwrap();
    let voters: Vec<_> = c
        .node(next)
        .members()
        .into_iter()
        .filter(|m| m.2)
        .map(|m| m.0)
        .collect();
    assert_eq!(voters, vec![next]);
    c.assert_present_on(&[next], &acked).await;
    c.shutdown().await;
}

/// Five managers keep committing with two of them down (the leader among them), and fail
/// fast once a third goes; bringing one back restores writes with nothing lost.
#[tokio::test(start_paused = true)]
async fn five_managers_survive_two_failures_not_three() {
    init_tracing();
    let mut c = Cluster::new(5).await;
    let mut acked = vec![("a".to_string(), c.write("a").await)];
    let leader = c.wait_leader().await;
    let follower = *c.ids().iter().find(|id| **id != leader).unwrap();
    c.stop(leader).await;
    c.stop(follower).await;
    acked.push(("two-down".into(), c.write("two-down").await));
    c.assert_all_present(&acked).await;

    let third = c.running()[0];
    c.stop(third).await;
    let lone = c.running();
    assert_eq!(lone.len(), 2);
    let start = Instant::now();
    loop {
        // A survivor's proposals fail, each within its bound, until refused up front.
        let id = lone[0];
        let res = c.propose(id, create("no-quorum")).await;
        assert!(res.is_err(), "2 of 5 committed a write: {res:?}");
        if matches!(
            res,
            Err(ProposeError::Unavailable(_) | ProposeError::NotLeader { .. })
        ) {
            break;
        }
        assert!(start.elapsed() < DEADLINE, "never refused without quorum");
    }
    c.start(third).await;
    acked.push(("three-up".into(), c.write("three-up").await));
    c.start(leader).await;
    c.start(follower).await;
    c.assert_all_present(&acked).await;
    c.assert_one_leader_per_term();
    c.shutdown().await;
}

/// The leader tells which managers it cannot reach (what `node ls` shows as a manager's
/// reachability); a follower cannot tell and says so.
#[tokio::test(start_paused = true)]
async fn the_leader_reports_stopped_members_unreachable_and_followers_do_not_guess() {
    init_tracing();
    let mut c = Cluster::new(3).await;
    let stale = Duration::from_secs(2);
    let leader = c.wait_leader().await;
    let f = *c.ids().iter().find(|id| **id != leader).unwrap();
    c.wait_until("every member acknowledged", || {
        c.node(leader)
            .unreachable_peers(stale)
            .is_some_and(|s| s.is_empty())
    })
    .await;
    let other = *c
        .ids()
        .iter()
        .find(|id| **id != leader && **id != f)
        .unwrap();
    assert_eq!(c.node(other).unreachable_peers(stale), None);

    c.stop(f).await;
    let t0 = Instant::now();
    c.wait_until("the stopped member is unreachable", || {
        c.node(leader)
            .unreachable_peers(stale)
            .is_some_and(|s| s.contains(&f))
    })
    .await;
    assert!(
        t0.elapsed() >= stale,
        "not before it has been silent for {stale:?}"
    );
    assert_eq!(
        c.node(leader).unreachable_peers(stale),
        Some([f].into()),
        "only the stopped member"
    );

    c.start(f).await;
    c.wait_until("back and reachable", || {
        c.node(leader)
            .unreachable_peers(stale)
            .is_some_and(|s| s.is_empty())
    })
    .await;
    c.shutdown().await;
}
