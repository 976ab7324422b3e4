//! `--replication`, `--advertise` and `--replication-ttl`, checked as classic's
//! `cli/manage.go` checked them (same messages).

use std::time::Duration;

use crate::discovery::EngineAddr;
use crate::options::{DurationError, parse_go_duration};

/// Classic's `--replication-ttl` default.
pub const DEFAULT_TTL: &str = "20s";

/// The flags as given.
#[derive(Debug, Clone, Default)]
pub struct ReplicationArgs {
    pub replication: bool,
    pub advertise: Option<String>,
    pub ttl: Option<String>,
}

/// A replicated manager's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationConfig {
    /// `host:port` other managers (and `docker info`'s `Primary:`) reach this one at.
    pub advertise: String,
    /// How long a silent primary keeps its role before a replica takes over.
    pub ttl: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicationError {
    #[error("--advertise address must be provided when using --leader-election")]
    NoAdvertise,
    #[error("--advertise should be of the form ip:port or hostname:port")]
    BadAdvertise,
    #[error("invalid --replication-ttl: {0}")]
    BadTtl(DurationError),
    #[error("--replication-ttl should be a positive number")]
    NonPositiveTtl,
}

impl ReplicationArgs {
    /// `None` without `--replication` (the other two flags are then ignored, as classic did).
    pub fn config(&self) -> Result<Option<ReplicationConfig>, ReplicationError> {
        if !self.replication {
            return Ok(None);
        }
        let advertise = match self.advertise.as_deref() {
            None | Some("") => return Err(ReplicationError::NoAdvertise),
            Some(a) => a,
        };
        // Classic's checkAddrFormat: net.SplitHostPort and a port in 1..=65535.
        let valid = !advertise.contains("://")
            && matches!(EngineAddr::parse(advertise), Ok(EngineAddr::Tcp { port, .. }) if port > 0);
        if !valid {
            return Err(ReplicationError::BadAdvertise);
        }
        let nanos = parse_go_duration(self.ttl.as_deref().unwrap_or(DEFAULT_TTL))
            .map_err(ReplicationError::BadTtl)?;
        if nanos <= 0 {
            return Err(ReplicationError::NonPositiveTtl);
        }
        let ttl = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        Ok(Some(ReplicationConfig {
            advertise: advertise.to_owned(),
            ttl,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(advertise: Option<&str>, ttl: Option<&str>) -> ReplicationArgs {
        ReplicationArgs {
            replication: true,
            advertise: advertise.map(str::to_owned),
            ttl: ttl.map(str::to_owned),
        }
    }

    #[test]
    fn without_replication_the_other_flags_are_ignored() {
        let a = ReplicationArgs {
            replication: false,
            advertise: Some("nonsense".into()),
            ttl: Some("-1s".into()),
        };
        assert_eq!(a.config(), Ok(None));
    }

    #[test]
    fn replication_defaults_to_a_20s_ttl() {
        assert_eq!(
            args(Some("10.0.0.1:4000"), None).config(),
            Ok(Some(ReplicationConfig {
                advertise: "10.0.0.1:4000".into(),
                ttl: Duration::from_secs(20)
            }))
        );
        let c = args(Some("mgr:4000"), Some("1m30s"))
            .config()
            .unwrap()
            .unwrap();
        assert_eq!(c.ttl, Duration::from_secs(90));
    }

    #[test]
    fn flag_errors_are_classic_s() {
        let msg = |a: ReplicationArgs| a.config().unwrap_err().to_string();
        assert_eq!(
            msg(args(None, None)),
            "--advertise address must be provided when using --leader-election"
        );
        for bad in [
            "10.0.0.1",
            "10.0.0.1:0",
            "10.0.0.1:99999",
            "tcp://10.0.0.1:4000",
        ] {
            assert_eq!(
                msg(args(Some(bad), None)),
                "--advertise should be of the form ip:port or hostname:port",
                "{bad}"
            );
        }
        assert_eq!(
            msg(args(Some("h:1"), Some("soon"))),
            "invalid --replication-ttl: time: invalid duration \"soon\""
        );
        assert_eq!(
            msg(args(Some("h:1"), Some("0s"))),
            "--replication-ttl should be a positive number"
        );
    }
}
