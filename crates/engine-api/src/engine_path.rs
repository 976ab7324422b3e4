//! Paths and queries for the requests swarmd itself makes to the local Docker Engine.
//!
//! Handlers get path parameters already percent-decoded (`network inspect "test 01"` arrives
//! as `test 01`), so a path built with `format!("/networks/{name}")` is not a valid URI once
//! a name holds a space, `%`, `?` or `#`, and one with `?` or `#` silently asks the engine for
//! something else. Every path segment and query value swarmd puts into an engine URL goes
//! through here and is percent-encoded, so whatever a user named an object, the engine sees
//! that exact name.

use std::fmt::Write;

use swarmd_types::urlenc::escape_into;
pub use swarmd_types::urlenc::{escape_segment, query_escape, unescape_segment};

/// An engine request target: `/` + the encoded segments, then an optional query.
///
/// `EnginePath::new(["networks", name]).query("scope", "local").build()`
#[derive(Debug, Clone, Default)]
pub struct EnginePath {
    path: String,
    query: String,
}

impl EnginePath {
    pub fn new<'a>(segments: impl IntoIterator<Item = &'a str>) -> Self {
        let mut path = String::new();
        for s in segments {
            path.push('/');
            escape_into(&mut path, s, false);
        }
        if path.is_empty() {
            path.push('/');
        }
        EnginePath {
            path,
            query: String::new(),
        }
    }

    /// Appends `key=value`, both encoded.
    pub fn query(mut self, key: &str, value: &str) -> Self {
        if !self.query.is_empty() {
            self.query.push('&');
        }
        escape_into(&mut self.query, key, true);
        self.query.push('=');
        escape_into(&mut self.query, value, true);
        self
    }

    /// Appends a query string taken from a request swarmd received. It was part of a valid
    /// URI there, so its bytes are already encoded; anything a URI may not hold is encoded
    /// anyway rather than trusted.
    pub fn raw_query(mut self, raw: &str) -> Self {
        if raw.is_empty() {
            return self;
        }
        if !self.query.is_empty() {
            self.query.push('&');
        }
        for &b in raw.as_bytes() {
            // What `http::Uri` takes unescaped in a query (0x21, 0x24-0x3B, 0x3D,
            // 0x3F-0x7E): `"`, `<`, `>`, `#`, spaces, controls and non-ASCII are escaped,
            // which the engine's form decoding reads back as the same bytes.
            if matches!(b, 0x21 | 0x24..=0x3B | 0x3D | 0x3F..=0x7E) {
                self.query.push(b as char);
            } else {
                let _ = write!(self.query, "%{b:02X}");
            }
        }
        self
    }

    /// `path[?query]`, always a valid origin-form request target.
    pub fn build(&self) -> String {
        if self.query.is_empty() {
            self.path.clone()
        } else {
            format!("{}?{}", self.path, self.query)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::QueryParams;
    use axum::http::Uri;

    #[test]
    fn names_with_spaces_and_delimiters_stay_one_segment() {
        let p = EnginePath::new(["networks", "test 01"]).build();
        assert_eq!(p, "/networks/test%2001");
        assert!(p.parse::<Uri>().is_ok());
        let p = EnginePath::new(["networks", "a#b?c%d/e"]).build();
        assert_eq!(p, "/networks/a%23b%3Fc%25d%2Fe");
        let uri: Uri = p.parse().unwrap();
        assert_eq!(uri.query(), None);
        let seg = uri.path().rsplit('/').next().unwrap();
        assert_eq!(unescape_segment(seg), b"a#b?c%d/e");
    }

    #[test]
    fn query_values_round_trip_through_the_query_parser() {
        let p = EnginePath::new(["networks", "n"])
            .query("scope", "lo cal&x=1+%")
            .query("k", "")
            .raw_query("verbose=1&a=b c")
            .build();
        let uri: Uri = p.parse().unwrap();
        let q = QueryParams::parse(uri.query().unwrap());
        assert_eq!(q.get("scope"), Some("lo cal&x=1+%"));
        assert_eq!(q.get("k"), Some(""));
        assert_eq!(q.get("verbose"), Some("1"));
        assert_eq!(q.get("a"), Some("b c"));
        assert_eq!(EnginePath::new([]).build(), "/");
        // Found by the engine_path fuzz target: `"` (and `<`, `>`) in a raw query made the
        // target unparseable.
        let p = EnginePath::new(["n"]).raw_query("a=\"p\"<>#é").build();
        let uri: Uri = p.parse().unwrap();
        let q = QueryParams::parse(uri.query().unwrap());
        assert_eq!(q.get("a"), Some("\"p\"<>#é"));
    }
}
