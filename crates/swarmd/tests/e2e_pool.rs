//! The classic Swarm API on a swarm's own nodes (`--pool-host`, issue 17), driven by the
//! stock docker CLI.
//!
//! Two machines, each with its own Docker Engine: the host (manager 1, the Raft leader) and
//! machine B, a network namespace (`swarmd_testkit::Machine`) where manager 2 runs. Both
//! serve the pool API on a unix socket. No engine listens on the network: every call to the
//! other machine's engine goes through that node's agent over the cluster's mutual TLS.
//!
//! What a user relies on: `docker info` through either manager lists both nodes under their
//! swarm hostnames with their swarm labels; `docker run -e constraint:node.labels.zone==X`
//! through either manager places the container on that machine's engine (checked on the
//! engine itself); `logs`, `exec` (a connection upgrade) and `ps` reach it from either
//! manager; a name is unique across the pool whichever manager is asked; docker-compose
//! through the follower places a project's services on both machines and takes them down;
//! draining a node moves its reschedulable containers.
//!
//! Then a worker's machine: its containers outlive its swarmd (kill -9); when the whole
//! machine is dead (its engine too) the containers that asked for it
//! (`-e reschedule:on-node-failure`) run again on the host's engine, a `node==` pin stays;
//! when the machine returns, the stale copy is removed from it; when the node is removed
//! from the swarm, its reschedulable containers move.

mod common;

use std::time::{Duration, Instant};

use common::{EngineCleanup, POLL, T, join_on_machine, wait_ready_nodes};
use swarmd_testkit::{
    Daemon, Executor, Machine, engine_docker, require_engine, unique_name, wait_until,
};

/// The pool API of a manager: `docker -H <it>` arguments.
struct PoolApi<'a> {
    daemon: &'a Daemon,
    host: String,
}

impl PoolApi<'_> {
    #[track_caller]
    fn docker(&self, args: &[&str]) -> swarmd_testkit::CmdOutput {
        let mut all = vec!["-H", self.host.as_str()];
        all.extend_from_slice(args);
        self.daemon.docker(&all)
    }
}

/// Removes the test's containers from the host's engine (machine B's go with the machine).
struct ContainerCleanup(String);

impl Drop for ContainerCleanup {
    fn drop(&mut self) {
        swarmd_testkit::cleanup_engine_containers(&self.0);
    }
}

