//! Timestamps as Docker writes them: RFC 3339 with nanoseconds (trailing zeros trimmed) in UTC.

use std::time::{Duration, SystemTime, UNIX_EPOCH};
use time::OffsetDateTime;

/// Docker's zero time, used for `StartedAt`/`FinishedAt` of containers that never ran.
pub const ZERO: &str = "0001-01-01T00:00:00Z";

/// Format `t` like Go's `time.RFC3339Nano` in UTC.
pub fn rfc3339_nano(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let Ok(dt) = OffsetDateTime::from_unix_timestamp(d.as_secs() as i64) else {
        return ZERO.to_string();
    };
    let mut s = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        dt.year(),
        u8::from(dt.month()),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second()
    );
    let nanos = d.subsec_nanos();
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

pub fn now() -> String {
    rfc3339_nano(SystemTime::now())
}

/// Parse an RFC 3339 timestamp (any offset) into a SystemTime.
pub fn parse(s: &str) -> Option<SystemTime> {
    let dt = OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    let nanos = dt.unix_timestamp_nanos();
    if nanos < 0 {
        return None;
    }
    Some(UNIX_EPOCH + Duration::from_nanos(u64::try_from(nanos).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_go() {
        let t = UNIX_EPOCH + Duration::new(1_764_100_718, 120_000_000);
        assert_eq!(rfc3339_nano(t), "2025-11-25T19:58:38.12Z");
        assert_eq!(
            rfc3339_nano(UNIX_EPOCH + Duration::new(0, 0)),
            "1970-01-01T00:00:00Z"
        );
        assert_eq!(parse("2025-11-25T19:58:38.12Z"), Some(t));
        assert_eq!(parse("garbage"), None);
    }
}

/// Go's `units.HumanDuration`: "Less than a second", "3 seconds", "About a minute", "2 hours"...
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let mins = secs / 60;
    let hours = (d.as_secs_f64() / 3600.0).round() as u64;
    if secs < 1 {
        "Less than a second".into()
    } else if secs == 1 {
        "1 second".into()
    } else if secs < 60 {
        format!("{secs} seconds")
    } else if mins == 1 {
        "About a minute".into()
    } else if mins < 60 {
        format!("{mins} minutes")
    } else if hours == 1 {
        "About an hour".into()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if hours < 24 * 7 * 2 {
        format!("{} days", hours / 24)
    } else if hours < 24 * 30 * 2 {
        format!("{} weeks", hours / 24 / 7)
    } else if hours < 24 * 365 * 2 {
        format!("{} months", hours / 24 / 30)
    } else {
        format!("{} years", hours / 24 / 365)
    }
}

#[cfg(test)]
mod human_tests {
    use super::*;

    #[test]
    fn human() {
        assert_eq!(
            human_duration(Duration::from_millis(300)),
            "Less than a second"
        );
        assert_eq!(human_duration(Duration::from_secs(5)), "5 seconds");
        assert_eq!(human_duration(Duration::from_secs(70)), "About a minute");
        assert_eq!(human_duration(Duration::from_secs(600)), "10 minutes");
        assert_eq!(human_duration(Duration::from_secs(3600)), "About an hour");
        assert_eq!(human_duration(Duration::from_secs(3 * 86400)), "3 days");
    }
}
