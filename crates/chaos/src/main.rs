//! `swarmd-chaos`: a campaign of faults against a swarm of real swarmd processes, under a
//! workload through the Docker API, checked at the end. Run by `scripts/chaos`.
//!
//! Ends with one line, `chaos: ops=N acknowledged=A unknown=U lost=L violations=V faults=F`,
//! and exits 1 when anything acknowledged was lost, a history is not linearizable or a task
//! invariant broke (V counts both); the history and the daemons' logs stay in the lab
//! directory then.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use rand::SeedableRng;
use rand::rngs::StdRng;
use swarmd_chaos::lab::Lab;
use swarmd_chaos::nemesis::{self, Injected};
use swarmd_chaos::report::Report;
use swarmd_chaos::workload::{self, Clients};

#[derive(Parser, Debug)]
#[command(
    about = "Faults against a swarm of real swarmd processes, checked for lost writes and linearizability",
    args_override_self = true
)]
struct Cli {
    /// The swarmd binary.
    #[arg(long)]
    swarmd: PathBuf,
    #[arg(long, default_value_t = 3)]
    managers: usize,
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// How many faults, one after another, of every kind (weighted at random).
    #[arg(long, default_value_t = 20, conflicts_with = "counts")]
    faults: usize,
    /// A fixed campaign instead: exactly this many faults of each kind, in a seeded random
    /// order, e.g. `kill-leader=100,partition=50,pause-leader=50,clock=20`. Kinds:
    /// kill-leader, kill, pause-leader, pause, isolate-leader, partition, bridge, one-way,
    /// clock, clocks, disk-full, slow-disk, slow-disk-leader, mixed.
    #[arg(long, value_parser = Counts::parse)]
    counts: Option<Counts>,
    /// How long each fault holds (varied ±50 %).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    hold: Duration,
    /// How long the cluster gets after each heal.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    quiet: Duration,
    /// Concurrent clients.
    #[arg(long, default_value_t = 6)]
    clients: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Ctrl-C or SIGTERM ends the campaign early and cleanly: the current fault is healed and
/// the lab dropped (daemons, mounts, namespaces), which a default signal death would skip.
mod interrupt {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

    static REQUESTED: AtomicBool = AtomicBool::new(false);

    extern "C" fn on_signal(_: nix::libc::c_int) {
        // An atomic store is async-signal-safe.
        REQUESTED.store(true, Ordering::Relaxed);
    }

    pub fn install() {
        let action = SigAction::new(
            SigHandler::Handler(on_signal),
            SaFlags::empty(),
            SigSet::empty(),
        );
        for sig in [Signal::SIGINT, Signal::SIGTERM] {
            // SAFETY: the handler only stores to an atomic.
            let _ = unsafe { sigaction(sig, &action) };
        }
    }

    pub fn requested() -> bool {
        REQUESTED.load(Ordering::Relaxed)
    }

