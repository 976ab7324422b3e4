//! A 3-manager swarm in one process: three [`SwarmNode`]s on their own loopback addresses,
//! joined over real mTLS, each running its tasks on the agent's fake executor. No process
//! is spawned and nothing needs root or an engine, so these run in seconds.

mod common;

use common::{Member, POLL, WAIT, three_managers, wait_leader};
use swarmd_engine_api::backend::{Backend, BackendError, SwarmUpdateFlags};
use swarmd_node::NodeBackend;
use swarmd_node::node::NodePhase;
use swarmd_testkit::{wait_for_async, wait_until_async};
use swarmd_types::models::{
    LocalNodeState, NodeSpecRoleEnum, ServiceSpec, TaskSpec, TaskSpecContainerSpec, TaskState,
};

fn service(name: &str) -> ServiceSpec {
    ServiceSpec {
        name: Some(name.into()),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some("busybox:latest".into()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Creates service `name` through `m`, retrying while the swarm has no leader; a try
/// whose answer was lost but that committed is found by name rather than created twice.
async fn create_service(m: &Member, name: &str) {
    wait_for_async(WAIT, POLL, &format!("service {name} created"), || async {
        if m.service_names().await.iter().any(|n| n == name) {
            return Ok(());
        }
        m.api.service_create(service(name)).await.map(|_| ())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_leader_is_replaced_and_nothing_committed_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let mut members = three_managers(dir.path()).await;
    let l = wait_leader(&members).await;
    create_service(&members[l], "before").await;
    for m in &members {
        wait_until_async(WAIT, POLL, "every replica holds the service", || async {
            m.service_names().await == ["before"]
        })
        .await;
    }

    let old = members.remove(l);
    let old_id = old.node_id();
    old.stop().await;

    let new = wait_leader(&members).await;
    assert_ne!(members[new].node_id(), old_id);
    // A write through the follower goes to the new leader.
    let follower = &members[1 - new];
    create_service(follower, "after").await;
    for m in &members {
        wait_until_async(WAIT, POLL, "both services on the survivors", || async {
            m.service_names().await == ["after", "before"]
        })
        .await;
    }
    // The new service's task runs on a surviving node (the fake executor).
    let survivors: Vec<String> = members.iter().map(Member::node_id).collect();
    let api = &members[new].api;
    wait_until_async(WAIT, POLL, "the new service's task running", || async {
        let services = api.services().await.unwrap_or_default();
        let Some(after) = services
            .iter()
            .find(|s| s.spec.name.as_deref() == Some("after"))
        else {
            return false;
        };
        api.tasks().await.unwrap_or_default().iter().any(|t| {
            t.service_id == after.id
                && t.status.state == TaskState::RUNNING
                && survivors.contains(&t.node_id)
        })
    })
    .await;
    for m in members {
        m.stop().await;
    }
}

/// Sets node `id`'s desired role through `api`.
async fn set_role(api: &NodeBackend, id: &str, role: NodeSpecRoleEnum) {
    let node = api
        .nodes()
        .await
        .unwrap()
        .into_iter()
        .find(|n| n.id == id)
        .expect("the node is listed");
    let mut spec = node.spec.clone();
    spec.role = Some(role);
    api.node_update(id, node.meta.version, spec)
        .await
        .expect("node update");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_demoted_manager_runs_as_a_worker_until_promoted_again() {
    let dir = tempfile::tempdir().unwrap();
    let members = three_managers(dir.path()).await;
    let l = wait_leader(&members).await;
    let target = &members[(l + 1) % 3];
    let id = target.node_id();

    set_role(&members[l].api, &id, NodeSpecRoleEnum::WORKER).await;
    wait_until_async(WAIT, POLL, "the demoted node runs as a worker", || async {
        target.node.active().is_some_and(|a| a.mgr.is_none())
    })
    .await;
    let status = target.api.swarm_status();
    assert_eq!(status.local_node_state, LocalNodeState::ACTIVE);
    assert!(!status.control_available, "a worker serves no control API");
    assert!(matches!(
        target.api.nodes().await,
        Err(BackendError::NotManager)
    ));
    wait_until_async(WAIT, POLL, "the leader's raft down to 2 voters", || async {
        members[l].raft().is_some_and(|(_, voters)| voters == 2)
    })
    .await;

    set_role(&members[l].api, &id, NodeSpecRoleEnum::MANAGER).await;
    wait_until_async(WAIT, POLL, "the promoted node a voter again", || async {
        target.raft().is_some_and(|(_, voters)| voters == 3)
    })
    .await;
    wait_until_async(WAIT, POLL, "the promoted node serves the API", || async {
        target.api.nodes().await.is_ok_and(|n| n.len() == 3)
    })
    .await;
    assert!(target.api.swarm_status().control_available);
    for m in members {
        m.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_autolocked_manager_restarts_locked_and_serves_once_unlocked() {
    let dir = tempfile::tempdir().unwrap();
    let mut members = three_managers(dir.path()).await;
    let l = wait_leader(&members).await;
    let api = &members[l].api;
    let cluster = api.swarm_inspect().await.unwrap();
    let mut spec = cluster.spec.clone();
    spec.encryption_config
        .get_or_insert_with(Default::default)
        .auto_lock_managers = Some(true);
    api.swarm_update(cluster.meta.version, spec, SwarmUpdateFlags::default())
        .await
        .expect("swarm update --autolock");
    let key = api.swarm_unlock_key().await.unwrap();
    assert!(key.starts_with("SWMKEY-1-"), "{key}");

    // A follower seals its keys as the change replicates to it.
    let f = (l + 1) % 3;
    let sealed = members[f].root.join("swarm");
    wait_until_async(WAIT, POLL, "the follower's keys sealed", || async {
        swarmd_node::cluster::keys_are_sealed(&sealed)
    })
    .await;
    let (root, addr) = members.remove(f).stop().await;
    let restarted = Member::start(&root, addr).await;
    assert!(matches!(restarted.node.phase(), NodePhase::Locked(_)));
    assert_eq!(
        restarted.api.swarm_status().local_node_state,
        LocalNodeState::LOCKED
    );
    assert!(
        restarted.api.nodes().await.is_err(),
        "locked: nothing served"
    );

    let wrong = swarmd_crypto::UnlockKey::generate().to_human().to_string();
    assert!(matches!(
        restarted.api.swarm_unlock(wrong).await,
        Err(BackendError::Swarm(e)) if e.code() == swarmd_types::error::Code::Unauthenticated
    ));
    assert!(matches!(restarted.node.phase(), NodePhase::Locked(_)));

    restarted.api.swarm_unlock(key).await.expect("unlock");
    assert!(matches!(restarted.node.phase(), NodePhase::Active(_)));
    // It serves again, and follows what the swarm commits after its restart.
    let l = wait_leader(&members).await;
    create_service(&members[l], "after-unlock").await;
    wait_until_async(WAIT, POLL, "the unlocked manager replicates", || async {
        restarted.service_names().await == ["after-unlock"]
    })
    .await;
    assert!(restarted.api.swarm_status().control_available);
    members.push(restarted);
    for m in members {
        m.stop().await;
    }
}
