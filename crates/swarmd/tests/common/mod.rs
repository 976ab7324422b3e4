//! Helpers shared by the end-to-end tests: starting nodes, leaving the swarm on exit,
//! and reading what the docker CLI shows.
#![allow(dead_code)] // each test binary uses a subset

use std::time::Duration;

use swarmd_testkit::{Daemon, Executor, Machine, unique_loopback, unique_name, wait_until};

/// How long a test waits for the cluster to converge.
pub const T: Duration = Duration::from_secs(60);
/// How often it looks.
pub const POLL: Duration = Duration::from_millis(200);

/// A fresh swarmd on its own loopback address, not yet in a swarm.
pub fn daemon(executor: Executor, hostname: &str) -> Daemon {
    Daemon::builder(env!("CARGO_BIN_EXE_swarmd"))
        .node_addr(unique_loopback())
        .executor(executor)
        .hostname(hostname)
        .start()
        .expect("swarmd starts")
}

/// A swarmd in machine `m`'s namespace on `m`'s own engine (docker executor), joined as
/// `role` ("worker" or "manager") to the swarm of `manager` (on the host, at `m`'s host
/// address); `extra` flags are added to its command line.
pub fn join_on_machine(
    manager: &Daemon,
    m: &Machine,
    hostname: &str,
    role: &str,
    extra: &[&str],
) -> Daemon {
    let token = manager
        .docker(&["swarm", "join-token", "-q", role])
        .ok()
        .stdout_trimmed()
        .to_string();
    let node = Daemon::builder(env!("CARGO_BIN_EXE_swarmd"))
        .netns(m.netns())
        .node_addr(m.addr())
        .executor(Executor::Docker)
        .args(["--engine-host", &m.engine_host()])
        .hostname(hostname)
        .args(extra)
        .start()
        .expect("swarmd starts in the machine");
    let advertise = m.addr().to_string();
    let manager_addr = format!("{}:2377", m.host_addr());
    node.docker(&[
        "swarm",
        "join",
        "--advertise-addr",
        &advertise,
        "--token",
        &token,
        &manager_addr,
    ])
    .ok();
    node
}

/// A process-executor node with a unique hostname.
pub fn process_node(prefix: &str) -> Daemon {
    daemon(Executor::Process, &unique_name(prefix))
}

/// Leaves the swarm (stopping the node's tasks) when the test ends, even on panic.
pub struct Leave<'a>(pub &'a Daemon);
impl Drop for Leave<'_> {
    fn drop(&mut self) {
        let _ = self.0.docker(&["swarm", "leave", "--force"]);
    }
}

/// For docker-executor tests: leaves the swarm and removes the node's containers from the
/// shared engine when the test ends, even on panic.
pub struct EngineCleanup<'a> {
    node: &'a Daemon,
    /// The node's swarm ID: its containers carry it as `com.docker.swarm.node.id`.
    pub node_id: String,
}

impl<'a> EngineCleanup<'a> {
    /// Call once the node is in a swarm (its node ID is read from `docker info`).
    pub fn new(node: &'a Daemon) -> Self {
        let node_id = node
            .docker(&["info", "--format", "{{.Swarm.NodeID}}"])
            .ok()
            .stdout_trimmed()
            .to_string();
        EngineCleanup { node, node_id }
    }
}

impl Drop for EngineCleanup<'_> {
    fn drop(&mut self) {
        let _ = self.node.docker(&["swarm", "leave", "--force"]);
        swarmd_testkit::cleanup_engine_containers(&format!(
            "com.docker.swarm.node.id={}",
            self.node_id
        ));
    }
}

/// `service ls`'s REPLICAS column for one service, e.g. "2/3".
pub fn replicas(n: &Daemon, service: &str) -> String {
    n.docker(&[
        "service",
        "ls",
        "--filter",
        &format!("name={service}"),
        "--format",
        "{{.Replicas}}",
    ])
    .ok()
    .stdout_trimmed()
    .to_string()
}

/// IDs of the service's tasks that should be running.
pub fn running_tasks(n: &Daemon, service: &str) -> Vec<String> {
    n.docker(&[
        "service",
        "ps",
        "-q",
        "--filter",
        "desired-state=running",
        service,
    ])
    .ok()
    .lines()
    .into_iter()
    .map(str::to_string)
    .collect()
}