    /// Sleeps `d`, or less when interrupted.
    pub fn sleep(d: Duration) {
        let end = Instant::now() + d;
        while !requested() {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            std::thread::sleep(left.min(Duration::from_millis(100)));
        }
    }
}

/// `--counts`, one value (clap would take a bare `Vec` for a repeated flag).
#[derive(Debug, Clone)]
struct Counts(Vec<(String, usize)>);

impl Counts {
    fn parse(s: &str) -> Result<Counts, String> {
        nemesis::parse_counts(s).map(Counts)
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    anyhow::ensure!(cli.managers >= 1, "--managers must be at least 1");
    let steps = match &cli.counts {
        Some(Counts(counts)) => nemesis::campaign(cli.seed, counts, cli.hold, cli.quiet)?,
        None => nemesis::plan(cli.seed, cli.faults, cli.hold, cli.quiet),
    };
    let started = Instant::now();
    interrupt::install();
    let mut lab = Lab::start(&cli.swarmd, cli.managers, cli.workers).context("starting the lab")?;
    eprintln!(
        "chaos: lab up in {:.1} s ({})",
        started.elapsed().as_secs_f64(),
        lab.dir().display()
    );
    let clients = Clients::new();
    workload::setup(&lab, cli.workers > 0, &clients.history)?;
    let sockets: Vec<PathBuf> = lab
        .nodes
        .iter()
        .filter(|n| n.manager)
        .map(|n| n.socket())
        .collect();
    let mut threads: Vec<_> = (0..cli.clients)
        .map(|c| {
            let clients = Arc::clone(&clients);
            let sockets = sockets.clone();
            let seed = cli.seed * 1000 + c;
            std::thread::spawn(move || clients.run(seed, sockets))
        })
        .collect();
    if cli.workers > 0 {
        threads.extend(workload::tasks::start(
            &clients,
            cli.seed * 1000 + 999,
            sockets.clone(),
        ));
    }

    let mut rng = StdRng::seed_from_u64(cli.seed);
    let mut injected = Vec::new();
    for step in steps {
        let t0 = clients.now();
        let (nodes, undo) = match nemesis::inject(&mut lab, &step.fault, &mut rng) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("chaos: could not inject {:?}: {e:#}", step.fault);
                continue;
            }
        };
        eprintln!(
            "chaos: {:>7.1} s {} on {:?}",
            started.elapsed().as_secs_f64(),
            step.fault.kind(),
            nodes
                .iter()
                .map(|n| &lab.nodes[*n].name)
                .collect::<Vec<_>>()
        );
        // The fault's duration: the harness holds it, nothing waits on a condition here.
        interrupt::sleep(step.hold);
        let healing = Instant::now();
        nemesis::heal(&mut lab, undo).with_context(|| format!("healing {:?}", step.fault))?;
        let heal_secs = healing.elapsed().as_secs_f64();
        if heal_secs > 1.0 {
            eprintln!("chaos: healing took {heal_secs:.1} s");
        }
        injected.push(Injected {
            fault: step.fault,
            nodes,
            started: t0,
            healed: clients.now(),
        });
        interrupt::sleep(step.quiet);
        if interrupt::requested() {
            eprintln!("chaos: interrupted; healing, checking what was recorded, cleaning up");
            break;
        }
    }
    clients.stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }

    // Every manager must list every acknowledged create once the cluster has settled.
    let history = std::mem::take(&mut *clients.history.lock().unwrap_or_else(|e| e.into_inner()));
    let final_sets = final_reads(&lab, &history.set_acknowledged)?;
    let report = Report::new(&history, &final_sets, injected);
    let file = lab.dir().join("history.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&history)?)?;
    eprint!("{}", report.faults_table(&history));
    for (what, n) in &history.failed {
        eprintln!("chaos: {n} operations refused: {what}");
    }
    for (k, v) in &report.violations {
        eprintln!("chaos: register {k} is not linearizable: {v:?}");
    }
    eprint!("{}", report.checked_summary());
    if !report.set.lost.is_empty() {
        eprintln!("chaos: lost acknowledged creates: {:?}", report.set.lost);
    }
    if !report.set.unexpected.is_empty() {
        eprintln!(
            "chaos: creates nobody asked for: {:?}",
            report.set.unexpected
        );
    }
    println!("{}", report.line());
    if interrupt::requested() {
        drop(lab);
        std::process::exit(130);
    }
    let dir = lab.dir().to_path_buf();
    drop(lab);
    if report.passed() {
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    } else {
        eprintln!("chaos: history and logs kept in {}", dir.display());
        std::process::exit(1)
    }
}

/// Each manager's list of the set's names, once every manager lists at least the
/// acknowledged ones or 60 s have passed (then what they list is the verdict).
fn final_reads(
    lab: &Lab,
    acknowledged: &BTreeSet<String>,
) -> anyhow::Result<Vec<BTreeSet<String>>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut sets = Vec::new();
        for n in lab.nodes.iter().filter(|n| n.manager) {
            let r = swarmd_testkit::unix_http(
                &n.socket(),
                "GET",
                "/secrets",
                None,
                workload::CALL_TIMEOUT,
            );
            let names = r
                .ok()
                .filter(|r| r.status == 200)
                .and_then(|r| serde_json::from_slice::<serde_json::Value>(&r.body).ok())
                .map(|v| {
                    v.as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|s| s["Spec"]["Name"].as_str().map(str::to_string))
                        .filter(|n| n.starts_with("chaos-set-"))
                        .collect::<BTreeSet<_>>()
                });
            sets.push(names);
        }
        let complete = sets
            .iter()
            .all(|s| s.as_ref().is_some_and(|s| s.is_superset(acknowledged)));
        if complete || Instant::now() >= deadline {
            for (n, s) in lab.nodes.iter().filter(|n| n.manager).zip(&sets) {
                match s {
                    Some(s) => eprintln!("chaos: {} lists {} of the set", n.name, s.len()),
                    None => eprintln!("chaos: {} did not answer the final read", n.name),
                }
            }
            return Ok(sets.into_iter().map(Option::unwrap_or_default).collect());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
