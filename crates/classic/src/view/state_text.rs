//! `docker ps`'s Status column ("Up 5 minutes", "Exited (0) 2 hours ago") from an
//! inspect's `State`, as moby's `State.String()` words it with go-units'
//! `HumanDuration`. The manager answers `docker ps` from its view, so the text is made at
//! answer time (classic's `FullStateString`), not copied from an old listing.

use std::time::Duration;

use bollard_stubs::models::{ContainerState, HealthStatusEnum};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Status for `state` at `now`.
pub fn state_text(state: &ContainerState, now: OffsetDateTime) -> String {
    let since = |t: Option<&String>| -> Duration {
        t.and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
            .map(|t| now - t)
            .and_then(|d| Duration::try_from(d).ok())
            .unwrap_or_default()
    };
    let exit = state.exit_code.unwrap_or(0);
    if state.running == Some(true) {
        let up = human_duration(since(state.started_at.as_ref()));
        if state.paused == Some(true) {
            return format!("Up {up} (Paused)");
        }
        if state.restarting == Some(true) {
            let ago = human_duration(since(state.finished_at.as_ref()));
            return format!("Restarting ({exit}) {ago} ago");
        }
        if let Some(h) = state.health.as_ref().and_then(|h| h.status) {
            let health = match h {
                HealthStatusEnum::STARTING => "health: starting".to_owned(),
                other => other.to_string(),
            };
            if !matches!(h, HealthStatusEnum::EMPTY | HealthStatusEnum::NONE) {
                return format!("Up {up} ({health})");
            }
        }
        return format!("Up {up}");
    }
    if state.dead == Some(true) {
        return "Dead".to_owned();
    }
    if is_zero(state.started_at.as_deref()) {
        return "Created".to_owned();
    }
    if is_zero(state.finished_at.as_deref()) {
        return String::new();
    }
    let ago = human_duration(since(state.finished_at.as_ref()));
    format!("Exited ({exit}) {ago} ago")
}

/// Go's zero time as the engine writes it, or no time at all.
fn is_zero(t: Option<&str>) -> bool {
    t.is_none_or(|t| t.is_empty() || t.starts_with("0001-01-01"))
}

/// go-units' `HumanDuration`.
pub fn human_duration(d: Duration) -> String {
    let seconds = d.as_secs();
    let minutes = seconds / 60;
    let hours = (d.as_secs_f64() / 3600.0).round() as u64;
    match () {
        _ if seconds < 1 => "Less than a second".to_owned(),
        _ if seconds == 1 => "1 second".to_owned(),
        _ if seconds < 60 => format!("{seconds} seconds"),
        _ if minutes == 1 => "About a minute".to_owned(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".to_owned(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", seconds / 3600 / 24 / 365),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard_stubs::models::Health;

    fn at(s: &str) -> OffsetDateTime {
        OffsetDateTime::parse(s, &Rfc3339).unwrap()
    }

    fn state(running: bool, started: &str, finished: &str) -> ContainerState {
        ContainerState {
            running: Some(running),
            started_at: Some(started.into()),
            finished_at: Some(finished.into()),
            exit_code: Some(0),
            ..Default::default()
        }
    }

    const ZERO: &str = "0001-01-01T00:00:00Z";

    #[test]
    fn durations_as_go_units_words_them() {
        let s = |n: u64| human_duration(Duration::from_secs(n));
        assert_eq!(s(0), "Less than a second");
        assert_eq!(s(1), "1 second");
        assert_eq!(s(59), "59 seconds");
        assert_eq!(s(60), "About a minute");
        assert_eq!(s(5 * 60), "5 minutes");
        assert_eq!(s(3600), "About an hour");
        assert_eq!(s(5 * 3600), "5 hours");
        assert_eq!(s(3 * 24 * 3600), "3 days");
        assert_eq!(s(20 * 24 * 3600), "2 weeks");
        assert_eq!(s(100 * 24 * 3600), "3 months");
        assert_eq!(s(800 * 24 * 3600), "2 years");
    }

    #[test]
    fn running_exited_created() {
        let now = at("2026-12-07T12:05:00Z");
        assert_eq!(
            state_text(&state(true, "2026-12-07T12:00:00.123Z", ZERO), now),
            "Up 4 minutes",
            "4 min 59.877 s: Go truncates minutes"
        );
        assert_eq!(
            state_text(&state(true, "2026-12-07T12:00:00Z", ZERO), now),
            "Up 5 minutes"
        );
        let mut exited = state(false, "2026-12-07T10:00:00Z", "2026-12-07T10:05:00Z");
        exited.exit_code = Some(137);
        assert_eq!(state_text(&exited, now), "Exited (137) 2 hours ago");
        assert_eq!(state_text(&state(false, ZERO, ZERO), now), "Created");
    }

    #[test]
    fn paused_restarting_and_health() {
        let now = at("2026-12-07T12:00:30Z");
        let mut s = state(true, "2026-12-07T12:00:00Z", ZERO);
        s.paused = Some(true);
        assert_eq!(state_text(&s, now), "Up 30 seconds (Paused)");
        let mut s = state(true, "2026-12-07T12:00:00Z", "2026-12-07T12:00:20Z");
        s.restarting = Some(true);
        s.exit_code = Some(1);
        assert_eq!(state_text(&s, now), "Restarting (1) 10 seconds ago");
        let mut s = state(true, "2026-12-07T12:00:00Z", ZERO);
        s.health = Some(Health {
            status: Some(HealthStatusEnum::STARTING),
            ..Default::default()
        });
        assert_eq!(state_text(&s, now), "Up 30 seconds (health: starting)");
        s.health = Some(Health {
            status: Some(HealthStatusEnum::HEALTHY),
            ..Default::default()
        });
        assert_eq!(state_text(&s, now), "Up 30 seconds (healthy)");
    }
}
