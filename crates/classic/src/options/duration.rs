//! Go's `time.ParseDuration`, which classic used for every interval flag, so `90s`, `1m30s`,
//! `1.5h` and `500ms` mean what they meant there.

/// A malformed duration, in Go's wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("time: invalid duration {0:?}")]
    Invalid(String),
    #[error("time: missing unit in duration {0:?}")]
    MissingUnit(String),
    #[error("time: unknown unit {unit:?} in duration {input:?}")]
    UnknownUnit { unit: String, input: String },
}

/// Parses a Go duration into signed nanoseconds (Go allows `-5s`; callers range-check).
pub fn parse_go_duration(input: &str) -> Result<i128, DurationError> {
    let invalid = || DurationError::Invalid(input.to_owned());
    let (negative, mut rest) = match input.as_bytes().first() {
        Some(b'-') => (true, &input[1..]),
        Some(b'+') => (false, &input[1..]),
        _ => (false, input),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..num_len];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(invalid());
        }
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let per_unit: f64 = match unit {
            "" => return Err(DurationError::MissingUnit(input.to_owned())),
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => {
                return Err(DurationError::UnknownUnit {
                    unit: unit.to_owned(),
                    input: input.to_owned(),
                });
            }
        };
        let value: f64 = number.parse().map_err(|_| invalid())?;
        total += value * per_unit;
    }
    // Go refuses anything beyond int64 nanoseconds (about 292 years).
    if total > i64::MAX as f64 {
        return Err(invalid());
    }
    let nanos = total.round() as i128;
    Ok(if negative { -nanos } else { nanos })
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i128 = 1_000_000_000;

    #[test]
    fn go_forms() {
        assert_eq!(parse_go_duration("60s"), Ok(60 * S));
        assert_eq!(parse_go_duration("1m30s"), Ok(90 * S));
        assert_eq!(parse_go_duration("1.5h"), Ok(5400 * S));
        assert_eq!(parse_go_duration("500ms"), Ok(S / 2));
        assert_eq!(parse_go_duration("2us"), Ok(2_000));
        assert_eq!(parse_go_duration("3µs"), Ok(3_000));
        assert_eq!(parse_go_duration(".5s"), Ok(S / 2));
        assert_eq!(parse_go_duration("0"), Ok(0));
        assert_eq!(parse_go_duration("-5s"), Ok(-5 * S));
        assert_eq!(parse_go_duration("+5s"), Ok(5 * S));
    }

    #[test]
    fn go_errors() {
        let msg = |s| parse_go_duration(s).unwrap_err().to_string();
        assert_eq!(msg("abc"), "time: invalid duration \"abc\"");
        assert_eq!(msg(""), "time: invalid duration \"\"");
        assert_eq!(msg("60"), "time: missing unit in duration \"60\"");
        assert_eq!(msg("1d"), "time: unknown unit \"d\" in duration \"1d\"");
        assert_eq!(msg("1..2s"), "time: invalid duration \"1..2s\"");
        assert_eq!(msg("s"), "time: invalid duration \"s\"");
        assert_eq!(msg("-"), "time: invalid duration \"-\"");
        assert_eq!(msg("9999999h"), "time: invalid duration \"9999999h\"");
    }
}
