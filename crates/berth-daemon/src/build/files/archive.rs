//! ADD's extras: a local tar archive (plain or compressed) recognised and extracted, and a
//! plain-http URL downloaded. It must not touch the staging dir beyond the given destination.

use crate::error::{Error, Result};
use std::io::{Read, Write};
use std::path::Path;

/// Whether `p` looks like a tar archive (plain, gzip, bzip2, xz or zstd): ADD extracts those.
pub fn is_archive(p: &Path) -> bool {
    // A symlink is copied as one, never followed out of the context.
    if !std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file()) {
        return false;
    }
    let Ok(mut f) = std::fs::File::open(p) else {
        return false;
    };
    let mut head = [0u8; 262];
    let Ok(n) = read_full(&mut f, &mut head) else {
        return false;
    };
    let h = &head[..n];
    h.starts_with(&[0x1f, 0x8b])
        || h.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || (n >= 262 && &h[257..262] == b"ustar")
}

fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let r = f.read(&mut buf[n..])?;
        if r == 0 {
            break;
        }
        n += r;
    }
    Ok(n)
}

/// Extracts the archive `src` into `dst` (ADD of a local tar).
pub fn extract_archive(src: &Path, dst: &Path) -> Result<()> {
    std::fs::create_dir_all(dst)?;
    let mut f = std::io::BufReader::new(std::fs::File::open(src)?);
    berth_image::archive::extract(
        &mut f,
        dst,
        &berth_image::archive::ExtractOptions::default(),
    )?;
    Ok(())
}

/// Downloads `url` (plain http) for ADD; errors say which URL failed and why.
pub fn download(url: &str) -> Result<Vec<u8>> {
    let fail = |why: String| Error::bad_request(format!("ADD failed: failed to GET {url}: {why}"));
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| fail("only http:// URLs are supported by berth's builder".into()))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:80")
    };
    let addrs: Vec<std::net::SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(&addr)
        .map_err(|e| fail(e.to_string()))?
        .collect();
    let sa = addrs.first().ok_or_else(|| fail("no address".into()))?;
    let mut s = std::net::TcpStream::connect_timeout(sa, std::time::Duration::from_secs(10))
        .map_err(|e| fail(e.to_string()))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .map_err(|e| fail(e.to_string()))?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {hostport}\r\nUser-Agent: berth\r\n\r\n"
    )
    .map_err(|e| fail(e.to_string()))?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).map_err(|e| fail(e.to_string()))?;
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| fail("malformed HTTP response".into()))?;
    let head = String::from_utf8_lossy(&resp[..split]).to_string();
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if !status.starts_with('2') {
        return Err(Error::bad_request(format!(
            "ADD failed: failed to GET {url} with status {}",
            head.lines()
                .next()
                .and_then(|l| l.split_once(' '))
                .map_or(status, |(_, rest)| rest)
        )));
    }
    Ok(resp[split + 4..].to_vec())
}
