//! `swarmd manage`: classic Swarm's manager (issue 16), one virtual Docker host over a
//! pool of Docker Engines. It keeps no state: stopping it leaves every container running,
//! and starting it again rebuilds its view from the engines.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use swarmd_classic::options::{ListenAddr, ManageArgs, ManageOptions, TlsOptions};
use swarmd_classic::pool::{Pool, PoolConfig};
use swarmd_classic::replication::{self, Replication, ReplicationArgs};
use swarmd_classic::reschedule::Watchdog;
use swarmd_engine_api::tls::{TlsConfigs, TlsFiles};
use tokio_util::sync::CancellationToken;

use crate::cli::ManageCli;

/// Bound on each call the pool's refresh makes to an engine: one hung engine is flagged
/// unhealthy instead of stalling its refresh forever.
const ENGINE_CALL_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn run(cli: ManageCli) -> anyhow::Result<()> {
    let args = ManageArgs {
        discovery: cli.discovery,
        hosts: cli.hosts,
        strategy: cli.strategy,
        filters: cli.filters,
        heartbeat: cli.heartbeat,
        refresh_min: cli.engine_refresh_min_interval,
        refresh_max: cli.engine_refresh_max_interval,
        failure_retry: cli.engine_failure_retry,
        cluster_opts: cli.cluster_opts,
        tls: cli.tls,
        tlsverify: cli.tlsverify,
        tlscacert: cli.tlscacert,
        tlscert: cli.tlscert,
        tlskey: cli.tlskey,
    };
    let options = ManageOptions::from_args(&args)?;
    let replication = ReplicationArgs {
        replication: cli.replication,
        advertise: cli.advertise,
        ttl: cli.replication_ttl,
    }
    .config()?;
    // Read once, before binding: a bad file stops the manager here with classic's message.
    let tls = options.tls.as_ref().map(load_tls).transpose()?;
    let hosts: Vec<String> = options
        .hosts
        .iter()
        .map(|h| match h {
            ListenAddr::Tcp(a) => format!("tcp://{a}"),
            ListenAddr::Unix(p) => format!("unix://{p}"),
        })
        .collect();
    let listeners = swarmd_engine_api::bind_all(&hosts)
        .await
        .context("binding the API listeners")?;
    let cancel = CancellationToken::new();
    let pool = Pool::start(
        PoolConfig {
            timeout: ENGINE_CALL_TIMEOUT,
            failure_retry: options.failure_retry,
            refresh: options.refresh,
            heartbeat: options.heartbeat,
            tls: tls.as_ref().map(|t| t.client.clone()),
            dialer: None,
            unhealthy_retry: None,
        },
        options.discovery.clone(),
        cancel.clone(),
    );
    for h in &hosts {
        println!("swarmd manage listening on {h}");
    }
    tracing::info!(
        strategy = %options.strategy,
        filters = ?options.filters,
        "classic swarm manager started"
    );
    let hostname = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();
    let scheduler = swarmd_classic::api::scheduler(&options);
    let schedule_lock = Arc::new(tokio::sync::Mutex::new(()));
    let (role, election) = match replication {
        Some(config) => {
            let (role, task) = replication::start(
                Replication {
                    pool: pool.clone(),
                    config,
                    timeout: ENGINE_CALL_TIMEOUT,
                },
                cancel.clone(),
            );
            (role, Some(task))
        }
        None => (replication::role::standalone(), None),
    };
    // Only the primary reschedules (a manager without --replication always is).
    let watchdog = Watchdog {
        pool: pool.clone(),
        scheduler: scheduler.clone(),
        schedule_lock: schedule_lock.clone(),
        timeout: ENGINE_CALL_TIMEOUT,
        interval: options.refresh.min,
    };
    let watchdog = tokio::spawn(swarmd_classic::reschedule::run_while_primary(
        watchdog,
        role.clone(),
        cancel.clone(),
    ));
    let options = Arc::new(options);
    let app_pool = pool.clone();
    let server = tokio::spawn(swarmd_engine_api::serve_app_tls(
        listeners,
        tls.map(|t| t.server),
        move |tracker, inner| {
            swarmd_classic::api::app(
                swarmd_classic::api::Manager {
                    pool: app_pool,
                    options,
                    scheduler,
                    schedule_lock,
                    hostname,
                    role,
                },
                tracker,
                inner,
            )
        },
        cancel.clone(),
    ));
    crate::wait_for_signal().await;
    tracing::info!("shutting down");
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), watchdog).await;
    if let Some(election) = election {
        // Resigning deletes this manager's locks: a replica takes over at once.
        let _ = tokio::time::timeout(Duration::from_secs(5), election).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), pool.stopped()).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    Ok(())
}

/// The server and client TLS configs from `--tlscert/--tlskey[/--tlscacert]` (see
/// `swarmd_engine_api::tls`: one certificate for clients and engines, as classic).
fn load_tls(opts: &TlsOptions) -> anyhow::Result<TlsConfigs> {
    Ok(TlsConfigs::load(&TlsFiles {
        cert: opts.cert.clone().into(),
        key: opts.key.clone().into(),
        ca: opts.ca.clone().map(Into::into),
        verify: opts.verify,
    })?)
}
