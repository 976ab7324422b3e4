//! What the end-to-end tests of `swarmd manage` share (e2e_classic*.rs): a pool of real
//! engines with a manager over it, and where a container really is, asked of the engines
//! themselves rather than of the manager under test.

#![allow(dead_code)] // Each test binary uses its own part.

use std::time::Duration;

use swarmd_testkit::{ClassicManager, EnginePool, is_root, require, require_engine};

/// Bound on every wait: engines refresh every 1-2 s, so anything slower is a failure.
pub const T: Duration = Duration::from_secs(60);
/// Poll interval of those waits.
pub const POLL: Duration = Duration::from_millis(200);

/// Fails the test when root (network namespaces) or dockerd is missing.
pub fn require_pool() {
    require("root (network namespaces for the engine pool)", is_root());
    require_engine!();
}

/// A pool with one engine per entry of `labels` and a manager over it (default flags).
pub fn pool_and_manager(labels: &[&[(&str, &str)]]) -> (EnginePool, ClassicManager) {
    require_pool();
    let pool = EnginePool::start(labels).expect("the engine pool starts");
    let manager = manager(&pool, &[]);
    (pool, manager)
}

/// A manager over `pool` with extra `swarmd manage` flags; returns once every engine is
/// Healthy in its `/info`, so scheduling sees the whole pool.
pub fn manager(pool: &EnginePool, args: &[&str]) -> ClassicManager {
    let manager = ClassicManager::builder(env!("CARGO_BIN_EXE_swarmd"))
        .args(args)
        .start(&pool.addrs().join(","))
        .expect("swarmd manage starts");
    swarmd_testkit::wait_until(T, POLL, "every engine Healthy in /info", || {
        healthy_engines(&manager) == pool.len()
    });
    manager
}

/// How many engines the manager's `/info` shows as Healthy.
pub fn healthy_engines(manager: &ClassicManager) -> usize {
    let Ok(resp) = manager.http("GET", "/info", None) else {
        return 0;
    };
    let info: serde_json::Value = serde_json::from_slice(&resp.body).unwrap_or_default();
    info["SystemStatus"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|pair| {
            pair[0].as_str().is_some_and(|k| k.ends_with("Status")) && pair[1] == "Healthy"
        })
        .count()
}

/// The names of engine `i`'s containers, asked of that engine directly: `docker ps
/// --format {{.Names}} ARGS...` (`-a` for stopped ones too, `--filter`s).
pub fn names_on(pool: &EnginePool, i: usize, args: &[&str]) -> Vec<String> {
    let mut ps = vec!["ps", "--format", "{{.Names}}"];
    ps.extend_from_slice(args);
    lines_of(pool, i, &ps)
}

/// The non-empty lines of `docker ARGS...` on engine `i` (e.g. `network ls --format ..`).
pub fn lines_of(pool: &EnginePool, i: usize, args: &[&str]) -> Vec<String> {
    pool.machine(i)
        .docker(args)
        .ok()
        .lines()
        .into_iter()
        .map(str::to_owned)
        .collect()
}

/// The engine that holds container `name` (running or not), asked of every engine
/// directly; an error unless exactly one has it.
pub fn engine_of(pool: &EnginePool, name: &str) -> Result<usize, String> {
    let holders: Vec<usize> = (0..pool.len())
        .filter(|&i| names_on(pool, i, &["-a"]).iter().any(|n| n == name))
        .collect();
    match holders[..] {
        [i] => Ok(i),
        _ => Err(format!(
            "{name} is on engines {holders:?}, not on exactly one"
        )),
    }
}
