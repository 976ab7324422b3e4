//! Load generator and test server for the mesh benchmark (`scripts/bench-mesh`).
//!
//! `serve` answers on `$SWARMD_NODE_ADDR:$PORT` (or `--listen`): a connection that starts
//! with `B` gets an endless stream of bytes (bulk), one that starts with `R` gets each
//! 64-byte request echoed back (request/response). `compare` measures, in one run and
//! interleaved, a direct address and a mesh address: bulk MB/s, requests/s over several
//! connections, and per-request latency (p50/p99) on one connection.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MSG: usize = 64;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// The server a task runs.
    Serve {
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Direct vs mesh, same run.
    Compare {
        /// Label for the direct path in the output.
        #[arg(long, default_value = "direct")]
        direct_label: String,
        #[arg(long)]
        direct: SocketAddr,
        #[arg(long, default_value = "mesh")]
        mesh_label: String,
        #[arg(long)]
        mesh: SocketAddr,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 5)]
        secs: u64,
        /// Connections for the requests/s figure.
        #[arg(long, default_value_t = 8)]
        conns: usize,
        /// Rounds (each measures direct then mesh); the best round of each is kept.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match cli.cmd {
        Cmd::Serve { listen } => rt.block_on(serve(listen)),
        Cmd::Compare {
            direct_label,
            direct,
            mesh_label,
            mesh,
            secs,
            conns,
            rounds,
        } => rt.block_on(compare(
            (&direct_label, direct),
            (&mesh_label, mesh),
            Duration::from_secs(secs),
            conns,
            rounds,
        )),
    }
}

async fn serve(listen: Option<SocketAddr>) -> anyhow::Result<()> {
    let addr = match listen {
        Some(a) => a,
        None => {
            let ip = std::env::var("SWARMD_NODE_ADDR").unwrap_or_else(|_| "0.0.0.0".into());
            let port = std::env::var("PORT").unwrap_or_else(|_| "80".into());
            format!("{ip}:{port}").parse().context("listen address")?
        }
    };
    let l = TcpListener::bind(addr).await?;
    eprintln!("serving on {addr}");
    loop {
        let (mut s, _) = l.accept().await?;
        tokio::spawn(async move {
            let _ = s.set_nodelay(true);
            let mut kind = [0u8; 1];
            if s.read_exact(&mut kind).await.is_err() {
                return;
            }
            match kind[0] {
                b'B' => {
                    let buf = vec![0x5au8; 256 * 1024];
                    while s.write_all(&buf).await.is_ok() {}
                }
                _ => {
                    let mut buf = [0u8; MSG];
                    while s.read_exact(&mut buf).await.is_ok() {
                        if s.write_all(&buf).await.is_err() {
                            break;
                        }
                    }
                }
            }
        });
    }
}

/// MB/s read from a bulk connection for `d`.
async fn bulk(addr: SocketAddr, d: Duration) -> anyhow::Result<f64> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(b"B").await?;
    let mut buf = vec![0u8; 1 << 20];
    let start = Instant::now();
    let mut total = 0u64;
    while start.elapsed() < d {
        let n = s.read(&mut buf).await?;
        anyhow::ensure!(n > 0, "bulk stream ended");
        total += n as u64;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64() / 1e6)
}

/// Request/response for `d` on one connection; the latency of each request.
async fn ping_pong(addr: SocketAddr, d: Duration) -> anyhow::Result<Vec<Duration>> {
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    s.write_all(b"R").await?;
    let req = [7u8; MSG];
    let mut resp = [0u8; MSG];
    let mut lat = Vec::new();
    let start = Instant::now();
    while start.elapsed() < d {
        let t = Instant::now();
        s.write_all(&req).await?;
        s.read_exact(&mut resp).await?;
        lat.push(t.elapsed());
    }
    Ok(lat)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1e3
}

#[derive(Default, Clone, Copy)]
struct Figures {
    mbps: f64,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

async fn measure(addr: SocketAddr, d: Duration, conns: usize) -> anyhow::Result<Figures> {
    let mbps = bulk(addr, d).await?;
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..conns {
        set.spawn(ping_pong(addr, d));
    }
    let mut requests = 0usize;
    while let Some(r) = set.join_next().await {
        requests += r??.len();
    }
    let rps = requests as f64 / d.as_secs_f64();
    let mut lat = ping_pong(addr, d).await?;
    lat.sort();
    Ok(Figures {
        mbps,
        rps,
        p50_ms: pct(&lat, 0.50),
        p99_ms: pct(&lat, 0.99),
    })
}

/// Best of the rounds: highest throughput and rate, lowest latencies.
fn best(all: &[Figures]) -> Figures {
    let mut b = all[0];
    for f in &all[1..] {
        b.mbps = b.mbps.max(f.mbps);
        b.rps = b.rps.max(f.rps);
        b.p50_ms = b.p50_ms.min(f.p50_ms);
        b.p99_ms = b.p99_ms.min(f.p99_ms);
    }
    b
}

async fn compare(
    direct: (&str, SocketAddr),
    mesh: (&str, SocketAddr),
    d: Duration,
    conns: usize,
    rounds: usize,
) -> anyhow::Result<()> {
    let (mut ds, mut ms) = (Vec::new(), Vec::new());
    for r in 0..rounds.max(1) {
        ds.push(measure(direct.1, d, conns).await.context("direct")?);
        ms.push(measure(mesh.1, d, conns).await.context("mesh")?);
        eprintln!("round {} done", r + 1);
    }
    let (dd, mm) = (best(&ds), best(&ms));
    println!("| path | bulk MB/s | requests/s ({conns} conns) | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|");
    for (label, f) in [(direct.0, dd), (mesh.0, mm)] {
        println!(
            "| {label} | {:.0} | {:.0} | {:.3} | {:.3} |",
            f.mbps, f.rps, f.p50_ms, f.p99_ms
        );
    }
    println!(
        "| {} / {} | {:.2}× | {:.2}× | +{:.3} ms | +{:.3} ms |",
        mesh.0,
        direct.0,
        mm.mbps / dd.mbps,
        mm.rps / dd.rps,
        mm.p50_ms - dd.p50_ms,
        mm.p99_ms - dd.p99_ms
    );
    Ok(())
}
