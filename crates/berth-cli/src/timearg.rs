//! Time arguments the way the docker CLI reads them (`--since`, `--until` of `logs` and
//! `events`): Go durations ago (`10m`, `1h30m`), RFC 3339 dates and times with or without
//! a zone (local time without one), or Unix seconds passed through; and local-time display.

use std::time::{SystemTime, UNIX_EPOCH};
use time::{Date, Month, PrimitiveDateTime, Time, UtcOffset};

/// The local zone's offset from UTC at `unix` seconds.
pub fn local_offset(unix: i64) -> UtcOffset {
    let t: libc::time_t = unix;
    // SAFETY: `tm` is a plain C struct for which all-zero bytes are a valid value.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call; localtime_r is the thread-safe variant and
    // writes only into `tm`.
    let ok = !unsafe { libc::localtime_r(&t, &mut tm) }.is_null();
    let secs = if ok { tm.tm_gmtoff as i32 } else { 0 };
    UtcOffset::from_whole_seconds(secs).unwrap_or(UtcOffset::UTC)
}

/// Go's `time.ParseDuration` in nanoseconds (`300ms`, `-1.5h`, `2h45m`).
fn go_duration(s: &str) -> Option<i128> {
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_len);
        if num.is_empty() || num == "." {
            return None;
        }
        let n: f64 = num.parse().ok()?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += n * scale;
        rest = tail;
    }
    let v = total as i128;
    Some(if neg { -v } else { v })
}

/// `secs[.fraction]`, as the daemon takes it.
fn is_unix_timestamp(s: &str) -> bool {
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    secs.parse::<i64>().is_ok() && frac.bytes().all(|b| b.is_ascii_digit())
}

/// A zone suffix: `Z`/`z` or `±hh:mm`.
fn split_zone(s: &str) -> Option<(&str, Option<UtcOffset>)> {
    if let Some(rest) = s.strip_suffix(['Z', 'z']) {
        return Some((rest, Some(UtcOffset::UTC)));
    }
    if s.len() > 6 {
        let (rest, z) = s.split_at(s.len() - 6);
        let b = z.as_bytes();
        if (b[0] == b'+' || b[0] == b'-') && b[3] == b':' {
            let h: i8 = z[1..3].parse().ok()?;
            let m: i8 = z[4..6].parse().ok()?;
            let sign = if b[0] == b'-' { -1 } else { 1 };
            return Some((rest, Some(UtcOffset::from_hms(sign * h, sign * m, 0).ok()?)));
        }
    }
    Some((s, None))
}

/// `2006-01-02`, optionally `T15`, `T15:04`, `T15:04:05` and a fraction, optionally a zone.
fn parse_date_time(s: &str) -> Option<(PrimitiveDateTime, Option<UtcOffset>)> {
    let (body, zone) = split_zone(s)?;
    let (date, clock) = match body.split_once('T') {
        Some((d, c)) => (d, Some(c)),
        None => (body, None),
    };
    let mut d = date.split('-');
    let (y, mo, da) = (d.next()?, d.next()?, d.next()?);
    if d.next().is_some() || y.len() != 4 || mo.len() != 2 || da.len() != 2 {
        return None;
    }
    let date = Date::from_calendar_date(
        y.parse().ok()?,
        Month::try_from(mo.parse::<u8>().ok()?).ok()?,
        da.parse().ok()?,
    )
    .ok()?;
    let clock = match clock {
        None => Time::MIDNIGHT,
        Some(c) => {
            let (hms, frac) = c.split_once('.').unwrap_or((c, ""));
            let mut parts = hms.split(':');
            let mut num = || -> Option<u8> {
                match parts.next() {
                    None => Some(0),
                    Some(p) if p.len() == 2 => p.parse().ok(),
                    Some(_) => None,
                }
            };
            let (h, m, sec) = (num()?, num()?, num()?);
            if parts.next().is_some() || !frac.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let mut digits: String = frac.chars().take(9).collect();
            while digits.len() < 9 {
                digits.push('0');
            }
            Time::from_hms_nano(h, m, sec, digits.parse().ok()?).ok()?
        }
    };
    Some((PrimitiveDateTime::new(date, clock), zone))
}

