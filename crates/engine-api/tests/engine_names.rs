//! Engine objects whose names are not URL-safe, through our API to the host's real Docker
//! Engine with the stock CLI: `network inspect/rm "test 01"` used to be a 500 ("building
//! engine request: invalid uri character") because the handler put the decoded name into the
//! engine URL as it was. Needs a `docker` CLI and an engine at /var/run/docker.sock:
//! `#[ignore]`d, run by scripts/test, where a missing one fails the test.

mod common;

use std::sync::Arc;

use common::FakeBackend;
use swarmd_engine_api::{ListenAddr, Listener, LocalEngine, serve};
use tokio_util::sync::CancellationToken;

const ENGINE: &str = "/var/run/docker.sock";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the docker CLI and a Docker Engine: scripts/test runs it"]
async fn networks_with_unsafe_names_through_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::create_dir_all(&config).unwrap();
    let engine_host = format!("unix://{ENGINE}");
    let probe = common::docker_cli(&engine_host, &config, &["version"]).await;
    swarmd_testkit::require(
        &format!(
            "the docker CLI and a Docker Engine at {ENGINE} ({})",
            probe.stderr
        ),
        probe.ok,
    );

    let sock = dir.path().join("api.sock");
    let fake = FakeBackend::manager();
    fake.with(|st| {
        st.engine = Some(LocalEngine::Docker {
            socket_path: ENGINE.into(),
        })
    });
    let cancel = CancellationToken::new();
    let listener = Listener::bind(&ListenAddr::Unix(sock.clone()))
        .await
        .unwrap();
    let server = tokio::spawn(serve(vec![listener], Arc::new(fake), cancel.clone()));
    let host = format!("unix://{}", sock.display());

    let pid = std::process::id();
    // A space (the reported case), and the characters that would cut a path short or be
    // read as an escape: `#` (fragment), `?` (query), `%` (escape), `+`.
    let names = [format!("test 01 {pid}"), format!("a#b?c%25d+e {pid}")];
    for name in &names {
        let made = common::docker_cli(&engine_host, &config, &["network", "create", name]).await;
        assert!(made.ok, "creating {name:?} on the engine: {}", made.stderr);
        let id = made.stdout.trim().to_string();

        let o = common::docker_cli(
            &host,
            &config,
            &["network", "inspect", "--format", "{{.Name}} {{.Id}}", name],
        )
        .await;
        let inspected = (o.ok, o.stdout.trim().to_string(), o.stderr);
        let rm = common::docker_cli(&host, &config, &["network", "rm", name]).await;
        if !rm.ok {
            common::docker_cli(&engine_host, &config, &["network", "rm", &id]).await;
        }
        assert!(inspected.0, "inspect {name:?}: {}", inspected.2);
        assert_eq!(inspected.1, format!("{name} {id}"));
        assert!(rm.ok, "rm {name:?}: {}", rm.stderr);
        let gone = common::docker_cli(&engine_host, &config, &["network", "inspect", &id]).await;
        assert!(!gone.ok, "{name:?} still on the engine after rm");
    }

    // A name the engine does not know is its 404, not a 500.
    let o = common::docker_cli(
        &host,
        &config,
        &["network", "inspect", &format!("no such {pid}")],
    )
    .await;
    assert!(!o.ok);
    assert!(
        o.stderr
            .contains(&format!("network no such {pid} not found")),
        "{}",
        o.stderr
    );

    cancel.cancel();
    server.await.unwrap().unwrap();
}
