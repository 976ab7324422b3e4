//! The pool and its API over [`Discovery::Members`] with dialed engines (issue 17), against
//! two real engines (swarmd_testkit::EnginePool), talked to with the docker CLI. A TEST
//! dialer (named so) stands in for the swarm's tunnels: it maps `node://a` and `node://b`
//! to the engines' unix sockets, so every engine call (the pool's bollard client and the
//! API's proxy, streams and upgrades included) goes through a `Dialer`.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use swarmd_engine_api::dial::{Dialer, EngineStream};
use swarmd_engine_api::{ListenAddr, bind_all, serve_app};
use swarmd_testkit::{
    CmdOutput, EnginePool, docker_cli, is_root, require, require_engine, run, wait_for_async,
    wait_until_async,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::api::{self, Manager};
use crate::discovery::{Discovery, EngineAddr, EngineState, PoolMember};
use crate::options::{ManageArgs, ManageOptions};
use crate::pool::{Pool, PoolConfig};

const WAIT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(200);
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// Maps `node://<id>` upstreams to engines' unix sockets.
struct TestUnixDialer {
    sockets: HashMap<String, String>,
}

#[async_trait]
impl Dialer for TestUnixDialer {
    async fn dial(&self, upstream: &str) -> io::Result<EngineStream> {
        let path = self.sockets.get(upstream).ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("no engine {upstream}"))
        })?;
        let stream = tokio::time::timeout(DIAL_TIMEOUT, tokio::net::UnixStream::connect(path))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "dial timed out"))??;
        Ok(Box::new(stream))
    }
}

fn member(id: &str, name: &str, zone: &str, ip: &str) -> PoolMember {
    PoolMember {
        upstream: EngineAddr::Dialed(format!("node://{id}")),
        name: Some(name.to_owned()),
        labels: BTreeMap::from([("zone".to_owned(), zone.to_owned())]),
        ip: ip.to_owned(),
        accepts_new: true,
    }
}

/// `docker -H tcp://<manager> args...`.
async fn docker(host: &str, args: &[&str]) -> CmdOutput {
    let mut cmd = std::process::Command::new(docker_cli());
    cmd.arg("-H").arg(format!("tcp://{host}")).args(args);
    tokio::task::spawn_blocking(move || run(cmd))
        .await
        .expect("docker CLI thread")
}

/// `docker info`'s engine blocks through the manager: name -> (address, field -> value).
async fn engine_blocks(host: &str) -> BTreeMap<String, (String, BTreeMap<String, String>)> {
    let out = docker(host, &["info", "--format", "{{json .SystemStatus}}"]).await;
    let pairs: Vec<[String; 2]> = serde_json::from_str(out.stdout_trimmed()).unwrap_or_default();
    let mut blocks = BTreeMap::new();
    let mut current: Option<String> = None;
    for [k, v] in pairs {
        if let Some(field) = k.strip_prefix("  └ ") {
            if let Some(name) = &current {
                blocks.entry(name.clone()).and_modify(
                    |(_, f): &mut (String, BTreeMap<String, String>)| {
                        f.insert(field.to_owned(), v.clone());
                    },
                );
            }
        } else if let Some(name) = k.strip_prefix(' ') {
            current = Some(name.to_owned());
            blocks.insert(name.to_owned(), (v, BTreeMap::new()));
        } else {
            current = None;
        }
    }
    blocks
}

/// The labels of `docker info`'s block of `name`, split.
fn labels_of(
    blocks: &BTreeMap<String, (String, BTreeMap<String, String>)>,
    name: &str,
) -> Vec<String> {
    blocks
        .get(name)
        .and_then(|(_, f)| f.get("Labels"))
        .map(|l| l.split(", ").map(str::to_owned).collect())
        .unwrap_or_default()
}

/// `Node.Name Node.IP Node.Addr` of container `name` as the manager's inspect shows it.
async fn node_of(host: &str, name: &str) -> String {
    docker(
        host,
        &[
            "inspect",
            "--format",
            "{{.Node.Name}} {{.Node.IP}} {{.Node.Addr}}",
            name,
        ],
    )
    .await
    .ok()
    .stdout_trimmed()
    .to_owned()
}

