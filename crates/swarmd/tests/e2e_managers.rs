//! End to end, several managers on one machine (process executor), driven by the docker
//! CLI: managers join with the manager token and replicate the store with Raft over mutual
//! TLS; any manager takes writes (followers forward them); killing the leader elects a new
//! one that still has everything; losing quorum makes writes fail at once with Docker's
//! message while reads answer; promote and demote move a node in and out of Raft.

mod common;

use std::time::{Duration, Instant};

use common::*;
use swarmd_testkit::{Daemon, Executor, unique_name, wait_for, wait_until};

fn node(name: &str) -> Daemon {
    daemon(Executor::Process, name)
}

/// `node ls` as "hostname status manager-status" lines, sorted.
fn node_table(m: &Daemon) -> Vec<String> {
    let out = m.docker(&[
        "node",
        "ls",
        "--format",
        "{{.Hostname}} {{.Status}} {{.ManagerStatus}}",
    ]);
    let mut v: Vec<String> = out.stdout.lines().map(|l| l.trim().to_string()).collect();
    v.sort();
    v
}

fn token(m: &Daemon, role: &str) -> String {
    m.docker(&["swarm", "join-token", "-q", role])
        .ok()
        .stdout_trimmed()
        .to_string()
}

fn cluster_addr(m: &Daemon) -> String {
    format!("{}:2377", m.node_addr())
}

/// The hostname `node ls` marks Leader, as seen by `m`.
fn leader_seen_by(m: &Daemon) -> Option<String> {
    node_table(m)
        .iter()
        .find(|l| l.ends_with(" Leader"))
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
}

fn services(m: &Daemon) -> Vec<String> {
    let mut v: Vec<String> = m
        .docker(&["service", "ls", "--format", "{{.Name}}"])
        .ok()
        .lines()
        .iter()
        .map(|s| s.to_string())
        .collect();
    v.sort();
    v
}

/// `count` managers on their own loopback addresses: the first inits the swarm (1 s
/// heartbeats), the others join with the manager token. Returns hostnames and daemons.
fn managers(count: usize, prefix: &str) -> (Vec<String>, Vec<Daemon>) {
    let names: Vec<String> = (1..=count)
        .map(|i| unique_name(&format!("{prefix}{i}")))
        .collect();
    let n: Vec<Daemon> = names.iter().map(|h| node(h)).collect();
    n[0].docker(&["swarm", "init", "--dispatcher-heartbeat", "1s"])
        .ok();
    let mtoken = token(&n[0], "manager");
    let first = cluster_addr(&n[0]);
    for d in &n[1..] {
        let out = d
            .docker(&["swarm", "join", "--token", &mtoken, &first])
            .ok();
        assert!(
            out.stdout.contains("This node joined a swarm as a manager"),
            "{}",
            out.stdout
        );
    }
    (names, n)
}

/// Waits until a write through `d` is refused for lack of a leader; returns how long
/// the refused call took.
fn wait_write_refused(d: &Daemon, svc: &str, replicas: u32) -> Duration {
    wait_for(T, POLL, "a write refused for lack of quorum", || {
        let t0 = Instant::now();
        let out = d.docker(&["service", "scale", "-d", &format!("{svc}={replicas}")]);
        let took = t0.elapsed();
        if !out.success() && out.stderr.contains("The swarm does not have a leader") {
            Ok(took)
        } else {
            Err(format!("{} {}", out.stdout, out.stderr))
        }
    })
}

