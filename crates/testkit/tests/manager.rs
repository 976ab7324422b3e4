//! The ClassicManager helpers against `fake-swarmd` (a stand-in that binds `-H` and
//! answers every request with 200 OK), so they are checked without root or engines.

use std::os::unix::process::ExitStatusExt;
use std::panic::catch_unwind;

use swarmd_testkit::ClassicManager;

const FAKE: &str = env!("CARGO_BIN_EXE_fake-swarmd");

#[test]
fn start_passes_manage_the_standard_flags_then_the_extra_ones_then_discovery() {
    let m = ClassicManager::builder(FAKE)
        .args(["--strategy", "binpack"])
        .start("10.0.0.1:2375,10.0.0.2:2375")
        .unwrap();
    m.ping().unwrap();
    let log = m.log();
    let want = format!(
        "fake-swarmd args: manage -H {} --log-level debug,bollard=info,hyper=info,hyper_util=info \
         --engine-refresh-min-interval 1s --engine-refresh-max-interval 2s --strategy binpack \
         10.0.0.1:2375,10.0.0.2:2375",
        m.docker_host()
    );
    assert!(log.contains(&want), "{log}");
    assert!(log.starts_with("=== swarmd-testkit: start #1: "), "{log}");
    assert_eq!(
        m.docker_host(),
        format!("unix://{}", m.socket_path().display())
    );
    assert!(m.socket_path().as_os_str().len() < 108);
}

#[test]
fn command_points_any_program_at_the_manager_with_an_isolated_cli_config() {
    let m = ClassicManager::builder(FAKE).start("x:2375").unwrap();
    let mut cmd = m.command("sh");
    cmd.args(["-c", "echo \"$DOCKER_HOST|$DOCKER_CONFIG\""]);
    let out = m.run(cmd, None).ok();
    let (host, config) = out.stdout_trimmed().split_once('|').unwrap();
    assert_eq!(host, m.docker_host());
    assert!(std::path::Path::new(config).is_dir(), "{config}");

    let resp = m.http("GET", "/info", None).unwrap();
    assert_eq!(resp.status, 200);
}

#[test]
fn a_failed_command_reports_the_managers_log() {
    let m = ClassicManager::builder(FAKE).start("x:2375").unwrap();
    let mut cmd = m.command("sh");
    cmd.args(["-c", "exit 4"]);
    let out = m.run(cmd, None);
    let text = catch_unwind(|| out.ok())
        .unwrap_err()
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(text.contains("fake-swarmd args: manage"), "{text}");
}

#[test]
fn kill9_then_restart_serves_on_the_same_socket_and_sigterm_stops_it() {
    let mut m = ClassicManager::builder(FAKE).start("x:2375").unwrap();
    let socket = m.socket_path().to_path_buf();
    m.kill9();
    assert!(!m.is_running());
    assert!(m.ping().is_err());

    m.restart().unwrap();
    assert_eq!(m.socket_path(), socket);
    m.ping().unwrap();
    assert!(m.log().contains("=== swarmd-testkit: start #2: "));

    let status = m.sigterm().unwrap();
    assert_eq!(status.signal(), Some(libc_sigterm()));
    assert!(!m.is_running());
    assert!(
        m.sigterm().is_err(),
        "SIGTERM to a stopped manager is an error"
    );
}

/// SIGTERM's number (fake-swarmd keeps the default action, so it dies of it).
fn libc_sigterm() -> i32 {
    nix::sys::signal::Signal::SIGTERM as i32
}
