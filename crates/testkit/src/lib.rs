//! Helpers for swarmd's end-to-end tests (docs/DESIGN.md §8).
//!
//! End-to-end tests start real `swarmd` processes (each with its own data root, API socket and
//! loopback address) and drive them with the real `docker` CLI, exactly as a user would. This
//! crate holds the plumbing those tests share:
//!
//! - [`Daemon`]: start, stop, crash and restart a `swarmd` process, and run `docker` against it.
//! - [`CmdOutput`]: the result of a command, with assertions that print everything needed to
//!   debug a failure (stdout, stderr and the daemon's log).
//! - [`wait_until`] / [`wait_for`] (and async variants): the only way tests wait. Clusters
//!   converge asynchronously; fixed sleeps make tests both slow and flaky.
//! - [`engine_available`], [`engine_docker`], [`cleanup_engine_containers`]: access to the host's
//!   real Docker Engine, which the docker executor drives.
//! - [`Machine`]: a second "machine" (a network namespace with its own Docker Engine, on a
//!   veth to the host) for tests whose traffic must cross between hosts; [`MachineBuilder`]
//!   for one with a hostname, labels and a TCP listener.
//! - [`EnginePool`]: several such engines at once, reachable over TCP, for classic Swarm.
//! - [`ClassicManager`]: a `swarmd manage` over such a pool, to drive with real clients.
//! - [`unique_name`]: collision-free names for services, secrets, networks, ...
//! - [`find_secret`] / [`find_secret_in_tree`]: a secret in any encoding (raw, hex, base64,
//!   JSON number array), for tests that prove none is left in plaintext.
//!
//! ```no_run
//! use std::time::Duration;
//! use swarmd_testkit::{Daemon, wait_until};
//!
//! // In an integration test of the swarmd crate: env!("CARGO_BIN_EXE_swarmd").
//! let swarmd = "target/debug/swarmd";
//! let node = Daemon::builder(swarmd).hostname("node-1").start().unwrap();
//! node.docker(&["swarm", "init", "--advertise-addr", "127.0.0.1"]).ok();
//! node.docker(&["service", "create", "--name", "web", "--replicas", "2", "busybox", "sleep", "1d"]).ok();
//! wait_until(Duration::from_secs(30), Duration::from_millis(200), "2 running web tasks", || {
//!     node.docker(&["service", "ps", "-q", "--filter", "desired-state=running", "web"]).lines().len() == 2
//! });
//! ```

mod cmd;
mod daemon;
mod engine;
mod http;
mod leak;
mod machine;
mod manager;
mod pool;
mod process;
mod registry;
mod tls;
mod wait;

pub use cmd::{CmdOutput, DEFAULT_CMD_TIMEOUT, docker_cli, run, run_with};
pub use daemon::{Daemon, DaemonBuilder, Executor};
pub use engine::{
    ENGINE_HOST, cleanup_engine_containers, engine_available, engine_docker, engine_docker_command,
};
pub use http::{HttpResponse, unix_http};
pub use leak::{MIN_SECRET_LEN, byte_forms, find_secret, find_secret_in_tree};
pub use machine::{ENGINE_TCP_PORT, ENGINE_TLS_PORT, Machine, MachineBuilder};
pub use manager::{ClassicManager, ClassicManagerBuilder};
pub use pool::EnginePool;
pub use registry::{REGISTRY_ADDR, REGISTRY_IMAGE};
pub use tls::{CertFiles, TestCa};
pub use wait::{wait_for, wait_for_async, wait_until, wait_until_async};

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU32, Ordering};

/// A name for a test resource (service, secret, network, container, ...) that is unique on this
/// machine: tests run in parallel, in several processes, against one shared Docker Engine, and
/// leftovers of an earlier (crashed) run may still exist.
///
/// The result is `<prefix>-<6 random hex digits><counter>`, lowercase, and valid as a Docker
/// object name and a DNS label as long as `prefix` is.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // RandomState is seeded randomly per process (and perturbed per instance), which is all the
    // randomness needed here without pulling in a RNG crate.
    let random = RandomState::new().hash_one((std::process::id(), n));
    format!("{prefix}-{:06x}{n}", random & 0xff_ffff)
}

/// A loopback address (127.x.y.z, never 127.0.0.1) for one test node. Each node binds its
/// cluster port (2377) and published ports on its own address, so tests running in
/// parallel (nextest runs each in its own process) must not share one. Random over ~16M
/// addresses, seeded per process and call, like [`unique_name`].
pub fn unique_loopback() -> std::net::IpAddr {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let r = RandomState::new().hash_one((std::process::id(), n, "loopback"));
    let a = 1 + (r % 254) as u8;
    let b = ((r >> 8) % 256) as u8;
    let c = 1 + ((r >> 16) % 254) as u8;
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, a, b, c))
}

/// Fails the calling test, saying what is missing, when no Docker Engine is available (see
/// [`engine_available`]).
///
/// Tests that need an engine (or root, nftables, a network namespace...) are marked
/// `#[ignore = "needs ...: scripts/test runs it"]`, so a plain `cargo nextest run` on a
/// machine without them reports them as skipped, never as passed; `scripts/test` (and so CI)
/// runs them with `--run-ignored all`, where a missing prerequisite is a failure.
#[macro_export]
macro_rules! require_engine {
    () => {
        assert!(
            $crate::engine_available(),
            "{} needs a Docker Engine at {} (scripts/ci-setup.sh starts one)",
            module_path!(),
            $crate::ENGINE_HOST
        );
    };
}

/// Fails the calling test when a prerequisite it names is missing; the companion of the
/// `#[ignore = "needs ..."]` marking described at [`require_engine!`].
pub fn require(what: &str, present: bool) {
    assert!(
        present,
        "this test needs {what} (scripts/ci-setup.sh installs it; scripts/test runs it)"
    );
}

/// Whether this process runs as root (network namespaces, nftables, bridges need it).
pub fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// Whether `cmd args...` runs and exits 0 (e.g. `ip netns list`, `nft --version`).
pub fn command_works(cmd: &str, args: &[&str]) -> bool {
    std::process::Command::new(cmd)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A missing prerequisite fails the test that asked for it (never a silent pass).
    #[test]
    #[should_panic(expected = "this test needs nftables")]
    fn a_missing_prerequisite_fails() {
        require("nftables", false);
    }

    #[test]
    fn a_present_prerequisite_lets_the_test_go_on() {
        require("a shell", command_works("sh", &["-c", "exit 0"]));
        assert!(!command_works("sh", &["-c", "exit 3"]));
        assert!(!command_works("/nonexistent/swarmd-test-tool", &[]));
    }
    use std::collections::HashSet;

    #[test]
    fn unique_names_are_distinct_and_docker_friendly() {
        let names: HashSet<String> = (0..1000).map(|_| unique_name("svc")).collect();
        assert_eq!(names.len(), 1000);
        for name in &names {
            assert!(name.starts_with("svc-"), "{name}");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{name}"
            );
        }
    }
}