#[test]
fn three_managers_replicate_fail_over_and_refuse_writes_without_quorum() {
    let (names, mut n) = managers(3, "mgr");
    let first = cluster_addr(&n[0]);
    // Every manager's API answers and sees the same three managers, one leader.
    for d in &n {
        wait_for(T, POLL, "one leader and two reachable managers", || {
            let t = node_table(d);
            let leaders = t.iter().filter(|l| l.ends_with("Ready Leader")).count();
            let reachable = t.iter().filter(|l| l.ends_with("Ready Reachable")).count();
            if leaders == 1 && reachable == 2 {
                Ok(())
            } else {
                Err(format!("{t:?}"))
            }
        });
        let info = d
            .docker(&[
                "info",
                "--format",
                "{{.Swarm.ControlAvailable}} {{.Swarm.Managers}} {{.Swarm.Nodes}}",
            ])
            .ok();
        assert_eq!(info.stdout_trimmed(), "true 3 3");
    }
    // A worker joins through the first manager.
    let w_name = unique_name("wrk");
    let w = node(&w_name);
    w.docker(&["swarm", "join", "--token", &token(&n[0], "worker"), &first])
        .ok();
    let _lw = Leave(&w);
    wait_until(T, POLL, "worker ready", || {
        node_table(&n[1]).contains(&format!("{w_name} Ready"))
    });
    let leader = leader_seen_by(&n[0]).expect("a leader");
    let li = names.iter().position(|h| *h == leader).unwrap();
    let followers: Vec<usize> = (0..3).filter(|i| *i != li).collect();

    // A write on a follower is forwarded to the leader and readable everywhere at once.
    let svc = unique_name("ha");
    n[followers[0]]
        .docker(&[
            "service",
            "create",
            "-d",
            "--name",
            &svc,
            "--replicas",
            "4",
            "busybox",
            "sh",
            "-c",
            "echo hello; exec sleep 300",
        ])
        .ok();
    for d in &n {
        assert!(services(d).contains(&svc), "{svc} missing on a manager");
    }
    wait_until(T, POLL, "4/4 running", || {
        replicas(&n[followers[1]], &svc) == "4/4"
    });
    // One task per node (spread).
    let tasks_on = |m: &Daemon, host: &str| -> Vec<String> {
        m.docker(&[
            "node",
            "ps",
            "-q",
            "--filter",
            "desired-state=running",
            host,
        ])
        .ok()
        .lines()
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    for h in names.iter().chain([&w_name]) {
        assert_eq!(tasks_on(&n[li], h).len(), 1, "one task on {h}");
    }
    let worker_task = tasks_on(&n[li], &w_name);
    // `service logs` on a follower reads every node's output through the leader's broker.
    wait_for(T, POLL, "logs of all four tasks on a follower", || {
        let logs = n[followers[1]].docker(&["service", "logs", &svc]);
        let all_nodes = names
            .iter()
            .chain([&w_name])
            .all(|h| logs.stdout.contains(&format!("@{h}")));
        if logs.stdout.matches("hello").count() == 4 && all_nodes {
            Ok(())
        } else {
            Err(format!("{}{}", logs.stdout, logs.stderr))
        }
    });

    // kill -9 of the leader: a new leader takes writes, nothing acknowledged is lost.
    n[li].kill9();
    let survivor = followers[0];
    let start = Instant::now();
    let svc2 = unique_name("after");
    wait_for(T, POLL, "a write after the leader died", || {
        let out = n[survivor].docker(&[
            "service", "create", "-d", "--name", &svc2, "busybox", "sleep", "300",
        ]);
        if out.success() {
            Ok(())
        } else {
            Err(out.stderr)
        }
    });
    eprintln!("first write after leader loss: {:?}", start.elapsed());
    for &i in &followers {
        let s = services(&n[i]);
        assert!(s.contains(&svc) && s.contains(&svc2), "{s:?}");
    }
    wait_for(T, POLL, "the old leader shown down and unreachable", || {
        let t = node_table(&n[survivor]);
        let new_leader = leader_seen_by(&n[survivor]);
        if t.contains(&format!("{leader} Down Unreachable"))
            && new_leader.as_ref().is_some_and(|l| *l != leader)
        {
            Ok(())
        } else {
            Err(format!("{t:?}"))
        }
    });
    // Its task moved: four running again, on the live nodes. The worker followed the
    // new leader: still ready, its task untouched.
    wait_for(T, POLL, "4/4 running on the survivors", || {
        if replicas(&n[survivor], &svc) == "4/4" {
            Ok(())
        } else {
            let ps = n[survivor].docker(&["service", "ps", &svc]);
            Err(format!(
                "{}{}\n{:?}",
                ps.stdout,
                ps.stderr,
                node_table(&n[survivor])
            ))
        }
    });
    wait_for(T, POLL, "the worker reconnected to the new leader", || {
        let t = node_table(&n[survivor]);
        if t.contains(&format!("{w_name} Ready")) {
            Ok(())
        } else {
            Err(format!("{t:?}"))
        }
    });
    let now_on_worker = tasks_on(&n[survivor], &w_name);
    assert!(
        now_on_worker.contains(&worker_task[0]),
        "the worker's task kept running: {now_on_worker:?} vs {worker_task:?}"
    );

    // Quorum lost (2 of 3 down): writes fail fast with Docker's message; so do reads (a
    // 503 rather than what may be stale: no leader can confirm the replica is current).
    let other = followers[1];
    n[other].kill9();
    let refused = wait_write_refused(&n[survivor], &svc, 5);
    assert!(
        refused < Duration::from_secs(20),
        "a write without quorum must fail, not hang ({refused:?})"
    );
    let t0 = Instant::now();
    let read = n[survivor].docker(&["service", "ls"]);
    assert!(
        !read.success() && read.stderr.contains("The swarm does not have a leader"),
        "a read without quorum is refused: {read:?}"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "and does not hang ({:?})",
        t0.elapsed()
    );
    let raw = n[survivor].http("GET", "/services", None).unwrap();
    assert_eq!(raw.status, 503, "{}", raw.text());

    // Both come back: quorum again, writes work, everything is there.
    n[li].restart().unwrap();
    n[other].restart().unwrap();
    wait_for(T, POLL, "writes work again", || {
        let out = n[survivor].docker(&["service", "scale", "-d", &format!("{svc}=5")]);
        if out.success() {
            Ok(())
        } else {
            Err(out.stderr)
        }
    });
    for d in &n {
        wait_for(T, POLL, "every manager has every service", || {
            let s = services(d);
            if s.contains(&svc) && s.contains(&svc2) {
                Ok(())
            } else {
                Err(format!("{s:?}"))
            }
        });
    }
    wait_until(T, POLL, "5/5 running", || replicas(&n[li], &svc) == "5/5");

    for d in &n {
        let _ = d.docker(&["swarm", "leave", "--force"]);
    }
}

#[test]
fn promote_and_demote_move_a_node_in_and_out_of_raft() {
    let m_name = unique_name("pm");
    let w_name = unique_name("pw");
    let m = node(&m_name);
    m.docker(&["swarm", "init", "--dispatcher-heartbeat", "1s"])
        .ok();
    let _lm = Leave(&m);
    let w = node(&w_name);
    w.docker(&[
        "swarm",
        "join",
        "--token",
        &token(&m, "worker"),
        &cluster_addr(&m),
    ])
    .ok();
    let _lw = Leave(&w);
    wait_until(T, POLL, "worker ready", || {
        node_table(&m).contains(&format!("{w_name} Ready"))
    });
    // Demoting the only manager is refused.
    let refused = m.docker(&["node", "demote", &m_name]).fail();
    assert!(
        refused
            .stderr
            .contains("attempting to demote the last manager of the swarm"),
        "{}",
        refused.stderr
    );

    m.docker(&["node", "promote", &w_name]).ok();
    wait_for(T, POLL, "the promoted node is a reachable manager", || {
        let t = node_table(&m);
        if t.contains(&format!("{w_name} Ready Reachable")) {
            Ok(())
        } else {
            Err(format!("{t:?}"))
        }
    });
    // Its own API now manages the swarm and sees the same state.
    wait_for(T, POLL, "the promoted node's API manages the swarm", || {
        let t = node_table(&w);
        if t.contains(&format!("{m_name} Ready Leader")) {
            Ok(())
        } else {
            Err(format!("{t:?}"))
        }
    });
    let svc = unique_name("p");
    w.docker(&[
        "service", "create", "-d", "--name", &svc, "busybox", "sleep", "300",
    ])
    .ok();
    assert!(services(&m).contains(&svc));

    // Demote it again: it leaves Raft and its API refuses management.
    m.docker(&["node", "demote", &w_name]).ok();
    wait_for(T, POLL, "demoted back to worker", || {
        let t = node_table(&m);
        if t.contains(&format!("{w_name} Ready")) {
            Ok(())
        } else {
            Err(format!("{t:?}"))
        }
    });
    wait_for(T, POLL, "the demoted node's API refuses management", || {
        let out = w.docker(&["node", "ls"]);
        if !out.success() && out.stderr.contains("not a swarm manager") {
            Ok(())
        } else {
            Err(format!("{}{}", out.stdout, out.stderr))
        }
    });
    // The swarm still takes writes with its one manager.
    m.docker(&["service", "scale", "-d", &format!("{svc}=2")])
        .ok();
    wait_until(T, POLL, "2/2 running", || replicas(&m, &svc) == "2/2");
}

#[test]
fn force_new_cluster_rebuilds_a_one_manager_swarm_from_a_survivor() {
    let (names, mut n) = managers(3, "fm");
    let svc = unique_name("kept");
    n[0].docker(&[
        "service",
        "create",
        "-d",
        "--name",
        &svc,
        "--replicas",
        "3",
        "busybox",
        "sleep",
        "300",
    ])
    .ok();
    wait_until(T, POLL, "3/3 running", || replicas(&n[2], &svc) == "3/3");
    let wtoken = token(&n[0], "worker");

    // Two of three managers die: no quorum.
    n[0].kill9();
    n[1].kill9();
    wait_write_refused(&n[2], &svc, 1);
    let out = n[2].docker(&["swarm", "init", "--force-new-cluster"]).ok();
    assert!(out.stdout.contains("Swarm initialized"), "{}", out.stdout);

    // One manager, the leader, with everything the swarm had; the dead managers are
    // workers now, and the join tokens still work.
    wait_for(T, POLL, "the survivor leads alone", || {
        let t = node_table(&n[2]);
        let managers: Vec<&String> = t.iter().filter(|l| l.split(' ').count() > 2).collect();
        if managers.len() == 1 && managers[0] == &format!("{} Ready Leader", names[2]) {
            Ok(())
        } else {
            Err(format!("{t:?}"))
        }
    });
    assert!(services(&n[2]).contains(&svc));
    assert_eq!(token(&n[2], "worker"), wtoken);
    n[2].docker(&["service", "scale", "-d", &format!("{svc}=2")])
        .ok();
    wait_for(T, POLL, "2/2 running", || {
        if replicas(&n[2], &svc) == "2/2" {
            Ok(())
        } else {
            let ps = n[2].docker(&["service", "ps", &svc]);
            Err(format!(
                "{}{}\n{:?}",
                ps.stdout,
                ps.stderr,
                node_table(&n[2])
            ))
        }
    });
    // It survives a restart as the new cluster.
    n[2].restart().unwrap();
    wait_until(T, POLL, "still 2/2 after a restart", || {
        replicas(&n[2], &svc) == "2/2"
    });
    let _ = n[2].docker(&["swarm", "leave", "--force"]);
}

#[test]
fn demoting_the_leader_hands_leadership_over() {
    let (names, n) = managers(3, "dl");
    wait_until(T, POLL, "three managers, one leader", || {
        leader_seen_by(&n[1]).is_some()
            && node_table(&n[1])
                .iter()
                .filter(|l| l.ends_with("Reachable") || l.ends_with("Leader"))
                .count()
                == 3
    });
    let leader = leader_seen_by(&n[1]).unwrap();
    let li = names.iter().position(|h| *h == leader).unwrap();
    let other = (li + 1) % 3;
    n[other].docker(&["node", "demote", &leader]).ok();

    // Another manager leads; the old leader is a worker whose API no longer manages.
    wait_for(T, POLL, "a new leader and the old one a worker", || {
        let t = node_table(&n[other]);
        let new_leader = leader_seen_by(&n[other]);
        if new_leader.as_ref().is_some_and(|l| *l != leader)
            && t.contains(&format!("{leader} Ready"))
        {
            Ok(())
        } else {
            Err(format!("{t:?}"))
        }
    });
    wait_for(
        T,
        POLL,
        "the demoted leader's API refuses management",
        || {
            let out = n[li].docker(&["node", "ls"]);
            if !out.success() && out.stderr.contains("not a swarm manager") {
                Ok(())
            } else {
                Err(format!("{}{}", out.stdout, out.stderr))
            }
        },
    );
    // Two managers take writes.
    let svc = unique_name("after-demote");
    n[other]
        .docker(&[
            "service", "create", "-d", "--name", &svc, "busybox", "sleep", "300",
        ])
        .ok();
    wait_until(T, POLL, "1/1 running", || {
        replicas(&n[other], &svc) == "1/1"
    });
    let info = n[other]
        .docker(&["info", "--format", "{{.Swarm.Managers}} {{.Swarm.Nodes}}"])
        .ok();
    assert_eq!(info.stdout_trimmed(), "2 3");
    for d in &n {
        let _ = d.docker(&["swarm", "leave", "--force"]);
    }
}

#[test]
fn five_managers_survive_two_failures_not_three() {
    let (names, mut n) = managers(5, "f");
    wait_until(T, POLL, "five managers", || {
        n[4].docker(&["info", "--format", "{{.Swarm.Managers}}"])
            .stdout_trimmed()
            == "5"
    });
    // Kill the leader and one more: three of five keep a quorum.
    let leader = leader_seen_by(&n[4]).expect("a leader");
    let li = names.iter().position(|h| *h == leader).unwrap();
    let mut dead = vec![li, (li + 1) % 5];
    for &i in &dead {
        n[i].kill9();
    }
    let alive: Vec<usize> = (0..5).filter(|i| !dead.contains(i)).collect();
    let svc = unique_name("five");
    wait_for(T, POLL, "a write with 3 of 5 managers", || {
        let out = n[alive[0]].docker(&[
            "service", "create", "-d", "--name", &svc, "busybox", "sleep", "300",
        ]);
        if out.success() || out.stderr.contains("already exists") {
            Ok(())
        } else {
            Err(out.stderr)
        }
    });
    for &i in &alive {
        assert!(services(&n[i]).contains(&svc));
    }
    // A third failure loses the quorum: writes are refused at once.
    n[alive[2]].kill9();
    dead.push(alive[2]);
    wait_write_refused(&n[alive[0]], &svc, 2);
    for &i in &dead {
        n[i].restart().unwrap();
    }
    wait_for(T, POLL, "writes again with all five back", || {
        let out = n[alive[1]].docker(&["service", "scale", "-d", &format!("{svc}=2")]);
        if out.success() {
            Ok(())
        } else {
            Err(out.stderr)
        }
    });
    for d in &n {
        let _ = d.docker(&["swarm", "leave", "--force"]);
    }
}

#[test]
fn all_managers_restart_together_and_keep_everything() {
    let (_names, mut n) = managers(3, "rs");
    let svc = unique_name("kept");
    n[1].docker(&[
        "service",
        "create",
        "-d",
        "--name",
        &svc,
        "--replicas",
        "3",
        "busybox",
        "sleep",
        "300",
    ])
    .ok();
    wait_until(T, POLL, "3/3 running", || replicas(&n[2], &svc) == "3/3");
    let tasks_before = running_tasks(&n[0], &svc);

    // SIGTERM every manager, then start them all again.
    for d in n.iter_mut() {
        d.sigterm().unwrap();
    }
    for d in n.iter_mut() {
        d.restart().unwrap();
    }
    for d in &n {
        wait_for(T, POLL, "a leader and the service on every manager", || {
            let s = services(d);
            if leader_seen_by(d).is_some() && s.contains(&svc) {
                Ok(())
            } else {
                Err(format!("{s:?} {:?}", node_table(d)))
            }
        });
    }
    // The same tasks were re-adopted (no replacement), and writes work.
    wait_until(T, POLL, "3/3 running again", || {
        replicas(&n[0], &svc) == "3/3"
    });
    let mut after = running_tasks(&n[0], &svc);
    let mut before = tasks_before.clone();
    after.sort();
    before.sort();
    assert_eq!(after, before, "tasks were re-adopted, not replaced");
    wait_for(T, POLL, "a write after the restart", || {
        let out = n[2].docker(&["service", "scale", "-d", &format!("{svc}=4")]);
        if out.success() {
            Ok(())
        } else {
            Err(out.stderr)
        }
    });
    wait_until(T, POLL, "4/4 running", || replicas(&n[1], &svc) == "4/4");
    for d in &n {
        let _ = d.docker(&["swarm", "leave", "--force"]);
    }
}
