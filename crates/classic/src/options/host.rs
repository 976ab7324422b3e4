//! `-H/--host`: where `swarmd manage` serves the Docker API.
//!
//! Classic took `[proto://]address`, `tcp` when no protocol was given, and refused any other
//! protocol than `tcp` and `unix` with `unsupported protocol: "udp"`.

use std::fmt;

/// One listen address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// `host:port` for a TCP listener.
    Tcp(String),
    /// Path of a unix socket.
    Unix(String),
}

/// A refused `-H` value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// Classic's wording.
    #[error("unsupported protocol: {0:?}")]
    UnsupportedProtocol(String),
    #[error("invalid --host {0:?}: empty address")]
    EmptyAddress(String),
}

impl ListenAddr {
    pub fn parse(host: &str) -> Result<Self, HostError> {
        let (proto, addr) = host.split_once("://").unwrap_or(("tcp", host));
        if addr.is_empty() {
            return Err(HostError::EmptyAddress(host.to_owned()));
        }
        match proto {
            "tcp" => Ok(Self::Tcp(addr.to_owned())),
            "unix" => Ok(Self::Unix(addr.to_owned())),
            other => Err(HostError::UnsupportedProtocol(other.to_owned())),
        }
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(a) => write!(f, "tcp://{a}"),
            Self::Unix(p) => write!(f, "unix://{p}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_unix_and_default_protocol() {
        assert_eq!(
            ListenAddr::parse("tcp://0.0.0.0:2375"),
            Ok(ListenAddr::Tcp("0.0.0.0:2375".into()))
        );
        assert_eq!(
            ListenAddr::parse("0.0.0.0:2375"),
            Ok(ListenAddr::Tcp("0.0.0.0:2375".into()))
        );
        assert_eq!(
            ListenAddr::parse("unix:///var/run/swarm.sock"),
            Ok(ListenAddr::Unix("/var/run/swarm.sock".into()))
        );
    }

    #[test]
    fn other_protocols_refused_in_classic_wording() {
        assert_eq!(
            ListenAddr::parse("udp://0.0.0.0:2375")
                .unwrap_err()
                .to_string(),
            "unsupported protocol: \"udp\""
        );
    }

    #[test]
    fn empty_address_refused() {
        assert!(matches!(
            ListenAddr::parse("tcp://"),
            Err(HostError::EmptyAddress(_))
        ));
        assert!(matches!(
            ListenAddr::parse(""),
            Err(HostError::EmptyAddress(_))
        ));
    }

    #[test]
    fn display() {
        assert_eq!(
            ListenAddr::parse("1.2.3.4:1").unwrap().to_string(),
            "tcp://1.2.3.4:1"
        );
    }
}
