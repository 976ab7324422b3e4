//! The docker CLI through our proxy to the host's real Docker Engine: `run` (attach
//! upgrade, wait, start), `exec` (exec start upgrade), `logs`, `ps`, `rm`. `#[ignore]`d (scripts/test
//! runs it); it fails without a `docker` CLI, an engine at /var/run/docker.sock and the
//! `busybox:latest` image.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::FakeBackend;
use swarmd_engine_api::{ListenAddr, Listener, LocalEngine, serve};
use tokio_util::sync::CancellationToken;

const ENGINE: &str = "/var/run/docker.sock";

async fn docker(host: &str, config: &Path, args: &[&str]) -> (bool, String, String) {
    let o = common::docker_cli(host, config, args).await;
    (o.ok, o.stdout, o.stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker Engine with busybox:latest: scripts/test runs it"]
async fn docker_cli_through_the_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::create_dir_all(&config).unwrap();
    let engine_host = format!("unix://{ENGINE}");
    let (ok, _, _) = docker(
        &engine_host,
        &config,
        &["image", "inspect", "busybox:latest"],
    )
    .await;
    swarmd_testkit::require("the docker CLI, a Docker Engine and busybox:latest", ok);

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
    let name = format!("swarmd-engine-api-test-{}", std::process::id());

    let (ok, out, err) = docker(
        &host,
        &config,
        &[
            "run",
            "--rm",
            "--label",
            "swarmd.test=engine-api",
            "busybox:latest",
            "echo",
            "hi",
        ],
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "hi");

    // `-i` with stdin that ends: the half-close must travel through the upgraded stream
    // for `cat` to exit.
    let mut cmd = tokio::process::Command::new("docker");
    cmd.args([
        "run",
        "-i",
        "--rm",
        "--label",
        "swarmd.test=engine-api",
        "busybox:latest",
        "cat",
    ])
    .env("DOCKER_HOST", &host)
    .env("DOCKER_CONFIG", &config)
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::piped())
    .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"piped text\n").await.unwrap();
    }
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("docker run -i exits once stdin ends")
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "piped text\n");

    let (ok, _, err) = docker(
        &host,
        &config,
        &[
            "run",
            "-d",
            "--name",
            &name,
            "--label",
            "swarmd.test=engine-api",
            "busybox:latest",
            "sh",
            "-c",
            "echo started; sleep 30",
        ],
    )
    .await;
    assert!(ok, "{err}");
    let (ok, out, err) = docker(&host, &config, &["exec", &name, "echo", "inside"]).await;
    let exec_result = (ok, out.trim().to_string(), err);
    let (_, ps, _) = docker(&host, &config, &["ps", "--filter", &format!("name={name}")]).await;
    let (_, logs, _) = docker(&host, &config, &["logs", &name]).await;
    let (rm_ok, _, rm_err) = docker(&host, &config, &["rm", "-f", &name]).await;

    assert!(exec_result.0, "{}", exec_result.2);
    assert_eq!(exec_result.1, "inside");
    assert!(ps.contains(&name), "{ps}");
    assert!(logs.contains("started"), "{logs}");
    assert!(rm_ok, "{rm_err}");

    cancel.cancel();
    server.await.unwrap().unwrap();
}
