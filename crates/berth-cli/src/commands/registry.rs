//! Registry commands: `pull` (also used by `run` for a missing image), `push`, `search`,
//! `login` and `logout`, with Docker's progress display and the docker CLI's credential store.

use crate::client::{enc, Client};
use crate::progress::Renderer;
use clap::Args;
use hyper::Method;

#[derive(Debug, Clone, Args)]
pub struct PullArgs {
    /// Download all tagged images in the repository
    #[arg(short = 'a', long = "all-tags")]
    pub all_tags: bool,
    /// Suppress verbose output
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Pull for this platform (only the host's: berth runs no other)
    #[arg(long)]
    pub platform: Option<String>,
    /// Skip image verification (default true; berth does not verify signatures)
    #[arg(long = "disable-content-trust", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub disable_content_trust: bool,
    /// NAME[:TAG|@DIGEST]
    pub name: String,
}

/// Split `name[:tag]` the way the API wants it (`fromImage`, `tag`); digests stay in the name.
fn split_tag(name: &str) -> (String, String) {
    if name.contains('@') {
        return (name.to_string(), String::new());
    }
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.rsplit_once(':') {
        Some((_, tag)) => (
            name[..name.len() - tag.len() - 1].to_string(),
            tag.to_string(),
        ),
        None => (name.to_string(), "latest".to_string()),
    }
}

#[derive(Debug, Clone, Args)]
pub struct PushArgs {
    /// Push all tags of an image to the repository
    #[arg(short = 'a', long = "all-tags")]
    pub all_tags: bool,
    /// Suppress verbose output
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Push only the host's platform (os[/arch]); others are refused
    #[arg(long)]
    pub platform: Option<String>,
    /// Skip image verification (default true; berth does not verify signatures)
    #[arg(long = "disable-content-trust", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub disable_content_trust: bool,
    /// NAME[:TAG]
    pub name: String,
}

/// `--disable-content-trust=false` asks for signature verification, which needs a notary
/// server berth does not talk to: refused rather than ignored.
fn content_trust(disabled: bool) -> Result<(), i32> {
    if disabled {
        return Ok(());
    }
    eprintln!(
        "berth: content trust (--disable-content-trust=false) needs a notary server; berth does not verify image signatures"
    );
    Err(1)
}

/// Pull through the daemon, drawing progress on `out` (a terminal gets bars).
pub async fn pull_image(
    c: &Client,
    name: &str,
    platform: Option<&str>,
    all_tags: bool,
    out: &mut dyn std::io::Write,
    tty: bool,
) -> Result<(), String> {
    let (image, tag) = split_tag(name);
    let mut q = format!("/images/create?fromImage={}", enc(&image));
    if !all_tags && !tag.is_empty() {
        q.push_str(&format!("&tag={}", enc(&tag)));
    }
    if let Some(p) = platform {
        q.push_str(&format!("&platform={}", enc(p)));
    }
    stream_messages(c, &q, &image, out, tty).await
}

/// POST `path` and draw the JSON message stream it answers with.
async fn stream_messages(
    c: &Client,
    q: &str,
    image: &str,
    out: &mut dyn std::io::Write,
    tty: bool,
) -> Result<(), String> {
    let headers: Vec<(&str, String)> = crate::auth::header_for_image(image)
        .map(|h| vec![("X-Registry-Auth", h)])
        .unwrap_or_default();
    let resp = c
        .send_with(
            Method::POST,
            q,
            crate::client::empty(),
            "application/json",
            &headers,
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut r = Renderer::new(out, tty);
    let mut pending: Vec<u8> = Vec::new();
    let mut failure = None;
    crate::client::for_each_chunk(resp, |chunk| {
        pending.extend_from_slice(chunk);
        while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=pos).collect();
            if failure.is_none() {
                if let Err(e) = r.feed(&line) {
                    failure = Some(e);
                }
            }
        }
    })
    .await
    .map_err(|e| e.to_string())?;
    if failure.is_none() && !pending.is_empty() {
        if let Err(e) = r.feed(&pending) {
            failure = Some(e);
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

pub async fn pull(c: &Client, a: PullArgs) -> i32 {
    if let Err(code) =
        content_trust(a.disable_content_trust).and_then(|()| super::platform_arg(&a.platform))
    {
        return code;
    }
    let tty = crate::stream::is_tty(std::io::stdout());
    let res = if a.quiet {
        pull_image(
            c,
            &a.name,
            a.platform.as_deref(),
            a.all_tags,
            &mut std::io::sink(),
            false,
        )
        .await
    } else {
        let mut out = std::io::stdout();
        pull_image(c, &a.name, a.platform.as_deref(), a.all_tags, &mut out, tty).await
    };
    match res {
        Ok(()) => {
            println!("{}", full_name(&a.name));
            0
        }
        Err(e) if e.starts_with("Error response from daemon") => {
            eprintln!("{e}");
            1
        }
        Err(e) => {
            eprintln!("Error response from daemon: {e}");
            1
        }
    }
}

pub async fn push(c: &Client, a: PushArgs) -> i32 {
    if let Err(code) =
        content_trust(a.disable_content_trust).and_then(|()| super::platform_arg(&a.platform))
    {
        return code;
    }
    let (image, tag) = split_tag(&a.name);
    let explicit_tag = a.name.rsplit('/').next().is_some_and(|l| l.contains(':'));
    let mut q = format!("/images/{}/push", enc(&image));
    if !a.all_tags && (explicit_tag || !tag.is_empty()) {
        q.push_str(&format!("?tag={}", enc(&tag)));
    }
    let tty = crate::stream::is_tty(std::io::stdout());
    let res = if a.quiet {
        stream_messages(c, &q, &image, &mut std::io::sink(), false).await
    } else {
        stream_messages(c, &q, &image, &mut std::io::stdout(), tty).await
    };
    match res {
        Ok(()) => {
            if a.quiet {
                println!("{}", full_name(&a.name));
            }
            0
        }
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct LoginArgs {
    /// Username
    #[arg(short = 'u', long)]
    pub username: Option<String>,
    /// Password
    #[arg(short = 'p', long)]
    pub password: Option<String>,
    /// Take the password from stdin
    #[arg(long = "password-stdin")]
    pub password_stdin: bool,
    /// SERVER (Docker Hub when absent)
    pub server: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct SearchArgs {
    /// Max number of search results
    #[arg(long, default_value_t = 25)]
    pub limit: u32,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Pretty-print search using a Go template
    #[arg(long)]
    pub format: Option<String>,
    /// Filter output based on conditions provided (is-official, is-automated, stars)
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    /// TERM (prefix a registry host to search it: 127.0.0.1:5000/name)
    pub term: String,
}

pub async fn search(c: &Client, a: SearchArgs) -> i32 {
    let mut path = format!("/images/search?term={}&limit={}", enc(&a.term), a.limit);
    if !a.filter.is_empty() {
        match super::container::filters_json(&a.filter) {
            Ok(f) => path.push_str(&format!("&filters={}", enc(&f))),
            Err(e) => {
                eprintln!("{e}");
                return 125;
            }
        }
    }
    let headers: Vec<(&str, String)> = crate::auth::header_for_image(&a.term)
        .map(|h| vec![("X-Registry-Auth", h)])
        .unwrap_or_default();
    let resp = match c
        .send_with(
            Method::GET,
            &path,
            crate::client::empty(),
            "application/json",
            &headers,
        )
        .await
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let body = match crate::client::read_all(resp).await {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let list: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap_or_default();
    let rows: Vec<serde_json::Value> = list
        .iter()
        .map(|r| {
            let mut desc = r["description"]
                .as_str()
                .unwrap_or_default()
                .replace('\n', " ");
            if !a.no_trunc && desc.chars().count() > 45 {
                desc = format!("{}…", desc.chars().take(44).collect::<String>());
            }
            serde_json::json!({
                "Name": r["name"],
                "Description": desc,
                "StarCount": r["star_count"].as_i64().unwrap_or(0).to_string(),
                "IsOfficial": if r["is_official"].as_bool().unwrap_or(false) { "[OK]" } else { "" },
            })
        })
        .collect();
    super::container::print_formatted(
        &crate::format::Format::parse(a.format.as_deref()),
        &rows,
        &[
            ("Name", "NAME"),
            ("Description", "DESCRIPTION"),
            ("StarCount", "STARS"),
            ("IsOfficial", "OFFICIAL"),
        ],
        None,
    )
}

#[derive(Debug, Clone, Args)]
pub struct LogoutArgs {
    /// SERVER (Docker Hub when absent)
    pub server: Option<String>,
}

pub async fn login(c: &Client, a: LoginArgs) -> i32 {
    let server = a.server.clone().unwrap_or_else(|| "docker.io".into());
    let Some(user) = a.username.clone() else {
        eprintln!("Error: Cannot perform an interactive login from a non TTY device; give -u and -p or --password-stdin");
        return 1;
    };
    let password = if a.password_stdin {
        let mut s = String::new();
        if let Err(e) = std::io::Read::read_to_string(&mut std::io::stdin(), &mut s) {
            eprintln!("Error: reading the password from stdin: {e}");
            return 1;
        }
        s.trim_end_matches(['\n', '\r']).to_string()
    } else if let Some(p) = a.password.clone() {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
        p
    } else {
        eprintln!("Error: Cannot perform an interactive login from a non TTY device; give -p or --password-stdin");
        return 1;
    };
    let body = serde_json::json!({
        "username": user,
        "password": password,
        "serveraddress": crate::auth::key_for(&server),
    });
    match c.post("/auth", Some(body)).await {
        Ok(_) => match crate::auth::store(&server, &user, &password) {
            Ok(()) => {
                println!("Login Succeeded");
                0
            }
            Err(e) => {
                eprintln!("Error saving credentials: {e}");
                1
            }
        },
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

pub fn logout(a: LogoutArgs) -> i32 {
    let server = a.server.unwrap_or_else(|| "docker.io".into());
    match crate::auth::erase(&server) {
        Ok(true) => {
            println!(
                "Removing login credentials for {}",
                crate::auth::key_for(&server)
            );
            0
        }
        Ok(false) => {
            println!("Not logged in to {}", crate::auth::key_for(&server));
            0
        }
        Err(e) => {
            eprintln!("Error: {e}");
            1
        }
    }
}

/// `docker.io/library/busybox:latest` for `busybox`, as docker prints after a pull.
fn full_name(name: &str) -> String {
    let (image, tag) = split_tag(name);
    let first = image.split('/').next().unwrap_or("");
    let has_domain =
        image.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let full = if has_domain {
        image
    } else if image.contains('/') {
        format!("docker.io/{image}")
    } else {
        format!("docker.io/library/{image}")
    };
    if tag.is_empty() {
        full
    } else {
        format!("{full}:{tag}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(split_tag("busybox"), ("busybox".into(), "latest".into()));
        assert_eq!(
            split_tag("127.0.0.1:5000/x:1"),
            ("127.0.0.1:5000/x".into(), "1".into())
        );
        assert_eq!(
            split_tag("127.0.0.1:5000/x"),
            ("127.0.0.1:5000/x".into(), "latest".into())
        );
        assert_eq!(
            split_tag("x@sha256:ab"),
            ("x@sha256:ab".into(), String::new())
        );
        assert_eq!(full_name("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(full_name("a/b:2"), "docker.io/a/b:2");
        assert_eq!(full_name("127.0.0.1:5000/x"), "127.0.0.1:5000/x:latest");
    }
}
