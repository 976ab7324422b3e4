//! `swarmd manage` options (issue 16 item 2), parsed and validated without I/O.
//!
//! The CLI (clap, in crates/swarmd) fills [`ManageArgs`] with the flag texts as given;
//! [`ManageOptions::from_args`] applies classic Swarm's defaults and its checks, in classic's
//! words. Classic replaced (did not extend) the default `-H` and `-f` lists when the flag was
//! given; so do we. Reading TLS files and listening belong to the caller.

mod cluster_opt;
mod duration;
mod host;
mod names;

use std::time::Duration;

pub use cluster_opt::{ClusterOptError, ClusterOpts, NEGATIVE_OVERCOMMIT_WARNING};
pub use duration::{DurationError, parse_go_duration};
pub use host::{HostError, ListenAddr};
pub use names::{FilterKind, Strategy, UnknownFilter, UnknownStrategy};

use crate::discovery::{Discovery, DiscoveryError, RefreshIntervals, parse_discovery};

/// Classic's default listen address.
pub const DEFAULT_HOST: &str = "tcp://127.0.0.1:2375";

/// Flag texts as given on the command line; `None`/empty means "not given".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManageArgs {
    /// The discovery argument (positional, or `SWARM_DISCOVERY`).
    pub discovery: Option<String>,
    pub hosts: Vec<String>,
    pub strategy: Option<String>,
    pub filters: Vec<String>,
    pub heartbeat: Option<String>,
    pub refresh_min: Option<String>,
    pub refresh_max: Option<String>,
    pub failure_retry: Option<i64>,
    pub cluster_opts: Vec<String>,
    pub tls: bool,
    pub tlsverify: bool,
    pub tlscacert: Option<String>,
    pub tlscert: Option<String>,
    pub tlskey: Option<String>,
}

/// TLS file paths, checked for presence only: the API listener serves with them and the
/// engines are dialled with them (classic's one TLS config; see `swarmd_engine_api::tls`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    pub cert: String,
    pub key: String,
    /// Set with `--tlsverify`: clients must present a certificate signed by this CA.
    pub ca: Option<String>,
    pub verify: bool,
}

/// Validated `swarmd manage` options.
#[derive(Debug, Clone, PartialEq)]
pub struct ManageOptions {
    pub discovery: Discovery,
    pub hosts: Vec<ListenAddr>,
    pub strategy: Strategy,
    /// In the order given, repeats dropped.
    pub filters: Vec<FilterKind>,
    pub heartbeat: Duration,
    pub refresh: RefreshIntervals,
    pub failure_retry: u32,
    pub cluster: ClusterOpts,
    pub tls: Option<TlsOptions>,
}

