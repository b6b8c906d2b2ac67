//! Docker's `local` log driver format: each entry is a protobuf `LogEntry` (source, time in
//! nanoseconds, line, partial flag and partial metadata) framed by its length as a big-endian
//! u32 before and after. The shim writes it; the daemon reads it for `logs`.

/// Where a `local` log lives under the container's directory.
pub const DIR: &str = "local-logs";
pub const FILE: &str = "container.log";
/// The driver's defaults: 20 MB files, 5 of them, rotated ones gzip-compressed.
pub const DEFAULT_MAX_SIZE: u64 = 20 * 1024 * 1024;
pub const DEFAULT_MAX_FILES: u32 = 5;
/// An entry larger than this is corrupt (dockerd's bound).
const MAX_ENTRY: usize = 1_000_000;

/// One log entry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Entry {
    /// "stdout" or "stderr".
    pub source: String,
    pub time_nano: i64,
    /// The line without its newline.
    pub line: Vec<u8>,
    /// Part of a line split into several entries (or an unterminated tail).
    pub partial: bool,
    /// For a partial entry: whether it ends its line, the line's id and the part's number.
    pub last: bool,
    pub id: String,
    pub ordinal: i32,
}

impl Entry {
    /// The text `logs` shows: the line, with its newline unless more of it follows.
    pub fn text(&self) -> Vec<u8> {
        let mut t = self.line.clone();
        if !self.partial || self.last {
            t.push(b'\n');
        }
        t
    }
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn field_bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    varint(out, u64::from(field << 3 | 2));
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn field_varint(out: &mut Vec<u8>, field: u32, v: u64) {
    varint(out, u64::from(field << 3));
    varint(out, v);
}

/// Append `e` to `out`, framed.
pub fn encode(out: &mut Vec<u8>, e: &Entry) {
    let mut msg = Vec::with_capacity(e.line.len() + 32);
    if !e.source.is_empty() {
        field_bytes(&mut msg, 1, e.source.as_bytes());
    }
    if e.time_nano != 0 {
        field_varint(&mut msg, 2, e.time_nano as u64);
    }
    if !e.line.is_empty() {
        field_bytes(&mut msg, 3, &e.line);
    }
    if e.partial {
        field_varint(&mut msg, 4, 1);
        let mut meta = Vec::new();
        if e.last {
            field_varint(&mut meta, 1, 1);
        }
        if !e.id.is_empty() {
            field_bytes(&mut meta, 2, e.id.as_bytes());
        }
        if e.ordinal != 0 {
            field_varint(&mut meta, 3, e.ordinal as u32 as u64);
        }
        field_bytes(&mut msg, 5, &meta);
    }
    let len = (msg.len() as u32).to_be_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&msg);
    out.extend_from_slice(&len);
}

fn read_varint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos)?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// A protobuf field's value: a varint (Ok) or length-delimited bytes (Err).
type FieldValue<'a> = Result<u64, &'a [u8]>;

/// The protobuf fields of `b`: (number, value).
fn fields(b: &[u8]) -> Option<Vec<(u64, FieldValue<'_>)>> {
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < b.len() {
        let key = read_varint(b, &mut pos)?;
        match key & 7 {
            0 => out.push((key >> 3, Ok(read_varint(b, &mut pos)?))),
            2 => {
                let n = usize::try_from(read_varint(b, &mut pos)?).ok()?;
                let end = pos.checked_add(n).filter(|e| *e <= b.len())?;
                out.push((key >> 3, Err(&b[pos..end])));
                pos = end;
            }
            1 => pos = pos.checked_add(8)?,
            5 => pos = pos.checked_add(4)?,
            _ => return None,
        }
    }
    Some(out)
}

fn decode_msg(b: &[u8]) -> Option<Entry> {
    let mut e = Entry::default();
    for (n, v) in fields(b)? {
        match (n, v) {
            (1, Err(s)) => e.source = String::from_utf8_lossy(s).into_owned(),
            (2, Ok(t)) => e.time_nano = t as i64,
            (3, Err(l)) => e.line = l.to_vec(),
            (4, Ok(p)) => e.partial = p != 0,
            (5, Err(meta)) => {
                for (m, v) in fields(meta)? {
                    match (m, v) {
                        (1, Ok(l)) => e.last = l != 0,
                        (2, Err(id)) => e.id = String::from_utf8_lossy(id).into_owned(),
                        (3, Ok(o)) => e.ordinal = o as i32,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some(e)
}

/// The complete entries at the start of `b` and how many bytes they take; a frame still
/// being written is left for later. A corrupt frame ends the decoding.
pub fn decode(b: &[u8]) -> (Vec<Entry>, usize) {
    let mut out = Vec::new();
    let mut pos = 0;
    while b.len() - pos >= 4 {
        let mut len = [0u8; 4];
        len.copy_from_slice(&b[pos..pos + 4]);
        let n = u32::from_be_bytes(len) as usize;
        if n > MAX_ENTRY {
            break;
        }
        let end = pos + 4 + n + 4;
        if end > b.len() {
            break;
        }
        match decode_msg(&b[pos + 4..pos + 4 + n]) {
            Some(e) => out.push(e),
            None => break,
        }
        pos = end;
    }
    (out, pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let a = Entry {
            source: "stdout".into(),
            time_nano: 1_700_000_000_123_456_789,
            line: b"hello".to_vec(),
            ..Default::default()
        };
        let b = Entry {
            source: "stderr".into(),
            time_nano: 1_700_000_001_000_000_000,
            line: vec![b'x'; 300],
            partial: true,
            last: true,
            id: "abc".into(),
            ordinal: 2,
        };
        let mut buf = Vec::new();
        encode(&mut buf, &a);
        encode(&mut buf, &b);
        let whole = buf.len();
        buf.extend_from_slice(&[0, 0, 0]);
        let (got, used) = decode(&buf);
        assert_eq!(got, vec![a.clone(), b]);
        assert_eq!(used, whole);
        assert_eq!(a.text(), b"hello\n");
        // The frame: length, protobuf (field 1 "stdout" first), length.
        let mut one = Vec::new();
        encode(&mut one, &a);
        let n = u32::from_be_bytes([one[0], one[1], one[2], one[3]]) as usize;
        assert_eq!(one.len(), n + 8);
        assert_eq!(&one[4..12], b"\x0a\x06stdout");
    }
}
