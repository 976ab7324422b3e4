//! The Daemon helpers against `fake-swarmd` (a stand-in that answers every request with 200 OK)
//! and against tiny shell scripts that misbehave the ways a broken swarmd could.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use swarmd_testkit::{Daemon, Executor, wait_until};

const FAKE: &str = env!("CARGO_BIN_EXE_fake-swarmd");

/// Writes an executable `/bin/sh` script and returns its path.
fn script(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("swarmd");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn start_waits_for_the_api_and_passes_the_standard_flags() {
    let mut d = Daemon::builder(FAKE)
        .executor(Executor::Docker)
        .node_addr([127, 0, 0, 2])
        .hostname("node-a")
        .args(["--listen-addr", "127.0.0.2:2377"])
        .start()
        .unwrap();

    assert!(d.is_running());
    assert_eq!(
        d.docker_host(),
        format!("unix://{}", d.socket_path().display())
    );
    assert_eq!(d.node_addr().to_string(), "127.0.0.2");
    assert_eq!(d.hostname(), Some("node-a"));
    d.ping().unwrap();

    let resp = d.http("GET", "/_ping", None).unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("Api-Version"), Some("1.50"));
    assert_eq!(resp.text(), "OK");

    assert!(d.log_path().starts_with(d.data_root()));
    let expected_args = format!(
        "fake-swarmd args: -H {} --data-root {} --node-addr 127.0.0.2 --executor docker \
         --hostname node-a --log-level debug --listen-addr 127.0.0.2:2377",
        d.docker_host(),
        d.data_root().display()
    );
    let log = d.log();
    assert!(log.contains(&expected_args), "{log}");
    assert!(log.contains("=== swarmd-testkit: start #1: "), "{log}");
}

#[test]
fn docker_cli_is_pointed_at_the_daemon() {
    swarmd_testkit::require(
        "the docker CLI",
        Command::new(swarmd_testkit::docker_cli())
            .arg("--version")
            .output()
            .is_ok(),
    );
    let d = Daemon::builder(FAKE).start().unwrap();
    // fake-swarmd answers "OK" to everything, so the CLI fails after its first requests; what
    // matters is that they reached this daemon, and that the failure report carries its log.
    let out = d.docker(&["version"]);
    assert!(
        out.command()
            .starts_with(&format!("DOCKER_HOST={} docker version", d.docker_host()))
    );
    wait_until(
        Duration::from_secs(5),
        Duration::from_millis(20),
        "the CLI's /_ping in the log",
        || d.log().contains("/_ping"),
    );
    assert!(
        out.report("x").contains("fake-swarmd listening on"),
        "{}",
        out.report("x")
    );
}

#[test]
fn sigterm_waits_for_exit_and_returns_the_status() {
    let mut d = Daemon::builder(FAKE).start().unwrap();
    let status = d.sigterm().unwrap();
    assert_eq!(status.signal(), Some(15), "{status}");
    assert!(!d.is_running());
    assert_eq!(d.exit_status(), Some(status));
    assert!(
        d.sigterm().is_err(),
        "a stopped daemon cannot be stopped again"
    );
}

#[test]
fn kill9_then_restart_reuses_data_root_and_socket() {
    let mut d = Daemon::builder(FAKE).start().unwrap();
    let (root, socket, first_pid) = (
        d.data_root().to_path_buf(),
        d.socket_path().to_path_buf(),
        d.pid(),
    );
    d.kill9();
    assert!(!d.is_running());
    assert!(d.ping().is_err());

    d.restart().unwrap();
    d.ping().unwrap();
    assert_ne!(d.pid(), first_pid);
    assert_eq!(
        (d.data_root(), d.socket_path()),
        (root.as_path(), socket.as_path())
    );

    // Restarting a running daemon stops it first.
    let second_pid = d.pid();
    d.restart().unwrap();
    assert_ne!(d.pid(), second_pid);
    let log = d.log();
    assert_eq!(log.matches("fake-swarmd listening on").count(), 3, "{log}");
    assert!(log.contains("=== swarmd-testkit: start #3: "), "{log}");
}

