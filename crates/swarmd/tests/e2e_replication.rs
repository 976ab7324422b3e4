//! `swarmd manage --replication` as processes (issue 16 item 6): two managers over a pool
//! of two engines elect one primary, `docker info` through each shows its role, a run sent
//! to the replica lands, and killing the primary (SIGKILL: no resign) makes the replica
//! primary within a few TTLs. Also the flag errors, in classic's words.

use std::fs::File;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use swarmd_testkit::{
    CmdOutput, EnginePool, docker_cli, is_root, require, require_engine, run, wait_for,
};

const TTL: &str = "3s";
const WAIT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(250);

/// One `swarmd manage` process, killed on drop.
struct Manager {
    addr: String,
    child: Child,
    log: tempfile::NamedTempFile,
}

impl Manager {
    fn start(discovery: &str) -> Manager {
        // A free port: bound then released (the manager binds it right away).
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let log = tempfile::NamedTempFile::new().expect("log file");
        let out = File::options()
            .append(true)
            .open(log.path())
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_swarmd"))
            .args(["manage", "-H", &format!("tcp://{addr}"), "--replication"])
            .args(["--advertise", &addr, "--replication-ttl", TTL])
            .args(["--engine-refresh-min-interval", "1s"])
            .args(["--engine-refresh-max-interval", "2s"])
            .arg(discovery)
            .stdout(Stdio::from(out.try_clone().expect("log file")))
            .stderr(Stdio::from(out))
            .spawn()
            .expect("swarmd manage starts");
        Manager { addr, child, log }
    }

    fn docker(&self, args: &[&str]) -> CmdOutput {
        let mut cmd = Command::new(docker_cli());
        cmd.arg("-H").arg(format!("tcp://{}", self.addr)).args(args);
        run(cmd)
    }

    /// `docker info`'s `Role:`/`Primary:` lines, or why not.
    fn role(&self) -> Result<Vec<String>, String> {
        let out = self.docker(&["info"]);
        if !out.success() {
            return Err(out.report("docker info"));
        }
        Ok(out
            .lines()
            .iter()
            .map(|l| l.trim())
            .filter(|l| l.starts_with("Role:") || l.starts_with("Primary:"))
            .map(str::to_owned)
            .collect())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until one of `ms` says primary and the others follow it; its index.
fn one_primary(ms: &[&Manager]) -> usize {
    wait_for(WAIT, POLL, "one primary, followed by the other", || {
        let roles: Vec<Vec<String>> = ms.iter().map(|m| m.role()).collect::<Result<_, _>>()?;
        let p = roles
            .iter()
            .position(|r| r[..] == ["Role: primary"])
            .ok_or_else(|| format!("{roles:?}"))?;
        let follows = vec![
            "Role: replica".to_owned(),
            format!("Primary: {}", ms[p].addr),
        ];
        if (0..ms.len()).all(|i| i == p || roles[i] == follows) {
            Ok(p)
        } else {
            Err(format!("{roles:?}"))
        }
    })
}

#[test]
#[ignore = "needs root and dockerd: scripts/test runs it"]
fn replication_processes_elect_one_primary_forward_and_fail_over_on_kill() {
    require("root (network namespaces)", is_root());
    require_engine!();
    let engines = EnginePool::plain(2).expect("a pool of 2 engines starts");
    let discovery = format!("nodes://{}", engines.addrs().join(","));
    let mut ms = [Manager::start(&discovery), Manager::start(&discovery)];
    let p = one_primary(&[&ms[0], &ms[1]]);
    let r = 1 - p;

    let name = format!("repl-e2e-{}", std::process::id());
    ms[r]
        .docker(&[
            "run",
            "-d",
            "--name",
            &name,
            "busybox:latest",
            "sleep",
            "1d",
        ])
        .ok();
    let ps = ms[p]
        .docker(&["ps", "--filter", &format!("name={name}"), "-q"])
        .ok();
    assert_eq!(ps.lines().len(), 1, "{name} runs, seen by the primary");
    assert!(
        ms[p]
            .log()
            .contains("Leader Election: Cluster leadership acquired"),
        "{}",
        ms[p].log()
    );

    // SIGKILL: the primary cannot resign, its locks stay until the replica's TTL runs out.
    let killed = Instant::now();
    let _ = ms[p].child.kill();
    let _ = ms[p].child.wait();
    wait_for(WAIT, POLL, "the replica becomes primary", || {
        match ms[r].role()? {
            r if r[..] == ["Role: primary"] => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    assert!(
        killed.elapsed() < Duration::from_secs(15),
        "took {:?}",
        killed.elapsed()
    );
    let ps = ms[r]
        .docker(&["ps", "--filter", &format!("name={name}"), "-q"])
        .ok();
    assert_eq!(
        ps.lines().len(),
        1,
        "the new primary serves: {}",
        ms[r].log()
    );
}

#[test]
fn replication_flag_errors_are_classic_s() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--replication"],
            "--advertise address must be provided when using --leader-election",
        ),
        (
            &["--replication", "--advertise", "nohost"],
            "--advertise should be of the form ip:port or hostname:port",
        ),
        (
            &[
                "--replication",
                "--advertise",
                "h:1",
                "--replication-ttl",
                "0s",
            ],
            "--replication-ttl should be a positive number",
        ),
    ];
    for (flags, want) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_swarmd"))
            .args(["manage", "-H", "tcp://127.0.0.1:0"])
            .env_remove("SWARM_ADVERTISE")
            .args(*flags)
            .arg("nodes://127.0.0.1:1")
            .output()
            .expect("swarmd runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flags:?} accepted");
        assert!(stderr.contains(want), "{flags:?}: {stderr}");
    }
}
