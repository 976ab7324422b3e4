//! End to end: `docker stack deploy/ls/services/ps/rm` with a compose file. The CLI does a
//! stack client-side (labels `com.docker.stack.namespace`, networks and secrets by name),
//! so this checks that every call it makes is answered as Docker does: overlay networks,
//! services on them with published ports and deploy settings, secrets and configs, an
//! in-place update on re-deploy, and `stack rm` ending once the tasks are gone.

mod common;

use common::{Leave, POLL, T, process_node, replicas};
use swarmd_testkit::{Daemon, wait_until};

const COMPOSE: &str = r#"
version: "3.8"
services:
  web:
    image: busybox:latest
    command: ["sleep", "600"]
    ports:
      - "18931:80"
    networks:
      front:
        aliases: [www]
    secrets: [dbpass]
    configs:
      - source: appcfg
        target: /etc/app.conf
    labels:
      tier: web
    deploy:
      replicas: REPLICAS
      resources:
        reservations:
          memory: 1M
      update_config:
        parallelism: 2
        order: start-first
      placement:
        constraints: [node.role == manager]
  worker:
    image: busybox:latest
    command: ["sleep", "600"]
    deploy:
      mode: global
networks:
  front:
    driver: overlay
    attachable: true
secrets:
  dbpass:
    file: ./dbpass.txt
configs:
  appcfg:
    file: ./app.conf
"#;

fn deploy(n: &Daemon, dir: &std::path::Path, replicas: u32) {
    let file = dir.join("compose.yml");
    std::fs::write(&file, COMPOSE.replace("REPLICAS", &replicas.to_string())).unwrap();
    let out = n
        .docker(&[
            "stack",
            "deploy",
            "--resolve-image",
            "never",
            "-c",
            file.to_str().unwrap(),
            "st",
        ])
        .ok();
    assert!(!out.stderr.contains("Failed"), "{}", out.stderr);
}

fn lines(n: &Daemon, args: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = n
        .docker(args)
        .ok()
        .lines()
        .into_iter()
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

#[test]
fn stack_deploy_update_and_rm() {
    let n = process_node("stack");
    n.docker(&["swarm", "init"]).ok();
    let _l = Leave(&n);
    // The compose file and its secret/config files live in the test daemon's directory.
    let dir = n.data_root().join("stackfiles");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("dbpass.txt"), "s3cret").unwrap();
    std::fs::write(dir.join("app.conf"), "x=1\n").unwrap();

    deploy(&n, &dir, 2);
    assert_eq!(
        lines(&n, &["stack", "ls", "--format", "{{.Name}} {{.Services}}"]),
        ["st 2"]
    );
    assert_eq!(
        lines(
            &n,
            &["stack", "services", "--format", "{{.Name}} {{.Mode}}", "st"]
        ),
        ["st_web replicated", "st_worker global"]
    );
    // The network and the objects the stack made, labelled with its namespace.
    let net = n
        .docker(&[
            "network",
            "inspect",
            "--format",
            "{{.Scope}} {{.Attachable}} {{index .Labels \"com.docker.stack.namespace\"}}",
            "st_front",
        ])
        .ok();
    assert_eq!(net.stdout_trimmed(), "swarm true st");
    assert!(
        n.docker(&["network", "inspect", "st_default"])
            .ok()
            .stdout
            .contains("overlay")
    );
    assert_eq!(
        lines(&n, &["secret", "ls", "--format", "{{.Name}}"]),
        ["st_dbpass"]
    );

    // The service as the CLI made it: network by ID with its alias, the port, deploy settings.
    let web = n.docker(&["service", "inspect", "st_web"]).ok().json();
    let spec = &web[0]["Spec"];
    let front_id = n
        .docker(&["network", "inspect", "--format", "{{.Id}}", "st_front"])
        .ok()
        .stdout_trimmed()
        .to_string();
    assert_eq!(
        spec["TaskTemplate"]["Networks"][0]["Target"],
        front_id.as_str()
    );
    assert_eq!(spec["TaskTemplate"]["Networks"][0]["Aliases"][0], "www");
    assert_eq!(spec["EndpointSpec"]["Ports"][0]["PublishedPort"], 18931);
    assert_eq!(spec["UpdateConfig"]["Order"], "start-first");
    assert_eq!(
        spec["TaskTemplate"]["ContainerSpec"]["Labels"]["tier"],
        "web"
    );
    assert_eq!(
        web[0]["Endpoint"]["VirtualIPs"].as_array().unwrap().len(),
        2
    );
    let web_id = web[0]["ID"].as_str().unwrap().to_string();

    wait_until(T, POLL, "st_web 2/2", || replicas(&n, "st_web") == "2/2");
    let ps = lines(
        &n,
        &[
            "stack",
            "ps",
            "--filter",
            "desired-state=running",
            "--format",
            "{{.Name}} {{.CurrentState}}",
            "st",
        ],
    );
    assert_eq!(ps.len(), 3, "{ps:?}");
    assert!(ps.iter().all(|l| l.contains("Running")), "{ps:?}");

    // Re-deploying an edited file updates in place.
    deploy(&n, &dir, 3);
    let again = n
        .docker(&[
            "service",
            "inspect",
            "--format",
            "{{.ID}} {{.Spec.Mode.Replicated.Replicas}}",
            "st_web",
        ])
        .ok();
    assert_eq!(again.stdout_trimmed(), format!("{web_id} 3"));
    wait_until(T, POLL, "st_web 3/3", || replicas(&n, "st_web") == "3/3");

    // rm ends once the tasks are gone, and takes everything of the stack with it.
    n.docker(&["stack", "rm", "st"]).ok();
    assert!(lines(&n, &["stack", "ls", "--format", "{{.Name}}"]).is_empty());
    assert!(lines(&n, &["service", "ls", "-q"]).is_empty());
    assert!(lines(&n, &["secret", "ls", "-q"]).is_empty());
    assert!(lines(&n, &["config", "ls", "-q"]).is_empty());
    assert_eq!(
        lines(&n, &["network", "ls", "--format", "{{.Name}}"]),
        ["ingress"]
    );
}
