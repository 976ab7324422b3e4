//! Placement decisions per second over a simulated pool (issue 16 item 10): a scale
//! simulation, named as such. No engine is dialled: 1,000 `Node`s stand for engines, each
//! with containers, images and labels like a busy pool's, and the manager's scheduler
//! (every default filter, the chosen strategy) places requests of a realistic mix.
//!
//! `cargo run --release -p swarmd-classic --example placement -- [ENGINES] [CONTAINERS_PER_ENGINE] [DECISIONS]`
//! prints one JSON line per strategy: decisions, seconds, decisions per second.

use std::collections::HashMap;
use std::time::Instant;

use rand::SeedableRng;
use rand::rngs::StdRng;
use swarmd_classic::options::Strategy;
use swarmd_classic::scheduler::extract::extract;
use swarmd_classic::scheduler::filter::FilterKind;
use swarmd_classic::scheduler::model::{Container, Image, Node, PortBinding, Request};
use swarmd_classic::scheduler::select::Scheduler;

fn arg(i: usize, default: usize) -> usize {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn pool(engines: usize, per_engine: usize) -> Vec<Node> {
    (0..engines)
        .map(|e| Node {
            id: format!("ENGINE-{e}"),
            name: format!("node-{e}"),
            addr: format!("10.0.{}.{}:2375", e / 250, e % 250 + 1),
            labels: HashMap::from([
                ("zone".to_owned(), format!("z{}", e % 10)),
                (
                    "disk".to_owned(),
                    if e % 3 == 0 { "ssd" } else { "hdd" }.to_owned(),
                ),
            ]),
            storage_driver: "overlay2".into(),
            kernel_version: "6.1.0".into(),
            operating_system: "Debian GNU/Linux 12".into(),
            os_type: "linux".into(),
            cpus: 16,
            memory: 64 << 30,
            health: 100,
            drained: false,
            containers: (0..per_engine)
                .map(|c| Container {
                    id: format!("{e:08x}{c:056x}"),
                    names: vec![format!("/app-{e}-{c}")],
                    image: "busybox:latest".into(),
                    memory: 64 << 20,
                    port_bindings: vec![PortBinding {
                        container_port: "80/tcp".into(),
                        host_ip: String::new(),
                        host_port: format!("{}", 10000 + c),
                    }],
                    state: "running".into(),
                    ..Container::default()
                })
                .collect(),
            images: vec![Image {
                id: "sha256:b97a3bcb591f".into(),
                repo_tags: vec!["busybox:latest".into()],
            }],
        })
        .collect()
}

/// The mix: plain, a constraint, a soft constraint, an affinity to a container, a port.
fn requests() -> Vec<Request> {
    let mk = |env: &[&str], port: Option<&str>| {
        let mut r = Request {
            image: "busybox:latest".into(),
            env: env.iter().map(|s| (*s).to_owned()).collect(),
            memory: 128 << 20,
            cpu_shares: 1,
            port_bindings: port
                .map(|p| {
                    vec![PortBinding {
                        container_port: "80/tcp".into(),
                        host_ip: String::new(),
                        host_port: p.into(),
                    }]
                })
                .unwrap_or_default(),
            ..Request::default()
        };
        extract(&mut r);
        r
    };
    vec![
        mk(&[], None),
        mk(&["constraint:zone==z3"], None),
        mk(&["constraint:disk==~ssd"], None),
        mk(&["affinity:container==app-7-3"], None),
        mk(&[], Some("8080")),
    ]
}

fn main() {
    let engines = arg(1, 1000);
    let per_engine = arg(2, 10);
    let decisions = arg(3, 20_000);
    let nodes = pool(engines, per_engine);
    let reqs = requests();
    for strategy in [Strategy::Spread, Strategy::Binpack, Strategy::Random] {
        let s = Scheduler {
            strategy,
            filters: FilterKind::ALL.to_vec(),
            overcommit_percent: 5,
        };
        let mut rng = StdRng::seed_from_u64(7);
        let start = Instant::now();
        let mut placed = 0usize;
        for i in 0..decisions {
            if s.select(&nodes, &reqs[i % reqs.len()], &mut rng).is_ok() {
                placed += 1;
            }
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{{\"strategy\":\"{strategy}\",\"engines\":{engines},\"containers\":{},\"decisions\":{decisions},\"placed\":{placed},\"seconds\":{secs:.4},\"per_second\":{:.0}}}",
            engines * per_engine,
            decisions as f64 / secs
        );
    }
}
