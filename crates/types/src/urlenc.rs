//! Percent-encoding of the values swarmd puts into Docker Engine URLs.
//!
//! Object names reach us decoded (`docker network inspect "test 01"`), and a Docker network
//! name may hold any character. Put into a path as it is, a space makes the URL invalid and a
//! `?` or `#` silently cuts the path short, so the engine is asked about another object. The
//! engine API's own URLs (`swarmd_engine_api::engine_path`) and the agent's bollard calls
//! both encode through here.

use std::fmt::Write;

/// Whether `b` may stand unescaped in a path segment or a query value: RFC 3986
/// "unreserved". Everything else is `%XX`, which Go's, hyper's and the `url` crate's parsers
/// all accept and leave as it is.
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Appends `s` encoded; with `space_as_plus` a space is `+` (form encoding, for queries).
pub fn escape_into(out: &mut String, s: &str, space_as_plus: bool) {
    for &b in s.as_bytes() {
        if unreserved(b) {
            out.push(b as char);
        } else if b == b' ' && space_as_plus {
            out.push('+');
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// One path segment, percent-encoded (a `/` inside it is encoded too, so it stays one
/// segment).
pub fn escape_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_into(&mut out, s, false);
    out
}

/// Go's `url.QueryEscape`: a query key or value, with a space as `+`.
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_into(&mut out, s, true);
    out
}

/// Decodes `%XX` in a path segment (no `+` rule): the inverse of [`escape_segment`], for
/// tests and fuzz targets. Malformed escapes stay as they are.
pub fn unescape_segment(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_round_trip() {
        for s in ["test 01", "a#b?c%d/e", "é✓", "plain-name_1.2~x", ""] {
            let e = escape_segment(s);
            assert!(e.bytes().all(|b| b.is_ascii_graphic()), "{e}");
            assert!(!e.contains(['/', '?', '#', ' ']), "{e}");
            assert_eq!(unescape_segment(&e), s.as_bytes(), "{s}");
        }
        assert_eq!(escape_segment("test 01"), "test%2001");
        assert_eq!(query_escape("a b+c"), "a+b%2Bc");
    }
}
