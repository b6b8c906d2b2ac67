//! Detach keys (`--detach-keys`, default Ctrl-P Ctrl-Q): parsing Docker's notation and
//! spotting the sequence in a stream of typed input.

/// Docker's default detach sequence: ctrl-p, ctrl-q.
pub const DEFAULT: &[u8] = &[16, 17];

/// Parse `--detach-keys` ("ctrl-p,ctrl-q", "a,ctrl-@").
pub fn parse(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for key in s.split(',') {
        let k = key.trim();
        if let Some(c) = k.strip_prefix("ctrl-") {
            let b = c.as_bytes();
            if b.len() != 1 {
                return Err(format!("Unknown character: '{k}'"));
            }
            let ch = b[0].to_ascii_lowercase();
            out.push(match ch {
                b'a'..=b'z' => ch - b'a' + 1,
                b'@' => 0,
                b'[' => 27,
                b'\\' => 28,
                b']' => 29,
                b'^' => 30,
                b'_' => 31,
                _ => return Err(format!("Unknown character: '{k}'")),
            });
        } else if k.len() == 1 {
            out.push(k.as_bytes()[0]);
        } else {
            return Err(format!("Unknown character: '{k}'"));
        }
    }
    Ok(out)
}

/// Tracks a partial match of the detach sequence in typed input.
pub struct Detach {
    keys: Vec<u8>,
    matched: usize,
}

impl Detach {
    pub fn new(keys: Vec<u8>) -> Detach {
        Detach { keys, matched: 0 }
    }

    /// Returns the bytes to forward and whether the full sequence was typed. Bytes that might
    /// start the sequence are held back until it is clear they do not.
    pub fn feed(&mut self, data: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(data.len());
        if self.keys.is_empty() {
            out.extend_from_slice(data);
            return (out, false);
        }
        for &b in data {
            if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    return (out, true);
                }
            } else {
                out.extend_from_slice(&self.keys[..self.matched]);
                self.matched = 0;
                if b == self.keys[0] {
                    self.matched = 1;
                } else {
                    out.push(b);
                }
            }
        }
        (out, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys() {
        assert_eq!(parse("ctrl-p,ctrl-q").unwrap(), DEFAULT);
        assert_eq!(parse("a,ctrl-@").unwrap(), vec![b'a', 0]);
        assert!(parse("ctrl-ab").is_err());
        let mut d = Detach::new(DEFAULT.to_vec());
        assert_eq!(d.feed(b"ab\x10c"), (b"ab\x10c".to_vec(), false));
        assert_eq!(d.feed(b"x\x10"), (b"x".to_vec(), false));
        assert_eq!(d.feed(b"\x11"), (vec![], true));
    }
}
