//! Unix timestamps in query parameters (`since`, `until`), as the daemon reads them.
//!
//! The CLI turns `--since 10m` or an RFC 3339 date into `seconds[.nanoseconds]` before it
//! sends it; the daemon only parses that form (moby's `daemon/internal/timestamp`
//! `ParseUnixTimestamp`): whole seconds as a signed 64-bit integer, then up to 20 fraction
//! digits of which the first nine count. Anything else (`1e300`, `NaN`, `1.5e3`, a date,
//! seconds beyond `i64`) is the daemon's 400, worded as it words it, rather than a float
//! that overflows a `Duration` further down.

use std::fmt;

/// A parsed timestamp: seconds since the epoch (may be negative) and nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct UnixTime {
    pub secs: i64,
    /// 0..=999_999_999.
    pub nanos: u32,
}

impl UnixTime {
    /// Seconds as a float, for [`crate::LogOptions`]. Huge values keep their order; callers
    /// that turn them into a `SystemTime` must saturate (see `swarmd_types::timefmt`).
    pub fn as_f64(self) -> f64 {
        self.secs as f64 + f64::from(self.nanos) / 1e9
    }
}

/// Why a timestamp was refused; `Display` is the daemon's text after `invalid value for
/// "since": `.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimestampError {
    value: String,
    reason: String,
}

impl fmt::Display for TimestampError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid timestamp \"{}\": {}", self.value, self.reason)
    }
}

impl std::error::Error for TimestampError {}

/// Go's `strconv` error texts for a failed integer parse.
fn int_error(e: &std::num::ParseIntError) -> &'static str {
    use std::num::IntErrorKind::*;
    match e.kind() {
        PosOverflow | NegOverflow => "value out of range",
        _ => "invalid syntax",
    }
}

/// Go's quoting (`%q`) is close enough to Rust's `{:?}` for the ASCII the messages quote;
/// a non-printable byte shows escaped either way.
fn go_quote(s: &str) -> String {
    format!("{s:?}")
}

/// moby's `ParseUnixTimestamp`; `""` is `Ok(None)` (no bound).
pub fn parse_unix_timestamp(value: &str) -> Result<Option<UnixTime>, TimestampError> {
    if value.is_empty() {
        return Ok(None);
    }
    let fail = |reason: String| TimestampError {
        value: value.to_string(),
        reason,
    };
    let (s, n) = match value.split_once('.') {
        Some((s, n)) => (s, Some(n)),
        None => (value, None),
    };
    let secs = go_parse_int(s).map_err(|e| {
        fail(format!(
            "invalid seconds {}: {}",
            go_quote(s),
            int_error(&e)
        ))
    })?;
    let n = match n {
        None | Some("" | "0" | "000000000") => return Ok(Some(UnixTime { secs, nanos: 0 })),
        Some(n) => n,
    };
    const MAX_FRAC_DIGITS: usize = 20;
    if n.len() > MAX_FRAC_DIGITS {
        return Err(fail(format!(
            "invalid nanoseconds: length {} exceeds maximum {MAX_FRAC_DIGITS}",
            n.len()
        )));
    }
    if let Some((i, c)) = n.bytes().enumerate().find(|(_, c)| !c.is_ascii_digit()) {
        return Err(fail(format!(
            "invalid nanoseconds: invalid character {} at position {i}",
            go_quote_byte(c)
        )));
    }
    let digits: String = n.chars().chain(std::iter::repeat('0')).take(9).collect();
    // Nine ASCII digits always fit.
    let nanos = digits.parse::<u32>().unwrap_or(0);
    Ok(Some(UnixTime { secs, nanos }))
}

/// Go's `strconv.ParseInt(s, 10, 64)`: an optional sign, then ASCII digits only.
fn go_parse_int(s: &str) -> Result<i64, std::num::ParseIntError> {
    // Rust's parser has the same grammar for base 10 (sign, digits, no spaces/underscores).
    s.parse::<i64>()
}

/// Go's `%q` of a byte (`'a'`, `'\x00'`).
fn go_quote_byte(c: u8) -> String {
    if c.is_ascii_graphic() || c == b' ' {
        match c {
            b'\'' => r"'\''".to_string(),
            b'\\' => r"'\\'".to_string(),
            _ => format!("'{}'", c as char),
        }
    } else {
        format!("'\\x{c:02x}'")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(v: &str) -> UnixTime {
        parse_unix_timestamp(v).unwrap().unwrap()
    }

    fn err(v: &str) -> String {
        parse_unix_timestamp(v).unwrap_err().to_string()
    }

    #[test]
    fn accepts_what_the_daemon_accepts() {
        assert_eq!(parse_unix_timestamp(""), Ok(None));
        assert_eq!(
            ok("1795406691"),
            UnixTime {
                secs: 1795406691,
                nanos: 0
            }
        );
        assert_eq!(ok("1795406691.5").nanos, 500_000_000);
        assert_eq!(ok("1.000000001").nanos, 1);
        assert_eq!(ok("1.12345678912345678901").nanos, 123_456_789);
        assert_eq!(ok("-5").secs, -5);
        assert_eq!(ok("+5").secs, 5);
        assert_eq!(ok("5.").nanos, 0);
        assert_eq!(ok("9223372036854775807").secs, i64::MAX);
        assert_eq!(ok("-9223372036854775808").secs, i64::MIN);
    }

    #[test]
    fn refuses_with_the_daemons_words() {
        assert_eq!(
            err("1e300"),
            r#"invalid timestamp "1e300": invalid seconds "1e300": invalid syntax"#
        );
        assert_eq!(
            err("10000000000000000000"),
            r#"invalid timestamp "10000000000000000000": invalid seconds "10000000000000000000": value out of range"#
        );
        assert_eq!(
            err("NaN"),
            r#"invalid timestamp "NaN": invalid seconds "NaN": invalid syntax"#
        );
        assert_eq!(
            err("1.5e3"),
            r#"invalid timestamp "1.5e3": invalid nanoseconds: invalid character 'e' at position 1"#
        );
        assert_eq!(
            err("1.-5"),
            r#"invalid timestamp "1.-5": invalid nanoseconds: invalid character '-' at position 0"#
        );
        assert_eq!(
            err(".5"),
            r#"invalid timestamp ".5": invalid seconds "": invalid syntax"#
        );
        assert_eq!(
            err("1.000000000000000000001"),
            r#"invalid timestamp "1.000000000000000000001": invalid nanoseconds: length 21 exceeds maximum 20"#
        );
        for v in [
            "inf",
            "-inf",
            "1e19",
            "2026-12-07T00:00:00Z",
            " 5",
            "5 ",
            "0x10",
            "1_000",
        ] {
            assert!(parse_unix_timestamp(v).is_err(), "{v:?}");
        }
    }
}
