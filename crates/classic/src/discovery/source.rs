//! The discovery URL given to `swarmd manage`: which kind it is, and a static list's engines.
//!
//! Classic split the URL at the first `://`; without one it was a `nodes://` list. Its hosted
//! discovery (`token://`) and key-value stores (`consul://`, `etcd://`, `zk://`) need a service
//! outside the manager; swarmd does not offer them, and says which forms it does take instead
//! of classic's bare "discovery service not supported".

use std::collections::HashSet;

use tokio::sync::watch;

use super::addr::{AddrError, EngineAddr};
use super::members::PoolMember;
use super::range::{RangeTooLarge, expand_range};

/// Where the pool's engines come from: a parsed discovery URL, or the embedding program.
#[derive(Debug, Clone)]
pub enum Discovery {
    /// A fixed pool (`nodes://`, a bare list, or one `unix://` socket).
    Nodes(Vec<EngineAddr>),
    /// A file to read now and re-read every heartbeat ([`super::parse_file_content`]).
    File(String),
    /// Members the embedding program keeps current (a swarm's nodes, issue 17); the pool
    /// follows every change sent ([`super::diff_members`]). Never parsed from a URL.
    Members(watch::Receiver<Vec<PoolMember>>),
}

impl PartialEq for Discovery {
    /// Lists and paths by value; member sources when they are the same channel.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Nodes(a), Self::Nodes(b)) => a == b,
            (Self::File(a), Self::File(b)) => a == b,
            (Self::Members(a), Self::Members(b)) => a.same_channel(b),
            _ => false,
        }
    }
}

impl Eq for Discovery {}

/// Why a discovery URL or list is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    /// Classic's wording when no discovery was given.
    #[error("discovery required to manage a cluster. See 'swarmd manage --help'.")]
    Missing,
    #[error(
        "discovery service not supported: {scheme}:// (swarmd manage supports nodes://host:port,..., \
         a bare host:port,... list, file://PATH and unix://PATH)"
    )]
    Unsupported { scheme: String },
    #[error("file:// discovery needs a path")]
    EmptyFilePath,
    #[error("nodes:// discovery lists no engines")]
    EmptyNodes,
    /// Classic appended its token hint to a `nodes://` entry error; kept for the same reason
    /// (a misspelt `token://` looks like a host list).
    #[error("{0}, please check you are using the correct discovery (missing token:// ?)")]
    NodeEntry(AddrError),
    #[error(transparent)]
    Entry(#[from] AddrError),
    #[error(transparent)]
    Range(#[from] RangeTooLarge),
}

/// Parses `--discovery` / the positional discovery argument of `swarmd manage`.
pub fn parse_discovery(url: &str) -> Result<Discovery, DiscoveryError> {
    let url = url.trim();
    if url.is_empty() {
        return Err(DiscoveryError::Missing);
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return parse_node_list(url).map(Discovery::Nodes);
    };
    // "a:1,unix:///s" is a bare list whose second entry has a scheme, not scheme "a:1,unix".
    if !is_scheme(scheme) {
        return parse_node_list(url).map(Discovery::Nodes);
    }
    match scheme {
        "nodes" => parse_node_list(rest).map(Discovery::Nodes),
        "file" if rest.is_empty() => Err(DiscoveryError::EmptyFilePath),
        "file" => Ok(Discovery::File(rest.to_owned())),
        "unix" | "tcp" => parse_node_list(url).map(Discovery::Nodes),
        other => Err(DiscoveryError::Unsupported {
            scheme: other.to_owned(),
        }),
    }
}

/// Parses a comma-separated `nodes://` list (without the scheme), ranges expanded.
pub fn parse_node_list(list: &str) -> Result<Vec<EngineAddr>, DiscoveryError> {
    let entries = collect_entries(list.split(',').map(str::trim).filter(|s| !s.is_empty()))
        .map_err(|e| match e {
            DiscoveryError::Entry(e) => DiscoveryError::NodeEntry(e),
            other => other,
        })?;
    if entries.is_empty() {
        return Err(DiscoveryError::EmptyNodes);
    }
    Ok(entries)
}

/// Expands and parses entries in order, dropping repeats (classic's engine map did the same
/// later, keyed by address; doing it here keeps diffs exact).
pub(super) fn collect_entries<'a>(
    entries: impl Iterator<Item = &'a str>,
) -> Result<Vec<EngineAddr>, DiscoveryError> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for entry in entries {
        for expanded in expand_range(entry)? {
            let addr = EngineAddr::parse(&expanded)?;
            if seen.insert(addr.clone()) {
                out.push(addr);
            }
        }
    }
    Ok(out)
}