#[test]
#[ignore = "needs a Docker Engine and root: scripts/test runs it"]
fn pool_api_places_containers_on_both_machines_through_either_manager() {
    require_engine!();
    let started = Instant::now();
    let step = |what: &str| eprintln!("[{:>7.2?}] {what}", started.elapsed());
    let b = Machine::start("swp").expect("machine B (netns + dockerd) starts");
    step("machine B's engine answers, image loaded");
    let dir = tempfile::tempdir().expect("tempdir");
    let pool_a = format!("unix://{}", dir.path().join("pool-a.sock").display());
    let pool_b = format!("unix://{}", dir.path().join("pool-b.sock").display());
    let name_a = unique_name("poola");
    let name_b = unique_name("poolb");

    let m1 = Daemon::builder(env!("CARGO_BIN_EXE_swarmd"))
        .node_addr(b.host_addr())
        .executor(Executor::Docker)
        .hostname(name_a.clone())
        .args(["--pool-host", &pool_a])
        .start()
        .expect("manager 1 starts on the host");
    m1.docker(&["swarm", "init", "--dispatcher-heartbeat", "1s"])
        .ok();
    let _host = EngineCleanup::new(&m1);
    let label = format!("swarmd.test.pool={}", unique_name("run"));
    let _containers = ContainerCleanup(label.clone());
    let m2 = join_on_machine(&m1, &b, &name_b, "manager", &["--pool-host", &pool_b]);
    wait_ready_nodes(&m1, 2);
    for (node, zone) in [(&name_a, "a"), (&name_b, "b")] {
        m1.docker(&[
            "node",
            "update",
            "--label-add",
            &format!("zone={zone}"),
            node,
        ])
        .ok();
    }
    step("two managers ready, labelled");

    let via_a = PoolApi {
        daemon: &m1,
        host: pool_a,
    };
    let via_b = PoolApi {
        daemon: &m2,
        host: pool_b,
    };
    // Both nodes, healthy, under their swarm names and with their swarm labels, through
    // either manager (B's is a follower: it forwards to the leader's pool).
    for api in [&via_a, &via_b] {
        wait_until(T, POLL, "both nodes healthy in the pool", || {
            let info = api.docker(&["info"]);
            info.success()
                && info.stdout.contains("Nodes: 2")
                && [&name_a, &name_b]
                    .iter()
                    .all(|n| info.stdout.contains(n.as_str()))
                && info.stdout.matches("Status: Healthy").count() == 2
                && info.stdout.contains("zone=b")
        });
    }
    step("docker info lists both nodes through both managers");

    // Placement by swarm label, asked of either manager; checked on the engines.
    let on_b = unique_name("onb");
    via_a
        .docker(&[
            "run",
            "-d",
            "--name",
            &on_b,
            "-l",
            &label,
            "-e",
            "constraint:node.labels.zone==b",
            "busybox",
            "sh",
            "-c",
            "echo hello from b; sleep 1d",
        ])
        .ok();
    let on_a = unique_name("ona");
    via_b
        .docker(&[
            "run",
            "-d",
            "--name",
            &on_a,
            "-l",
            &label,
            "-e",
            "constraint:node.labels.zone==a",
            "busybox",
            "sleep",
            "1d",
        ])
        .ok();
    let names_on = |out: swarmd_testkit::CmdOutput| out.ok().stdout_trimmed().to_string();
    let b_names = names_on(b.docker(&["ps", "--format", "{{.Names}}"]));
    assert!(
        b_names.lines().any(|n| n == on_b),
        "{on_b} not on B: {b_names}"
    );
    assert!(
        !b_names.lines().any(|n| n == on_a),
        "{on_a} on B: {b_names}"
    );
    let a_names = names_on(engine_docker(&["ps", "--format", "{{.Names}}"]));
    assert!(
        a_names.lines().any(|n| n == on_a),
        "{on_a} not on the host: {a_names}"
    );
    step("containers placed by label through both managers");

    for api in [&via_a, &via_b] {
        let node = api
            .docker(&["inspect", "--format", "{{.Node.Name}}", &on_b])
            .ok();
        assert_eq!(node.stdout_trimmed(), name_b);
        wait_until(T, POLL, "the container's output through the pool", || {
            api.docker(&["logs", &on_b]).stdout.contains("hello from b")
        });
        let exec = api.docker(&["exec", &on_b, "echo", "exec on b"]).ok();
        assert_eq!(exec.stdout_trimmed(), "exec on b");
        let ps = api.docker(&["ps", "--format", "{{.Names}}"]).ok();
        for (node, name) in [(&name_b, &on_b), (&name_a, &on_a)] {
            let shown = format!("{node}/{name}");
            assert!(
                ps.stdout.lines().any(|l| l == shown),
                "{shown} not in: {}",
                ps.stdout
            );
        }
    }
    step("inspect, logs, exec and ps through both managers");

    // One pool, one namespace of names: a name taken on B is refused through A's manager.
    let taken = via_a
        .docker(&["run", "-d", "--name", &on_b, "busybox", "true"])
        .fail();
    assert!(
        taken.stderr.contains("Conflict") || taken.stderr.contains("already in use"),
        "{}",
        taken.stderr
    );
    step("names unique across the pool");

    // docker-compose through the follower's pool API: a project with a service per
    // machine (swarm labels as constraints), up, then down; checked on the engines.
    let project = unique_name("poolc");
    let file = dir.path().join("docker-compose.yml");
    std::fs::write(
        &file,
        format!(
            r#"version: "2.4"
services:
  on-a:
    image: busybox
    command: ["sleep", "1d"]
    environment: ["constraint:node.labels.zone==a"]
    labels: ["{label}"]
  on-b:
    image: busybox
    command: ["sleep", "1d"]
    environment: ["constraint:node.labels.zone==b"]
    labels: ["{label}"]
"#,
        ),
    )
    .expect("compose file written");
    let compose = |args: &[&str]| {
        let mut cmd = std::process::Command::new("docker-compose");
        cmd.env("DOCKER_HOST", &via_b.host)
            .args(["--ansi", "never", "-p", &project, "-f"])
            .arg(&file)
            .args(args);
        swarmd_testkit::run(cmd)
    };
    compose(&["up", "-d"]).ok();
    let of_project = |out: swarmd_testkit::CmdOutput| -> Vec<String> {
        out.ok().stdout.lines().map(str::to_owned).collect()
    };
    let filter = format!("label=com.docker.compose.project={project}");
    let ps = [
        "ps",
        "--filter",
        filter.as_str(),
        "--format",
        "{{.Label \"com.docker.compose.service\"}}",
    ];
    assert_eq!(of_project(engine_docker(&ps)), ["on-a"]);
    assert_eq!(of_project(b.docker(&ps)), ["on-b"]);
    compose(&["down"]).ok();
    let all = ["ps", "-a", "--filter", filter.as_str(), "-q"];
    assert!(of_project(engine_docker(&all)).is_empty());
    assert!(of_project(b.docker(&all)).is_empty());
    step("docker-compose up and down through the follower, a service on each machine");

    // Draining B's node moves its reschedulable container to the host (the copy first,
    // then the original goes), as swarm mode moves a drained node's tasks.
    let drained = unique_name("drained");
    via_b
        .docker(&[
            "run",
            "-d",
            "--name",
            &drained,
            "-l",
            &label,
            "-e",
            &format!("constraint:node==~{name_b}"),
            "-e",
            "reschedule:on-node-failure",
            "busybox",
            "sleep",
            "1d",
        ])
        .ok();
    let names = |out: swarmd_testkit::CmdOutput| out.ok().stdout_trimmed().to_string();
    assert!(
        names(b.docker(&["ps", "--format", "{{.Names}}"]))
            .lines()
            .any(|n| n == drained)
    );
    m1.docker(&["node", "update", "--availability", "drain", &name_b])
        .ok();
    wait_until(
        T,
        POLL,
        "the drained node's container moved to the host",
        || {
            let on_a = engine_docker(&["ps", "--format", "{{.Names}}"]);
            let on_b = b.docker(&["ps", "-a", "--format", "{{.Names}}"]);
            on_a.success()
                && on_b.success()
                && on_a.stdout.lines().any(|n| n == drained)
                && !on_b.stdout.lines().any(|n| n == drained)
        },
    );
    assert!(
        names(b.docker(&["ps", "--format", "{{.Names}}"]))
            .lines()
            .any(|n| n == on_b),
        "{on_b} (no reschedule policy) stays on the drained node"
    );
    step("a drained node's reschedulable container moved");
}

