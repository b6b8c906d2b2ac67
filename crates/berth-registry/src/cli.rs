//! Command-line entry points: the flags of `berth registry serve` and `berth registry gc` (as
//! `clap::Args` to flatten) and functions that run them and return an exit code.

use crate::error::Error;
use crate::server::{bind, ctrl_c, ServeOptions};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

/// Where the registry keeps its data unless `--root` says otherwise.
pub const DEFAULT_ROOT: &str = "/var/lib/berth-registry";

/// Flags of `berth registry serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:5000", value_parser = parse_addr)]
    pub addr: SocketAddr,
    /// Storage directory
    #[arg(long, value_name = "DIR", default_value = DEFAULT_ROOT)]
    pub root: PathBuf,
    /// htpasswd file (bcrypt entries, as `htpasswd -B` writes) enabling HTTP Basic auth
    #[arg(long, value_name = "FILE")]
    pub htpasswd: Option<PathBuf>,
    /// PEM certificate (chain) to serve HTTPS
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Remove upload sessions nothing was written to for this long (interrupted pushes);
    /// at least 1m
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_serve_age)]
    pub upload_max_age: Duration,
}

/// Flags of `berth registry gc`.
#[derive(Debug, Clone, clap::Args)]
pub struct GcArgs {
    /// Storage directory
    #[arg(long, value_name = "DIR", default_value = DEFAULT_ROOT)]
    pub root: PathBuf,
    /// Also remove manifests that no tag reaches (kept by default, as registry:2)
    #[arg(long)]
    pub delete_untagged: bool,
    /// Report what would be removed without removing anything
    #[arg(long)]
    pub dry_run: bool,
    /// Remove upload sessions nothing was written to for this long (0s: all of them)
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_age)]
    pub upload_max_age: Duration,
}

/// A duration such as `24h`, `90m`, `1h30m` or `0s`: whole hours, minutes and seconds.
fn parse_age(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?} (examples: 24h, 90m, 1h30m, 0s)");
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match rest.as_bytes().get(digits) {
            Some(b'h') => 3600,
            Some(b'm') => 60,
            Some(b's') => 1,
            _ => return Err(bad()),
        };
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        rest = &rest[digits + 1..];
    }
    Ok(Duration::from_secs(total))
}

/// The serving registry's age: a shorter one would expire pushes between their chunks.
fn parse_serve_age(s: &str) -> Result<Duration, String> {
    let age = parse_age(s)?;
    if age < Duration::from_secs(60) {
        return Err(format!("{s:?} is too short, the least is 1m"));
    }
    Ok(age)
}

/// `HOST:PORT` with an IP address or a resolvable host name.
fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse() {
        return Ok(a);
    }
    s.to_socket_addrs()
        .map_err(|e| format!("{s}: {e}"))?
        .next()
        .ok_or_else(|| format!("{s}: no address"))
}

impl From<ServeArgs> for ServeOptions {
    fn from(a: ServeArgs) -> ServeOptions {
        ServeOptions {
            addr: a.addr,
            root: a.root,
            htpasswd: a.htpasswd,
            tls_cert: a.tls_cert,
            tls_key: a.tls_key,
            upload_max_age: a.upload_max_age,
            upload_sweep: (a.upload_max_age / 4).min(Duration::from_secs(3600)),
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

/// Runs the registry until ctrl-c; prints errors and returns the exit code.
pub fn main_serve(args: ServeArgs) -> i32 {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth registry: {e}");
            return 1;
        }
    };
    let scheme = if args.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    let root = args.root.clone();
    let result: Result<(), Error> = rt.block_on(async move {
        let (addr, serving) = bind(args.into()).await?;
        eprintln!(
            "berth registry: serving {scheme}://{addr}/v2/ from {}",
            root.display()
        );
        tokio::select! {
            r = serving => r,
            () = ctrl_c() => Ok(()),
        }
    });
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("berth registry: {e}");
            1
        }
    }
}

/// Runs gc once; prints what was (or would be) removed and returns the exit code.
pub fn main_gc(args: GcArgs) -> i32 {
    match crate::gc::gc(
        &args.root,
        args.delete_untagged,
        args.dry_run,
        args.upload_max_age,
    ) {
        Ok(r) => {
            let verb = if args.dry_run {
                "would remove"
            } else {
                "removed"
            };
            println!(
                "{verb} {} blob(s) ({} bytes), {} manifest(s), {} stale upload(s)",
                r.blobs_removed, r.bytes_freed, r.manifests_removed, r.uploads_removed
            );
            0
        }
        Err(e) => {
            eprintln!("berth registry gc: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Serve {
        #[command(flatten)]
        args: ServeArgs,
    }

    #[derive(Parser)]
    struct Gc {
        #[command(flatten)]
        args: GcArgs,
    }

    #[test]
    fn serve_flags() {
        let s = Serve::try_parse_from(["x"]).unwrap().args;
        assert_eq!(s.addr, "127.0.0.1:5000".parse().unwrap());
        assert_eq!(s.root, PathBuf::from(DEFAULT_ROOT));
        let s = Serve::try_parse_from([
            "x",
            "--addr",
            "localhost:0",
            "--root",
            "/r",
            "--htpasswd",
            "/h",
            "--tls-cert",
            "c",
            "--tls-key",
            "k",
        ])
        .unwrap()
        .args;
        assert!(s.addr.ip().is_loopback());
        assert_eq!(s.htpasswd, Some(PathBuf::from("/h")));
        assert_eq!(s.upload_max_age, Duration::from_secs(24 * 3600));
        let o = ServeOptions::from(s);
        assert_eq!(o.upload_sweep, Duration::from_secs(3600));
        let s = Serve::try_parse_from(["x", "--upload-max-age", "2m"])
            .unwrap()
            .args;
        assert_eq!(ServeOptions::from(s).upload_sweep, Duration::from_secs(30));
        for short in ["0s", "59s", "soon"] {
            assert!(Serve::try_parse_from(["x", "--upload-max-age", short]).is_err());
        }
        assert!(Serve::try_parse_from(["x", "--tls-cert", "c"]).is_err());
        assert!(Serve::try_parse_from(["x", "--addr", "nonsense"]).is_err());
    }

    #[test]
    fn gc_flags_and_exit_codes() {
        let g = Gc::try_parse_from([
            "x",
            "--root",
            "/nonexistent/berth",
            "--delete-untagged",
            "--dry-run",
        ])
        .unwrap()
        .args;
        assert!(g.delete_untagged && g.dry_run);
        assert_eq!(g.upload_max_age, crate::gc::DEFAULT_UPLOAD_MAX_AGE);
        assert_eq!(main_gc(g), 1);
        let age = |v: &str| {
            Gc::try_parse_from(["x", "--upload-max-age", v]).map(|g| g.args.upload_max_age)
        };
        assert_eq!(age("0s").unwrap(), Duration::ZERO);
        assert_eq!(age("0").unwrap(), Duration::ZERO);
        assert_eq!(age("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(age("45s").unwrap(), Duration::from_secs(45));
        for bad in ["", "5", "h", "1ms", "-1h", "1d", "99999999999999999999h"] {
            assert!(age(bad).is_err(), "{bad}");
        }
    }
}
