//! A tar stream that may end without the last entry's padding and the end-of-archive blocks,
//! as Go's archive/tar reader accepts it: the docker CLI sends build contexts like that when it
//! adds a Dockerfile read from stdin (`docker build -f -`). What is missing is supplied as
//! zeros, only when the stream stops exactly after an entry's data; a stream cut inside a
//! header or inside data stays short, so truncation is still an error.

use std::io::{self, Read};

const BLOCK: u64 = 512;

enum State {
    /// Collecting a header; the bytes so far.
    Header(Vec<u8>),
    /// Inside an entry: data bytes and padding bytes still to come.
    Data { data: u64, pad: u64 },
}

pub(crate) struct PaddedEnd<R> {
    inner: R,
    state: State,
    /// Zeros still to hand out once the inner stream ended cleanly.
    tail: Option<u64>,
}

impl<R: Read> PaddedEnd<R> {
    pub(crate) fn new(inner: R) -> PaddedEnd<R> {
        PaddedEnd {
            inner,
            state: State::Header(Vec::with_capacity(BLOCK as usize)),
            tail: None,
        }
    }

    /// Moves the state past `bytes` of the stream.
    fn advance(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match &mut self.state {
                State::Header(h) => {
                    let take = (BLOCK as usize - h.len()).min(bytes.len());
                    h.extend_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                    if h.len() == BLOCK as usize {
                        let size = entry_size(h);
                        h.clear();
                        if size > 0 {
                            self.state = State::Data {
                                data: size,
                                pad: (BLOCK - size % BLOCK) % BLOCK,
                            };
                        }
                    }
                }
                State::Data { data, pad } => {
                    let take = (*data + *pad).min(bytes.len() as u64);
                    let from_data = take.min(*data);
                    *data -= from_data;
                    *pad -= take - from_data;
                    bytes = &bytes[take as usize..];
                    if *data == 0 && *pad == 0 {
                        self.state = State::Header(Vec::with_capacity(BLOCK as usize));
                    }
                }
            }
        }
    }
}

/// The size field of a tar header: octal text, or base-256 when the high bit is set.
fn entry_size(h: &[u8]) -> u64 {
    let field = &h[124..136];
    if field[0] & 0x80 != 0 {
        return field[1..]
            .iter()
            .fold(0u64, |n, b| n.wrapping_shl(8) | u64::from(*b));
    }
    let text: String = field
        .iter()
        .take_while(|b| **b != 0)
        .map(|b| *b as char)
        .collect();
    u64::from_str_radix(text.trim(), 8).unwrap_or(0)
}

impl<R: Read> Read for PaddedEnd<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(left) = self.tail.as_mut() {
            let n = (*left).min(buf.len() as u64) as usize;
            buf[..n].fill(0);
            *left -= n as u64;
            return Ok(n);
        }
        let n = self.inner.read(buf)?;
        if n > 0 || buf.is_empty() {
            self.advance(&buf[..n]);
            return Ok(n);
        }
        let missing = match &self.state {
            State::Header(h) if h.is_empty() => 2 * BLOCK,
            State::Data { data: 0, pad } => pad + 2 * BLOCK,
            // Cut inside a header or inside data: left short.
            _ => return Ok(0),
        };
        self.tail = Some(missing);
        self.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn names(raw: Vec<u8>) -> Result<Vec<String>, io::Error> {
        let mut ar = tar::Archive::new(PaddedEnd::new(io::Cursor::new(raw)));
        let mut out = Vec::new();
        for e in ar.entries()? {
            let mut e = e?;
            let mut s = String::new();
            e.read_to_string(&mut s)?;
            out.push(format!("{}={s}", e.path()?.display()));
        }
        Ok(out)
    }

    #[test]
    fn missing_padding_and_trailer_are_supplied() {
        let full = tar_of(&[("a", b"1\n"), ("b", b"hello")]);
        // Cut right after the last entry's data: no padding, no end blocks.
        let cut = full[..512 * 3 + 5].to_vec();
        assert_eq!(names(cut).unwrap(), ["a=1\n", "b=hello"]);
        assert_eq!(names(full.clone()).unwrap(), ["a=1\n", "b=hello"]);
        // Cut inside data stays an error.
        assert!(names(full[..512 * 3 + 3].to_vec()).is_err());
    }
}
