//! API version negotiation: `/v1.xx` path prefixes.
//!
//! The daemon's router accepts `/v{version:[0-9.]+}/...` and the same paths without a prefix
//! (meaning "the newest"). Versions outside `MIN_API_VERSION..=API_VERSION` get 400 with the
//! daemon's texts, because the CLI shows them verbatim when a user pins `DOCKER_API_VERSION`.

use std::cmp::Ordering;

/// The newest API version we speak (docker 28.2).
pub const API_VERSION: &str = "1.50";
/// The oldest API version we accept (the daemon's minimum since 25.0).
pub const MIN_API_VERSION: &str = "1.24";

/// The version a request was made with, kept in the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestVersion {
    /// The version in the path prefix, if there was one. The engine proxy forwards it.
    pub prefix: Option<String>,
}

impl RequestVersion {
    /// The version the request is served at: its prefix, or the newest.
    pub fn effective(&self) -> &str {
        self.prefix.as_deref().unwrap_or(API_VERSION)
    }

    /// Whether the request's version is at least `v` (e.g. `"1.42"`).
    pub fn at_least(&self, v: &str) -> bool {
        compare_versions(self.effective(), v) != Ordering::Less
    }
}

/// Splits `/v1.50/services` into `("1.50", "/services")`. Paths without a prefix (or whose
/// first segment is not `v` followed by digits and dots) give `None`.
pub fn split_version_prefix(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/v")?;
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    if end == 0 {
        return None;
    }
    let (version, tail) = rest.split_at(end);
    if !(tail.is_empty() || tail.starts_with('/')) {
        return None;
    }
    Some((version, tail))
}

/// Compares dotted versions numerically, like the daemon's `versions.compare`: missing parts
/// count as 0 and so do parts that are not numbers.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let mut pa = a.split('.');
    let mut pb = b.split('.');
    loop {
        match (pa.next(), pb.next()) {
            (None, None) => return Ordering::Equal,
            (x, y) => {
                let nx = x.and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
                let ny = y.and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
                match nx.cmp(&ny) {
                    Ordering::Equal => continue,
                    other => return other,
                }
            }
        }
    }
}

/// Checks a requested version against our range; the error is the daemon's message.
pub fn check_version(version: &str) -> Result<(), String> {
    if compare_versions(version, MIN_API_VERSION) == Ordering::Less {
        return Err(format!(
            "client version {version} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"
        ));
    }
    if compare_versions(version, API_VERSION) == Ordering::Greater {
        return Err(format!(
            "client version {version} is too new. Maximum supported API version is {API_VERSION}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_prefixes() {
        assert_eq!(
            split_version_prefix("/v1.50/services"),
            Some(("1.50", "/services"))
        );
        assert_eq!(
            split_version_prefix("/v1.24/_ping"),
            Some(("1.24", "/_ping"))
        );
        assert_eq!(split_version_prefix("/v1.41"), Some(("1.41", "")));
        assert_eq!(split_version_prefix("/services"), None);
        assert_eq!(split_version_prefix("/version"), None);
        assert_eq!(split_version_prefix("/v/info"), None);
        assert_eq!(split_version_prefix("/v1.4x/info"), None);
        assert_eq!(split_version_prefix("/volumes"), None);
    }

    #[test]
    fn compares_numerically() {
        assert_eq!(compare_versions("1.9", "1.10"), Ordering::Less);
        assert_eq!(compare_versions("1.50", "1.50.0"), Ordering::Equal);
        assert_eq!(compare_versions("2", "1.99"), Ordering::Greater);
    }

    #[test]
    fn range_messages_are_dockers() {
        assert!(check_version("1.50").is_ok());
        assert!(check_version("1.24").is_ok());
        assert_eq!(
            check_version("1.51").unwrap_err(),
            "client version 1.51 is too new. Maximum supported API version is 1.50"
        );
        assert_eq!(
            check_version("1.23").unwrap_err(),
            "client version 1.23 is too old. Minimum supported API version is 1.24, please upgrade your client to a newer version"
        );
    }

    #[test]
    fn effective_version_defaults_to_newest() {
        let v = RequestVersion { prefix: None };
        assert_eq!(v.effective(), API_VERSION);
        assert!(v.at_least("1.42"));
        let v = RequestVersion {
            prefix: Some("1.41".into()),
        };
        assert!(!v.at_least("1.42"));
    }
}
