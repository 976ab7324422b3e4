//! `--cluster-opt key=value` for the swarm cluster driver.
//!
//! Classic knew two keys: `swarm.overcommit` (default 0.05: engines are offered 5% more
//! memory and CPU than they report; must be > -1) and `swarm.createretry` (default 0: how many
//! other engines a failed create is retried on; not negative). Classic ignored unknown keys
//! and read unparsable values as 0; both hid typos, so swarmd refuses them.

/// The cluster driver options in effect.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClusterOpts {
    pub overcommit: f64,
    pub create_retry: u64,
}

impl Default for ClusterOpts {
    fn default() -> Self {
        Self {
            overcommit: 0.05,
            create_retry: 0,
        }
    }
}

/// A refused `--cluster-opt`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClusterOptError {
    #[error("--cluster-opt must contain key=value strings, got {0:?}")]
    NotKeyValue(String),
    #[error("unsupported --cluster-opt {0:?} (supported: swarm.overcommit, swarm.createretry)")]
    UnknownKey(String),
    #[error("invalid value {value:?} for --cluster-opt {key}")]
    BadValue { key: &'static str, value: String },
    /// Classic's wording (Go `%f`: six decimals).
    #[error("swarm.overcommit should be larger than -1, {0:.6} is invalid")]
    OvercommitTooLow(f64),
    /// Classic's wording.
    #[error("swarm.createretry can not be negative, {0} is invalid")]
    NegativeCreateRetry(i64),
}

/// Classic's warning for a negative overcommit between -1 and 0.
pub const NEGATIVE_OVERCOMMIT_WARNING: &str =
    "-1 < swarm.overcommit < 0 will make swarm take less resource than docker engine offers";

impl ClusterOpts {
    /// Applies `key=value` options in order (a later one wins, as the last flag does).
    pub fn parse<S: AsRef<str>>(opts: &[S]) -> Result<Self, ClusterOptError> {
        let mut out = Self::default();
        for opt in opts {
            let opt = opt.as_ref();
            let Some((key, value)) = opt.split_once('=') else {
                return Err(ClusterOptError::NotKeyValue(opt.to_owned()));
            };
            match key {
                "swarm.overcommit" => {
                    let v = parse_num::<f64>("swarm.overcommit", value)?;
                    if !v.is_finite() {
                        return Err(bad("swarm.overcommit", value));
                    }
                    if v <= -1.0 {
                        return Err(ClusterOptError::OvercommitTooLow(v));
                    }
                    out.overcommit = v;
                }
                "swarm.createretry" => {
                    let v = parse_num::<i64>("swarm.createretry", value)?;
                    out.create_retry =
                        u64::try_from(v).map_err(|_| ClusterOptError::NegativeCreateRetry(v))?;
                }
                other => return Err(ClusterOptError::UnknownKey(other.to_owned())),
            }
        }
        Ok(out)
    }

    /// Classic's warning when overcommit is negative (allowed, but likely a mistake).
    pub fn warning(&self) -> Option<&'static str> {
        (self.overcommit < 0.0).then_some(NEGATIVE_OVERCOMMIT_WARNING)
    }
}

fn bad(key: &'static str, value: &str) -> ClusterOptError {
    ClusterOptError::BadValue {
        key,
        value: value.to_owned(),
    }
}

fn parse_num<T: std::str::FromStr>(key: &'static str, value: &str) -> Result<T, ClusterOptError> {
    value.trim().parse().map_err(|_| bad(key, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let o = ClusterOpts::parse::<&str>(&[]).unwrap();
        assert_eq!(
            o,
            ClusterOpts {
                overcommit: 0.05,
                create_retry: 0
            }
        );
        assert_eq!(o.warning(), None);
    }

    #[test]
    fn both_keys() {
        let o = ClusterOpts::parse(&["swarm.overcommit=0.2", "swarm.createretry=2"]).unwrap();
        assert_eq!(
            o,
            ClusterOpts {
                overcommit: 0.2,
                create_retry: 2
            }
        );
    }

    #[test]
    fn later_option_wins() {
        let o = ClusterOpts::parse(&["swarm.createretry=2", "swarm.createretry=5"]).unwrap();
        assert_eq!(o.create_retry, 5);
    }

    #[test]
    fn overcommit_bounds_in_classic_wording() {
        assert_eq!(
            ClusterOpts::parse(&["swarm.overcommit=-1"])
                .unwrap_err()
                .to_string(),
            "swarm.overcommit should be larger than -1, -1.000000 is invalid"
        );
        let o = ClusterOpts::parse(&["swarm.overcommit=-0.5"]).unwrap();
        assert_eq!(o.overcommit, -0.5);
        assert_eq!(o.warning(), Some(NEGATIVE_OVERCOMMIT_WARNING));
        assert_eq!(
            ClusterOpts::parse(&["swarm.overcommit=0"])
                .unwrap()
                .warning(),
            None
        );
    }

    #[test]
    fn negative_createretry_in_classic_wording() {
        assert_eq!(
            ClusterOpts::parse(&["swarm.createretry=-1"])
                .unwrap_err()
                .to_string(),
            "swarm.createretry can not be negative, -1 is invalid"
        );
    }

    #[test]
    fn unknown_key_refused() {
        assert_eq!(
            ClusterOpts::parse(&["swarm.overcomit=0.1"]).unwrap_err(),
            ClusterOptError::UnknownKey("swarm.overcomit".into())
        );
    }

    #[test]
    fn malformed_refused() {
        assert!(matches!(
            ClusterOpts::parse(&["swarm.overcommit"]),
            Err(ClusterOptError::NotKeyValue(_))
        ));
        assert!(matches!(
            ClusterOpts::parse(&["swarm.overcommit=lots"]),
            Err(ClusterOptError::BadValue { .. })
        ));
        assert!(matches!(
            ClusterOpts::parse(&["swarm.overcommit=NaN"]),
            Err(ClusterOptError::BadValue { .. })
        ));
        assert!(matches!(
            ClusterOpts::parse(&["swarm.createretry=1.5"]),
            Err(ClusterOptError::BadValue { .. })
        ));
    }
}
