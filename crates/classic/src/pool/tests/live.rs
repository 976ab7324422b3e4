//! Against the local Docker Engine: containers created through bollard show up in the
//! node's view after a refresh and after an event.

use std::ops::ControlFlow;
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::{CreateContainerOptions, RemoveContainerOptions};
use bollard_stubs::models::ContainerCreateBody;

use crate::discovery::{EngineAddr, EngineState, Transition};
use crate::engine::event::Refresh;
use crate::pool::Engine;

fn client() -> Docker {
    Docker::connect_with_unix(
        "/var/run/docker.sock",
        30,
        &bollard::ClientVersion {
            major_version: 1,
            minor_version: 41,
        },
    )
    .unwrap()
}

fn local() -> Engine {
    let addr = EngineAddr::parse("unix:///var/run/docker.sock").unwrap();
    Engine::new(addr, Duration::from_secs(10), 3).unwrap()
}

/// Removes every container labelled with the test's label, even when the test panics.
pub(super) struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        swarmd_testkit::cleanup_engine_containers(&self.0);
    }
}

/// A label unique to this test and the guard that removes what carries it.
pub(super) fn labelled(tag: &str) -> (String, Cleanup) {
    let label = format!(
        "swarmd.test.classic-pool={}",
        swarmd_testkit::unique_name(tag)
    );
    (label.clone(), Cleanup(label))
}

pub(super) async fn create(label: &str) -> String {
    let docker = client();
    let (key, value) = label.split_once('=').unwrap();
    docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(swarmd_testkit::unique_name("classic-pool")),
                ..Default::default()
            }),
            ContainerCreateBody {
                image: Some("busybox:latest".to_owned()),
                cmd: Some(vec!["true".to_owned()]),
                labels: Some([(key.to_owned(), value.to_owned())].into()),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .id
}