#[test]
fn drop_kills_the_process_and_removes_the_temporary_data_root() {
    let d = Daemon::builder(FAKE).start().unwrap();
    let pid = d.pid().unwrap();
    let root = d.data_root().to_path_buf();
    drop(d);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "pid {pid} still exists"
    );
    assert!(!root.exists());
}

#[test]
fn a_given_data_root_is_created_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("nested/node-1");
    let d = Daemon::builder(FAKE).data_root(&root).start().unwrap();
    assert_eq!(d.data_root(), root);
    drop(d);
    assert!(root.join("swarmd.log").is_file());
}

#[test]
fn start_fails_clearly_when_nothing_answers() {
    let dir = tempfile::tempdir().unwrap();
    let bin = script(dir.path(), "echo 'pretending to start'\nexec sleep 60");
    let started = Instant::now();
    let err = Daemon::builder(&bin)
        .start_timeout(Duration::from_secs(2))
        .start()
        .err()
        .expect("start must fail: nothing serves the socket");
    let elapsed = started.elapsed();
    let msg = format!("{err:#}");
    assert!(
        elapsed >= Duration::from_secs(2),
        "gave up after {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    assert!(msg.contains("did not answer GET /_ping on "), "{msg}");
    assert!(msg.contains("within 2s"), "{msg}");
    assert!(msg.contains("killed it"), "{msg}");
    assert!(
        msg.contains("pretending to start"),
        "the log tail is included: {msg}"
    );
}

#[test]
fn start_fails_fast_when_the_process_exits() {
    let dir = tempfile::tempdir().unwrap();
    let bin = script(dir.path(), "echo 'error: unknown flag --bogus' >&2\nexit 3");
    let started = Instant::now();
    let err = Daemon::builder(&bin)
        .start()
        .err()
        .expect("start must fail");
    let msg = format!("{err:#}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(
        msg.contains("exited (exit status: 3) before its API answered"),
        "{msg}"
    );
    assert!(msg.contains("error: unknown flag --bogus"), "{msg}");
}

#[test]
fn start_fails_when_the_binary_is_missing() {
    let err = Daemon::builder("/nonexistent/swarmd")
        .start()
        .err()
        .expect("start must fail");
    let msg = format!("{err:#}");
    assert!(msg.contains("starting /nonexistent/swarmd"), "{msg}");
}

/// `.netns(NAME)`: the daemon runs in that network namespace (entered by nsenter, which then
/// execs it: the pid is the daemon's), and its API socket still answers from the host.
/// Needs root and iproute2 (every CI machine); ignored unless asked (scripts/test runs it).
#[test]
#[ignore = "needs root and iproute2: scripts/test runs it"]
fn netns_runs_the_daemon_inside_the_namespace() {
    swarmd_testkit::require(
        "root and iproute2",
        swarmd_testkit::is_root() && swarmd_testkit::command_works("ip", &["netns", "list"]),
    );
    let ns = swarmd_testkit::unique_name("swtk");
    let ip = |args: &[&str]| Command::new("ip").args(args).status().unwrap().success();
    assert!(ip(&["netns", "add", &ns]));
    struct Del(String);
    impl Drop for Del {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
    let _del = Del(ns.clone());

    let d = Daemon::builder(FAKE).netns(&ns).start().unwrap();
    d.ping().unwrap();
    let inode = |p: &str| std::fs::metadata(p).map(|m| std::os::unix::fs::MetadataExt::ino(&m));
    let pid = d.pid().expect("running");
    assert_eq!(
        inode(&format!("/proc/{pid}/ns/net")).unwrap(),
        inode(&format!("/run/netns/{ns}")).unwrap(),
        "the daemon's own pid is in the namespace"
    );
    let log = d.log();
    assert!(
        log.contains(&format!(
            "start #1: nsenter --net=/run/netns/{ns} -- {FAKE} -H"
        )),
        "{log}"
    );
}
