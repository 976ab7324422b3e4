//! Timestamps as Docker prints them: RFC 3339 with nanoseconds, UTC (`...Z`).

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Formats a time the way the Docker API does.
pub fn format(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}

/// The current time, formatted. Proposers call this; apply never does.
pub fn now() -> String {
    format(OffsetDateTime::now_utc())
}

/// Parses an RFC 3339 timestamp.
pub fn parse(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// Seconds since the epoch (fractional) of an RFC 3339 timestamp.
pub fn unix_seconds(s: &str) -> Option<f64> {
    parse(s).map(|t| t.unix_timestamp_nanos() as f64 / 1e9)
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trips() {
        let s = super::now();
        assert!(s.ends_with('Z'));
        assert!(super::parse(&s).is_some());
    }
}
