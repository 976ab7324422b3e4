//! `swarmd manage --tlsverify` over an engine that itself requires TLS (issue 16 item 1),
//! the setup of Docker's "Protect the Docker daemon socket" and classic Swarm's docs: one
//! CA signs the engine's certificate, the manager's (which serves the API and identifies
//! the manager to the engine) and the CLI's. The docker CLI with its certificate sees the
//! engine healthy and runs, reads logs of and execs into a container through the manager;
//! a CLI without a certificate, or without TLS, is refused. Bad TLS files stop the manager
//! at startup with classic's message.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use swarmd_testkit::{
    CertFiles, CmdOutput, Machine, TestCa, docker_cli, is_root, require, require_engine, run,
    run_with, unique_loopback, wait_for,
};

const SWARMD: &str = env!("CARGO_BIN_EXE_swarmd");
/// Classic's TLS port for the manager.
const MANAGER_PORT: u16 = 3376;

/// A running `swarmd manage`, killed (and reaped) on drop.
struct Manager {
    child: Child,
    log: PathBuf,
}

impl Manager {
    fn start(args: &[String], log: PathBuf) -> Manager {
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(SWARMD)
            .arg("manage")
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("starting swarmd manage");
        Manager { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `docker` against the manager at `host`, with the TLS flags `tls` and its own config dir.
fn docker(config: &Path, tls: &[String], host: &str, args: &[&str]) -> CmdOutput {
    let mut cmd = Command::new(docker_cli());
    cmd.arg("--config")
        .arg(config)
        .args(tls)
        .args(["-H", host])
        .args(args);
    run_with(cmd, None, Duration::from_secs(60))
}

fn tls_flags(f: &CertFiles) -> Vec<String> {
    vec![
        "--tlsverify".into(),
        format!("--tlscacert={}", f.ca.display()),
        format!("--tlscert={}", f.cert.display()),
        format!("--tlskey={}", f.key.display()),
    ]
}

#[test]
#[ignore = "needs root, a Docker Engine and the docker CLI: scripts/test runs it"]
fn tls_manager_serves_the_cli_and_reaches_a_tls_engine() {
    require("root (network namespaces)", is_root());
    require_engine!();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new().unwrap();
    let engine = Machine::builder("swc")
        .hostname("node-0")
        .tls(ca.clone())
        .default_bridge(true)
        .host_lock(false)
        .start()
        .unwrap();
    let engine_addr = engine.tcp_addr().unwrap();
    assert!(engine_addr.ends_with(":2376"), "{engine_addr}");

    let ip: IpAddr = unique_loopback();
    let manager_files = ca.issue(dir.path(), "manager", &[&ip.to_string()]).unwrap();
    let client_files = ca.issue(dir.path(), "client", &["client"]).unwrap();
    let host = format!("tcp://{ip}:{MANAGER_PORT}");
    let mut args = tls_flags(&manager_files);
    args.extend([
        "-H".to_string(),
        host.clone(),
        format!("nodes://{engine_addr}"),
    ]);
    let manager = Manager::start(&args, dir.path().join("manage.log"));
    let config = dir.path().join("docker-config");
    std::fs::create_dir(&config).unwrap();
    let client = tls_flags(&client_files);

    // The manager reached the engine over TLS with its certificate: the engine is healthy.
    wait_for(
        Duration::from_secs(60),
        Duration::from_millis(250),
        "the TLS engine healthy in `docker info`",
        || {
            let out = docker(
                &config,
                &client,
                &host,
                &["info", "--format", "{{json .SystemStatus}}"],
            );
            if out.success() && out.stdout.contains("Healthy") {
                Ok(())
            } else {
                Err(format!("{}\n{}", out.report("info"), manager.log()))
            }
        },
    );

    // A container scheduled, created and started on the engine through the manager.
    let run_out = docker(
        &config,
        &client,
        &host,
        &[
            "run",
            "-d",
            "busybox:latest",
            "sh",
            "-c",
            "echo hello-over-tls; exec sleep 300",
        ],
    );
    assert!(
        run_out.success(),
        "{}\n{}",
        run_out.report("run"),
        manager.log()
    );
    let id = run_out.stdout_trimmed().to_string();
    wait_for(
        Duration::from_secs(30),
        Duration::from_millis(250),
        "the container's output in `docker logs`",
        || {
            let out = docker(&config, &client, &host, &["logs", &id]);
            if out.success() && out.stdout.contains("hello-over-tls") {
                Ok(())
            } else {
                Err(out.report("logs"))
            }
        },
    );
    // exec hijacks the connection: the proxy splices it over TLS both ways.
    let exec = docker(
        &config,
        &client,
        &host,
        &["exec", &id, "echo", "exec-over-tls"],
    );
    assert!(
        exec.success() && exec.stdout.contains("exec-over-tls"),
        "{}\n{}",
        exec.report("exec"),
        manager.log()
    );
    // It really runs on the engine.
    let on_engine = engine.docker(&["inspect", "--format", "{{.State.Running}}", &id]);
    assert_eq!(
        on_engine.stdout_trimmed(),
        "true",
        "{}",
        on_engine.report("inspect")
    );

    // No client certificate: refused.
    let anonymous = vec![
        "--tls".to_string(),
        format!("--tlscacert={}", client_files.ca.display()),
    ];
    let out = docker(
        &config,
        &anonymous,
        &host,
        &["info", "--format", "{{json .SystemStatus}}"],
    );
    assert!(
        !out.success() && !out.stdout.contains("Healthy"),
        "{}",
        out.report("info without a certificate")
    );
    // No TLS at all: refused.
    let out = docker(
        &config,
        &[],
        &host,
        &["info", "--format", "{{json .SystemStatus}}"],
    );
    assert!(!out.success(), "{}", out.report("info without TLS"));
    drop(manager);
}

/// A manager whose key is not its certificate's stops at once, in classic's words.
#[test]
fn tls_manager_refuses_a_wrong_key_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new().unwrap();
    let a = ca.issue(dir.path(), "a", &["127.0.0.1"]).unwrap();
    let b = ca.issue(dir.path(), "b", &["127.0.0.1"]).unwrap();
    let mut cmd = Command::new(SWARMD);
    cmd.args([
        "manage",
        "--tlsverify",
        &format!("--tlscacert={}", a.ca.display()),
        &format!("--tlscert={}", a.cert.display()),
        &format!("--tlskey={}", b.key.display()),
        "-H",
        "tcp://127.0.0.1:0",
        "nodes://127.0.0.1:2376",
    ]);
    let out = run(cmd);
    assert!(!out.success(), "{}", out.report("manage with a wrong key"));
    assert!(
        out.stderr.contains(&format!(
            "Couldn't load X509 key pair ({}, {}): tls: private key does not match public key. Key encrypted?",
            a.cert.display(),
            b.key.display()
        )) && !out.stderr.contains("panicked"),
        "{}",
        out.report("manage with a wrong key")
    );

    let mut cmd = Command::new(SWARMD);
    let missing = dir.path().join("missing-ca.pem");
    cmd.args([
        "manage",
        "--tlsverify",
        &format!("--tlscacert={}", missing.display()),
        &format!("--tlscert={}", a.cert.display()),
        &format!("--tlskey={}", a.key.display()),
        "-H",
        "tcp://127.0.0.1:0",
        "nodes://127.0.0.1:2376",
    ]);
    let out = run(cmd);
    assert!(
        !out.success()
            && out.stderr.contains(&format!(
                "Couldn't read CA certificate: open {}",
                missing.display()
            )),
        "{}",
        out.report("manage with a missing CA")
    );
}
