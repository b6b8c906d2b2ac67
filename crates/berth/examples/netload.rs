//! Bench tool, not part of berth: a small static TCP load generator and server that
//! bench/overlay.sh runs inside busybox containers (IP addresses only, no name lookups).
//!
//! ```text
//! netload serve PORT                      echo ("E" connections) or sink ("S" connections)
//! netload rr ADDR:PORT COUNT SIZE         COUNT round trips of SIZE bytes on one connection
//! netload connrr ADDR:PORT COUNT          COUNT × (connect, 1 byte, its echo, close)
//! netload stream ADDR:PORT SECONDS        one connection sending as fast as it can
//! ```
//!
//! A connection's first byte picks what the server does with it: `E` echoes everything it
//! reads, `S` discards everything and, at end of stream, answers with the byte count it got
//! (8 bytes, big-endian), so `stream` counts only what reached the server.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::exit;
use std::time::{Duration, Instant};

/// Connections served at once.
const WORKERS: usize = 8;

const USAGE: &str = "usage: netload serve PORT | rr ADDR:PORT COUNT SIZE | connrr ADDR:PORT COUNT | stream ADDR:PORT SECONDS";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match words.as_slice() {
        ["serve", port] => number(port, "PORT").and_then(serve),
        ["rr", addr, count, size] => {
            addr_of(addr).and_then(|a| rr(a, number(count, "COUNT")?, number(size, "SIZE")?))
        }
        ["connrr", addr, count] => addr_of(addr).and_then(|a| connrr(a, number(count, "COUNT")?)),
        ["stream", addr, secs] => addr_of(addr).and_then(|a| stream(a, number(secs, "SECONDS")?)),
        _ => Err(USAGE.to_string()),
    };
    if let Err(e) = result {
        eprintln!("netload: {e}");
        exit(1);
    }
}

fn number<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, String> {
    s.parse()
        .map_err(|_| format!("{what} must be a non-negative number, got {s:?}"))
}

fn addr_of(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not IP:PORT (netload takes addresses, not names)"))
}

/// Serves with a fixed set of threads that each accept and handle one connection at a time,
/// so no thread is created while a client waits.
fn serve(port: u16) -> Result<(), String> {
    let listener =
        TcpListener::bind(("0.0.0.0", port)).map_err(|e| format!("listen on port {port}: {e}"))?;
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let l = listener
            .try_clone()
            .map_err(|e| format!("share the listener on port {port}: {e}"))?;
        workers.push(std::thread::spawn(move || loop {
            match l.accept() {
                // A client that goes away mid-way is not the server's problem.
                Ok((c, _)) => {
                    let _ = handle(c);
                }
                Err(e) => {
                    eprintln!("netload: accept: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }));
    }
    for w in workers {
        // The workers never return; a panicked one is reported and the rest go on.
        if w.join().is_err() {
            eprintln!("netload: a server thread panicked");
        }
    }
    Ok(())
}

fn handle(mut c: TcpStream) -> std::io::Result<()> {
    c.set_nodelay(true)?;
    let mut kind = [0u8; 1];
    c.read_exact(&mut kind)?;
    let mut buf = vec![0u8; 64 * 1024];
    match kind[0] {
        b'E' => loop {
            let n = c.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            c.write_all(&buf[..n])?;
        },
        b'S' => {
            let mut total: u64 = 0;
            loop {
                let n = c.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                total += n as u64;
            }
            c.write_all(&total.to_be_bytes())
        }
        _ => Ok(()),
    }
}

fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let c = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    c.set_nodelay(true)
        .map_err(|e| format!("TCP_NODELAY on {addr}: {e}"))?;
    Ok(c)
}

/// Prints the median and 99th percentile of `samples` (µs) as `median_us=… p99_us=…`.
fn report(mut samples: Vec<u64>) -> Result<(), String> {
    if samples.is_empty() {
        return Err("COUNT must be at least 1".into());
    }
    samples.sort_unstable();
    let at = |q: usize| samples[(samples.len() - 1) * q / 100];
    println!("median_us={} p99_us={} n={}", at(50), at(99), samples.len());
    Ok(())
}

fn micros(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// COUNT round trips of SIZE bytes on one connection, after COUNT/10 (at most 100) untimed
/// warm-up ones.
fn rr(addr: SocketAddr, count: usize, size: usize) -> Result<(), String> {
    if size == 0 {
        return Err("SIZE must be at least 1".into());
    }
    let mut c = connect(addr)?;
    let io = |e: std::io::Error| format!("round trip with {addr}: {e}");
    c.write_all(b"E").map_err(io)?;
    let out = vec![b'x'; size];
    let mut back = vec![0u8; size];
    let warm = (count / 10).min(100);
    let mut samples = Vec::with_capacity(count);
    for i in 0..warm + count {
        let t = Instant::now();
        c.write_all(&out).map_err(io)?;
        c.read_exact(&mut back).map_err(io)?;
        if i >= warm {
            samples.push(micros(t));
        }
    }
    report(samples)
}

/// COUNT new connections, each: connect, send one byte, read its echo, close.
fn connrr(addr: SocketAddr, count: usize) -> Result<(), String> {
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        let t = Instant::now();
        let mut c = connect(addr)?;
        let io = |e: std::io::Error| format!("request to {addr}: {e}");
        c.write_all(b"Ex").map_err(io)?;
        let mut back = [0u8; 1];
        c.read_exact(&mut back).map_err(io)?;
        samples.push(micros(t));
    }
    report(samples)
}

/// Sends for SECONDS, then waits for the server's count: prints `mbps=` (10^6 bytes per
/// second that reached the server).
fn stream(addr: SocketAddr, secs: u64) -> Result<(), String> {
    let mut c = connect(addr)?;
    let io = |e: std::io::Error| format!("stream to {addr}: {e}");
    c.write_all(b"S").map_err(io)?;
    let buf = vec![b'x'; 256 * 1024];
    let t = Instant::now();
    let limit = Duration::from_secs(secs);
    while t.elapsed() < limit {
        c.write_all(&buf).map_err(io)?;
    }
    c.shutdown(Shutdown::Write).map_err(io)?;
    let mut total = [0u8; 8];
    c.read_exact(&mut total).map_err(io)?;
    let elapsed = t.elapsed().as_secs_f64();
    let bytes = u64::from_be_bytes(total);
    println!(
        "mbps={:.1} bytes={bytes} secs={elapsed:.3}",
        bytes as f64 / elapsed / 1e6
    );
    Ok(())
}