/// Docker's `GetTimestamp`: the value as `seconds.nanoseconds` for the API.
pub fn timestamp(value: &str, now: SystemTime) -> Result<String, String> {
    let now_ns = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0);
    if value != "0" {
        if let Some(d) = go_duration(value) {
            return Ok((now_ns - d).div_euclid(1_000_000_000).to_string());
        }
    }
    match parse_date_time(value) {
        Some((dt, zone)) => {
            let offset = zone.unwrap_or_else(|| local_offset(dt.assume_utc().unix_timestamp()));
            let t = dt.assume_offset(offset);
            Ok(format!("{}.{:09}", t.unix_timestamp(), t.nanosecond()))
        }
        None if value.contains('-') && !is_unix_timestamp(value) => {
            Err(format!("invalid time value: {value:?}"))
        }
        None if is_unix_timestamp(value) => Ok(value.to_string()),
        None => Err(format!(
            "failed to parse value as time or duration: {value:?}"
        )),
    }
}

/// `2006-01-02T15:04:05.000000000Z07:00` in local time (the docker CLI's event stamps).
pub fn local_nanos(unix_nanos: i64) -> String {
    let secs = unix_nanos.div_euclid(1_000_000_000);
    let nanos = unix_nanos.rem_euclid(1_000_000_000);
    let offset = local_offset(secs);
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp(secs) else {
        return String::new();
    };
    let t = t.to_offset(offset);
    let zone = if offset.is_utc() {
        "Z".to_string()
    } else {
        let (h, m, _) = offset.as_hms();
        let sign = if offset.is_negative() { '-' } else { '+' };
        format!("{sign}{:02}:{:02}", h.abs(), m.abs())
    };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{nanos:09}{zone}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn docker_timestamps() {
        let now = UNIX_EPOCH + Duration::new(1_700_000_000, 500_000_000);
        assert_eq!(timestamp("10m", now).unwrap(), "1699999400");
        assert_eq!(timestamp("1h30m", now).unwrap(), "1699994600");
        assert_eq!(timestamp("-1s", now).unwrap(), "1700000001");
        assert_eq!(timestamp("1700000000", now).unwrap(), "1700000000");
        assert_eq!(timestamp("1700000000.25", now).unwrap(), "1700000000.25");
        assert_eq!(timestamp("0", now).unwrap(), "0");
        assert_eq!(
            timestamp("2023-11-14T22:13:20Z", now).unwrap(),
            "1700000000.000000000"
        );
        assert_eq!(
            timestamp("2023-11-14T23:13:20.5+01:00", now).unwrap(),
            "1700000000.500000000"
        );
        assert_eq!(
            timestamp("2023-11-14Z", now).unwrap(),
            "1699920000.000000000"
        );
        assert!(timestamp("2023-13-01", now).is_err());
        assert!(timestamp("soon", now).is_err());
        assert!(timestamp("10x", now).is_err());
        let z = local_offset(1_700_000_000).whole_seconds() as i64;
        assert_eq!(
            timestamp("2023-11-14T22:13", now).unwrap(),
            format!("{}.000000000", 1_700_000_000 - 20 - z)
        );
    }

    #[test]
    fn local_stamps() {
        let s = local_nanos(1_700_000_000_000_000_123);
        let offset = local_offset(1_700_000_000);
        let zone = if offset.is_utc() {
            "Z".to_string()
        } else {
            let (h, m, _) = offset.as_hms();
            format!(
                "{}{:02}:{:02}",
                if offset.is_negative() { '-' } else { '+' },
                h.abs(),
                m.abs()
            )
        };
        assert!(s.ends_with(&format!(".000000123{zone}")), "{s}");
        if offset.is_utc() {
            assert_eq!(s, "2023-11-14T22:13:20.000000123Z");
        }
    }
}
