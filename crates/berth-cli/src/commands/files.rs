//! Commands on a container's filesystem: cp, diff, export, commit, and top.

use crate::client::{enc, Client, ReqBody};
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper::Method;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Args)]
pub struct CpArgs {
    /// Archive mode (copy all uid/gid information)
    #[arg(short = 'a', long)]
    pub archive: bool,
    /// Always follow symbol link in SRC_PATH
    #[arg(short = 'L', long = "follow-link")]
    pub follow_link: bool,
    /// Suppress progress output (berth's cp never prints progress, so it always is)
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// CONTAINER:SRC_PATH or SRC_PATH (- for a tar on stdin)
    pub src: String,
    /// DEST_PATH (- for a tar on stdout) or CONTAINER:DEST_PATH
    pub dest: String,
}

/// Split `container:path`; a path with a '/' before any ':' is local, like docker.
fn split_remote(s: &str) -> Option<(&str, &str)> {
    let (c, p) = s.split_once(':')?;
    if c.is_empty() || c.contains('/') || c.starts_with('.') {
        return None;
    }
    Some((c, p))
}

/// The decoded X-Docker-Container-Path-Stat header.
fn path_stat(resp: &hyper::Response<hyper::body::Incoming>) -> Option<Value> {
    let raw = resp
        .headers()
        .get("X-Docker-Container-Path-Stat")?
        .to_str()
        .ok()?;
    let bytes = data_encoding::BASE64.decode(raw.as_bytes()).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Go's os.ModeDir bit in the stat's mode.
const GO_MODE_DIR: u64 = 1 << 31;

fn tar_of(src: &Path, name: &str) -> std::io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    let meta = std::fs::symlink_metadata(src)?;
    if meta.is_dir() {
        b.append_dir_all(name, src)?;
    } else {
        b.append_path_with_name(src, name)?;
    }
    b.into_inner()
}

fn body(data: Vec<u8>) -> ReqBody {
    Full::new(Bytes::from(data))
        .map_err(|never| match never {})
        .boxed()
}

pub async fn cp(c: &Client, a: CpArgs) -> i32 {
    match (split_remote(&a.src), split_remote(&a.dest)) {
        (Some((ctr, path)), None) => cp_from(c, ctr, path, &a.dest, a.follow_link).await,
        (None, Some((ctr, path))) => cp_to(c, &a.src, ctr, path, a.archive, a.follow_link).await,
        (Some(_), Some(_)) => {
            eprintln!("copying between containers is not supported");
            1
        }
        (None, None) => {
            eprintln!("must specify at least one container source");
            1
        }
    }
}

/// `HEAD /containers/{id}/archive`: whether the path exists, with its stat header.
async fn head_path(
    c: &Client,
    ctr: &str,
    path: &str,
) -> crate::client::Result<hyper::Response<hyper::body::Incoming>> {
    c.send(
        Method::HEAD,
        &format!("/containers/{}/archive?path={}", enc(ctr), enc(path)),
        crate::client::empty(),
        "application/json",
    )
    .await
}

async fn cp_from(c: &Client, ctr: &str, path: &str, dest: &str, follow: bool) -> i32 {
    // -L: copy what the link points to, under the link's name.
    let mut get_path = path.to_string();
    let mut rename_to = None;
    if follow {
        match head_path(c, ctr, path).await {
            Ok(r) => {
                if let Some(target) = path_stat(&r)
                    .and_then(|v| v["linkTarget"].as_str().map(String::from))
                    .filter(|t| !t.is_empty())
                {
                    rename_to = Path::new(path)
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned());
                    get_path = target;
                }
            }
            Err(e) => return super::report(&e, 1),
        }
    }
    let resp = match c
        .send(
            Method::GET,
            &format!("/containers/{}/archive?path={}", enc(ctr), enc(&get_path)),
            crate::client::empty(),
            "application/json",
        )
        .await
    {
        Ok(r) => r,
        Err(e) => return super::report(&e, 1),
    };
    let data = match crate::client::read_all(resp).await {
        Ok(d) => d,
        Err(e) => return super::report(&e, 1),
    };
    if dest == "-" {
        let _ = std::io::stdout().write_all(&data);
        return 0;
    }
    let mut dest = PathBuf::from(dest);
    if let (Some(name), true) = (&rename_to, dest.is_dir()) {
        dest = dest.join(name);
    }
    let res = if dest.is_dir() {
        unpack(&data, &dest)
    } else {
        // The copy takes the destination's name: unpack beside it, then rename.
        let parent = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let tmp = parent.join(format!(".berth-cp-{}", std::process::id()));
        let r = std::fs::create_dir_all(&tmp)
            .and_then(|_| unpack(&data, &tmp))
            .and_then(|_| {
                let first = std::fs::read_dir(&tmp)?
                    .flatten()
                    .next()
                    .ok_or_else(|| std::io::Error::other("empty archive"))?;
                std::fs::rename(first.path(), &dest)
            });
        let _ = std::fs::remove_dir_all(&tmp);
        r
    };
    match res {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("Error: {e}");
            1
        }
    }
}

fn unpack(data: &[u8], dir: &Path) -> std::io::Result<()> {
    let mut ar = tar::Archive::new(data);
    ar.set_preserve_permissions(true);
    ar.set_overwrite(true);
    ar.unpack(dir)
}

