//! Service and task logs on the wire.
//!
//! Docker multiplexes stdout and stderr over one HTTP body with 8-byte "stdcopy" headers
//! (`[stream, 0, 0, 0, len_be32]`: 1 stdout, 2 stderr, 3 errors of the daemon itself), unless
//! the service runs with a TTY or the client speaks API < 1.42, in which case the body is the
//! raw text. Per line, `details=1` adds the task's context attributes and `timestamps=1` a
//! fixed-width RFC 3339 nanosecond timestamp, in that order, as the daemon's
//! `httputils.WriteLogStream` does.

use axum::body::Body;
use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::backend::{LogLine, LogOptions, LogStream, LogStreamKind};
use crate::engine_path::query_escape;
use crate::error::ApiError;
use crate::query::QueryParams;
use crate::timestamp::{UnixTime, parse_unix_timestamp};

pub const STREAM_STDOUT: u8 = 1;
pub const STREAM_STDERR: u8 = 2;
pub const STREAM_SYSTEM: u8 = 3;

/// `Content-Type` of a multiplexed body.
pub const MEDIA_MULTIPLEXED: &str = "application/vnd.docker.multiplexed-stream";
/// `Content-Type` of a raw body.
pub const MEDIA_RAW: &str = "application/vnd.docker.raw-stream";

/// One stdcopy frame. Payloads over 4 GiB do not occur (one log line); they would be cut.
pub fn stdcopy_frame(stream: u8, payload: &[u8]) -> Bytes {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut buf = BytesMut::with_capacity(8 + len as usize);
    buf.put_u8(stream);
    buf.put_bytes(0, 3);
    buf.put_u32(len);
    buf.put_slice(&payload[..len as usize]);
    buf.freeze()
}

/// Parses the query of a logs request, with the daemon's checks and texts.
pub fn parse_log_options(q: &QueryParams) -> Result<LogOptions, ApiError> {
    let stdout = q.bool("stdout");
    let stderr = q.bool("stderr");
    if !(stdout || stderr) {
        return Err(ApiError::bad_request(
            "Bad parameters: you must choose at least one stream",
        ));
    }
    let tail = match q.get("tail").unwrap_or("") {
        "" | "all" => None,
        t => match t.parse::<i64>() {
            Ok(n) if n < 0 => {
                return Err(ApiError::bad_request("negative tail values not supported"));
            }
            Ok(n) => Some(n as usize),
            Err(_) => {
                return Err(ApiError::bad_request(
                    "tail value must be a positive integer or \"all\"",
                ));
            }
        },
    };
    let since = time_param(q, "since")?;
    // Docker's service logs do not read `until`; its container logs do (`0` is no bound).
    // The backends can stop at it, so it is honoured rather than dropped.
    let until = match q.get("until") {
        Some("0") => None,
        _ => time_param(q, "until")?,
    };
    Ok(LogOptions {
        follow: q.bool("follow"),
        stdout,
        stderr,
        since,
        until,
        tail,
        timestamps: q.bool("timestamps"),
        details: q.bool("details"),
    })
}

/// A `seconds[.nanoseconds]` parameter (what the CLI sends), as seconds since the epoch;
/// anything else is the daemon's 400 (`invalid value for "since": invalid timestamp ...`).
fn time_param(q: &QueryParams, key: &str) -> Result<Option<f64>, ApiError> {
    let raw = q.get(key).unwrap_or("");
    parse_unix_timestamp(raw)
        .map(|t| t.map(UnixTime::as_f64))
        .map_err(|e| ApiError::bad_request(format!("invalid value for \"{key}\": {e}")))
}

/// An RFC 3339 timestamp with exactly nine fractional digits (Go's `RFC3339NanoFixed`), so
/// columns line up in `docker service logs -t`.
pub fn rfc3339_nano_fixed(ts: &str) -> String {
    let Some(t_pos) = ts.find('T') else {
        return ts.to_string();
    };
    let time_part = &ts[t_pos..];
    // End of the seconds: the first `.`, `Z`, `+` or `-` after the `T`.
    let zone_start = time_part
        .find(['Z', 'z', '+', '-'])
        .map(|i| t_pos + i)
        .unwrap_or(ts.len());
    let (main, zone) = ts.split_at(zone_start);
    let (secs, frac) = match main.find('.') {
        Some(dot) => (&main[..dot], &main[dot + 1..]),
        None => (main, ""),
    };
    let mut digits: String = frac.chars().filter(char::is_ascii_digit).take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    format!("{secs}.{digits}{zone}")
}

