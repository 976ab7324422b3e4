//! Load generator and test server for the mesh benchmark (`scripts/bench-mesh`).
//!
//! `serve` answers on `$SWARMD_NODE_ADDR:$PORT` (or `--listen`): a connection that starts
//! with `B` gets an endless stream of bytes (bulk), one that starts with `R` gets each
//! 64-byte request echoed back (request/response). `compare` measures, in one run and
//! interleaved, a direct address and a mesh address: bulk MB/s, requests/s over several
//! connections, and per-request latency (p50/p99) on one connection. `proxy` runs the
//! mesh alone (one published TCP port to fixed backends), to profile it as its own process.

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
        /// Rounds: each measures every figure on both paths back to back, the order of
        /// the two paths alternating from round to round; the median of each is reported.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Only the bulk figure (for profiling the bulk path).
        #[arg(long)]
        bulk_only: bool,
    },
    /// The mesh alone: listens on `--listen` and forwards to `--to` (TCP), on a
    /// multi-threaded runtime like swarmd's.
    Proxy {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long, required = true)]
        to: Vec<SocketAddr>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Cmd::Proxy { listen, to } = &cli.cmd {
        return tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(proxy(*listen, to));
    }
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
            bulk_only,
        } => rt.block_on(compare(
            (&direct_label, direct),
            (&mesh_label, mesh),
            Duration::from_secs(secs),
            conns,
            rounds,
            bulk_only,
        )),
        Cmd::Proxy { .. } => unreachable!("run above"),
    }
}

async fn proxy(listen: SocketAddr, to: &[SocketAddr]) -> anyhow::Result<()> {
    use swarmd_types::dispatcher::{IngressBackend, IngressPort, IngressProtocol, IngressTable};
    let cancel = tokio_util::sync::CancellationToken::new();
    let mut mesh = swarmd_mesh::Mesh::new(listen.ip(), cancel.clone());
    mesh.apply(&IngressTable {
        ports: vec![IngressPort {
            protocol: IngressProtocol::Tcp,
            published_port: listen.port(),
            target_port: 0,
            service_id: "bench".into(),
            service_name: "bench".into(),
            backends: to
                .iter()
                .map(|a| IngressBackend {
                    task_id: a.to_string(),
                    addr: a.to_string(),
                })
                .collect(),
        }],
    })
    .await;
    anyhow::ensure!(!mesh.ports().is_empty(), "could not listen on {listen}");
    eprintln!("mesh on {listen} -> {to:?}");
    tokio::signal::ctrl_c().await?;
    cancel.cancel();
    Ok(())
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

async fn requests_per_sec(addr: SocketAddr, d: Duration, conns: usize) -> anyhow::Result<f64> {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..conns {
        set.spawn(ping_pong(addr, d));
    }
    let mut requests = 0usize;
    while let Some(r) = set.join_next().await {
        requests += r??.len();
    }
    Ok(requests as f64 / d.as_secs_f64())
}

async fn latency(addr: SocketAddr, d: Duration) -> anyhow::Result<(f64, f64)> {
    let mut lat = ping_pong(addr, d).await?;
    lat.sort();
    Ok((pct(&lat, 0.50), pct(&lat, 0.99)))
}

/// One round: each figure on both paths back to back (`first` path first), so that both
/// see the same machine load as nearly as possible.
async fn round(
    paths: [SocketAddr; 2],
    first: usize,
    d: Duration,
    conns: usize,
    bulk_only: bool,
) -> anyhow::Result<[Figures; 2]> {
    let mut f = [Figures::default(); 2];
    let order = [first, 1 - first];
    for i in order {
        f[i].mbps = bulk(paths[i], d)
            .await
            .with_context(|| format!("bulk {}", paths[i]))?;
    }
    if bulk_only {
        return Ok(f);
    }
    for i in order {
        f[i].rps = requests_per_sec(paths[i], d, conns).await?;
    }
    for i in order {
        (f[i].p50_ms, f[i].p99_ms) = latency(paths[i], d).await?;
    }
    Ok(f)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The median of each figure over the rounds.
fn medians(all: &[Figures]) -> Figures {
    let m = |g: fn(&Figures) -> f64| median(all.iter().map(g).collect());
    Figures {
        mbps: m(|f| f.mbps),
        rps: m(|f| f.rps),
        p50_ms: m(|f| f.p50_ms),
        p99_ms: m(|f| f.p99_ms),
    }
}

async fn compare(
    direct: (&str, SocketAddr),
    mesh: (&str, SocketAddr),
    d: Duration,
    conns: usize,
    rounds: usize,
    bulk_only: bool,
) -> anyhow::Result<()> {
    let (mut ds, mut ms) = (Vec::new(), Vec::new());
    let rounds = rounds.max(1);
    for r in 0..rounds {
        let [a, b] = round([direct.1, mesh.1], r % 2, d, conns, bulk_only).await?;
        eprintln!(
            "round {}: bulk MB/s {} {:.0}, {} {:.0} ({:.2}×); req/s {:.0}, {:.0}; p99 ms {:.3}, {:.3}",
            r + 1,
            direct.0,
            a.mbps,
            mesh.0,
            b.mbps,
            b.mbps / a.mbps,
            a.rps,
            b.rps,
            a.p99_ms,
            b.p99_ms
        );
        ds.push(a);
        ms.push(b);
    }
    let (dd, mm) = (medians(&ds), medians(&ms));
    // The ratio of each round, then its median: both paths of a round saw the same load.
    let ratio = median(ds.iter().zip(&ms).map(|(a, b)| b.mbps / a.mbps).collect());
    let rps_ratio = median(ds.iter().zip(&ms).map(|(a, b)| b.rps / a.rps).collect());
    if bulk_only {
        println!("| path | bulk MB/s |\n|---|---|");
        for (label, f) in [(direct.0, dd), (mesh.0, mm)] {
            println!("| {label} | {:.0} |", f.mbps);
        }
        println!("| {} / {} | {ratio:.2}× |", mesh.0, direct.0);
        return Ok(());
    }
    println!("| path | bulk MB/s | requests/s ({conns} conns) | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|");
    for (label, f) in [(direct.0, dd), (mesh.0, mm)] {
        println!(
            "| {label} | {:.0} | {:.0} | {:.3} | {:.3} |",
            f.mbps, f.rps, f.p50_ms, f.p99_ms
        );
    }
    println!(
        "| {} / {} | {:.2}× | {:.2}× | {:+.3} ms | {:+.3} ms |",
        mesh.0,
        direct.0,
        ratio,
        rps_ratio,
        mm.p50_ms - dd.p50_ms,
        mm.p99_ms - dd.p99_ms
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(vec![]).is_nan());
    }
}
