//! Against the local Docker Engine: a re-read asked with `Pool::refresh_container` is in
//! the pool's view once `Pool::settled` returns, before the engine's own event could
//! have been processed (what lets `docker ps` through the manager read its own writes).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::live::{create, labelled, remove};
use crate::discovery::{Discovery, EngineAddr, EngineState, RefreshIntervals};
use crate::pool::{Pool, PoolConfig};

fn listed(pool: &Pool, id: &str) -> Option<String> {
    pool.engines()
        .into_iter()
        .flat_map(|e| e.node.containers)
        .find(|c| c.id == id)
        .map(|c| c.state)
}

#[tokio::test]
#[ignore = "needs a Docker Engine: scripts/test runs it"]
async fn settled_pool_shows_a_change_at_once() {
    swarmd_testkit::require_engine!();
    let (label, _cleanup) = labelled("settle");
    let cancel = CancellationToken::new();
    let _stop = cancel.clone().drop_guard();
    let addr = EngineAddr::parse("unix:///var/run/docker.sock").unwrap();
    let pool = Pool::start(
        PoolConfig {
            timeout: Duration::from_secs(10),
            failure_retry: 3,
            // Long: no periodic refresh may list the container for us.
            refresh: RefreshIntervals {
                min: Duration::from_secs(600),
                max: Duration::from_secs(601),
            },
            heartbeat: Duration::from_secs(60),
            tls: None,
            dialer: None,
            unhealthy_retry: None,
        },
        Discovery::Nodes(vec![addr.clone()]),
        cancel.clone(),
    );
    // A re-read asked before the engine's task follows its events waits in the task's
    // queue, and `settled` waits for it: no need to wait for the event stream here.
    swarmd_testkit::wait_until_async(
        Duration::from_secs(30),
        Duration::from_millis(20),
        "the engine healthy",
        || {
            let healthy = pool.engines()[0].state == EngineState::Healthy;
            async move { healthy }
        },
    )
    .await;

    for round in 0..5 {
        let id = create(&label).await;
        pool.refresh_container(&addr, &id);
        pool.settled().await;
        assert_eq!(
            listed(&pool, &id).as_deref(),
            Some("created"),
            "round {round}: created container listed once settled"
        );
        remove(&id).await;
        pool.refresh_container(&addr, &id);
        pool.settled().await;
        assert_eq!(
            listed(&pool, &id),
            None,
            "round {round}: removed once settled"
        );
    }
}