/// RFC 3986 scheme characters; anything else means there was no scheme.
fn is_scheme(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(url: &str) -> Vec<String> {
        match parse_discovery(url).unwrap() {
            Discovery::Nodes(v) => v.into_iter().map(|a| a.to_string()).collect(),
            other => panic!("not nodes: {other:?}"),
        }
    }

    #[test]
    fn nodes_scheme_and_bare_list_agree() {
        assert_eq!(
            nodes("nodes://10.0.0.1:2375,10.0.0.2:2375"),
            ["10.0.0.1:2375", "10.0.0.2:2375"]
        );
        assert_eq!(
            nodes("10.0.0.1:2375,10.0.0.2:2375"),
            ["10.0.0.1:2375", "10.0.0.2:2375"]
        );
    }

    #[test]
    fn ranges_in_nodes() {
        assert_eq!(
            nodes("nodes://10.0.0.[1:2]:2375,10.0.1.5:2375"),
            ["10.0.0.1:2375", "10.0.0.2:2375", "10.0.1.5:2375"]
        );
    }

    #[test]
    fn unix_sockets() {
        assert_eq!(
            nodes("unix:///var/run/docker.sock"),
            ["unix:///var/run/docker.sock"]
        );
        assert_eq!(
            nodes("a:1,unix:///run/d.sock"),
            ["a:1", "unix:///run/d.sock"]
        );
        assert_eq!(
            nodes("nodes://unix:///run/d.sock,b:2"),
            ["unix:///run/d.sock", "b:2"]
        );
    }

    #[test]
    fn spaces_and_empty_items_ignored() {
        assert_eq!(nodes(" a:1 , ,b:2,"), ["a:1", "b:2"]);
    }

    #[test]
    fn file_scheme_keeps_path() {
        assert_eq!(
            parse_discovery("file:///etc/swarm/cluster").unwrap(),
            Discovery::File("/etc/swarm/cluster".into())
        );
        assert_eq!(
            parse_discovery("file://").unwrap_err(),
            DiscoveryError::EmptyFilePath
        );
    }

    #[test]
    fn kv_and_token_schemes_refused_naming_supported_ones() {
        for scheme in ["consul", "etcd", "zk", "token"] {
            let msg = parse_discovery(&format!("{scheme}://x/y"))
                .unwrap_err()
                .to_string();
            assert!(
                msg.starts_with(&format!("discovery service not supported: {scheme}://")),
                "{msg}"
            );
            assert!(msg.contains("nodes://") && msg.contains("file://"), "{msg}");
        }
    }

    #[test]
    fn missing_discovery() {
        assert_eq!(
            parse_discovery("  ").unwrap_err().to_string(),
            "discovery required to manage a cluster. See 'swarmd manage --help'."
        );
    }

    #[test]
    fn bad_node_carries_classic_token_hint() {
        // What a token without its scheme looked like in classic.
        assert_eq!(
            parse_discovery("0ac50ef75c9739f5bfeeaf00503d4e6e")
                .unwrap_err()
                .to_string(),
            "address 0ac50ef75c9739f5bfeeaf00503d4e6e: missing port in address, please check \
             you are using the correct discovery (missing token:// ?)"
        );
    }

    #[test]
    fn empty_nodes_list_refused() {
        assert_eq!(
            parse_discovery("nodes://").unwrap_err(),
            DiscoveryError::EmptyNodes
        );
        assert_eq!(
            parse_discovery("nodes://n[2:1]:1").unwrap_err(),
            DiscoveryError::EmptyNodes
        );
    }

    #[test]
    fn huge_range_refused() {
        assert!(matches!(
            parse_discovery("n[0:100000]:1"),
            Err(DiscoveryError::Range(_))
        ));
    }
}
