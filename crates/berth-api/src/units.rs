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
    let units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    let int_digits = if v < 1.0 {
        1
    } else {
        (v.log10().floor() as i32) + 1
    };
    let decimals = (4 - int_digits).max(0) as usize;
    let s = format!("{v:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    format!("{s}{}", units[i])
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
    }
}
