//! The watchdog against a real pool of two engines (swarmd_testkit::EnginePool): engine
//! node-0 crashes, its policy container comes back on node-1 and its pinned one does
//! not; node-0 restarts and the stale copy is removed.

use std::sync::Arc;
use std::time::Duration;

use swarmd_testkit::{
    EnginePool, REGISTRY_IMAGE, is_root, require, require_engine, wait_for_async,
};
use tokio_util::sync::CancellationToken;

use super::{Watchdog, run};
use crate::discovery::{Discovery, EngineAddr, EngineState};
use crate::pool::{EngineSnapshot, Pool, PoolConfig};
use crate::scheduler::select::Scheduler;

const WAIT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(250);
const BUSYBOX: &str = "busybox:latest";

/// `docker run -d` (or `docker create` when `cmd` is `create`) on one engine, as the
/// manager would have created it: Swarm ID and policy in labels, plus `extra` labels.
fn run_on(pool: &EnginePool, i: usize, name: &str, sid: &str, image: &str, extra: &[&str]) {
    let (cmd, extra) = match extra {
        ["create", rest @ ..] => (vec!["create"], rest),
        _ => (vec!["run", "-d"], extra),
    };
    let id_label = format!("com.docker.swarm.id={sid}");
    let mut args = cmd;
    args.extend([
        "--name",
        name,
        "--label",
        &id_label,
        "--label",
        r#"com.docker.swarm.reschedule-policies=["on-node-failure"]"#,
    ]);
    for l in extra {
        args.extend(["--label", l]);
    }
    args.extend([image, "sleep", "1d"]);
    pool.machine(i).docker_tcp(&args).ok();
}

/// `{{.State.Status}} {{swarm id}}` of `name` on engine `i`, or the CLI's error.
fn status(pool: &EnginePool, i: usize, name: &str) -> Result<String, String> {
    let out = pool.machine(i).docker_tcp(&[
        "inspect",
        "--format",
        r#"{{.State.Status}} {{index .Config.Labels "com.docker.swarm.id"}}"#,
        name,
    ]);
    if out.success() {
        Ok(out.stdout_trimmed().to_owned())
    } else {
        Err(out.report("docker inspect"))
    }
}

fn names_on(pool: &EnginePool, i: usize) -> Vec<String> {
    let out = pool
        .machine(i)
        .docker_tcp(&["ps", "-a", "--format", "{{.Names}}"])
        .ok();
    let mut names: Vec<String> = out.lines().iter().map(|s| s.to_string()).collect();
    names.sort();
    names
}

/// A pool over `addrs` with fast refreshes, once both engines are healthy and node-0's
/// web is known with its inspect.
async fn start_pool(addrs: &[EngineAddr], cancel: &CancellationToken) -> Arc<Pool> {
    let pool = Pool::start(
        PoolConfig::for_live_tests(),
        Discovery::Nodes(addrs.to_vec()),
        cancel.clone(),
    );
    wait_for_engines(&pool, "both engines healthy, web known", |e| {
        let web = e.iter().any(|e| {
            e.node
                .containers
                .iter()
                .any(|c| c.names == ["/web"] && c.inspect.is_some())
        });
        e.len() == 2 && e.iter().all(|e| e.state == EngineState::Healthy) && web
    })
    .await;
    pool
}

async fn wait_for_engines(pool: &Pool, what: &str, ok: impl Fn(&[EngineSnapshot]) -> bool) {
    let ok = &ok;
    wait_for_async(WAIT, POLL, what, || async move {
        let e = pool.engines();
        if ok(&e) {
            Ok(())
        } else {
            Err(format!(
                "{:?}",
                e.iter().map(|e| e.state).collect::<Vec<_>>()
            ))
        }
    })
    .await;
}

fn watchdog(pool: &Arc<Pool>, interval: Duration, cancel: &CancellationToken) {
    tokio::spawn(run(
        Watchdog {
            pool: pool.clone(),
            scheduler: Scheduler::default(),
            schedule_lock: Arc::new(tokio::sync::Mutex::new(())),
            timeout: Duration::from_secs(5),
            interval,
        },
        cancel.clone(),
    ));
}

