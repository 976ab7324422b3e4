//! One engine address as discovery lists it.
//!
//! Classic parsed each entry with Go's `net.SplitHostPort`, so its error wording ("address X:
//! missing port in address") is what operators of classic Swarm have seen; we keep it.

use std::fmt;

/// Where the manager reaches one engine.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EngineAddr {
    /// `host:port` over TCP; `host` is a name, an IPv4 or a bare (unbracketed) IPv6 address.
    Tcp { host: String, port: u16 },
    /// A local engine's unix socket, the path after `unix://`.
    Unix(String),
    /// An engine reached through the pool's [`swarmd_engine_api::dial::Dialer`], named by
    /// its upstream (`node://<swarm node ID>`): a swarm node's engine behind its agent.
    /// Only [`super::Discovery::Members`] yields these; [`EngineAddr::parse`] never does.
    Dialed(String),
}

/// Why one discovery entry is not an engine address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    /// Go's `net.SplitHostPort` wording, which classic surfaced verbatim.
    #[error("address {addr}: {reason}")]
    HostPort { addr: String, reason: &'static str },
    /// Classic let any port text through to the dialer; we refuse it up front.
    #[error("address {addr}: invalid port {port:?}")]
    Port { addr: String, port: String },
    /// `unix://` with nothing after it.
    #[error("address {addr}: missing socket path")]
    UnixPath { addr: String },
}

impl EngineAddr {
    /// Parses `host:port`, `[v6]:port`, `tcp://host:port` or `unix:///path`.
    pub fn parse(entry: &str) -> Result<Self, AddrError> {
        if let Some(path) = entry.strip_prefix("unix://") {
            if path.is_empty() {
                return Err(AddrError::UnixPath {
                    addr: entry.to_owned(),
                });
            }
            return Ok(Self::Unix(path.to_owned()));
        }
        let hostport = entry.strip_prefix("tcp://").unwrap_or(entry);
        let (host, port) = split_host_port(hostport)?;
        let port = port.parse::<u16>().map_err(|_| AddrError::Port {
            addr: hostport.to_owned(),
            port: port.to_owned(),
        })?;
        Ok(Self::Tcp {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for EngineAddr {
    /// `host:port` (IPv6 bracketed, as Go's `JoinHostPort`), `unix:///path`, or a dialed
    /// engine's upstream (`node://ID`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Self::Tcp { host, port } => write!(f, "{host}:{port}"),
            Self::Unix(path) => write!(f, "unix://{path}"),
            Self::Dialed(upstream) => f.write_str(upstream),
        }
    }
}

/// Go's `net.SplitHostPort`, same cases and messages.
fn split_host_port(hostport: &str) -> Result<(&str, &str), AddrError> {
    let err = |reason| AddrError::HostPort {
        addr: hostport.to_owned(),
        reason,
    };
    const MISSING_PORT: &str = "missing port in address";
    const TOO_MANY_COLONS: &str = "too many colons in address";

    let Some(i) = hostport.rfind(':') else {
        return Err(err(MISSING_PORT));
    };
    let (host, j, k);
    if hostport.starts_with('[') {
        let Some(end) = hostport.find(']') else {
            return Err(err("missing ']' in address"));
        };
        if end + 1 == hostport.len() {
            return Err(err(MISSING_PORT));
        } else if end + 1 != i {
            return Err(err(if hostport.as_bytes()[end + 1] == b':' {
                TOO_MANY_COLONS
            } else {
                MISSING_PORT
            }));
        }
        host = &hostport[1..end];
        (j, k) = (1, end + 1);
    } else {
        host = &hostport[..i];
        if host.contains(':') {
            return Err(err(TOO_MANY_COLONS));
        }
        (j, k) = (0, 0);
    }
    if hostport[j..].contains('[') {
        return Err(err("unexpected '[' in address"));
    }
    if hostport[k..].contains(']') {
        return Err(err("unexpected ']' in address"));
    }
    Ok((host, &hostport[i + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16) -> EngineAddr {
        EngineAddr::Tcp {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn host_port_forms() {
        assert_eq!(
            EngineAddr::parse("10.0.0.1:2375"),
            Ok(tcp("10.0.0.1", 2375))
        );
        assert_eq!(EngineAddr::parse("node-1:2376"), Ok(tcp("node-1", 2376)));
        assert_eq!(EngineAddr::parse("[::1]:2375"), Ok(tcp("::1", 2375)));
        assert_eq!(EngineAddr::parse("tcp://node:2375"), Ok(tcp("node", 2375)));
    }

    #[test]
    fn unix_socket() {
        assert_eq!(
            EngineAddr::parse("unix:///var/run/docker.sock"),
            Ok(EngineAddr::Unix("/var/run/docker.sock".into()))
        );
        assert_eq!(
            EngineAddr::parse("unix://").unwrap_err().to_string(),
            "address unix://: missing socket path"
        );
    }

    #[test]
    fn go_split_host_port_messages() {
        let msg = |s| EngineAddr::parse(s).unwrap_err().to_string();
        assert_eq!(msg("node"), "address node: missing port in address");
        assert_eq!(
            msg("::1:2375:x"),
            "address ::1:2375:x: too many colons in address"
        );
        assert_eq!(
            msg("[::1:2375"),
            "address [::1:2375: missing ']' in address"
        );
        assert_eq!(msg("[::1]"), "address [::1]: missing port in address");
        assert_eq!(msg("[::1]x:1"), "address [::1]x:1: missing port in address");
        assert_eq!(
            msg("[::1]:1:2"),
            "address [::1]:1:2: too many colons in address"
        );
        assert_eq!(msg("a[b:1"), "address a[b:1: unexpected '[' in address");
        assert_eq!(msg("a]b:1"), "address a]b:1: unexpected ']' in address");
    }

    #[test]
    fn port_must_be_a_port_number() {
        let msg = |s| EngineAddr::parse(s).unwrap_err().to_string();
        assert_eq!(msg("node:"), "address node:: invalid port \"\"");
        assert_eq!(msg("node:http"), "address node:http: invalid port \"http\"");
        assert_eq!(
            msg("node:65536"),
            "address node:65536: invalid port \"65536\""
        );
    }

    #[test]
    fn dialed_displays_as_its_upstream() {
        assert_eq!(
            EngineAddr::Dialed("node://abc".into()).to_string(),
            "node://abc"
        );
    }

    #[test]
    fn display_round_trips() {
        for s in ["10.0.0.1:2375", "[::1]:2375", "unix:///run/docker.sock"] {
            assert_eq!(EngineAddr::parse(s).unwrap().to_string(), s);
        }
    }
}