/// A refused option, in classic's wording where classic had one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OptionsError {
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    #[error(transparent)]
    Host(#[from] HostError),
    #[error(transparent)]
    Strategy(#[from] UnknownStrategy),
    #[error(transparent)]
    Filter(#[from] UnknownFilter),
    #[error(transparent)]
    ClusterOpt(#[from] ClusterOptError),
    #[error("invalid --{flag}: {source}")]
    Duration {
        flag: &'static str,
        source: DurationError,
    },
    #[error("--heartbeat should be at least one second")]
    HeartbeatTooShort,
    #[error("min refresh interval should be a positive number")]
    RefreshMinNotPositive,
    #[error("max refresh interval cannot be less than min refresh interval")]
    RefreshMaxBelowMin,
    #[error("invalid failure retry count")]
    FailureRetry,
    #[error("--tlscert and --tlskey must be provided when using --tls")]
    TlsCertKeyMissing,
    #[error("--tlscacert must be provided when using --tlsverify")]
    TlsCaMissing,
    #[error("--tlscert, --tlskey and --tlscacert require the use of either --tls or --tlsverify")]
    TlsFilesWithoutTls,
}

impl ManageOptions {
    /// Applies defaults and classic's validation to the flags as given.
    pub fn from_args(args: &ManageArgs) -> Result<Self, OptionsError> {
        let discovery = parse_discovery(args.discovery.as_deref().unwrap_or_default())?;
        Self::with_discovery(args, discovery)
    }

    /// [`ManageOptions::from_args`] over engines the embedding program gives (a swarm's
    /// nodes, `--pool-host`): `args.discovery` is not read.
    pub fn with_discovery(args: &ManageArgs, discovery: Discovery) -> Result<Self, OptionsError> {
        let hosts = if args.hosts.is_empty() {
            vec![ListenAddr::parse(DEFAULT_HOST)?]
        } else {
            args.hosts
                .iter()
                .map(|h| ListenAddr::parse(h))
                .collect::<Result<_, _>>()?
        };

        let strategy = args
            .strategy
            .as_deref()
            .map_or(Ok(Strategy::default()), str::parse)?;

        let filters = if args.filters.is_empty() {
            FilterKind::ALL.to_vec()
        } else {
            let mut out: Vec<FilterKind> = Vec::new();
            for name in &args.filters {
                let f = name.parse()?;
                if !out.contains(&f) {
                    out.push(f);
                }
            }
            out
        };

        let heartbeat = duration_flag("heartbeat", args.heartbeat.as_deref(), "60s")?;
        if heartbeat < 1_000_000_000 {
            return Err(OptionsError::HeartbeatTooShort);
        }
        let min = duration_flag(
            "engine-refresh-min-interval",
            args.refresh_min.as_deref(),
            "30s",
        )?;
        let max = duration_flag(
            "engine-refresh-max-interval",
            args.refresh_max.as_deref(),
            "60s",
        )?;
        if min <= 0 {
            return Err(OptionsError::RefreshMinNotPositive);
        }
        if max < min {
            return Err(OptionsError::RefreshMaxBelowMin);
        }

        let failure_retry = args.failure_retry.unwrap_or(3);
        let failure_retry = u32::try_from(failure_retry)
            .ok()
            .filter(|&n| n > 0)
            .ok_or(OptionsError::FailureRetry)?;

        Ok(Self {
            discovery,
            hosts,
            strategy,
            filters,
            heartbeat: nanos(heartbeat),
            refresh: RefreshIntervals {
                min: nanos(min),
                max: nanos(max),
            },
            failure_retry,
            cluster: ClusterOpts::parse(&args.cluster_opts)?,
            tls: tls_options(args)?,
        })
    }
}

/// Classic's TLS rules: `--tlsverify` implies `--tls`; both need a cert and key, verify needs
/// a CA; TLS files without either flag are a mistake, not silently ignored.
fn tls_options(args: &ManageArgs) -> Result<Option<TlsOptions>, OptionsError> {
    if !(args.tls || args.tlsverify) {
        if args.tlscert.is_some() || args.tlskey.is_some() || args.tlscacert.is_some() {
            return Err(OptionsError::TlsFilesWithoutTls);
        }
        return Ok(None);
    }
    let (Some(cert), Some(key)) = (&args.tlscert, &args.tlskey) else {
        return Err(OptionsError::TlsCertKeyMissing);
    };
    if args.tlsverify && args.tlscacert.is_none() {
        return Err(OptionsError::TlsCaMissing);
    }
    Ok(Some(TlsOptions {
        cert: cert.clone(),
        key: key.clone(),
        ca: args.tlscacert.clone(),
        verify: args.tlsverify,
    }))
}

fn duration_flag(
    flag: &'static str,
    value: Option<&str>,
    default: &str,
) -> Result<i128, OptionsError> {
    parse_go_duration(value.unwrap_or(default))
        .map_err(|source| OptionsError::Duration { flag, source })
}

/// Positive nanoseconds (range-checked by the caller, at most i64::MAX) as a Duration.
fn nanos(n: i128) -> Duration {
    Duration::from_nanos(u64::try_from(n).unwrap_or(0))
}

#[cfg(test)]
mod tests;
