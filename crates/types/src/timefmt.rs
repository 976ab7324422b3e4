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

/// The latest time [`since_bound`] yields: 9999-12-31T23:59:59Z, later than any log line.
pub const MAX_BOUND_SECS: f64 = 253_402_300_799.0;

/// A `since` bound from fractional Unix seconds: `None` (no bound) for zero, negative or NaN,
/// and saturating at [`MAX_BOUND_SECS`]. The API accepts any `i64` of seconds, as the daemon
/// does; `UNIX_EPOCH + Duration::from_secs_f64(s)` would panic past the `Duration` or
/// `SystemTime` range, so every conversion goes through here.
pub fn since_bound(secs: f64) -> Option<std::time::SystemTime> {
    if secs.is_nan() || secs <= 0.0 {
        return None;
    }
    let d = std::time::Duration::from_secs_f64(secs.min(MAX_BOUND_SECS));
    std::time::SystemTime::UNIX_EPOCH.checked_add(d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn since_bounds_saturate() {
        use std::time::{Duration, SystemTime};
        assert_eq!(super::since_bound(0.0), None);
        assert_eq!(super::since_bound(-1e300), None);
        assert_eq!(super::since_bound(f64::NAN), None);
        assert_eq!(
            super::since_bound(1.5),
            Some(SystemTime::UNIX_EPOCH + Duration::from_millis(1500))
        );
        let max = super::since_bound(super::MAX_BOUND_SECS).unwrap();
        for huge in [9.3e18, 1e19, 1e300, f64::INFINITY] {
            assert_eq!(super::since_bound(huge), Some(max), "{huge}");
        }
    }

    #[test]
    fn round_trips() {
        let s = super::now();
        assert!(s.ends_with('Z'));
        assert!(super::parse(&s).is_some());
    }
}
