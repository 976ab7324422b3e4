//! `swarmd manage` driven by the other real clients classic Swarm users had: Debian's
//! docker-compose 1.29.2 (a project with two services, a project network and a volume:
//! up, scale, ps, logs, down) and docker-py (python3-docker: containers.run / list / logs
//! / remove). Where the containers, networks and volumes are is checked on the engines.

mod classic;

use std::path::Path;

use classic::{POLL, T, engine_of, lines_of, names_on, pool_and_manager};
use swarmd_testkit::{
    ClassicManager, CmdOutput, EnginePool, require, unique_name, wait_for, wait_until,
};

/// Debian's interpreter: its python3-docker, not whatever a `python3` on PATH brings.
const PYTHON: &str = "/usr/bin/python3";

const COMPOSE_FILE: &str = r#"version: "2.4"
services:
  web:
    image: busybox
    command: ["sh", "-c", "echo web-is-up; exec sleep 1d"]
    networks: [back]
    volumes: ["data:/data"]
  db:
    image: busybox
    command: ["sh", "-c", "echo db-is-up; exec sleep 1d"]
    networks: [back]
networks:
  back: {}
volumes:
  data: {}
"#;

/// `docker-compose -p PROJECT -f FILE args...` against the manager.
fn compose(m: &ClassicManager, project: &str, file: &Path, args: &[&str]) -> CmdOutput {
    let mut cmd = m.command("docker-compose");
    cmd.args(["--ansi", "never", "-p", project, "-f"])
        .arg(file)
        .args(args);
    m.run(cmd, None)
}

/// The names of the project's containers (`service` only, if given) on engine `i`, asked of
/// the engine by compose's labels.
fn project_containers(
    pool: &EnginePool,
    i: usize,
    project: &str,
    service: Option<&str>,
) -> Vec<String> {
    let mut filters = vec![
        "-a".to_owned(),
        "--filter".to_owned(),
        format!("label=com.docker.compose.project={project}"),
    ];
    if let Some(s) = service {
        filters.push("--filter".to_owned());
        filters.push(format!("label=com.docker.compose.service={s}"));
    }
    names_on(
        pool,
        i,
        &filters.iter().map(String::as_str).collect::<Vec<_>>(),
    )
}

/// The names of engine `i`'s networks and volumes.
fn networks_and_volumes(pool: &EnginePool, i: usize) -> Vec<String> {
    let mut names = lines_of(pool, i, &["network", "ls", "--format", "{{.Name}}"]);
    names.extend(lines_of(
        pool,
        i,
        &["volume", "ls", "--format", "{{.Name}}"],
    ));
    names
}

#[test]
#[ignore = "needs root and dockerd: scripts/test runs it"]
fn docker_compose_up_scale_ps_logs_and_down_across_the_pool() {
    require(
        "docker-compose",
        swarmd_testkit::command_works("docker-compose", &["version"]),
    );
    let (pool, m) = pool_and_manager(&[&[], &[]]);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("docker-compose.yml");
    std::fs::write(&file, COMPOSE_FILE).expect("the compose file is written");
    let project = unique_name("proj").replace('-', "");

    compose(&m, &project, &file, &["up", "-d"]).ok();
    compose(&m, &project, &file, &["up", "-d", "--scale", "web=4"]).ok();

    // Four web containers and one db, spread over both engines.
    let web: Vec<Vec<String>> = (0..2)
        .map(|i| project_containers(&pool, i, &project, Some("web")))
        .collect();
    assert_eq!(
        web[0].len() + web[1].len(),
        4,
        "web containers per engine: {web:?}"
    );
    assert!(
        !web[0].is_empty() && !web[1].is_empty(),
        "spread puts web on both engines: {web:?}"
    );
    assert!(engine_of(&pool, &format!("{project}_db_1")).is_ok());

    // The project's network and volume are on the engines that run its containers.
    for i in 0..2 {
        let objects = networks_and_volumes(&pool, i);
        for want in [format!("{project}_back"), format!("{project}_data")] {
            assert!(
                objects.contains(&want),
                "node-{i} runs {web:?} without {want}: {objects:?}"
            );
        }
    }

    let ps = compose(&m, &project, &file, &["ps"]).ok();
    let up: Vec<&str> = ps
        .lines()
        .into_iter()
        .filter(|l| l.contains(" Up"))
        .collect();
    assert_eq!(
        up.len(),
        5,
        "five containers Up in docker-compose ps:\n{}",
        ps.stdout
    );
    let ids = compose(&m, &project, &file, &["ps", "-q"]).ok();
    assert_eq!(ids.lines().len(), 5, "{}", ids.stdout);

    wait_until(
        T,
        POLL,
        "every web container's output in docker-compose logs",
        || {
            let logs = compose(&m, &project, &file, &["logs", "web"]);
            logs.stdout.matches("web-is-up").count() == 4
        },
    );

    compose(&m, &project, &file, &["down", "-v"]).ok();
    for i in 0..2 {
        let left = project_containers(&pool, i, &project, None);
        assert!(left.is_empty(), "node-{i} keeps {left:?}");
        let objects = networks_and_volumes(&pool, i);
        assert!(
            !objects.iter().any(|o| o.starts_with(&project)),
            "node-{i} keeps {objects:?}"
        );
    }
}

#[test]
#[ignore = "needs root and dockerd: scripts/test runs it"]
fn docker_py_runs_lists_reads_logs_and_removes_through_the_manager() {
    require(
        "python3-docker",
        swarmd_testkit::command_works(PYTHON, &["-c", "import docker"]),
    );
    let (pool, m) = pool_and_manager(&[&[], &[]]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/classic/docker_py.py");
    let py = |args: &[&str]| -> serde_json::Value {
        let mut cmd = m.command(PYTHON);
        cmd.arg(&script).args(args);
        m.run(cmd, None).ok().json()
    };

    let name = unique_name("py");
    let ran = py(&["run", &name, "node==node-1"]);
    assert!(ran["id"].as_str().is_some_and(|id| id.len() == 64), "{ran}");
    assert_eq!(engine_of(&pool, &name), Ok(1));

    let listed = py(&["list"]);
    let entry = listed
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["id"] == ran["id"])
        .unwrap_or_else(|| panic!("{name} not in containers.list(): {listed}"));
    assert!(
        entry["name"].as_str().is_some_and(|n| n.ends_with(&name)),
        "{entry}"
    );
    assert_eq!(entry["node"], "node-1", "{entry}");

    wait_for(
        T,
        POLL,
        "the container's output in container.logs()",
        || {
            let logs = py(&["logs", &name]);
            if logs.as_str().is_some_and(|l| l.contains("from-docker-py")) {
                Ok(())
            } else {
                Err(logs.to_string())
            }
        },
    );

    py(&["remove", &name]);
    assert!(
        engine_of(&pool, &name).is_err(),
        "{name} is still on an engine"
    );
}