/// Whether a running container named `name` is on `engine`'s listing.
fn running_on(out: swarmd_testkit::CmdOutput, name: &str) -> bool {
    out.success() && out.stdout.lines().any(|l| l.trim() == name)
}

#[test]
#[ignore = "needs a Docker Engine and root: scripts/test runs it"]
fn pool_containers_outlive_their_agent_and_move_when_their_machine_dies() {
    require_engine!();
    let started = Instant::now();
    let step = |what: &str| eprintln!("[{:>7.2?}] {what}", started.elapsed());
    let mut b = Machine::start("swq").expect("machine B (netns + dockerd) starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = format!("unix://{}", dir.path().join("pool.sock").display());
    let name_b = unique_name("poolw");
    let m = Daemon::builder(env!("CARGO_BIN_EXE_swarmd"))
        .node_addr(b.host_addr())
        .executor(Executor::Docker)
        .hostname(unique_name("poolm"))
        .args(["--pool-host", &pool])
        .start()
        .expect("the manager starts on the host");
    m.docker(&["swarm", "init", "--dispatcher-heartbeat", "1s"])
        .ok();
    let _host = EngineCleanup::new(&m);
    let label = format!("swarmd.test.pool={}", unique_name("run"));
    let _containers = ContainerCleanup(label.clone());
    let mut w = join_on_machine(&m, &b, &name_b, "worker", &[]);
    wait_ready_nodes(&m, 2);
    let api = PoolApi {
        daemon: &m,
        host: pool,
    };
    wait_until(T, POLL, "both nodes healthy in the pool", || {
        let info = api.docker(&["info"]);
        info.success() && info.stdout.matches("Status: Healthy").count() == 2
    });
    step("manager and worker in the pool");

    let run = |name: &str, constraint: &str, reschedule: bool| {
        let mut args = vec!["run", "-d", "--name", name, "-l", &label, "-e", constraint];
        if reschedule {
            args.extend(["-e", "reschedule:on-node-failure"]);
        }
        args.extend(["busybox", "sleep", "1d"]);
        api.docker(&args).ok();
    };
    let (moving, pinned) = (unique_name("moving"), unique_name("pinned"));
    run(&moving, &format!("constraint:node==~{name_b}"), true);
    run(&pinned, &format!("constraint:node=={name_b}"), true);
    for name in [&moving, &pinned] {
        assert!(
            running_on(b.docker(&["ps", "--format", "{{.Names}}"]), name),
            "{name} not on B"
        );
    }
    step("two containers on the worker's machine");

    // The worker's swarmd dies: the node goes Down, its containers keep running.
    w.kill9();
    wait_until(T, POLL, "the worker Down", || {
        m.docker(&["node", "ls", "--format", "{{.Hostname}} {{.Status}}"])
            .stdout
            .contains(&format!("{name_b} Down"))
    });
    for name in [&moving, &pinned] {
        assert!(
            running_on(b.docker(&["ps", "--format", "{{.Names}}"]), name),
            "{name} stopped with its node's swarmd"
        );
    }
    step("containers outlive the worker's swarmd");

    // The whole machine dies: the container that may move runs again on the host, the
    // pinned one stays where it was.
    b.stop_engine().expect("machine B's engine stops");
    wait_until(
        Duration::from_secs(90),
        POLL,
        "the reschedulable container running on the host",
        || running_on(engine_docker(&["ps", "--format", "{{.Names}}"]), &moving),
    );
    assert!(
        !running_on(
            engine_docker(&["ps", "-a", "--format", "{{.Names}}"]),
            &pinned
        ),
        "a node== pin is never moved"
    );
    step("the reschedulable container moved to the host");

    // The machine returns: its stale copy goes, the moved one keeps running on the host.
    b.start_engine().expect("machine B's engine starts again");
    w.restart().expect("the worker's swarmd restarts");
    wait_until(
        Duration::from_secs(90),
        POLL,
        "the stale copy removed from B",
        || {
            let all = b.docker(&["ps", "-a", "--format", "{{.Names}}"]);
            all.success() && !running_on(all, &moving)
        },
    );
    assert!(running_on(
        engine_docker(&["ps", "--format", "{{.Names}}"]),
        &moving
    ));
    assert!(running_on(
        b.docker(&["ps", "-a", "--format", "{{.Names}}"]),
        &pinned
    ));
    step("the stale copy removed when the machine returned");

    // The node leaves the swarm (`node rm --force`): its reschedulable container moves.
    let leaver = unique_name("leaver");
    run(&leaver, &format!("constraint:node==~{name_b}"), true);
    assert!(running_on(
        b.docker(&["ps", "--format", "{{.Names}}"]),
        &leaver
    ));
    m.docker(&["node", "rm", "--force", &name_b]).ok();
    wait_until(
        T,
        POLL,
        "the removed node's container running on the host",
        || running_on(engine_docker(&["ps", "--format", "{{.Names}}"]), &leaver),
    );
    step("a removed node's reschedulable container moved");
}