async fn cp_to(c: &Client, src: &str, ctr: &str, path: &str, archive: bool, follow: bool) -> i32 {
    let head = head_path(c, ctr, path).await;
    let dest_is_dir = match &head {
        Ok(r) => path_stat(r)
            .and_then(|v| v["mode"].as_u64())
            .is_some_and(|m| m & GO_MODE_DIR != 0),
        Err(crate::client::Error::Daemon { status: 404, .. }) => false,
        Err(e) => return super::report(e, 1),
    };
    let dest_exists = head.is_ok();
    let (target_dir, data) = if src == "-" {
        let mut buf = Vec::new();
        if let Err(e) = std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf) {
            eprintln!("Error: {e}");
            return 1;
        }
        (path.to_string(), buf)
    } else {
        let src_path = Path::new(src);
        let base = src_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| ".".into());
        let (dir, name) = if dest_is_dir {
            (path.to_string(), base)
        } else {
            let p = Path::new(path);
            let parent = p
                .parent()
                .map(|x| x.display().to_string())
                .filter(|x| !x.is_empty())
                .unwrap_or_else(|| "/".into());
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or(base);
            if !dest_exists && path.ends_with('/') {
                eprintln!(
                    "Error response from daemon: Could not find the file {path} in container {ctr}"
                );
                return 1;
            }
            (parent, name)
        };
        // -L: the link's target goes in, under the link's name.
        let resolved;
        let src_path = if follow {
            match std::fs::canonicalize(src_path) {
                Ok(p) => {
                    resolved = p;
                    resolved.as_path()
                }
                Err(e) => {
                    eprintln!("Error: {src}: {e}");
                    return 1;
                }
            }
        } else {
            src_path
        };
        match tar_of(src_path, &name) {
            Ok(d) => (dir, d),
            Err(e) => {
                eprintln!("Error: {src}: {e}");
                return 1;
            }
        }
    };
    let q = format!(
        "/containers/{}/archive?path={}&noOverwriteDirNonDir=true&copyUIDGID={}",
        enc(ctr),
        enc(&target_dir),
        archive
    );
    match c
        .send(Method::PUT, &q, body(data), "application/x-tar")
        .await
    {
        Ok(_) => 0,
        Err(e) => super::report(&e, 1),
    }
}

#[derive(Debug, Clone, Args)]
pub struct One {
    pub container: String,
}

pub async fn diff(c: &Client, a: One) -> i32 {
    match c
        .get(&format!("/containers/{}/changes", enc(&a.container)))
        .await
    {
        Ok(v) => {
            for ch in v.as_array().into_iter().flatten() {
                let kind = match ch["Kind"].as_u64() {
                    Some(0) => "C",
                    Some(1) => "A",
                    _ => "D",
                };
                println!("{kind} {}", ch["Path"].as_str().unwrap_or(""));
            }
            0
        }
        Err(e) => super::report(&e, 1),
    }
}

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    pub container: String,
}

pub async fn export(c: &Client, a: ExportArgs) -> i32 {
    let path = format!("/containers/{}/export", enc(&a.container));
    super::download(c, &path, a.output.as_deref(), "export container").await
}

#[derive(Debug, Clone, Args)]
pub struct CommitArgs {
    /// Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")
    #[arg(short = 'a', long)]
    pub author: Option<String>,
    /// Apply Dockerfile instruction to the created image
    #[arg(short = 'c', long = "change")]
    pub change: Vec<String>,
    /// Commit message
    #[arg(short = 'm', long)]
    pub message: Option<String>,
    /// Pause container during commit
    #[arg(short = 'p', long, default_value_t = true, action = clap::ArgAction::Set)]
    pub pause: bool,
    pub container: String,
    /// REPOSITORY[:TAG]
    pub reference: Option<String>,
}

pub async fn commit(c: &Client, a: CommitArgs) -> i32 {
    let mut q = format!("/commit?container={}&pause={}", enc(&a.container), a.pause);
    if let Some(r) = &a.reference {
        let (repo, tag) = match r.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => (repo.to_string(), tag.to_string()),
            _ => (r.clone(), String::new()),
        };
        q.push_str(&format!("&repo={}&tag={}", enc(&repo), enc(&tag)));
    }
    if let Some(m) = &a.message {
        q.push_str(&format!("&comment={}", enc(m)));
    }
    if let Some(au) = &a.author {
        q.push_str(&format!("&author={}", enc(au)));
    }
    for ch in &a.change {
        q.push_str(&format!("&changes={}", enc(ch)));
    }
    match c.post(&q, Some(serde_json::json!({}))).await {
        Ok(v) => {
            println!("{}", v["Id"].as_str().unwrap_or(""));
            0
        }
        Err(e) => super::report(&e, 1),
    }
}

#[derive(Debug, Clone, Args)]
pub struct TopArgs {
    pub container: String,
    /// ps options
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

pub async fn top(c: &Client, a: TopArgs) -> i32 {
    let mut q = format!("/containers/{}/top", enc(&a.container));
    if !a.ps_args.is_empty() {
        q.push_str(&format!("?ps_args={}", enc(&a.ps_args.join(" "))));
    }
    match c.get(&q).await {
        Ok(v) => {
            let titles: Vec<&str> = v["Titles"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t.as_str())
                .collect();
            let rows: Vec<Vec<String>> = v["Processes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| {
                    r.as_array()
                        .into_iter()
                        .flatten()
                        .map(|x| x.as_str().unwrap_or("").to_string())
                        .collect()
                })
                .collect();
            print!("{}", crate::format::table(&titles, &rows));
            0
        }
        Err(e) => super::report(&e, 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_paths() {
        assert_eq!(split_remote("web:/etc"), Some(("web", "/etc")));
        assert_eq!(split_remote("./a:b"), None);
        assert_eq!(split_remote("/tmp/x"), None);
    }
}
