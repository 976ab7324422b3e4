//! `--strategy` and `--filter` names as flags give them: the scheduler's own
//! [`Strategy`] and [`FilterKind`] parsed from text, with the bad name kept for the caller.

use std::fmt;
use std::str::FromStr;

pub use crate::scheduler::filter::FilterKind;
pub use crate::scheduler::strategy::Strategy;

/// Classic's wording for an unknown strategy; the name is kept for the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("strategy not supported")]
pub struct UnknownStrategy(pub String);

impl FromStr for Strategy {
    type Err = UnknownStrategy;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Strategy::from_name(s).map_err(|_| UnknownStrategy(s.to_owned()))
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Classic's wording for an unknown filter; the name is kept for the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("filter not supported")]
pub struct UnknownFilter(pub String);

impl FromStr for FilterKind {
    type Err = UnknownFilter;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FilterKind::from_names(&[s])
            .map(|k| k[0])
            .map_err(|_| UnknownFilter(s.to_owned()))
    }
}

impl fmt::Display for FilterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
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
        for f in FilterKind::ALL {
            assert_eq!(f.to_string().parse(), Ok(f));
        }
        assert_eq!(FilterKind::ContainerSlots.to_string(), "containerslots");
        let err = "slots".parse::<FilterKind>().unwrap_err();
        assert_eq!(err.to_string(), "filter not supported");
        assert_eq!(err.0, "slots");
    }
}
