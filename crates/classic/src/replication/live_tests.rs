//! Two managers (each its own pool, election and API, in process) over a real pool of two
//! engines (swarmd_testkit::EnginePool), talked to with the docker CLI.

use std::sync::Arc;
use std::time::Duration;

use swarmd_engine_api::{ListenAddr, bind_all, serve_app};
use swarmd_testkit::{
    CmdOutput, EnginePool, docker_cli, is_root, require, require_engine, run, wait_for_async,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Replication, ReplicationConfig, start};
use crate::api::{self, Manager};
use crate::discovery::{Discovery, EngineAddr};
use crate::options::{ManageArgs, ManageOptions};
use crate::pool::{Pool, PoolConfig};
use crate::view::ManagerRole;

const TTL: Duration = Duration::from_secs(3);
const WAIT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(200);

/// One `swarmd manage --replication` in process.
struct TestManager {
    advertise: String,
    role: watch::Receiver<ManagerRole>,
    election: JoinHandle<()>,
    /// Stops its pool, election (resigning) and API.
    cancel: CancellationToken,
    /// Stops only its API (with `election.abort()`: a crash, locks left behind).
    api: CancellationToken,
}

impl TestManager {
    async fn start(engines: &[EngineAddr]) -> TestManager {
        let cancel = CancellationToken::new();
        let listeners = bind_all(&["tcp://127.0.0.1:0".to_owned()])
            .await
            .expect("bind a manager port");
        let advertise = match listeners[0].local_addr().expect("bound address") {
            ListenAddr::Tcp(a) => a.to_string(),
            other => panic!("not tcp: {other:?}"),
        };
        let pool = Pool::start(
            PoolConfig::for_live_tests(),
            Discovery::Nodes(engines.to_vec()),
            cancel.clone(),
        );
        let (role, election) = start(
            Replication {
                pool: pool.clone(),
                config: ReplicationConfig {
                    advertise: advertise.clone(),
                    ttl: TTL,
                },
                timeout: Duration::from_secs(2),
            },
            cancel.clone(),
        );
        let options = ManageOptions::from_args(&ManageArgs {
            discovery: Some(
                engines
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            ..Default::default()
        })
        .expect("options");
        let api = cancel.child_token();
        let m = Manager {
            pool,
            scheduler: api::scheduler(&options),
            options: Arc::new(options),
            schedule_lock: Arc::default(),
            hostname: format!("mgr-{advertise}"),
            role: role.clone(),
        };
        tokio::spawn(serve_app(
            listeners,
            move |tracker, inner| api::app(m, tracker, inner),
            api.clone(),
        ));
        TestManager {
            advertise,
            role,
            election,
            cancel,
            api,
        }
    }

    fn role(&self) -> ManagerRole {
        self.role.borrow().clone()
    }

    /// `docker -H tcp://<this manager> args...`.
    async fn docker(&self, args: &[&str]) -> CmdOutput {
        let mut cmd = std::process::Command::new(docker_cli());
        cmd.arg("-H")
            .arg(format!("tcp://{}", self.advertise))
            .args(args);
        tokio::task::spawn_blocking(move || run(cmd))
            .await
            .expect("docker CLI thread")
    }
}

/// Two engines and their addresses.
fn engines() -> (EnginePool, Vec<EngineAddr>) {
    require("root (network namespaces)", is_root());
    require_engine!();
    let pool = EnginePool::plain(2).expect("a pool of 2 engines starts");
    let addrs = pool
        .addrs()
        .iter()
        .map(|a| EngineAddr::parse(a).expect("engine address"))
        .collect();
    (pool, addrs)
}

/// Waits until exactly one of `ms` is primary and every other one follows it; its index.
async fn one_primary(ms: &[&TestManager]) -> usize {
    wait_for_async(
        WAIT,
        POLL,
        "exactly one primary, followed by the others",
        || async {
            let roles: Vec<ManagerRole> = ms.iter().map(|m| m.role()).collect();
            let primaries: Vec<usize> = (0..ms.len())
                .filter(|i| roles[*i] == ManagerRole::Primary)
                .collect();
            let [p] = primaries[..] else {
                return Err(format!("{roles:?}"));
            };
            let followed = ManagerRole::Replica {
                primary: ms[p].advertise.clone(),
            };
            if (0..ms.len()).all(|i| i == p || roles[i] == followed) {
                Ok(p)
            } else {
                Err(format!("{roles:?}"))
            }
        },
    )
    .await
}

/// `docker info`'s ` Role:` and ` Primary:` lines through `m`.
async fn info_role(m: &TestManager) -> Vec<String> {
    m.docker(&["info"])
        .await
        .ok()
        .lines()
        .iter()
        .map(|l| l.trim())
        .filter(|l| l.starts_with("Role:") || l.starts_with("Primary:"))
        .map(str::to_owned)
        .collect()
}

/// The lock networks on engine `i`, as the engine lists them (holder label per lock).
fn locks_on(pool: &EnginePool, i: usize) -> Vec<String> {
    pool.machine(i)
        .docker_tcp(&[
            "network",
            "ls",
            "--filter",
            "name=swarmd-manage-primary",
            "--format",
            r#"{{.Name}} {{.Label "com.docker.swarm.primary"}}"#,
        ])
        .ok()
        .lines()
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// Waits until each engine holds exactly one lock, `holder`'s (a create that lost a race
/// on an engine leaves a stray its creator removes at its next look).
async fn assert_locks_held_by(pool: &EnginePool, holder: &str) {
    let want = vec![format!("swarmd-manage-primary {holder}")];
    wait_for_async(WAIT, POLL, "one lock per engine", || async {
        let got: Vec<Vec<String>> = (0..2).map(|i| locks_on(pool, i)).collect();
        if got.iter().all(|l| *l == want) {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root and dockerd: scripts/test runs it"]
async fn replication_one_primary_replica_forwards_and_takes_over_after_a_crash() {
    let (pool, addrs) = engines();
    let a = TestManager::start(&addrs).await;
    let b = TestManager::start(&addrs).await;
    let ms = [&a, &b];
    let p = one_primary(&ms).await;
    let (primary, replica) = (ms[p], ms[1 - p]);

    // The lock: one per engine, held by the primary.
    assert_locks_held_by(&pool, &primary.advertise).await;
    // docker info shows the roles.
    assert_eq!(info_role(primary).await, ["Role: primary"]);
    assert_eq!(
        info_role(replica).await,
        [
            "Role: replica".to_owned(),
            format!("Primary: {}", primary.advertise)
        ]
    );
    // A run sent to the replica lands (forwarded to the primary), and both see it.
    let name = format!("repl-{}", std::process::id());
    replica
        .docker(&[
            "run",
            "-d",
            "--name",
            &name,
            "busybox:latest",
            "sleep",
            "1d",
        ])
        .await
        .ok();
    for m in ms {
        let ps = m
            .docker(&[
                "ps",
                "--filter",
                &format!("name={name}"),
                "--format",
                "{{.Names}}",
            ])
            .await
            .ok();
        assert_eq!(ps.lines().len(), 1, "{name} listed via {}", m.advertise);
    }
    // The locks do not show through the managers.
    let nets = replica
        .docker(&["network", "ls", "--format", "{{.Name}}"])
        .await
        .ok();
    assert!(
        !nets.stdout.contains("swarmd-manage-primary"),
        "{}",
        nets.stdout
    );

    // The primary crashes: no resign, its locks stay; its API stops answering.
    primary.election.abort();
    primary.api.cancel();
    let lost = std::time::Instant::now();
    // Until the replica takes over (a TTL at least), it still forwards: to nobody.
    let down = replica.docker(&["ps"]).await.fail();
    // Classic's replica.go words it so (the error, then the primary's address).
    let unreachable = format!(
        "Unable to reach primary cluster manager (Cannot connect to the Docker Engine at tcp://{}",
        primary.advertise
    );
    assert!(down.stderr.contains(&unreachable), "{}", down.stderr);
    wait_for_async(WAIT, POLL, "the replica takes over", || async {
        match replica.role() {
            ManagerRole::Primary => Ok(()),
            r => Err(format!("{r:?}")),
        }
    })
    .await;
    // Detection takes a TTL of failed checks, then one round.
    assert!(lost.elapsed() < TTL * 3, "took {:?}", lost.elapsed());
    assert_locks_held_by(&pool, &replica.advertise).await;
    assert_eq!(info_role(replica).await, ["Role: primary"]);
    let ps = replica.docker(&["ps", "--format", "{{.Names}}"]).await.ok();
    assert!(
        ps.stdout.contains(&name),
        "the new primary serves: {}",
        ps.stdout
    );
    a.cancel.cancel();
    b.cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root and dockerd: scripts/test runs it"]
async fn replication_a_stopped_primary_resigns_and_a_new_one_is_elected_at_once() {
    let (pool, addrs) = engines();
    let a = TestManager::start(&addrs).await;
    let b = TestManager::start(&addrs).await;
    let ms = [&a, &b];
    let p = one_primary(&ms).await;
    let (primary, replica) = (ms[p], ms[1 - p]);
    primary.cancel.cancel();
    let stopped = std::time::Instant::now();
    wait_for_async(WAIT, POLL, "the replica takes over", || async {
        match replica.role() {
            ManagerRole::Primary => Ok(()),
            r => Err(format!("{r:?}")),
        }
    })
    .await;
    // The resigned locks are gone: no TTL to wait out, one tick at most.
    assert!(stopped.elapsed() < TTL, "took {:?}", stopped.elapsed());
    assert_locks_held_by(&pool, &replica.advertise).await;
    replica.cancel.cancel();
    swarmd_testkit::wait_until_async(
        Duration::from_secs(10),
        POLL,
        "the election ends on cancel",
        || {
            let done = replica.election.is_finished();
            async move { done }
        },
    )
    .await;
    // The last manager resigned too: no lock left behind.
    for i in 0..2 {
        assert_eq!(
            locks_on(&pool, i),
            Vec::<String>::new(),
            "engine {i}'s lock"
        );
    }
}