/// Two engines, node-0 with `web` (policy) on it; its addresses.
fn engines_with_web() -> (EnginePool, Vec<EngineAddr>) {
    require("root (network namespaces)", is_root());
    require_engine!();
    let engines = EnginePool::plain(2).expect("a pool of 2 engines starts");
    let addrs = engines
        .addrs()
        .iter()
        .map(|a| EngineAddr::parse(a).unwrap())
        .collect();
    // web's image is on node-0 only: node-1 must pull it to take web over.
    engines
        .machine(0)
        .docker_tcp(&["pull", REGISTRY_IMAGE])
        .ok();
    run_on(&engines, 0, "web", "sid-web", REGISTRY_IMAGE, &[]);
    (engines, addrs)
}

async fn web_running_on_node_1(engines: &EnginePool) {
    wait_for_async(WAIT, POLL, "web running on node-1", || async move {
        status(engines, 1, "web").and_then(|s| {
            if s == "running sid-web" {
                Ok(())
            } else {
                Err(s)
            }
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root and dockerd: scripts/test runs it"]
async fn resched_moves_a_lost_engines_container_and_removes_the_stale_copy() {
    let (mut engines, addrs) = engines_with_web();
    run_on(&engines, 0, "idle", "sid-idle", BUSYBOX, &["create"]);
    run_on(
        &engines,
        0,
        "pinned",
        "sid-pinned",
        BUSYBOX,
        &[r#"com.docker.swarm.constraints=["node==node-0"]"#],
    );

    let cancel = CancellationToken::new();
    let _stop = cancel.clone().drop_guard();
    let pool = start_pool(&addrs, &cancel).await;
    // Only engine state changes wake it: the timer is too slow for this test.
    watchdog(&pool, Duration::from_secs(3600), &cancel);

    engines
        .machine_mut(0)
        .stop_engine()
        .expect("node-0 crashes");
    web_running_on_node_1(&engines).await;
    assert!(
        status(&engines, 1, "pinned").is_err(),
        "a node== container stays on its engine"
    );
    let e = &engines;
    wait_for_async(WAIT, POLL, "idle moved to node-1", || async move {
        status(e, 1, "idle")
    })
    .await;
    assert_eq!(
        status(&engines, 1, "idle").unwrap(),
        "created sid-idle",
        "a container that was not running is moved but not started"
    );
    assert_eq!(names_on(&engines, 1), ["idle", "web"]);
    let on_lost: Vec<Vec<String>> = pool
        .nodes()
        .into_iter()
        .filter(|(a, _)| *a == addrs[0])
        .flat_map(|(_, n)| n.containers.into_iter().map(|c| c.names))
        .collect();
    assert_eq!(
        on_lost,
        [["/pinned"]],
        "the lost engine's list drops the moved copy, keeps the pinned one"
    );
    let nodes = pool.nodes();
    let refs: Vec<_> = nodes.iter().map(|(_, n)| n).collect();
    let web = crate::view::resolve::resolve_container(&refs, "web").expect("the pool resolves web");
    assert_eq!(
        web.node.addr,
        addrs[1].to_string(),
        "web resolves to its new engine"
    );

    engines
        .machine_mut(0)
        .start_engine()
        .expect("node-0 restarts");
    let e = &engines;
    wait_for_async(WAIT, POLL, "stale web removed from node-0", || async move {
        let names = names_on(e, 0);
        if names == ["pinned"] {
            Ok(())
        } else {
            Err(format!("{names:?}"))
        }
    })
    .await;
    assert_eq!(status(&engines, 1, "web").unwrap(), "running sid-web");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root and dockerd: scripts/test runs it"]
async fn resched_a_watchdog_started_after_the_loss_still_moves() {
    let (mut engines, addrs) = engines_with_web();
    let cancel = CancellationToken::new();
    let _stop = cancel.clone().drop_guard();
    let pool = start_pool(&addrs, &cancel).await;
    engines
        .machine_mut(0)
        .stop_engine()
        .expect("node-0 crashes");
    wait_for_engines(&pool, "node-0 unhealthy", |e| {
        e.iter().any(|e| e.state == EngineState::Unhealthy)
    })
    .await;
    // No state change comes after this: the first look at the pool must do it.
    watchdog(&pool, Duration::from_secs(3600), &cancel);
    web_running_on_node_1(&engines).await;
}
