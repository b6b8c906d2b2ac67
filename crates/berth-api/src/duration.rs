//! Go's `time.Duration` as Docker's flags and messages use it: parsing `1m30s`, `500ms`,
//! `1.5h` (`time.ParseDuration`) and printing nanoseconds back the way `Duration.String` does.

/// Parse a Go duration string into nanoseconds, with Go's error messages.
pub fn parse(s: &str) -> Result<i64, String> {
    let invalid = || format!("time: invalid duration \"{s}\"");
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let int_part = &rest[..int_len];
        rest = &rest[int_len..];
        let mut frac_part = "";
        if let Some(after) = rest.strip_prefix('.') {
            let n = after.bytes().take_while(u8::is_ascii_digit).count();
            frac_part = &after[..n];
            rest = &after[n..];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(invalid());
        }
        let unit_len = rest
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(rest.len(), |(i, _)| i);
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(format!("time: missing unit in duration \"{s}\"")),
            other => {
                return Err(format!(
                    "time: unknown unit \"{other}\" in duration \"{s}\""
                ))
            }
        };
        let whole: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| invalid())?
        };
        let mut value = whole.checked_mul(scale).ok_or_else(invalid)?;
        // The fraction, digit by digit, truncated like Go.
        let mut place = scale;
        for d in frac_part.bytes() {
            place /= 10;
            if place == 0 {
                break;
            }
            value += u128::from(d - b'0') * place;
        }
        total = total.checked_add(value).ok_or_else(invalid)?;
        if total > i64::MAX as u128 {
            return Err(invalid());
        }
    }
    let v = total as i64;
    Ok(if neg { -v } else { v })
}

/// Format nanoseconds like Go's `Duration.String`: `0s`, `1.5µs`, `200ms`, `1m30s`, `1h0m0s`.
pub fn format(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let neg = nanos < 0;
    let u = nanos.unsigned_abs();
    let mut out = if u < 1_000_000_000 {
        let (unit, div) = if u < 1_000 {
            ("ns", 1)
        } else if u < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        format!("{}{unit}", fraction(u, div))
    } else {
        let h = u / 3_600_000_000_000;
        let m = (u / 60_000_000_000) % 60;
        let s = fraction(u % 60_000_000_000, 1_000_000_000);
        if h > 0 {
            format!("{h}h{m}m{s}s")
        } else if m > 0 {
            format!("{m}m{s}s")
        } else {
            format!("{s}s")
        }
    };
    if neg {
        out.insert(0, '-');
    }
    out
}

/// `v / div` with the remainder as a decimal fraction, trailing zeros dropped.
fn fraction(v: u64, div: u64) -> String {
    let whole = v / div;
    let rem = v % div;
    if rem == 0 {
        return whole.to_string();
    }
    let width = div.ilog10() as usize;
    let frac = format!("{rem:0width$}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse("1s"), Ok(1_000_000_000));
        assert_eq!(parse("500ms"), Ok(500_000_000));
        assert_eq!(parse("1m30s"), Ok(90_000_000_000));
        assert_eq!(parse("1.5h"), Ok(5_400_000_000_000));
        assert_eq!(parse("0"), Ok(0));
        assert_eq!(parse("-2s"), Ok(-2_000_000_000));
        assert_eq!(parse("300us"), Ok(300_000));
        assert_eq!(parse(".5s"), Ok(500_000_000));
        assert_eq!(parse("x"), Err("time: invalid duration \"x\"".into()));
        assert_eq!(
            parse("5"),
            Err("time: missing unit in duration \"5\"".into())
        );
        assert_eq!(
            parse("5q"),
            Err("time: unknown unit \"q\" in duration \"5q\"".into())
        );
        assert!(parse("").is_err());
        assert!(parse("s").is_err());
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format(0), "0s");
        assert_eq!(format(200_000_000), "200ms");
        assert_eq!(format(1_000_000_000), "1s");
        assert_eq!(format(1_500_000_000), "1.5s");
        assert_eq!(format(90_000_000_000), "1m30s");
        assert_eq!(format(60_000_000_000), "1m0s");
        assert_eq!(format(3_600_000_000_000), "1h0m0s");
        assert_eq!(format(1_500), "1.5µs");
        assert_eq!(format(42), "42ns");
        assert_eq!(format(-1_000_000_000), "-1s");
        assert_eq!(format(30_000_000_000), "30s");
    }
}
