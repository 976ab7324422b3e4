//! Query strings as the daemon reads them (`r.Form.Get`, `httputils.BoolValue`).

use std::convert::Infallible;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::error::ApiError;

/// The decoded `key=value` pairs of a query string, in order. `get` returns the first value,
/// as Go's `url.Values.Get` does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryParams(pub Vec<(String, String)>);

impl QueryParams {
    /// Parses `a=1&b=x%20y`. Never fails: malformed escapes are kept as they are.
    pub fn parse(raw: &str) -> Self {
        let pairs = raw
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (percent_decode(k), percent_decode(v)),
                None => (percent_decode(p), String::new()),
            })
            .collect();
        QueryParams(pairs)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Docker's `BoolValue`: absent or one of `""`, `0`, `no`, `false`, `none` is false.
    pub fn bool(&self, key: &str) -> bool {
        self.get(key).is_some_and(parse_bool)
    }

    /// A required `version=` (object version for optimistic concurrency). `what` names the
    /// object in the error, as the daemon does ("invalid service version 'x': ...").
    pub fn object_version(&self, what: &str) -> Result<u64, ApiError> {
        let raw = self.get("version").unwrap_or("");
        raw.parse::<u64>().map_err(|e| {
            let reason = if raw.is_empty() {
                "strconv.ParseUint: parsing \"\": invalid syntax".to_string()
            } else {
                format!("strconv.ParseUint: parsing \"{raw}\": {e}")
            };
            ApiError::bad_request(format!("invalid {what} version '{raw}': {reason}"))
        })
    }
}

/// Docker's query boolean: false iff the value is `""`, `0`, `no`, `false` or `none`
/// (case-insensitive); everything else is true.
pub fn parse_bool(v: &str) -> bool {
    let v = v.trim().to_ascii_lowercase();
    !matches!(v.as_str(), "" | "0" | "no" | "false" | "none")
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a byte.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(QueryParams::parse(parts.uri.query().unwrap_or("")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_follow_docker() {
        for f in ["", "0", "no", "false", "none", "FALSE", "No", "NONE"] {
            assert!(!parse_bool(f), "{f:?} should be false");
        }
        for t in ["1", "true", "yes", "True", "anything", "previous"] {
            assert!(parse_bool(t), "{t:?} should be true");
        }
        let q = QueryParams::parse("force=1&stdout=0&x");
        assert!(q.bool("force"));
        assert!(!q.bool("stdout"));
        assert!(!q.bool("x"));
        assert!(!q.bool("absent"));
    }

    #[test]
    fn decodes_and_keeps_first_value() {
        let q = QueryParams::parse(
            "filters=%7B%22name%22%3A%7B%22web%22%3Atrue%7D%7D&a=1&a=2&s=a+b&bad=%zz&tail=%4",
        );
        assert_eq!(q.get("filters"), Some(r#"{"name":{"web":true}}"#));
        assert_eq!(q.get("a"), Some("1"));
        assert_eq!(q.get("s"), Some("a b"));
        assert_eq!(q.get("bad"), Some("%zz"));
        assert_eq!(q.get("tail"), Some("%4"));
    }

    #[test]
    fn object_versions() {
        assert_eq!(
            QueryParams::parse("version=12").object_version("service"),
            Ok(12)
        );
        let e = QueryParams::parse("version=x")
            .object_version("service")
            .unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
        assert!(
            e.message.starts_with("invalid service version 'x'"),
            "{}",
            e.message
        );
    }
}