pub(super) async fn remove(id: &str) {
    let docker = client();
    docker
        .remove_container(
            id,
            Some(RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        )
        .await
        .unwrap();
}

#[tokio::test]
#[ignore = "needs a Docker Engine: scripts/test runs it"]
async fn refresh_validates_the_engine_and_lists_a_new_container() {
    swarmd_testkit::require_engine!();
    let (label, _cleanup) = labelled("r");
    let mut engine = local();
    assert_eq!(engine.refresh().await.unwrap(), Some(Transition::Validated));
    assert_eq!(engine.health().state(), EngineState::Healthy);
    assert_eq!(engine.node().health, 100);
    assert!(engine.node().cpus > 0 && engine.node().memory > 0);
    assert!(!engine.node().id.is_empty());
    assert!(
        engine
            .node()
            .images
            .iter()
            .any(|i| i.repo_tags.iter().any(|t| t == "busybox:latest")),
        "{:?}",
        engine.node().images
    );

    let id = create(&label).await;
    assert!(engine.node().container(&id).is_none());
    assert_eq!(engine.refresh().await.unwrap(), None);
    let c = engine.node().container(&id).expect("listed after refresh");
    assert_eq!(c.image, "busybox:latest");
    assert_eq!(c.state, "created");

    remove(&id).await;
    engine.refresh().await.unwrap();
    assert!(engine.node().container(&id).is_none());
}

#[tokio::test]
#[ignore = "needs a Docker Engine: scripts/test runs it"]
async fn lost_engine_turns_unhealthy_and_comes_back_on_success() {
    swarmd_testkit::require_engine!();
    let mut engine = local();
    engine.refresh().await.unwrap();
    let live = engine.docker.clone();
    engine.docker =
        Docker::connect_with_http("http://127.0.0.1:1", 2, bollard::API_DEFAULT_VERSION).unwrap();
    engine.refresh().await.unwrap_err();
    engine.refresh().await.unwrap_err();
    assert_eq!(engine.health().state(), EngineState::Healthy);
    assert_eq!(engine.node().health, 34);
    engine.refresh().await.unwrap_err();
    assert_eq!(engine.health().state(), EngineState::Unhealthy);
    assert_eq!(engine.node().health, 0);

    engine.docker = live;
    assert_eq!(
        engine.refresh().await.unwrap(),
        Some(Transition::Reconnected { after_failures: 3 })
    );
    assert_eq!(engine.node().health, 100);
}

#[tokio::test]
#[ignore = "needs a Docker Engine: scripts/test runs it"]
async fn events_bring_a_created_container_in_and_a_removed_one_out() {
    swarmd_testkit::require_engine!();
    let (label, _cleanup) = labelled("e");
    let mut engine = local();
    engine.refresh().await.unwrap();

    // Replayed from `since`, so the watch cannot miss the create however late it opens.
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        - 1;
    let id = create(&label).await;
    assert!(engine.node().container(&id).is_none());
    let watch = engine.watch_events(Some(since), None, |r, node| {
        if matches!(r, Refresh::Container { id: rid, .. } if *rid == id)
            && node.container(&id).is_some()
        {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    tokio::time::timeout(Duration::from_secs(30), watch)
        .await
        .expect("create event seen")
        .unwrap();
    assert_eq!(engine.node().container(&id).unwrap().state, "created");

    remove(&id).await;
    let watch = engine.watch_events(Some(since), None, |_, node| {
        if node.container(&id).is_none() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    tokio::time::timeout(Duration::from_secs(30), watch)
        .await
        .expect("destroy event seen")
        .unwrap();
}

#[tokio::test]
#[ignore = "needs a Docker Engine: scripts/test runs it"]
async fn only_validation_reinspects_known_containers() {
    swarmd_testkit::require_engine!();
    let (label, _cleanup) = labelled("s");
    let id = create(&label).await;
    let mut engine = local();
    engine.refresh().await.unwrap();
    assert_eq!(engine.node().container(&id).unwrap().memory, 0);

    // What an inspect would overwrite survives a soft refresh...
    let mark = |engine: &mut Engine| {
        let c = engine
            .node
            .containers
            .iter_mut()
            .find(|c| c.id == id)
            .unwrap();
        c.memory = 42;
    };
    mark(&mut engine);
    engine.refresh().await.unwrap();
    assert_eq!(engine.node().container(&id).unwrap().memory, 42);

    // ...but not the validation of an engine sent back to pending.
    engine.health.revalidate();
    engine.refresh().await.unwrap();
    assert_eq!(engine.node().container(&id).unwrap().memory, 0);
    remove(&id).await;
}

#[tokio::test]
#[ignore = "needs a Docker Engine: scripts/test runs it"]
async fn events_alone_do_not_validate_a_pending_engine() {
    swarmd_testkit::require_engine!();
    let (label, _cleanup) = labelled("p");
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        - 1;
    let id = create(&label).await;
    let mut engine = local();
    let watch = engine.watch_events(Some(since), None, |_, node| {
        if node.container(&id).is_some() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    tokio::time::timeout(Duration::from_secs(30), watch)
        .await
        .expect("create event seen")
        .unwrap();
    assert_eq!(engine.health().state(), EngineState::Pending);
    remove(&id).await;
}

#[tokio::test]
#[ignore = "needs a Docker Engine: scripts/test runs it"]
async fn a_die_event_refreshes_the_container_state() {
    swarmd_testkit::require_engine!();
    let (label, _cleanup) = labelled("d");
    let id = create(&label).await;
    let mut engine = local();
    engine.refresh().await.unwrap();
    assert_eq!(engine.node().container(&id).unwrap().state, "created");

    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        - 1;
    swarmd_testkit::engine_docker(&["start", &id]).ok();
    // `true` exits at once: the die event's refresh must show it exited.
    let watch = engine.watch_events(Some(since), None, |r, node| {
        let died = matches!(r, Refresh::Container { id: rid, inspect: true } if *rid == id);
        if died && node.container(&id).is_some_and(|c| c.state == "exited") {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    tokio::time::timeout(Duration::from_secs(30), watch)
        .await
        .expect("die event seen")
        .unwrap();
    remove(&id).await;
}
