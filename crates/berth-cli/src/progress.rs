//! Printing Docker's JSON message streams (pull, push, load): on a terminal one line per layer
//! redrawn in place with its progress bar, otherwise plain lines when a layer's status changes.

use berth_api::progress::Message;
use std::io::Write;

pub struct Renderer<W: Write> {
    out: W,
    tty: bool,
    /// Lines drawn so far for ids, in order (terminal mode).
    lines: Vec<String>,
    /// Last status printed per id (plain mode).
    last: std::collections::HashMap<String, String>,
}

impl<W: Write> Renderer<W> {
    pub fn new(out: W, tty: bool) -> Renderer<W> {
        Renderer {
            out,
            tty,
            lines: Vec::new(),
            last: std::collections::HashMap::new(),
        }
    }

    /// One line of the stream; an `errorDetail` comes back as the error to report.
    pub fn feed(&mut self, line: &[u8]) -> Result<(), String> {
        let text = String::from_utf8_lossy(line);
        let text = text.trim();
        if text.is_empty() {
            return Ok(());
        }
        let m: Message = serde_json::from_str(text)
            .map_err(|e| format!("bad progress message from the daemon: {e}"))?;
        if let Some(e) = &m.error_detail {
            return Err(e.message.clone());
        }
        if !m.error.is_empty() {
            return Err(m.error);
        }
        if !m.stream.is_empty() {
            let _ = write!(self.out, "{}", m.stream);
            return Ok(());
        }
        if m.id.is_empty() {
            let _ = writeln!(self.out, "{}", m.status);
            return Ok(());
        }
        if self.tty {
            let shown = if m.progress.is_empty() {
                format!("{}: {}", m.id, m.status)
            } else {
                format!("{}: {} {}", m.id, m.status, m.progress)
            };
            match self.lines.iter().position(|id| *id == m.id) {
                Some(i) => {
                    let up = self.lines.len() - i;
                    // Up to the id's line, rewrite it, and back down.
                    let _ = write!(self.out, "\x1b[{up}A\r\x1b[2K{shown}\r\x1b[{up}B");
                }
                None => {
                    self.lines.push(m.id.clone());
                    let _ = writeln!(self.out, "{shown}");
                }
            }
        } else if self.last.get(&m.id) != Some(&m.status) {
            self.last.insert(m.id.clone(), m.status.clone());
            let _ = writeln!(self.out, "{}: {}", m.id, m.status);
        }
        let _ = self.out.flush();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_once_per_status_and_errors() {
        let mut out = Vec::new();
        {
            let mut r = Renderer::new(&mut out, false);
            for m in [
                Message::status("", "latest: Pulling from library/x"),
                Message::status("aa", "Pulling fs layer"),
                Message::progress("aa", "Downloading", 10, Some(100)),
                Message::progress("aa", "Downloading", 50, Some(100)),
                Message::status("aa", "Pull complete"),
            ] {
                r.feed(m.line().as_bytes()).unwrap();
            }
            assert_eq!(
                r.feed(Message::error("boom").line().as_bytes()),
                Err("boom".into())
            );
            assert!(r.feed(b"not json").is_err());
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "latest: Pulling from library/x\naa: Pulling fs layer\naa: Downloading\naa: Pull complete\n"
        );
    }

    #[test]
    fn terminal_redraws_in_place() {
        let mut out = Vec::new();
        {
            let mut r = Renderer::new(&mut out, true);
            r.feed(Message::status("aa", "Waiting").line().as_bytes())
                .unwrap();
            r.feed(Message::status("bb", "Waiting").line().as_bytes())
                .unwrap();
            r.feed(Message::status("aa", "Pull complete").line().as_bytes())
                .unwrap();
        }
        let s = String::from_utf8(out).unwrap();
        assert!(
            s.ends_with("\x1b[2A\r\x1b[2Kaa: Pull complete\r\x1b[2B"),
            "{s:?}"
        );
    }
}
