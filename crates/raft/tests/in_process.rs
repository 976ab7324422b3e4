//! Cluster scenarios over the in-process test transport with fault injection, on tokio's
//! paused clock: leader and follower loss, quorum loss and recovery, whole-cluster restart,
//! a wiped follower rejoining, removing the leader, and a partition that leaves the old
//! leader in the minority.

mod common;

use common::*;

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
    c.stop(old).await;
    let survivors: Vec<_> = c.running();
    let new = c.wait_leader_among(&survivors).await;
    assert_ne!(new, old);
    acked.push(("after".into(), c.write("after").await));
    c.assert_all_present(&acked).await;

    // The old leader comes back as a follower and catches up.
    c.start(old).await;
    c.assert_all_present(&acked).await;
    assert!(!c.node(old).is_leader() || c.wait_leader().await == old);
    c.assert_one_leader_per_term();
    c.shutdown().await;
}
