//! The stock docker CLI against the API (fake node behind it). Fails when no `docker`
//! binary is on PATH. This is what docs/DESIGN.md §7 promises: the CLI works unchanged.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{FakeBackend, HOSTNAME, NODE_ID, process_container};
use swarmd_engine_api::{ListenAddr, Listener, serve};
use tokio_util::sync::CancellationToken;

fn docker_binary() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("docker"))
        .find(|p| p.is_file())
}

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

async fn docker(bin: &Path, sock: &Path, config: &Path, args: &[&str]) -> Out {
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args(args)
        .env("DOCKER_HOST", format!("unix://{}", sock.display()))
        .env("DOCKER_CONFIG", config)
        .env_remove("DOCKER_CONTEXT")
        .env_remove("DOCKER_API_VERSION")
        .env_remove("DOCKER_TLS_VERIFY")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("docker {args:?} timed out"))
        .unwrap();
    let o = Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    eprintln!("$ docker {}\n{}{}", args.join(" "), o.stdout, o.stderr);
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_cli_drives_the_api() {
    let bin = docker_binary().expect("this test needs the docker CLI on PATH");
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("api.sock");
    let config = dir.path().join("config");
    std::fs::create_dir_all(&config).unwrap();
    let fake = FakeBackend::new();
    let cancel = CancellationToken::new();
    let listener = Listener::bind(&ListenAddr::Unix(sock.clone()))
        .await
        .unwrap();
    let server = tokio::spawn(serve(
        vec![listener],
        Arc::new(fake.clone()),
        cancel.clone(),
    ));
    let run = |args: &'static [&'static str]| {
        let (bin, sock, config) = (bin.clone(), sock.clone(), config.clone());
        async move { docker(&bin, &sock, &config, args).await }
    };

    let o = run(&["version"]).await;
    assert!(o.ok, "{}", o.stderr);
    assert!(o.stdout.contains("API version:      1.50"), "{}", o.stdout);

    let o = run(&["info"]).await;
    assert!(o.ok, "{}", o.stderr);
    assert!(o.stdout.contains("Swarm: inactive"), "{}", o.stdout);

    let o = run(&["service", "ls"]).await;
    assert!(!o.ok);
    assert!(
        o.stderr.contains("This node is not a swarm manager."),
        "{}",
        o.stderr
    );

    let o = run(&["swarm", "init", "--advertise-addr", "127.0.0.1"]).await;
    assert!(o.ok, "{}", o.stderr);
    assert!(
        o.stdout
            .contains(&format!("current node ({NODE_ID}) is now a manager")),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout
            .contains("--token SWMTKN-1-digest-worker 127.0.0.1:2377"),
        "{}",
        o.stdout
    );

    let o = run(&["info"]).await;
    assert!(o.ok, "{}", o.stderr);
    assert!(o.stdout.contains("Swarm: active"), "{}", o.stdout);
    assert!(o.stdout.contains("Is Manager: true"), "{}", o.stdout);
    assert!(
        o.stdout.contains("ClusterID: cluster0000000000000000001"),
        "{}",
        o.stdout
    );

    let o = run(&["node", "ls"]).await;
    assert!(o.ok, "{}", o.stderr);
    assert!(
        o.stdout.contains(HOSTNAME) && o.stdout.contains("Leader"),
        "{}",
        o.stdout
    );
    let o = run(&["node", "inspect", "--pretty", "self"]).await;
    assert!(o.ok, "{}", o.stderr);
    let o = run(&["node", "update", "--label-add", "foo=bar", "self"]).await;
    assert!(o.ok, "{}", o.stderr);

    let o = run(&["swarm", "join-token", "manager"]).await;
    assert!(
        o.ok && o.stdout.contains("SWMTKN-1-digest-manager"),
        "{}",
        o.stderr
    );
    let o = run(&["swarm", "update", "--task-history-limit", "7"]).await;
    assert!(o.ok, "{}", o.stderr);

    // Not detached: the CLI's progress display polls services, tasks and nodes until the
    // service has converged (and stays so for the 5 s monitor period).
    let o = run(&[
        "service",
        "create",
        "--name",
        "web",
        "--replicas",
        "2",
        "busybox",
        "sleep",
        "1000",
    ])
    .await;
    assert!(o.ok, "{}", o.stderr);
    assert!(o.stdout.contains("converged"), "{}\n{}", o.stdout, o.stderr);

    let o = run(&["service", "ls"]).await;
    assert!(
        o.ok && o.stdout.contains("web") && o.stdout.contains("2/2"),
        "{}",
        o.stdout
    );
    let o = run(&["service", "ps", "web"]).await;
    assert!(o.ok, "{}", o.stderr);
    assert!(
        o.stdout.contains("web.1") && o.stdout.contains("web.2"),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.contains(HOSTNAME) && o.stdout.contains("Running"),
        "{}",
        o.stdout
    );
    let o = run(&["service", "inspect", "--pretty", "web"]).await;
    assert!(o.ok, "{}", o.stderr);
    let o = run(&["service", "logs", "web"]).await;
    assert!(o.ok, "{}", o.stderr);
    assert!(o.stdout.contains("hello from 1"), "{}", o.stdout);
    assert!(
        o.stdout.contains("web.1.") && o.stdout.contains(HOSTNAME),
        "{}",
        o.stdout
    );
    assert!(o.stderr.contains("oops from 2"), "{}", o.stderr);

    let o = run(&["service", "scale", "--detach", "web=3"]).await;
    assert!(o.ok, "{}", o.stderr);
    let o = run(&["service", "update", "--detach", "--env-add", "A=1", "web"]).await;
    assert!(o.ok, "{}", o.stderr);
    let o = run(&["service", "rollback", "--detach", "web"]).await;
    assert!(o.ok, "{}", o.stderr);
    let o = run(&["service", "ls"]).await;
    assert!(o.stdout.contains("3/3"), "{}", o.stdout);

    fake.with(|st| st.containers = vec![process_container("abc123", "web.1.t", true)]);
    let o = run(&["ps"]).await;
    assert!(o.ok && o.stdout.contains("web.1.t"), "{}", o.stderr);
    let o = run(&["inspect", "nosuch"]).await;
    assert!(!o.ok);
    assert!(o.stderr.contains("No such object: nosuch"), "{}", o.stderr);

    let o = run(&["service", "rm", "web"]).await;
    assert!(o.ok, "{}", o.stderr);
    let o = run(&["service", "rm", "web"]).await;
    assert!(
        !o.ok && o.stderr.contains("service web not found"),
        "{}",
        o.stderr
    );

    let o = run(&["swarm", "leave", "--force"]).await;
    assert!(o.ok, "{}", o.stderr);

    cancel.cancel();
    server.await.unwrap().unwrap();
}
