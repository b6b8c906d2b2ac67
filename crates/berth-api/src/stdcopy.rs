//! The stdcopy framing Docker uses on non-TTY attach, exec and log streams: an 8-byte header
//! `[stream, 0, 0, 0, len as u32 big-endian]` followed by `len` bytes of payload.

/// Stream ids in the frame header.
pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
/// berth's shim protocol also carries a final frame with the exit status (not sent to API clients).
pub const SYSTEM: u8 = 3;

/// Append one frame to `out`.
pub fn encode(stream: u8, payload: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&[stream, 0, 0, 0]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&payload[..len as usize]);
}

/// One frame as a fresh buffer.
pub fn frame(stream: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(payload.len() + 8);
    encode(stream, payload, &mut v);
    v
}

/// Incremental decoder: feed bytes, take complete frames.
#[derive(Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The header names a stream that is not 0..=3.
    BadStream(u8),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::BadStream(s) => write!(f, "unrecognized stream id {s} in stdcopy header"),
        }
    }
}

impl Decoder {
    pub fn feed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete frame, if any.
    pub fn next_frame(&mut self) -> Result<Option<(u8, Vec<u8>)>, DecodeError> {
        if self.buf.len() < 8 {
            return Ok(None);
        }
        let stream = self.buf[0];
        if stream > SYSTEM {
            return Err(DecodeError::BadStream(stream));
        }
        let len = u32::from_be_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]]) as usize;
        if self.buf.len() < 8 + len {
            return Ok(None);
        }
        let payload = self.buf[8..8 + len].to_vec();
        self.buf.drain(..8 + len);
        Ok(Some((stream, payload)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_split_anywhere() {
        let mut wire = Vec::new();
        encode(STDOUT, b"out\n", &mut wire);
        encode(STDERR, b"err\n", &mut wire);
        encode(STDOUT, b"", &mut wire);
        assert_eq!(
            &wire[..12],
            &[1, 0, 0, 0, 0, 0, 0, 4, b'o', b'u', b't', b'\n']
        );
        for split in 0..wire.len() {
            let mut d = Decoder::default();
            let mut got = Vec::new();
            for chunk in [&wire[..split], &wire[split..]] {
                d.feed(chunk);
                while let Some(f) = d.next_frame().unwrap() {
                    got.push(f);
                }
            }
            assert_eq!(
                got,
                vec![
                    (STDOUT, b"out\n".to_vec()),
                    (STDERR, b"err\n".to_vec()),
                    (STDOUT, vec![])
                ]
            );
            assert!(d.buf.is_empty());
        }
    }

    #[test]
    fn bad_stream_is_an_error() {
        let mut d = Decoder::default();
        d.feed(&[9, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(d.next_frame(), Err(DecodeError::BadStream(9)));
    }
}
