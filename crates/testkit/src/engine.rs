//! The host's real Docker Engine. The docker executor runs tasks as containers there, so
//! end-to-end tests use it to check what swarmd did (labels, mounts, published ports) and to
//! clean up after themselves.

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::cmd::{CmdOutput, DEFAULT_CMD_TIMEOUT, docker_cli, run_inner};

/// Where the host's Docker Engine listens (scripts/ci-setup.sh starts it there if needed).
pub const ENGINE_HOST: &str = "unix:///var/run/docker.sock";

/// Whether a real Docker Engine is available: `SWARMD_TEST_ENGINE=1` (set by `scripts/test`
/// once it has confirmed the engine is up) or, failing that, a successful `docker info` against
/// [`ENGINE_HOST`]. The probe runs once per test process.
pub fn engine_available() -> bool {
    if std::env::var("SWARMD_TEST_ENGINE").is_ok_and(|v| v == "1") {
        return true;
    }
    static PROBED: OnceLock<bool> = OnceLock::new();
    *PROBED.get_or_init(|| {
        engine_docker_command(&["info"])
            .stdin(std::process::Stdio::null())
            .output()
            .is_ok_and(|out| out.status.success())
    })
}

/// A `docker` command aimed at the real engine, for when [`engine_docker`]'s run-to-completion
/// is not what is needed (streaming `logs -f`, `events`).
pub fn engine_docker_command(args: &[&str]) -> Command {
    let mut cmd = Command::new(docker_cli());
    cmd.args(["-H", ENGINE_HOST]).args(args);
    isolate_cli(&mut cmd, shared_config_dir());
    cmd
}

/// Runs the docker CLI against the real engine (e.g. `engine_docker(&["ps", "-a", "--filter",
/// "label=com.docker.swarm.service.name=web"])`).
#[track_caller]
pub fn engine_docker(args: &[&str]) -> CmdOutput {
    run_inner(engine_docker_command(args), None, DEFAULT_CMD_TIMEOUT, None)
}

/// Force-removes every engine container (running or not) matching `label_filter`, a
/// `docker ps --filter label=...` value such as `com.docker.swarm.service.name=web` or
/// `com.docker.swarm.node.id=abc123` (a leading `label=` is accepted too). Returns how many
/// were removed. Tests call this at the end (and start) so containers made by the docker
/// executor do not outlive them; removing nothing is not an error.
#[track_caller]
pub fn cleanup_engine_containers(label_filter: &str) -> usize {
    let filter = format!(
        "label={}",
        label_filter.strip_prefix("label=").unwrap_or(label_filter)
    );
    let ids = engine_docker(&["ps", "-a", "-q", "--no-trunc", "--filter", &filter]).ok();
    let ids = ids.lines();
    if ids.is_empty() {
        return 0;
    }
    let mut args = vec!["rm", "-f", "-v"];
    args.extend(&ids);
    let out = engine_docker(&args);
    // A container that vanished between `ps` and `rm` (e.g. `--rm`), or that its node is
    // removing at the same moment (a swarm leave), is fine.
    let gone = |l: &str| l.contains("No such container") || l.contains("already in progress");
    if !out.success() && !out.stderr.lines().all(gone) {
        panic!("{}", out.report("removing engine containers failed"));
    }
    ids.len()
}

/// Points the CLI at its own empty config directory and drops environment that would send it
/// somewhere else, so the host user's contexts, credentials and plugins cannot interfere.
pub(crate) fn isolate_cli(cmd: &mut Command, config_dir: &Path) {
    cmd.env("DOCKER_CONFIG", config_dir);
    for var in [
        "DOCKER_CONTEXT",
        "DOCKER_TLS",
        "DOCKER_TLS_VERIFY",
        "DOCKER_CERT_PATH",
    ] {
        cmd.env_remove(var);
    }
}

/// The empty config directory for engine commands: one per user, reused by every test
/// process (a temporary directory per process would need someone to remove it; a static is
/// never dropped). Nothing writes to it: tests never `docker login` to the engine.
fn shared_config_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let uid = nix::unistd::getuid();
        let dir = std::env::temp_dir().join(format!("swarmd-test-docker-config-{uid}"));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => panic!("creating {}: {e}", dir.display()),
        }
        // The path is predictable, so make sure it is ours and not someone's planted config.
        let meta = std::fs::symlink_metadata(&dir)
            .unwrap_or_else(|e| panic!("inspecting {}: {e}", dir.display()));
        assert!(
            meta.is_dir() && meta.uid() == uid.as_raw(),
            "{} must be a directory owned by uid {uid}",
            dir.display()
        );
        dir
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_commands_are_isolated_from_the_host_config() {
        let cmd = engine_docker_command(&["ps"]);
        let args: Vec<_> = cmd.get_args().collect();
        assert_eq!(args, ["-H", ENGINE_HOST, "ps"]);
        let config = cmd
            .get_envs()
            .find(|(k, _)| *k == "DOCKER_CONFIG")
            .and_then(|(_, v)| v)
            .expect("DOCKER_CONFIG is set");
        assert!(Path::new(config).is_dir());
        assert!(
            cmd.get_envs()
                .any(|(k, v)| k == "DOCKER_CONTEXT" && v.is_none()),
            "DOCKER_CONTEXT is removed"
        );
    }

    /// Runs only where an engine is up (always in CI): exercises the real cleanup path.
    #[test]
    #[ignore = "needs a Docker Engine: scripts/test runs it"]
    fn cleanup_removes_only_labelled_containers() {
        crate::require_engine!();
        let label = format!("swarmd.testkit.cleanup={}", crate::unique_name("t"));
        let other = crate::unique_name("keep");
        for _ in 0..2 {
            engine_docker(&["create", "--label", &label, "busybox:latest", "true"]).ok();
        }
        engine_docker(&["create", "--name", &other, "busybox:latest", "true"]).ok();

        assert_eq!(cleanup_engine_containers(&label), 2);
        assert_eq!(cleanup_engine_containers(&format!("label={label}")), 0);
        engine_docker(&["inspect", &other]).ok();
        engine_docker(&["rm", "-f", &other]).ok();
    }
}
