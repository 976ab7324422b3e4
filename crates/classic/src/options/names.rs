//! `--strategy` and `--filter` names, as classic listed and refused them.

use std::fmt;
use std::str::FromStr;

/// Placement strategy; classic's list order, spread first (the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    #[default]
    Spread,
    Binpack,
    Random,
}

/// Classic's wording for an unknown strategy; the name is kept for the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("strategy not supported")]
pub struct UnknownStrategy(pub String);

impl FromStr for Strategy {
    type Err = UnknownStrategy;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "spread" => Ok(Self::Spread),
            // Classic kept "binpacking" as a compatibility alias.
            "binpack" | "binpacking" => Ok(Self::Binpack),
            "random" => Ok(Self::Random),
            other => Err(UnknownStrategy(other.to_owned())),
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Spread => "spread",
            Self::Binpack => "binpack",
            Self::Random => "random",
        })
    }
}

/// Scheduler filter; classic's registration order, which is also the order they run in
/// when `-f` is not given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterName {
    Health,
    Port,
    Containerslots,
    Dependency,
    Affinity,
    Constraint,
    Whitelist,
}

impl FilterName {
    /// All filters, classic's default set and order.
    pub const ALL: [FilterName; 7] = [
        Self::Health,
        Self::Port,
        Self::Containerslots,
        Self::Dependency,
        Self::Affinity,
        Self::Constraint,
        Self::Whitelist,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Health => "health",
            Self::Port => "port",
            Self::Containerslots => "containerslots",
            Self::Dependency => "dependency",
            Self::Affinity => "affinity",
            Self::Constraint => "constraint",
            Self::Whitelist => "whitelist",
        }
    }
}

/// Classic's wording for an unknown filter; the name is kept for the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("filter not supported")]
pub struct UnknownFilter(pub String);

impl FromStr for FilterName {
    type Err = UnknownFilter;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| UnknownFilter(s.to_owned()))
    }
}

impl fmt::Display for FilterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategies() {
        assert_eq!("spread".parse(), Ok(Strategy::Spread));
        assert_eq!("binpack".parse(), Ok(Strategy::Binpack));
        assert_eq!("binpacking".parse(), Ok(Strategy::Binpack));
        assert_eq!("random".parse(), Ok(Strategy::Random));
        assert_eq!(Strategy::default(), Strategy::Spread);
        let err = "Spread".parse::<Strategy>().unwrap_err();
        assert_eq!(err.to_string(), "strategy not supported");
        assert_eq!(err.0, "Spread");
    }

    #[test]
    fn filters_round_trip_and_unknown_refused() {
        for f in FilterName::ALL {
            assert_eq!(f.to_string().parse(), Ok(f));
        }
        assert_eq!(FilterName::Containerslots.as_str(), "containerslots");
        let err = "slots".parse::<FilterName>().unwrap_err();
        assert_eq!(err.to_string(), "filter not supported");
        assert_eq!(err.0, "slots");
    }
}