/// A field of `docker inspect --type task`.
pub fn task_field(n: &Daemon, task: &str, format: &str) -> String {
    n.docker(&["inspect", "--type", "task", "--format", format, task])
        .ok()
        .stdout_trimmed()
        .to_string()
}

/// Whether a process exists.
pub fn pid_alive(pid: i32) -> bool {
    pid > 0 && std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// A field of `docker service inspect`.
pub fn service_field(n: &Daemon, service: &str, format: &str) -> String {
    n.docker(&["service", "inspect", "--format", format, service])
        .ok()
        .stdout_trimmed()
        .to_string()
}

/// Whether `value` is in any file under `dir` (`grep -r`, binary files as text, devices,
/// FIFOs and sockets skipped). Returns the matching files.
pub fn grep_tree(dir: &std::path::Path, value: &str) -> Vec<String> {
    let out = std::process::Command::new("grep")
        .args(["-r", "-l", "-F", "-a", "-D", "skip", "--", value])
        .arg(dir)
        .output()
        .expect("grep runs");
    match out.status.code() {
        Some(0) => String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect(),
        Some(1) => vec![],
        _ => panic!(
            "grep failed on {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// Three nodes: a manager and two workers, heartbeat 1 s.
pub fn three_nodes(executor: Executor, prefix: &str) -> Vec<Daemon> {
    let m = daemon(executor, &unique_name(&format!("{prefix}m")));
    m.docker(&["swarm", "init", "--dispatcher-heartbeat", "1s"])
        .ok();
    let token = m
        .docker(&["swarm", "join-token", "-q", "worker"])
        .ok()
        .stdout_trimmed()
        .to_string();
    let addr = format!("{}:2377", m.node_addr());
    let mut nodes = vec![m];
    for i in 1..=2 {
        let w = daemon(executor, &unique_name(&format!("{prefix}w{i}")));
        w.docker(&["swarm", "join", "--token", &token, &addr]).ok();
        nodes.push(w);
    }
    wait_ready_nodes(&nodes[0], 3);
    nodes
}

/// The shell command that sends `GET path` to `host` port 80 with busybox `nc`, to run in a
/// container (the static busybox's `wget` crashes in these images).
pub fn http_get_cmd(host: &str, path: &str) -> String {
    format!("printf 'GET {path} HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {host} 80")
}

/// The body of `out`, the raw answer to [`http_get_cmd`], if it is a 200.
pub fn http_body(out: &str, what: &str) -> Result<String, String> {
    match out.split_once("\r\n\r\n") {
        Some((head, body)) if head.contains(" 200 ") => Ok(body.to_string()),
        _ => Err(format!("bad answer from {what}: {out:?}")),
    }
}

/// The IPv4 addresses in the output of busybox `nslookup -type=a name` (the server's own
/// lines, before `Name:`, left out).
pub fn nslookup_answers(
    out: &str,
    name: &str,
) -> Result<std::collections::BTreeSet<String>, String> {
    let answers: std::collections::BTreeSet<String> = out
        .lines()
        .skip_while(|l| !l.starts_with("Name:"))
        .filter(|l| l.starts_with("Address"))
        .filter_map(|l| l.split_whitespace().last())
        .map(str::to_string)
        .collect();
    if answers.is_empty() {
        Err(format!("no answer for {name}: {out}"))
    } else {
        Ok(answers)
    }
}

/// How many nodes `m`'s `docker node ls` shows Ready.
pub fn ready_nodes(m: &Daemon) -> usize {
    m.docker(&["node", "ls", "--format", "{{.Status}}"])
        .stdout
        .lines()
        .filter(|l| l.trim() == "Ready")
        .count()
}

/// Waits until `m`'s `docker node ls` shows `n` nodes Ready.
pub fn wait_ready_nodes(m: &Daemon, n: usize) {
    wait_until(T, POLL, &format!("{n} ready nodes"), || ready_nodes(m) == n);
}

/// `docker ps` arguments listing the running containers of `service`'s tasks on node
/// `node_id` (by the labels Docker's swarm mode gives task containers).
pub fn task_containers_args(service: &str, node_id: &str) -> Vec<String> {
    vec![
        "ps".into(),
        "-q".into(),
        "--filter".into(),
        format!("label=com.docker.swarm.service.name={service}"),
        "--filter".into(),
        format!("label=com.docker.swarm.node.id={node_id}"),
    ]
}