/// The `details` prefix: the context attributes sorted by key, `k=v` joined by commas.
pub fn details_prefix(line: &LogLine) -> String {
    format!(
        "com.docker.swarm.node.id={},com.docker.swarm.service.id={},com.docker.swarm.task.id={}",
        query_escape(&line.node_id),
        query_escape(&line.service_id),
        query_escape(&line.task_id)
    )
}

/// The bytes a line becomes before framing.
pub fn render_line(line: &LogLine, opts: &LogOptions) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.data.len() + 128);
    if opts.timestamps {
        out.extend_from_slice(rfc3339_nano_fixed(&line.timestamp).as_bytes());
        out.push(b' ');
    }
    if opts.details {
        out.extend_from_slice(details_prefix(line).as_bytes());
        out.push(b' ');
    }
    out.extend_from_slice(&line.data);
    out
}

/// Turns a backend log stream into a response body. The body ends when the stream does or
/// when `cancel` fires (server shutdown), so `logs -f` never holds shutdown up.
pub fn log_body(stream: LogStream, opts: LogOptions, mux: bool, cancel: CancellationToken) -> Body {
    let frames = stream
        .take_until(cancel.cancelled_owned())
        .filter_map(move |item| {
            let chunk = match item {
                Ok(line) => {
                    let wanted = match line.stream {
                        LogStreamKind::Stdout => opts.stdout,
                        LogStreamKind::Stderr => opts.stderr,
                    };
                    if !wanted {
                        None
                    } else {
                        let payload = render_line(&line, &opts);
                        Some(if mux {
                            let kind = match line.stream {
                                LogStreamKind::Stdout => STREAM_STDOUT,
                                LogStreamKind::Stderr => STREAM_STDERR,
                            };
                            stdcopy_frame(kind, &payload)
                        } else {
                            Bytes::from(payload)
                        })
                    }
                }
                Err(e) => {
                    let msg = format!("Error grabbing logs: {e}\n");
                    Some(if mux {
                        stdcopy_frame(STREAM_SYSTEM, msg.as_bytes())
                    } else {
                        Bytes::from(msg)
                    })
                }
            };
            futures::future::ready(chunk.map(Ok::<_, std::convert::Infallible>))
        });
    Body::from_stream(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(stream: LogStreamKind, data: &str) -> LogLine {
        LogLine {
            stream,
            timestamp: "2025-01-02T03:04:05.5Z".into(),
            node_id: "n1".into(),
            service_id: "s1".into(),
            task_id: "t1".into(),
            data: Bytes::from(data.to_string()),
        }
    }

    #[test]
    fn frames_have_docker_headers() {
        let f = stdcopy_frame(STREAM_STDERR, b"hello\n");
        assert_eq!(&f[..8], &[2, 0, 0, 0, 0, 0, 0, 6]);
        assert_eq!(&f[8..], b"hello\n");
        let big = vec![b'x'; 70_000];
        let f = stdcopy_frame(STREAM_STDOUT, &big);
        assert_eq!(&f[..8], &[1, 0, 0, 0, 0, 1, 0x11, 0x70]);
        assert_eq!(f.len(), 70_008);
    }

    #[test]
    fn timestamps_are_fixed_width() {
        assert_eq!(
            rfc3339_nano_fixed("2025-01-02T03:04:05.5Z"),
            "2025-01-02T03:04:05.500000000Z"
        );
        assert_eq!(
            rfc3339_nano_fixed("2025-01-02T03:04:05Z"),
            "2025-01-02T03:04:05.000000000Z"
        );
        assert_eq!(
            rfc3339_nano_fixed("2025-01-02T03:04:05.123456789123+02:00"),
            "2025-01-02T03:04:05.123456789+02:00"
        );
        assert_eq!(rfc3339_nano_fixed("garbage"), "garbage");
    }

    #[test]
    fn details_then_text_after_timestamp() {
        let opts = LogOptions {
            stdout: true,
            timestamps: true,
            details: true,
            ..Default::default()
        };
        let out = render_line(&line(LogStreamKind::Stdout, "hi\n"), &opts);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2025-01-02T03:04:05.500000000Z com.docker.swarm.node.id=n1,com.docker.swarm.service.id=s1,com.docker.swarm.task.id=t1 hi\n"
        );
        let plain = LogOptions {
            stdout: true,
            ..Default::default()
        };
        assert_eq!(
            render_line(&line(LogStreamKind::Stdout, "hi\n"), &plain),
            b"hi\n"
        );
    }

    #[test]
    fn option_parsing() {
        let q = QueryParams::parse("stdout=1&stderr=1&tail=10&since=1795406691.5&follow=1");
        let o = parse_log_options(&q).unwrap();
        assert_eq!(o.tail, Some(10));
        assert_eq!(o.since, Some(1795406691.5));
        assert!(o.follow && o.stdout && o.stderr && !o.details);
        assert_eq!(
            parse_log_options(&QueryParams::parse("stdout=1&tail=all"))
                .unwrap()
                .tail,
            None
        );
        let e = parse_log_options(&QueryParams::parse("tail=all")).unwrap_err();
        assert_eq!(
            e.message,
            "Bad parameters: you must choose at least one stream"
        );
        assert!(parse_log_options(&QueryParams::parse("stdout=1&tail=-1")).is_err());
        assert!(parse_log_options(&QueryParams::parse("stdout=1&tail=x")).is_err());
        assert!(parse_log_options(&QueryParams::parse("stdout=1&since=yesterday")).is_err());
    }

    /// Issue 18 item 7: out-of-range bounds are the daemon's 400, never a float that
    /// overflows a `Duration` later; `until=0` is no bound, as in the daemon.
    #[test]
    fn time_bounds_are_range_checked() {
        let opts = |q: &str| parse_log_options(&QueryParams::parse(&format!("stdout=1&{q}")));
        for (q, want) in [
            (
                "since=1e300",
                r#"invalid value for "since": invalid timestamp "1e300": invalid seconds "1e300": invalid syntax"#,
            ),
            (
                "until=99999999999999999999",
                r#"invalid value for "until": invalid timestamp "99999999999999999999": invalid seconds "99999999999999999999": value out of range"#,
            ),
            (
                "since=NaN",
                r#"invalid value for "since": invalid timestamp "NaN": invalid seconds "NaN": invalid syntax"#,
            ),
        ] {
            let e = opts(q).unwrap_err();
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST, "{q}");
            assert_eq!(e.message, want, "{q}");
        }
        assert_eq!(opts("until=0").unwrap().until, None);
        assert_eq!(opts("until=12.5").unwrap().until, Some(12.5));
        let o = opts("since=9223372036854775807&until=-9223372036854775808").unwrap();
        assert!(o.since.unwrap().is_finite() && o.until.unwrap().is_finite());
    }

    #[tokio::test]
    async fn body_frames_and_filters_streams() {
        use http_body_util::BodyExt;
        let lines: Vec<crate::backend::BackendResult<LogLine>> = vec![
            Ok(line(LogStreamKind::Stdout, "out\n")),
            Ok(line(LogStreamKind::Stderr, "err\n")),
            Err(crate::backend::BackendError::from(
                swarmd_types::error::SwarmError::unavailable("node gone"),
            )),
        ];
        let opts = LogOptions {
            stdout: true,
            stderr: false,
            ..Default::default()
        };
        let body = log_body(
            futures::stream::iter(lines).boxed(),
            opts,
            true,
            CancellationToken::new(),
        );
        let bytes = body.collect().await.unwrap().to_bytes();
        let mut expected = stdcopy_frame(1, b"out\n").to_vec();
        expected.extend_from_slice(&stdcopy_frame(3, b"Error grabbing logs: node gone\n"));
        assert_eq!(bytes.to_vec(), expected);
    }
}
