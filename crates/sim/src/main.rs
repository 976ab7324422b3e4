//! `swarmd-sim`: runs many **simulated** nodes against real swarmd managers (see the library
//! doc). Each node joins with the worker token through the `Ca` service (its own key and CSR,
//! signed by the cluster's CA, one Raft write per node, exactly like `docker swarm join`),
//! then keeps a dispatcher session over its own mutual-TLS connection. Nothing is executed.
//!
//! Every `--stats-every` it prints one JSON line of counters ([`swarmd_sim::Snapshot`]) to
//! stdout, which `scripts/bench-scale` reads; it exits on SIGTERM/SIGINT.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use futures::StreamExt;
use swarmd_rpc::{CaClient, ClientOptions, IssueRequest, RemoteDispatcher, RpcChannel};
use swarmd_sim::{SimNode, Stats, now_rfc3339, unix_ms};
use swarmd_types::NodeDescription;
use swarmd_types::dispatcher::{DispatchError, DispatcherApi, SessionRequest, TaskStatusUpdate};
use tokio::sync::Semaphore;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "swarmd-sim",
    about = "Simulated swarm nodes (nothing runs) for benchmarks"
)]
struct Args {
    /// Cluster address of a manager (`host:port`); repeat for several.
    #[arg(long = "manager", required = true)]
    managers: Vec<String>,
    /// The swarm's worker join token.
    #[arg(long)]
    token: String,
    /// How many simulated nodes this process runs.
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Hostname prefix (nodes are PREFIX-0, PREFIX-1, ...).
    #[arg(long, default_value = "sim")]
    prefix: String,
    /// Joins in flight at once.
    #[arg(long, default_value_t = 32)]
    join_concurrency: usize,
    /// Milliseconds between stats lines.
    #[arg(long, default_value_t = 200)]
    stats_every: u64,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    swarmd_pki::install_crypto_provider();
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let stats = Arc::new(Stats::default());
    let joins = Arc::new(Semaphore::new(args.join_concurrency.max(1)));
    for i in 0..args.nodes {
        let stats = stats.clone();
        let joins = joins.clone();
        let args = args.clone();
        tokio::spawn(async move { node(args, i, stats, joins).await });
    }
    let mut tick = tokio::time::interval(Duration::from_millis(args.stats_every.max(10)));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let line = serde_json::to_string(&stats.snapshot(unix_ms()))?;
                println!("{line}");
            }
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    println!("{}", serde_json::to_string(&stats.snapshot(unix_ms()))?);
    Ok(())
}

fn options() -> ClientOptions {
    ClientOptions {
        server_name: Some(swarmd_pki::manager_server_name()),
        connect_timeout: Duration::from_secs(30),
        call_timeout: Duration::from_secs(60),
        ..ClientOptions::default()
    }
}

