//! Docker's size units: `units.RAMInBytes` for flags like `--memory 64m` and
//! `units.HumanSize` for sizes in tables.

/// "10m", "1g", "512k", "1.5k", "100" (bytes): binary multiples, like Docker's RAMInBytes.
pub fn ram_in_bytes(s: &str) -> Result<i64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    match num.trim().parse::<f64>() {
        Ok(n) if n >= 0.0 && (n * mult as f64) < i64::MAX as f64 => Ok((n * mult as f64) as i64),
        _ => Err(format!("invalid size: '{s}'")),
    }
}

/// Docker's HumanSize: decimal units with four significant digits (Go's `%.4g`).
pub fn human_size(n: i64) -> String {
    human_size_with_precision(n as f64, 4)
}

/// Docker's `units.HumanSizeWithPrecision`: decimal units ("kB", "MB") with `precision`
/// significant digits, as `docker stats` shows network and block I/O.
pub fn human_size_with_precision(size: f64, precision: usize) -> String {
    custom_size(
        size,
        1000.0,
        &["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"],
        precision,
    )
}

/// Docker's `units.BytesSize`: binary units ("KiB", "MiB") with four significant digits, as
/// `docker stats` shows memory.
pub fn bytes_size(size: f64) -> String {
    custom_size(
        size,
        1024.0,
        &["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"],
        4,
    )
}

fn custom_size(mut size: f64, base: f64, units: &[&str], precision: usize) -> String {
    let mut i = 0;
    while size >= base && i < units.len() - 1 {
        size /= base;
        i += 1;
    }
    format!("{}{}", format_g(size, precision), units[i])
}

/// Go's `%.<precision>g`: `precision` significant digits, trailing zeros dropped, and the
/// exponent form when the exponent is below -4 or at least `precision`.
pub fn format_g(v: f64, precision: usize) -> String {
    let p = precision.max(1);
    if v == 0.0 || !v.is_finite() {
        return if v == 0.0 { "0".into() } else { v.to_string() };
    }
    // Rounded to `p` significant digits: "d.ddde<exp>".
    let e = format!("{:.*e}", p - 1, v);
    let Some((mantissa, exp)) = e.split_once('e') else {
        return e;
    };
    let exp: i32 = exp.parse().unwrap_or(0);
    let neg = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let digits = digits.trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    let sign = if neg { "-" } else { "" };
    if exp < -4 || exp >= p as i32 {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{frac}e{esign}{:02}", exp.abs());
    }
    // Plain notation: the decimal point goes after exp+1 digits.
    let point = exp + 1;
    let body = if point <= 0 {
        format!("0.{}{digits}", "0".repeat((-point) as usize))
    } else if point as usize >= digits.len() {
        format!("{digits}{}", "0".repeat(point as usize - digits.len()))
    } else {
        let (int, frac) = digits.split_at(point as usize);
        format!("{int}.{frac}")
    };
    format!("{sign}{body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(ram_in_bytes("6m").unwrap(), 6 << 20);
        assert_eq!(ram_in_bytes("1.5k").unwrap(), 1536);
        assert_eq!(ram_in_bytes("100").unwrap(), 100);
        assert_eq!(ram_in_bytes("10MB").unwrap(), 10 << 20);
        assert!(ram_in_bytes("lots").is_err());
        assert!(ram_in_bytes("-1m").is_err());
        assert_eq!(human_size(1_234_567), "1.235MB");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(12_345), "12.35kB");
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size_with_precision(999.7, 3), "1e+03B");
        assert_eq!(human_size_with_precision(1_536.0, 3), "1.54kB");
        assert_eq!(bytes_size(1_572_864.0), "1.5MiB");
        assert_eq!(bytes_size(7.6 * 1024.0 * 1024.0 * 1024.0), "7.6GiB");
        assert_eq!(bytes_size(1023.0), "1023B");
    }

    #[test]
    fn go_g() {
        assert_eq!(format_g(1.5, 4), "1.5");
        assert_eq!(format_g(123.456, 4), "123.5");
        assert_eq!(format_g(0.000123, 3), "0.000123");
        assert_eq!(format_g(0.0000123, 3), "1.23e-05");
        assert_eq!(format_g(100.0, 3), "100");
        assert_eq!(format_g(1000.0, 3), "1e+03");
        assert_eq!(format_g(-2.5, 3), "-2.5");
        assert_eq!(format_g(9.9999, 3), "10");
    }
}
