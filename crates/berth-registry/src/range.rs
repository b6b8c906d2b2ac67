//! Byte ranges: the `Range` header of blob GETs (RFC 9110, one range) and the `Content-Range`
//! of upload chunks (`<start>-<end>`, inclusive).

/// What a `Range` header asks of a body of known length.
#[derive(Debug, PartialEq, Eq)]
pub enum ByteRange {
    /// No usable range: send everything with 200.
    Full,
    /// Inclusive first and last byte, both inside the body.
    Partial(u64, u64),
    /// 416 with `Content-Range: bytes */<len>`.
    Unsatisfiable,
}

/// Parses `bytes=a-b`, `bytes=a-` and `bytes=-n` against a body of `len` bytes. Other units,
/// several ranges and garbage are ignored (a full 200 answer), as RFC 9110 allows.
pub fn parse_range(header: &str, len: u64) -> ByteRange {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return ByteRange::Full;
    };
    if spec.contains(',') {
        return ByteRange::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return ByteRange::Full;
    };
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            None
        } else {
            s.parse().ok()
        }
    };
    match (a.is_empty(), num(a), num(b)) {
        // Suffix: the last n bytes.
        (true, _, Some(n)) => {
            if n == 0 || len == 0 {
                ByteRange::Unsatisfiable
            } else {
                ByteRange::Partial(len.saturating_sub(n), len - 1)
            }
        }
        (false, Some(start), None) if b.is_empty() => {
            if start >= len {
                ByteRange::Unsatisfiable
            } else {
                ByteRange::Partial(start, len - 1)
            }
        }
        (false, Some(start), Some(end)) => {
            if end < start || start >= len {
                ByteRange::Unsatisfiable
            } else {
                ByteRange::Partial(start, end.min(len - 1))
            }
        }
        _ => ByteRange::Full,
    }
}

/// Parses an upload chunk's `Content-Range`: `<start>-<end>` (a `bytes ` or `bytes=` prefix is
/// tolerated). `None` if malformed or if `end < start`.
pub fn parse_content_range(header: &str) -> Option<(u64, u64)> {
    let s = header.trim();
    let s = s
        .strip_prefix("bytes ")
        .or_else(|| s.strip_prefix("bytes="))
        .unwrap_or(s);
    // A trailing `/<total>` (RFC form) is ignored.
    let s = s.split_once('/').map_or(s, |(r, _)| r);
    let (a, b) = s.split_once('-')?;
    let digits = |x: &str| !x.is_empty() && x.bytes().all(|c| c.is_ascii_digit());
    if !digits(a) || !digits(b) {
        return None;
    }
    let (start, end): (u64, u64) = (a.parse().ok()?, b.parse().ok()?);
    (end >= start).then_some((start, end))
}

/// The `Range` header of upload responses: `0-<last byte>`, and `0-0` for an empty upload as
/// registry:2 answers.
pub fn upload_range(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_forms() {
        assert_eq!(parse_range("bytes=0-9", 100), ByteRange::Partial(0, 9));
        assert_eq!(parse_range("bytes=10-", 100), ByteRange::Partial(10, 99));
        assert_eq!(parse_range("bytes=-10", 100), ByteRange::Partial(90, 99));
        assert_eq!(parse_range("bytes=-500", 100), ByteRange::Partial(0, 99));
        // The end is clamped to the body.
        assert_eq!(
            parse_range("bytes=20-5000", 100),
            ByteRange::Partial(20, 99)
        );
        assert_eq!(parse_range("bytes=99-99", 100), ByteRange::Partial(99, 99));
    }

    #[test]
    fn unsatisfiable_ranges() {
        assert_eq!(parse_range("bytes=100-200", 100), ByteRange::Unsatisfiable);
        assert_eq!(parse_range("bytes=100-", 100), ByteRange::Unsatisfiable);
        assert_eq!(parse_range("bytes=50-0", 100), ByteRange::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), ByteRange::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-0", 0), ByteRange::Unsatisfiable);
    }

    #[test]
    fn ignored_ranges() {
        for h in [
            "items=0-1",
            "bytes=0-1,5-6",
            "bytes=a-b",
            "bytes=",
            "bytes=-",
            "bytes=1",
            "bytes=+1-2",
        ] {
            assert_eq!(parse_range(h, 100), ByteRange::Full, "{h}");
        }
    }

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("0-99"), Some((0, 99)));
        assert_eq!(parse_content_range("bytes 100-199/*"), Some((100, 199)));
        assert_eq!(parse_content_range("bytes=5-5"), Some((5, 5)));
        assert_eq!(parse_content_range("9-3"), None);
        assert_eq!(parse_content_range("-3"), None);
        assert_eq!(parse_content_range("3-"), None);
        assert_eq!(parse_content_range("a-b"), None);
        assert_eq!(parse_content_range("99999999999999999999999-1"), None);
    }

    #[test]
    fn upload_ranges() {
        assert_eq!(upload_range(0), "0-0");
        assert_eq!(upload_range(1), "0-0");
        assert_eq!(upload_range(1000), "0-999");
    }
}
