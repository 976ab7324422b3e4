//! End to end: secrets and configs with the docker CLI. The API (create/ls/inspect/rm,
//! Docker's limits and messages, references from services), delivery to tasks (process
//! executor's `SWARMD_SECRETS_DIR`, docker executor's read-only mounts with owner and
//! mode), delivery only to nodes that run a referencing task, and the files going away
//! when the task ends.

mod common;

use std::path::PathBuf;

use common::{Leave, POLL, T, process_node, ready_nodes, wait_ready_nodes};
use swarmd_testkit::{
    Daemon, Executor, cleanup_engine_containers, engine_docker, find_secret, find_secret_in_tree,
    require_engine, unique_loopback, unique_name, wait_for, wait_until,
};

/// Where the executors put a task's files (the default root).
fn task_dir(task_id: &str) -> PathBuf {
    PathBuf::from("/dev/shm/swarmd").join(task_id)
}

/// Full IDs of the service's tasks that should be running.
fn task_ids(n: &Daemon, service: &str) -> Vec<String> {
    n.docker(&[
        "service",
        "ps",
        "-q",
        "--no-trunc",
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

fn running_task(n: &Daemon, service: &str) -> String {
    wait_for(T, POLL, "one running task", || {
        let ids = task_ids(n, service);
        let running: Vec<&String> = ids
            .iter()
            .filter(|id| {
                n.docker(&[
                    "inspect",
                    "--type",
                    "task",
                    "--format",
                    "{{.Status.State}}",
                    id,
                ])
                .stdout_trimmed()
                    == "running"
            })
            .collect();
        match running.as_slice() {
            [one] => Ok((*one).clone()),
            other => Err(format!("{other:?}")),
        }
    })
}

/// A daemon log without the terminal colour codes tracing writes.
fn plain_log(d: &Daemon) -> String {
    let raw = d.log();
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether the node's agent logged receiving (`removed=false`) or dropping
/// (`removed=true`) the object.
fn dependency_logged(d: &Daemon, id: &str, removed: bool) -> bool {
    let want = format!("removed={removed}");
    plain_log(d)
        .lines()
        .any(|l| l.contains("dependency assignment") && l.contains(id) && l.contains(&want))
}

fn create_secret(n: &Daemon, args: &[&str], data: &[u8]) -> String {
    let mut a = vec!["secret", "create"];
    a.extend_from_slice(args);
    a.push("-");
    n.docker_stdin(&a, data).ok().stdout_trimmed().to_string()
}

fn create_config(n: &Daemon, args: &[&str], data: &[u8]) -> String {
    let mut a = vec!["config", "create"];
    a.extend_from_slice(args);
    a.push("-");
    n.docker_stdin(&a, data).ok().stdout_trimmed().to_string()
}

#[test]
fn secret_and_config_api_with_dockers_rules() {
    let n = process_node("sec");
    n.docker(&["swarm", "init"]).ok();
    let _l = Leave(&n);

    let id = create_secret(&n, &["--label", "env=prod", "db_pw"], b"hunter2-api");
    assert_eq!(id.len(), 25, "{id}");
    // ls with filters.
    let names = |filter: &str| {
        n.docker(&["secret", "ls", "--filter", filter, "--format", "{{.Name}}"])
            .ok()
            .stdout_trimmed()
            .to_string()
    };
    create_secret(&n, &["other"], b"x");
    assert_eq!(names("label=env=prod"), "db_pw");
    assert_eq!(names("name=db_"), "db_pw");
    assert_eq!(names(&format!("id={}", &id[..6])), "db_pw");
    assert_eq!(names("label=env=dev"), "");
    let bad = n.docker(&["secret", "ls", "--filter", "bogus=1"]).fail();
    assert!(
        bad.stderr.contains("invalid filter 'bogus'"),
        "{}",
        bad.stderr
    );

    // Inspect never shows the data.
    let ins = n.docker(&["secret", "inspect", "db_pw"]).ok();
    assert!(!ins.stdout.contains("Data"), "{}", ins.stdout);
    assert!(!ins.stdout.contains("aHVudGVyMi1hcGk"), "{}", ins.stdout);
    let v = ins.json();
    assert_eq!(v[0]["ID"], id.as_str());
    assert_eq!(v[0]["Spec"]["Labels"]["env"], "prod");
    let missing = n.docker(&["secret", "inspect", "nope"]).fail();
    assert!(
        missing.stderr.contains("secret nope not found"),
        "{}",
        missing.stderr
    );

    // Docker's validation and limits.
    let dup = n
        .docker_stdin(&["secret", "create", "db_pw", "-"], b"y")
        .fail();
    assert!(
        dup.stderr
            .contains("rpc error: code = AlreadyExists desc = secret db_pw already exists"),
        "{}",
        dup.stderr
    );
    let big = n
        .docker_stdin(&["secret", "create", "big", "-"], &vec![b'a'; 500 * 1024])
        .fail();
    assert!(
        big.stderr.contains(
            "rpc error: code = InvalidArgument desc = secret data must be larger than 0 and less than 512000 bytes"
        ),
        "{}",
        big.stderr
    );
    create_secret(&n, &["just_fits"], &vec![b'a'; 500 * 1024 - 1]);
    let bad_name = n
        .docker_stdin(&["secret", "create", "bad.", "-"], b"y")
        .fail();
    assert!(
        bad_name.stderr.contains(
            "invalid name, only 64 [a-zA-Z0-9-_.] characters allowed, and the start and end character must be [a-zA-Z0-9]"
        ),
        "{}",
        bad_name.stderr
    );
    let tmpl = create_secret(
        &n,
        &["--template-driver", "golang", "tmpl"],
        b"{{ .Service.Name }}",
    );
    let drv = n
        .docker(&[
            "secret",
            "inspect",
            "--format",
            "{{.Spec.Templating.Name}}",
            &tmpl,
        ])
        .ok();
    assert_eq!(drv.stdout_trimmed(), "golang");

    // Update: labels only (no CLI verb; the API as the SDKs call it).
    let version = n
        .docker(&[
            "secret",
            "inspect",
            "--format",
            "{{.Version.Index}}",
            "db_pw",
        ])
        .ok()
        .stdout_trimmed()
        .to_string();
    let r = n
        .http(
            "POST",
            &format!("/v1.50/secrets/{id}/update?version={version}"),
            Some(br#"{"Name":"db_pw","Labels":{"env":"staging"}}"#),
        )
        .expect("http");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(names("label=env=staging"), "db_pw");
    let r = n
        .http(
            "POST",
            &format!("/v1.50/secrets/{id}/update?version={version}"),
            Some(br#"{"Name":"db_pw","Labels":{}}"#),
        )
        .expect("http");
    assert_eq!(
        r.status,
        409,
        "stale version: {}",
        String::from_utf8_lossy(&r.body)
    );
    let version = n
        .docker(&[
            "secret",
            "inspect",
            "--format",
            "{{.Version.Index}}",
            "db_pw",
        ])
        .ok()
        .stdout_trimmed()
        .to_string();
    let r = n
        .http(
            "POST",
            &format!("/v1.50/secrets/{id}/update?version={version}"),
            Some(br#"{"Name":"renamed","Labels":{}}"#),
        )
        .expect("http");
    assert_eq!(r.status, 400);
    assert!(
        String::from_utf8_lossy(&r.body).contains("only updates to Labels are allowed"),
        "{}",
        String::from_utf8_lossy(&r.body)
    );

    // Configs: inspect shows the data; 1000 KB limit.
    create_config(&n, &["--label", "k=v", "app.conf"], b"port=8080\n");
    let data = n
        .docker(&[
            "config",
            "inspect",
            "--format",
            "{{printf \"%s\" .Spec.Data}}",
            "app.conf",
        ])
        .ok();
    assert_eq!(data.stdout_trimmed(), "port=8080");
    let ls = n
        .docker(&[
            "config",
            "ls",
            "--filter",
            "label=k",
            "--format",
            "{{.Name}}",
        ])
        .ok();
    assert_eq!(ls.stdout_trimmed(), "app.conf");
    let big = n
        .docker_stdin(&["config", "create", "bigc", "-"], &vec![b'a'; 1000 * 1024])
        .fail();
    assert!(
        big.stderr
            .contains("config data must be larger than 0 and less than 1024000 bytes"),
        "{}",
        big.stderr
    );

    // A service referencing them; removal refused while it does.
    let svc = unique_name("sref");
    n.docker(&[
        "service",
        "create",
        "-d",
        "--name",
        &svc,
        "--secret",
        "db_pw",
        "--secret",
        "source=other,target=renamed,mode=0400",
        "--config",
        "source=app.conf,target=/etc/app.conf",
        "busybox",
        "sh",
        "-c",
        "ls $SWARMD_SECRETS_DIR $SWARMD_CONFIGS_DIR/etc; stat -c 'mode=%a' $SWARMD_SECRETS_DIR/renamed; cat $SWARMD_CONFIGS_DIR/etc/app.conf; exec sleep 300",
    ])
    .ok();
    let in_use = n.docker(&["secret", "rm", "db_pw"]).fail();
    assert!(
        in_use.stderr.contains(&format!(
            "rpc error: code = InvalidArgument desc = secret 'db_pw' is in use by the following service: {svc}"
        )),
        "{}",
        in_use.stderr
    );
    let in_use = n.docker(&["config", "rm", "app.conf"]).fail();
    assert!(
        in_use.stderr.contains(&format!(
            "config 'app.conf' is in use by the following service: {svc}"
        )),
        "{}",
        in_use.stderr
    );
    let task = running_task(&n, &svc);
    wait_until(T, POLL, "task output", || {
        let logs = n.docker(&["service", "logs", "--raw", &svc]).stdout;
        logs.contains("db_pw")
            && logs.contains("renamed")
            && logs.contains("mode=400")
            && logs.contains("app.conf")
            && logs.contains("port=8080")
    });
    assert!(task_dir(&task).join("secrets/db_pw").exists());

    // An unknown secret at create: the CLI's check and the daemon's own.
    let unknown = n
        .docker(&[
            "service", "create", "-d", "--secret", "nosuch", "busybox", "true",
        ])
        .fail();
    assert!(
        unknown.stderr.contains("secret not found: nosuch"),
        "{}",
        unknown.stderr
    );
    let body = br#"{"Name":"bogus","TaskTemplate":{"ContainerSpec":{"Image":"busybox","Secrets":[{"SecretID":"abc","SecretName":"ghost","File":{"Name":"ghost","UID":"0","GID":"0","Mode":292}}]}}}"#;
    let r = n
        .http("POST", "/v1.50/services/create", Some(body))
        .expect("http");
    assert_eq!(r.status, 400);
    assert!(
        String::from_utf8_lossy(&r.body)
            .contains("rpc error: code = InvalidArgument desc = secret not found: ghost"),
        "{}",
        String::from_utf8_lossy(&r.body)
    );

    // --secret-rm rolls the task; then the secret can go. The old task's files are gone.
    n.docker(&["service", "update", "-d", "--secret-rm", "db_pw", &svc])
        .ok();
    wait_until(T, POLL, "the task replaced", || {
        let ids = task_ids(&n, &svc);
        ids.len() == 1 && ids[0] != task
    });
    wait_until(T, POLL, "old task's files removed", || {
        !task_dir(&task).exists()
    });
    n.docker(&["secret", "rm", "db_pw"]).ok();
    n.docker(&[
        "service",
        "update",
        "-d",
        "--secret-add",
        "source=tmpl,target=t",
        &svc,
    ])
    .ok();
    let spec = n
        .docker(&[
            "service",
            "inspect",
            "--format",
            "{{range .Spec.TaskTemplate.ContainerSpec.Secrets}}{{.SecretName}}:{{.File.Name}} {{end}}",
            &svc,
        ])
        .ok();
    assert_eq!(spec.stdout_trimmed(), "other:renamed tmpl:t");
    let before = task_ids(&n, &svc);
    n.docker(&[
        "service",
        "update",
        "-d",
        "--config-rm",
        "app.conf",
        "--config-add",
        "source=app.conf,target=/x.conf",
        &svc,
    ])
    .ok();
    let configs = n
        .docker(&[
            "service",
            "inspect",
            "--format",
            "{{range .Spec.TaskTemplate.ContainerSpec.Configs}}{{.ConfigName}}:{{.File.Name}} {{end}}",
            &svc,
        ])
        .ok();
    assert_eq!(configs.stdout_trimmed(), "app.conf:/x.conf");
    wait_until(T, POLL, "--config-add rolled the task", || {
        let ids = task_ids(&n, &svc);
        ids.len() == 1 && ids != before
    });
    n.docker(&["service", "rm", &svc]).ok();
    n.docker(&["config", "rm", "app.conf"]).ok();
    let left = n.docker(&["secret", "ls", "--format", "{{.Name}}"]).ok();
    let mut left: Vec<&str> = left.lines();
    left.sort();
    assert_eq!(left, vec!["just_fits", "other", "tmpl"]);
}

#[test]
#[ignore = "needs a Docker Engine: scripts/test runs it"]
fn docker_container_reads_its_secret_and_config() {
    require_engine!();
    let n = common::daemon(Executor::Docker, &unique_name("dsec"));
    n.docker(&["swarm", "init"]).ok();
    let node_id = n
        .docker(&["info", "--format", "{{.Swarm.NodeID}}"])
        .ok()
        .stdout_trimmed()
        .to_string();
    struct Cleanup<'a>(&'a Daemon, String);
    impl Drop for Cleanup<'_> {
        fn drop(&mut self) {
            let _ = self.0.docker(&["swarm", "leave", "--force"]);
            cleanup_engine_containers(&format!("com.docker.swarm.node.id={}", self.1));
        }
    }
    let _c = Cleanup(&n, node_id);
    create_secret(&n, &["api_key"], b"s3cr3t-docker");
    create_config(&n, &["nginx.conf"], b"worker_processes 1;");
    let svc = unique_name("dsecsvc");
    n.docker(&[
        "service",
        "create",
        "-d",
        "--name",
        &svc,
        "--secret",
        "source=api_key,target=key,uid=1000,gid=1001,mode=0400",
        "--secret",
        "api_key",
        "--config",
        "source=nginx.conf,target=/etc/nginx/nginx.conf,mode=0440",
        "busybox:latest",
        "sleep",
        "300",
    ])
    .ok();
    let task = running_task(&n, &svc);
    let container = wait_for(T, POLL, "task container", || {
        let out = engine_docker(&[
            "ps",
            "-q",
            "--filter",
            &format!("label=com.docker.swarm.task.id={task}"),
        ]);
        match out.lines().as_slice() {
            [c] => Ok(c.to_string()),
            other => Err(format!("{other:?}")),
        }
    });
    let exec = |cmd: &str| engine_docker(&["exec", &container, "sh", "-c", cmd]);
    assert_eq!(
        exec("stat -c '%u %g %a' /run/secrets/key; cat /run/secrets/key")
            .ok()
            .stdout,
        "1000 1001 400\ns3cr3t-docker"
    );
    assert_eq!(
        exec("stat -c '%u %g %a' /run/secrets/api_key")
            .ok()
            .stdout_trimmed(),
        "0 0 444"
    );
    assert_eq!(
        exec("stat -c '%a' /etc/nginx/nginx.conf; cat /etc/nginx/nginx.conf")
            .ok()
            .stdout,
        "440\nworker_processes 1;"
    );
    // Read-only.
    exec("echo x > /run/secrets/key").fail();
    assert!(task_dir(&task).exists());

    // The task ends: its files go.
    n.docker(&["service", "rm", &svc]).ok();
    wait_until(T, POLL, "task files removed", || !task_dir(&task).exists());
    assert!(
        !plain_log(&n).contains("s3cr3t-docker"),
        "secret in the log"
    );
}

#[test]
fn secrets_reach_only_nodes_that_run_a_referencing_task() {
    let node = |name: &str| {
        Daemon::builder(env!("CARGO_BIN_EXE_swarmd"))
            .node_addr(unique_loopback())
            .executor(Executor::Process)
            .hostname(unique_name(name))
            .log_level("debug")
            .start()
            .expect("swarmd starts")
    };
    let m = node("secm");
    let w = node("secw");
    m.docker(&["swarm", "init", "--dispatcher-heartbeat", "1s"])
        .ok();
    let _lw = Leave(&w);
    let _lm = Leave(&m);
    let token = m
        .docker(&["swarm", "join-token", "-q", "worker"])
        .ok()
        .stdout_trimmed()
        .to_string();
    let addr = format!("{}:2377", m.node_addr());
    w.docker(&["swarm", "join", "--token", &token, &addr]).ok();
    wait_ready_nodes(&m, 2);

    let value = format!("plaintext-{}", unique_name("v"));
    let sid = create_secret(&m, &["pinned"], value.as_bytes());
    let svc = unique_name("pinsvc");
    m.docker(&[
        "service",
        "create",
        "-d",
        "--name",
        &svc,
        "--constraint",
        "node.role==manager",
        "--secret",
        "pinned",
        "busybox",
        "sleep",
        "300",
    ])
    .ok();
    let task = running_task(&m, &svc);
    assert!(task_dir(&task).join("secrets/pinned").exists());
    let delivered = |d: &Daemon| dependency_logged(d, &sid, false);
    wait_until(T, POLL, "manager's agent got the secret", || delivered(&m));
    assert!(
        !delivered(&w),
        "the worker runs no task that needs the secret"
    );

    // Move the task to the worker: the secret follows, and leaves the manager.
    m.docker(&[
        "service",
        "update",
        "-d",
        "--constraint-rm",
        "node.role==manager",
        "--constraint-add",
        "node.role==worker",
        &svc,
    ])
    .ok();
    let moved = wait_for(T, POLL, "task on the worker", || {
        let t = running_task(&m, &svc);
        if t != task {
            Ok(t)
        } else {
            Err("not moved yet")
        }
    });
    wait_until(T, POLL, "worker's agent got the secret", || delivered(&w));
    wait_until(T, POLL, "manager's copy withdrawn", || {
        dependency_logged(&m, &sid, true)
    });
    wait_until(T, POLL, "manager's task files removed", || {
        !task_dir(&task).exists()
    });
    assert!(task_dir(&moved).join("secrets/pinned").exists());

    // The task ends: the worker's files go and its copy is withdrawn.
    m.docker(&["service", "rm", &svc]).ok();
    wait_until(T, POLL, "worker's task files removed", || {
        !task_dir(&moved).exists()
    });
    wait_until(T, POLL, "worker's copy withdrawn", || {
        dependency_logged(&w, &sid, true)
    });
    // Never in a log, at debug level, on either node.
    assert!(!m.log().contains(&value) && !w.log().contains(&value));
}

/// Encryption at rest, end to end: a secret used by a task on each of two nodes (manager
/// and worker, docker executor) is in no file under either data root, in no encoding
/// (`swarmd_testkit::find_secret`: raw, hex, base64, JSON number array), after a clean stop
/// (SIGTERM) and after a crash (kill -9, so whatever redb had written is on disk), and in
/// neither daemon log at debug level.
#[test]
#[ignore = "needs a Docker Engine: scripts/test runs it"]
fn no_secret_plaintext_under_any_data_root_or_in_any_log() {
    require_engine!();
    let node = |name: &str| {
        Daemon::builder(env!("CARGO_BIN_EXE_swarmd"))
            .node_addr(unique_loopback())
            .executor(Executor::Docker)
            .hostname(unique_name(name))
            .log_level("debug")
            .start()
            .expect("swarmd starts")
    };
    let mut m = node("restm");
    let mut w = node("restw");
    // Not 2377: a local dockerd in swarm mode holds *:2377 on shared test machines.
    let addr = format!("{}:24377", m.node_addr());
    m.docker(&[
        "swarm",
        "init",
        "--listen-addr",
        &addr,
        "--dispatcher-heartbeat",
        "1s",
    ])
    .ok();
    let token = m
        .docker(&["swarm", "join-token", "-q", "worker"])
        .ok()
        .stdout_trimmed()
        .to_string();
    let w_addr = format!("{}:24377", w.node_addr());
    w.docker(&[
        "swarm",
        "join",
        "--listen-addr",
        &w_addr,
        "--token",
        &token,
        &addr,
    ])
    .ok();
    let ids: Vec<String> = [&m, &w]
        .iter()
        .map(|n| {
            n.docker(&["info", "--format", "{{.Swarm.NodeID}}"])
                .ok()
                .stdout_trimmed()
                .to_string()
        })
        .collect();
    struct Cleanup(Vec<String>);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            for id in &self.0 {
                cleanup_engine_containers(&format!("com.docker.swarm.node.id={id}"));
            }
        }
    }
    let _c = Cleanup(ids.clone());
    let ready = |m: &Daemon| ready_nodes(m) == 2;
    wait_ready_nodes(&m, 2);

    let value = format!("atrest-{}-{}", unique_name("v"), std::process::id());
    create_secret(&m, &["atrest"], value.as_bytes());
    let svc = unique_name("atrestsvc");
    m.docker(&[
        "service",
        "create",
        "-d",
        "--name",
        &svc,
        "--mode",
        "global",
        "--secret",
        "atrest",
        "busybox:latest",
        "sleep",
        "300",
    ])
    .ok();
    // Each node's task reads the secret: it really was delivered to both.
    let container_of = |node_id: &str| {
        let out = engine_docker(&[
            "ps",
            "-q",
            "--filter",
            &format!("label=com.docker.swarm.node.id={node_id}"),
            "--filter",
            &format!("label=com.docker.swarm.service.name={svc}"),
        ]);
        match out.lines().as_slice() {
            [c] => Ok(c.to_string()),
            other => Err(format!("{other:?}")),
        }
    };
    for id in &ids {
        let c = wait_for(T, POLL, "the node's task container", || container_of(id));
        let read = engine_docker(&["exec", &c, "cat", "/run/secrets/atrest"]);
        assert_eq!(read.ok().stdout, value);
    }

    // The secret in any encoding a serializer could give it (raw, hex, base64, a JSON array
    // of byte values), not only as a string: Raft records are JSON, where `Secret.data` is
    // an array of numbers.
    let check = |when: &str, nodes: [&Daemon; 2]| {
        for (n, id) in nodes.into_iter().zip(&ids) {
            // Control: the search does see the data root (the node ID is in its state file).
            assert!(
                !find_secret_in_tree(n.data_root(), id.as_bytes()).is_empty(),
                "{when}: the search sees nothing"
            );
            let found = find_secret_in_tree(n.data_root(), value.as_bytes());
            assert!(found.is_empty(), "{when}: plaintext secret in {found:?}");
            let in_log = find_secret(n.log().as_bytes(), value.as_bytes());
            assert_eq!(in_log, None, "{when}: secret in a log");
        }
    };
    m.sigterm().expect("manager stops");
    w.sigterm().expect("worker stops");
    check("after SIGTERM", [&m, &w]);

    m.restart().expect("manager restarts");
    w.restart().expect("worker restarts");
    wait_until(T, POLL, "two ready nodes after restart", || ready(&m));
    m.kill9();
    w.kill9();
    check("after kill -9", [&m, &w]);

    m.restart().expect("manager restarts");
    w.restart().expect("worker restarts");
    wait_until(T, POLL, "two ready nodes again", || ready(&m));
    m.docker(&["service", "rm", &svc]).ok();
    check("at the end", [&m, &w]);
    w.docker(&["swarm", "leave", "--force"]).ok();
    m.docker(&["swarm", "leave", "--force"]).ok();
}

/// Docker's templates: a config created with `--template-driver golang` is expanded on the
/// node with the task's context, its environment and its other files; `--env` and
/// `--hostname` templates are expanded too. A template that cannot expand fails the task.
#[test]
fn templated_configs_and_spec_fields_expand_on_the_node() {
    let n = common::process_node("tmpl");
    n.docker(&["swarm", "init"]).ok();
    let _l = common::Leave(&n);
    let hostname = n.hostname().expect("hostname").to_string();
    create_secret(&n, &["tmpl_pw"], b"s3cr3t-tmpl");
    create_config(
        &n,
        &["--template-driver", "golang", "tmpl.conf"],
        b"svc={{.Service.Name}} slot={{.Task.Slot}} host={{.Node.Hostname}} mode={{env \"MODE\"}} pw={{secret \"tmpl_pw\"}}",
    );
    let svc = unique_name("tmpl");
    n.docker(&[
        "service",
        "create",
        "-d",
        "--name",
        &svc,
        "--env",
        "MODE=blue",
        "--env",
        "WHO={{.Service.Name}}.{{.Task.Slot}}",
        "--secret",
        "tmpl_pw",
        "--config",
        "source=tmpl.conf,target=app.conf",
        "busybox",
        "sh",
        "-c",
        "echo who=$WHO; cat $SWARMD_CONFIGS_DIR/app.conf; echo; exec sleep 300",
    ])
    .ok();
    let want_conf = format!("svc={svc} slot=1 host={hostname} mode=blue pw=s3cr3t-tmpl");
    let want_who = format!("who={svc}.1");
    wait_for(
        T,
        POLL,
        "the expanded config and env in the task's output",
        || {
            let logs = n.docker(&["service", "logs", "--raw", &svc]).stdout;
            if logs.contains(&want_conf) && logs.contains(&want_who) {
                Ok(())
            } else {
                Err(logs)
            }
        },
    );
    // The config object itself keeps the template.
    let data = n
        .docker(&[
            "config",
            "inspect",
            "--format",
            "{{json .Spec.Data}}",
            "tmpl.conf",
        ])
        .ok()
        .stdout_trimmed()
        .to_string();
    assert!(!data.contains("blue"), "{data}");

    // A template naming a file the task does not have: the task fails with the reason.
    create_config(
        &n,
        &["--template-driver", "golang", "broken.conf"],
        b"{{secret \"nosuch\"}}",
    );
    let broken = unique_name("tmplbad");
    n.docker(&[
        "service",
        "create",
        "-d",
        "--name",
        &broken,
        "--config",
        "broken.conf",
        "busybox",
        "sleep",
        "300",
    ])
    .ok();
    wait_for(T, POLL, "the task to fail with the expansion error", || {
        let err = n
            .docker(&[
                "service",
                "ps",
                "--no-trunc",
                "--format",
                "{{.Error}}",
                &broken,
            ])
            .stdout;
        if err.contains("secret target nosuch not found") {
            Ok(())
        } else {
            Err(err)
        }
    });
}

/// A secrets root that is not memory-backed (`SWARMD_SECRETS_ROOT` on a disk filesystem):
/// the task fails, its status error says why, and no secret file is written there.
#[test]
fn a_secrets_root_off_tmpfs_fails_the_task_with_the_reason() {
    let disk = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("a dir under target/");
    let n = Daemon::builder(env!("CARGO_BIN_EXE_swarmd"))
        .node_addr(unique_loopback())
        .executor(Executor::Process)
        .hostname(unique_name("diskroot"))
        .env("SWARMD_SECRETS_ROOT", disk.path())
        .start()
        .expect("swarmd starts");
    n.docker(&["swarm", "init"]).ok();
    let _l = Leave(&n);
    let value = "s3cr3t-on-disk-never";
    create_secret(&n, &["disk_pw"], value.as_bytes());
    let svc = unique_name("diskroot");
    n.docker(&[
        "service", "create", "-d", "--name", &svc, "--secret", "disk_pw", "busybox", "sleep", "300",
    ])
    .ok();
    wait_for(T, POLL, "the task to fail for want of a tmpfs", || {
        let err = n
            .docker(&[
                "service",
                "ps",
                "--no-trunc",
                "--format",
                "{{.Error}}",
                &svc,
            ])
            .stdout;
        if err.contains("is not on a tmpfs or ramfs") && err.contains("SWARMD_SECRETS_ROOT") {
            Ok(())
        } else {
            Err(err)
        }
    });
    let found = find_secret_in_tree(disk.path(), value.as_bytes());
    assert!(found.is_empty(), "secret written to disk: {found:?}");
}