#[tokio::test]
#[ignore = "needs root and dockerd: scripts/test runs it"]
async fn a_pool_over_dialed_members_schedules_streams_and_follows_the_watch() {
    require("root (network namespaces)", is_root());
    require_engine!();
    // The engines' own labels: the members' zone must win, disk=ssd stays.
    let engines = EnginePool::start(&[&[("zone", "x"), ("disk", "ssd")], &[("zone", "x")]])
        .expect("a pool of 2 engines starts");
    let socket = |i: usize| {
        engines
            .machine(i)
            .engine_host()
            .trim_start_matches("unix://")
            .to_owned()
    };
    let dialer = Arc::new(TestUnixDialer {
        sockets: HashMap::from([
            ("node://a".to_owned(), socket(0)),
            ("node://b".to_owned(), socket(1)),
        ]),
    });
    let a = member("a", "alpha", "a", "10.99.0.1");
    let b = member("b", "beta", "b", "10.99.0.2");
    let (members, source) = watch::channel(vec![a.clone(), b.clone()]);

    let cancel = CancellationToken::new();
    let _stop = cancel.clone().drop_guard();
    let pool = Pool::start(
        PoolConfig {
            dialer: Some(dialer),
            unhealthy_retry: None,
            ..PoolConfig::for_live_tests()
        },
        Discovery::Members(source),
        cancel.clone(),
    );
    let listeners = bind_all(&["tcp://127.0.0.1:0".to_owned()])
        .await
        .expect("bind the manager's port");
    let host = match listeners[0].local_addr().expect("bound address") {
        ListenAddr::Tcp(a) => a.to_string(),
        other => panic!("not tcp: {other:?}"),
    };
    // The members stand in for a discovery URL; the options only need one to parse.
    let options = ManageOptions::from_args(&ManageArgs {
        discovery: Some("nodes://127.0.0.1:1".into()),
        ..ManageArgs::default()
    })
    .expect("options");
    let m = Manager {
        pool: pool.clone(),
        scheduler: api::scheduler(&options),
        options: Arc::new(options),
        schedule_lock: Arc::default(),
        hostname: "pool-manager".into(),
        role: crate::replication::role::standalone(),
    };
    tokio::spawn(serve_app(
        listeners,
        move |tracker, inner| api::app(m, tracker, inner),
        cancel.clone(),
    ));

    // Both engines under the members' names, with the members' labels over the engines'.
    let blocks = wait_for_async(
        WAIT,
        POLL,
        "both members Healthy in docker info",
        || async {
            let blocks = engine_blocks(&host).await;
            let healthy = blocks
                .values()
                .filter(|(_, f)| f.get("Status").map(String::as_str) == Some("Healthy"))
                .count();
            if healthy == 2 {
                Ok(blocks)
            } else {
                Err(format!("{blocks:?}"))
            }
        },
    )
    .await;
    assert_eq!(
        blocks.keys().collect::<Vec<_>>(),
        ["alpha", "beta"],
        "{blocks:?}"
    );
    assert_eq!(blocks["alpha"].0, "node://a");
    assert_eq!(blocks["beta"].0, "node://b");
    let alpha = labels_of(&blocks, "alpha");
    assert!(alpha.contains(&"zone=a".to_owned()), "{alpha:?}");
    assert!(alpha.contains(&"disk=ssd".to_owned()), "{alpha:?}");
    assert!(!alpha.contains(&"zone=x".to_owned()), "{alpha:?}");
    assert!(labels_of(&blocks, "beta").contains(&"zone=b".to_owned()));

    // Swarm mode's spelling of a label constraint places on b.
    docker(
        &host,
        &[
            "run",
            "-d",
            "--name",
            "web",
            "-e",
            "constraint:node.labels.zone==b",
            "busybox",
            "sh",
            "-c",
            "echo hello-from-b; sleep 1d",
        ],
    )
    .await
    .ok();
    assert_eq!(node_of(&host, "web").await, "beta 10.99.0.2 node://b");
    let on_b = engines
        .machine(1)
        .docker(&["ps", "--format", "{{.Names}}"])
        .ok();
    assert_eq!(on_b.lines(), ["web"], "the container is on engine b itself");

    // Logs (a stream) and exec (a connection upgrade) through the proxy's dialer.
    wait_until_async(WAIT, POLL, "docker logs web shows its output", || async {
        docker(&host, &["logs", "web"])
            .await
            .stdout
            .contains("hello-from-b")
    })
    .await;
    let exec = docker(&host, &["exec", "web", "echo", "exec-ok"])
        .await
        .ok();
    assert_eq!(exec.stdout_trimmed(), "exec-ok");

    // A label changed in the watch shows at once, on the engine's live view: the member
    // kept its task (a new one would start Pending).
    let mut a2 = a.clone();
    a2.labels.insert("zone".into(), "c".into());
    members.send(vec![a2, b.clone()]).expect("the pool follows");
    let alpha = wait_for_async(WAIT, Duration::from_millis(10), "alpha relabelled", || {
        let e = pool.engines().into_iter().find(|e| e.node.name == "alpha");
        async move {
            match e {
                Some(e) if e.node.labels.get("zone").map(String::as_str) == Some("c") => Ok(e),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await;
    assert_eq!(
        alpha.state,
        EngineState::Healthy,
        "relabelled without a reconnect"
    );
    assert!(alpha.updated_at.is_some(), "relabelled without a reconnect");
    assert!(labels_of(&engine_blocks(&host).await, "alpha").contains(&"zone=c".to_owned()));
    docker(
        &host,
        &[
            "create",
            "--name",
            "on-c",
            "-e",
            "constraint:node.labels.zone==c",
            "busybox",
        ],
    )
    .await
    .ok();
    assert_eq!(node_of(&host, "on-c").await, "alpha 10.99.0.1 node://a");

    // A member removed from the watch leaves the pool.
    let mut drained_b = b.clone();
    drained_b.accepts_new = false;
    members.send(vec![drained_b]).expect("the pool follows");
    wait_until_async(WAIT, POLL, "only beta in docker info", || async {
        engine_blocks(&host).await.keys().collect::<Vec<_>>() == ["beta"]
    })
    .await;
    // b is drained: nothing new goes there, while its container stays reachable.
    let refused = docker(&host, &["create", "busybox"]).await;
    assert!(!refused.success(), "{}", refused.report("create"));
    assert!(
        refused
            .stderr
            .contains("No healthy node available in the cluster"),
        "{}",
        refused.report("create")
    );
    assert!(
        docker(&host, &["logs", "web"])
            .await
            .ok()
            .stdout
            .contains("hello-from-b")
    );
    let ps = docker(&host, &["ps", "--format", "{{.Names}}"]).await.ok();
    assert_eq!(ps.lines(), ["beta/web"]);
}