/// One simulated node: join (retrying), then sessions until the process ends.
async fn node(args: Args, i: usize, stats: Arc<Stats>, joins: Arc<Semaphore>) {
    let hostname = format!("{}-{i}", args.prefix);
    let (node_id, tls) = loop {
        let permit = joins.acquire().await;
        let r = join(&args, i).await;
        drop(permit);
        match r {
            Ok(x) => break x,
            Err(e) => {
                stats.join_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(node = %hostname, error = %format!("{e:#}"), "join failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    stats.joined.fetch_add(1, Ordering::Relaxed);
    let mut next = i % args.managers.len();
    let mut hint: Option<String> = None;
    // Kept across sessions: a reconnect's complete set is not counted as new placements.
    let mut sim = SimNode::default();
    loop {
        let addr = hint
            .take()
            .unwrap_or_else(|| args.managers[next % args.managers.len()].clone());
        let end = session(&addr, &node_id, &hostname, tls.clone(), &stats, &mut sim).await;
        stats.session_errors.fetch_add(1, Ordering::Relaxed);
        match end {
            // Straight to the leader the manager named. A manager naming itself leads in
            // Raft but is not serving sessions yet (it is still taking over): pause first.
            DispatchError::NotLeader {
                leader_addr: Some(l),
            } if !l.is_empty() => {
                if l == addr {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                hint = Some(l);
            }
            DispatchError::NodeRemoved(_) => return,
            e => {
                tracing::warn!(node = %hostname, error = %e, "session ended; reconnecting");
                next += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Joins as a worker: a fresh key and CSR, signed by the manager's CA through the `Ca`
/// service (pinned by the token's digest), the same exchange `docker swarm join` makes.
async fn join(args: &Args, i: usize) -> anyhow::Result<(String, Arc<rustls::ClientConfig>)> {
    let parsed = swarmd_pki::parse_join_token(&args.token).context("join token")?;
    let boot = swarmd_pki::bootstrap_client_config(&parsed.ca_digest)?;
    let remote = &args.managers[i % args.managers.len()];
    let channel = RpcChannel::new(remote, boot, options())?;
    let key = swarmd_pki::generate_node_key_and_csr(None)?;
    let issued = CaClient::new(channel)
        .issue_node_certificate(IssueRequest {
            token: Some(args.token.clone()),
            csr_pem: key.csr_pem.clone(),
            role_hint: None,
            node_id: None,
            addr: "127.0.0.1:0".into(),
            availability: None,
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    swarmd_pki::verify_root_against_token(&issued.root_ca_pem, &args.token)?;
    let tls = swarmd_pki::client_config(&issued.cert_pem, &key.key_pem, &issued.root_ca_pem)?;
    Ok((issued.node_id, tls))
}

/// A status report in flight; resolves to its outcome and the reports it carried.
type ReportFuture<'a> = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = (Result<(), DispatchError>, Vec<TaskStatusUpdate>)>
            + Send
            + 'a,
    >,
>;

/// Whether a failed status report ends the session. The real agent's reporter
/// (crates/agent/src/reporter.rs) keeps its session and retries after a backoff on anything
/// but a rejected session; so does the simulated node. Ending the session on a slow Raft
/// commit made every node re-open it and be sent its complete set again, under exactly the
/// load that made the commit slow.
fn report_error_ends_session(e: &DispatchError) -> bool {
    matches!(
        e,
        DispatchError::SessionInvalid
            | DispatchError::NodeRemoved(_)
            | DispatchError::NotLeader { .. }
    )
}

/// Delay before retrying a failed report: 200 ms doubling up to 5 s (the agent's
/// reporter backs off the same way).
fn report_retry_delay(failures: u32) -> Duration {
    Duration::from_millis(200u64 << failures.min(5)).min(Duration::from_secs(5))
}

/// One dispatcher session on its own mTLS connection; returns why it ended.
async fn session(
    addr: &str,
    node_id: &str,
    hostname: &str,
    tls: Arc<rustls::ClientConfig>,
    stats: &Stats,
    sim: &mut SimNode,
) -> DispatchError {
    let channel = match RpcChannel::new(addr, tls, options()) {
        Ok(c) => c,
        Err(e) => return DispatchError::Unavailable(e.to_string()),
    };
    let d = RemoteDispatcher::new(channel);
    let req = SessionRequest {
        node_id: node_id.to_string(),
        description: NodeDescription {
            hostname: hostname.to_string(),
            os: "linux".into(),
            architecture: "x86_64".into(),
            nano_cpus: 2_000_000_000,
            memory_bytes: 4 << 30,
            engine_version: "simulated".into(),
            engine_labels: Default::default(),
            executor: "simulated".into(),
            tls_info: None,
        },
        addr: "127.0.0.1".into(),
    };
    let mut stream = match d.session(req).await {
        Ok(s) => s,
        Err(e) => return e,
    };
    let first = match stream.next().await {
        Some(Ok(m)) => m,
        Some(Err(e)) => return e,
        None => return DispatchError::Unavailable("session stream ended at once".into()),
    };
    let sid = first.session_id.clone();
    let mut assignments = match d.assignments(&sid).await {
        Ok(s) => s,
        Err(e) => return e,
    };
    stats.sessions.fetch_add(1, Ordering::Relaxed);
    let _open = SessionCount(stats);
    let mut period = Duration::from_millis(first.heartbeat_period_ms.max(100));
    // Spread the first heartbeats over the period so thousands of nodes do not beat in step.
    let jitter = Duration::from_millis(unix_ms() % period.as_millis().max(1) as u64);
    let mut beat = Box::pin(tokio::time::sleep(jitter));
    // Status reports go out one at a time beside the heartbeats and the streams, as the
    // real agent's reporter does: a report waiting for a slow Raft commit must not hold back
    // the heartbeat (the session would expire) or the assignments. Reports made meanwhile
    // queue and go together in the next one.
    let mut queued: Vec<TaskStatusUpdate> = Vec::new();
    let mut in_flight: Option<ReportFuture<'_>> = None;
    // After a failed report: when to send again, and how many failed in a row.
    let mut retry: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    let mut failures: u32 = 0;
    let report = |reports: Vec<TaskStatusUpdate>| -> ReportFuture<'_> {
        let (d, sid) = (&d, &sid);
        Box::pin(async move {
            let r = d.update_task_status(sid, reports.clone()).await;
            (r, reports)
        })
    };
    loop {
        if in_flight.is_none() && retry.is_none() && !queued.is_empty() {
            in_flight = Some(report(std::mem::take(&mut queued)));
        }
        tokio::select! {
            _ = &mut beat => {
                match d.heartbeat(&sid).await {
                    Ok(p) => {
                        stats.heartbeats.fetch_add(1, Ordering::Relaxed);
                        period = p;
                    }
                    Err(e) => {
                        stats.heartbeat_errors.fetch_add(1, Ordering::Relaxed);
                        return e;
                    }
                }
                beat = Box::pin(tokio::time::sleep(period));
            }
            msg = stream.next() => match msg {
                Some(Ok(_)) => {}
                Some(Err(e)) => return e,
                None => return DispatchError::Unavailable("session stream ended".into()),
            },
            msg = assignments.next() => {
                let msg = match msg {
                    Some(Ok(m)) => m,
                    Some(Err(e)) => return e,
                    None => return DispatchError::Unavailable("assignments stream ended".into()),
                };
                let applied = sim.apply(&msg, &now_rfc3339());
                if applied.new_tasks > 0 {
                    stats.assigned.fetch_add(applied.new_tasks, Ordering::Relaxed);
                    stats.last_assigned_ms.fetch_max(unix_ms(), Ordering::Relaxed);
                }
                queued.extend(applied.reports);
            }
            r = async { in_flight.as_mut().expect("guarded").await }, if in_flight.is_some() => {
                in_flight = None;
                let (result, reports) = r;
                match result {
                    Ok(()) => {
                        failures = 0;
                        let running: Vec<String> = reports
                            .iter()
                            .filter(|r| r.status.state == swarmd_types::models::TaskState::RUNNING)
                            .map(|r| r.task_id.clone())
                            .collect();
                        let shutdown = (reports.len() - running.len()) as u64;
                        let running = sim.acknowledged(running);
                        stats.running.fetch_add(running, Ordering::Relaxed);
                        stats.shutdown.fetch_add(shutdown, Ordering::Relaxed);
                        if running > 0 {
                            stats.last_running_ms.fetch_max(unix_ms(), Ordering::Relaxed);
                        }
                    }
                    Err(e) => {
                        stats.report_errors.fetch_add(1, Ordering::Relaxed);
                        if report_error_ends_session(&e) {
                            return e;
                        }
                        tracing::debug!(node = %hostname, error = %e, "status report failed; will retry");
                        // Sent again first; reports queued meanwhile follow (and win).
                        let newer = std::mem::replace(&mut queued, reports);
                        queued.extend(newer);
                        retry = Some(Box::pin(tokio::time::sleep(report_retry_delay(failures))));
                        failures += 1;
                    }
                }
            }
            _ = async { retry.as_mut().expect("guarded").await }, if retry.is_some() => {
                retry = None;
            }
        }
    }
}

/// Keeps `sessions` equal to the number of sessions open now.
struct SessionCount<'a>(&'a Stats);

impl Drop for SessionCount<'_> {
    fn drop(&mut self) {
        self.0.sessions.fetch_sub(1, Ordering::Relaxed);
    }
}
