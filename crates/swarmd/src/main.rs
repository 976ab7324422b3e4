//! swarmd: one node of a swarm. Starts the Docker Engine API server and, once the node is
//! part of a swarm, the manager (Raft, reconcilers, dispatcher) and the agent.

mod cli;
mod manage;
mod pool_host;

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;

use swarmd_node::{NodeBackend, SwarmNode};

fn init_tracing(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(match level {
        // openraft warns on every heartbeat (5 a second) a down manager misses; swarmd
        // logs membership and reachability itself.
        "error" | "warn" | "info" => {
            format!("{level},openraft=error,hyper=warn,h2=warn,tower=warn")
        }
        "debug" | "trace" => format!("{level},openraft=warn,hyper=warn,h2=warn,tower=warn"),
        other => other.to_string(),
    })
    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// glibc's malloc arenas to allow: a thread that finds the arena locked moves to another,
/// up to 8 per core by default, and each arena keeps its freed memory. swarmd's threads are
/// the runtime's few workers and short-lived blocking threads (small allocations mostly
/// hit the per-thread tcache, no arena lock), so 2 arenas cost little contention and keep
/// ~0.5 MiB less resident with 110 tasks (BENCHMARKS.md, "RSS with 110 tasks"; 1 arena
/// saved ~0.8 MiB more). `MALLOC_ARENA_MAX` in the environment still overrides it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MALLOC_ARENAS: libc::c_int = 2;

fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; called before any thread exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
        }
    }
}

/// How often the heap is checked for freed memory worth returning to the kernel.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
/// Newly freed heap (bytes) that makes a trim worthwhile.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_FREED: usize = 1 << 20;
/// Above this resident size the heap is not looked at: `mallinfo2` and `malloc_trim` walk
/// every free chunk holding the arena's lock, and on a manager with a heap of gigabytes
/// (100,000 tasks) that stalled allocations every second, long enough for the Raft leader to
/// lose its lease. A heap that big is live data, not the leftovers of a burst.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_MAX_RSS: u64 = 128 << 20;

/// The process's resident set in bytes (`/proc/self/statm`), if readable.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf only reads a constant of the system.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

/// Returns freed heap to the kernel after bursts. glibc gives back only free memory at the
/// top of a heap; what a burst frees in the middle (starting a hundred tasks at once opens
/// an engine connection each, with its buffers) stays resident for good. `malloc_trim`
/// releases the free pages anywhere; it runs only when at least [`TRIM_FREED`] more bytes
/// are free than right after the last trim, so a steady heap is never walked twice.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
async fn trim_heap() {
    let free_bytes = || {
        // SAFETY: mallinfo2 only reads the allocator's statistics.
        unsafe { libc::mallinfo2() }.fordblks
    };
    let mut after_last = free_bytes();
    let mut tick = tokio::time::interval(TRIM_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if resident_bytes().is_none_or(|r| r > TRIM_MAX_RSS) {
            continue;
        }
        let free = free_bytes();
        if free < after_last {
            // Free memory got reused: measure new frees from here.
            after_last = free;
        } else if free - after_last >= TRIM_FREED {
            let started = std::time::Instant::now();
            // SAFETY: malloc_trim is thread-safe (it takes each arena's lock).
            let released = unsafe { libc::malloc_trim(0) } != 0;
            after_last = free_bytes();
            tracing::debug!(
                free_bytes = free,
                released,
                took_us = started.elapsed().as_micros() as u64,
                "heap trimmed"
            );
        }
    }
}

fn main() -> anyhow::Result<()> {
    limit_malloc_arenas();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    tokio::spawn(trim_heap());
    let args = cli::Args::parse();
    if let Some(cli::Command::Manage(m)) = args.command {
        init_tracing(&m.log_level);
        return manage::run(m).await;
    }
    init_tracing(&args.log_level);
    swarmd_pki::install_crypto_provider();

    let listeners = swarmd_engine_api::bind_all(&args.hosts)
        .await
        .context("binding the API listeners")?;
    // Checked and bound before the node starts: a bad flag stops swarmd with its message.
    let pool = match args.pool_hosts.is_empty() {
        true => None,
        false => Some((
            args.pool_options()?,
            swarmd_engine_api::bind_all(&args.pool_hosts)
                .await
                .context("binding the pool API listeners")?,
        )),
    };
    let node = SwarmNode::start(args.node_config()).await?;
    let daemon_id = daemon_id(&args.data_root);
    let backend = Arc::new(NodeBackend {
        node: node.clone(),
        daemon_id,
    });
    let cancel = CancellationToken::new();
    for h in &args.hosts {
        println!("swarmd listening on {h}");
    }
    println!(
        "executor: {}; node address: {}; data root: {}",
        match &node.exec {
            swarmd_node::ExecChoice::Docker { socket } => format!("docker (unix://{socket})"),
            other => other.name().into(),
        },
        args.node_addr,
        args.data_root.display()
    );
    if matches!(args.executor, cli::ExecutorKind::Auto)
        && matches!(node.exec, swarmd_node::ExecChoice::Process)
    {
        // Said at start, not left to be discovered: a user who meant containers (the quick
        // start with no engine installed yet) learns why tasks run as host processes.
        println!(
            "no Docker Engine answered on {}: tasks run as host processes; start an engine and \
             restart swarmd for containers, or pass --executor docker to require one",
            args.engine_host
        );
    }
    if args.init && node.active().is_none() {
        use swarmd_engine_api::backend::Backend;
        let id = backend
            .swarm_init(Default::default())
            .await
            .map_err(|e| anyhow::anyhow!("swarm init: {e}"))?;
        println!("swarm initialized: this node ({id}) is now a manager");
    }
    let server = tokio::spawn(swarmd_engine_api::serve(listeners, backend, cancel.clone()));
    let pool = pool.map(|(options, listeners)| {
        for h in &args.pool_hosts {
            println!("swarmd pool API listening on {h}");
        }
        tokio::spawn(pool_host::run(
            node.clone(),
            listeners,
            options,
            cancel.clone(),
        ))
    });

    wait_for_signal().await;
    tracing::info!("shutting down");
    cancel.cancel();
    if let Some(pool) = pool {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), pool).await;
    }
    node.shutdown().await;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), server).await;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing SIGINT handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}

/// A stable daemon ID for `/info`, kept in the data root.
fn daemon_id(root: &std::path::Path) -> String {
    let path = root.join("daemon-id");
    if let Ok(s) = std::fs::read_to_string(&path)
        && !s.trim().is_empty()
    {
        return s.trim().to_string();
    }
    let id = uuid_like();
    let _ = std::fs::write(&path, &id);
    id
}

fn uuid_like() -> String {
    let h = swarmd_types::ids::new_hex_id();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}
