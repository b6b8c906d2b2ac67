//! Flag parity with the real docker CLI: for every command and subcommand docker 28 lists
//! (except the plugin/trust/... families in [`SKIPPED_COMMANDS`]), berth must have the
//! command and every flag docker's `--help` shows, long name and short alias alike.

mod common;
use common::{stderr, stdout, Daemon};
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// Docker commands out of scope for now, with the reason.
const SKIPPED_COMMANDS: &[(&str, &str)] = &[
    ("plugin", "no plugin system"),
    ("trust", "no notary / content trust"),
    (
        "manifest",
        "client-side registry tool, not an engine command",
    ),
    ("context", "client-side configuration"),
    ("checkpoint", "no CRIU checkpoints"),
];

fn help(bin: &str, cmd: &[&str]) -> String {
    let mut args: Vec<&str> = cmd.to_vec();
    args.push("--help");
    let out = Command::new(bin)
        .args(&args)
        .env("DOCKER_CLI_HINTS", "false")
        .env("DOCKER_HOST", "unix:///nonexistent.sock")
        .output()
        .unwrap_or_else(|e| panic!("run {bin} {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{bin} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Command names listed under the `...Commands:` headings of a help text.
fn commands(help: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut in_list = false;
    for line in help.lines() {
        if line.ends_with("Commands:") && !line.starts_with(' ') {
            in_list = true;
            continue;
        }
        if !line.starts_with("  ") {
            in_list = false;
            continue;
        }
        if in_list {
            if let Some(name) = line.split_whitespace().next() {
                if name != "help" {
                    out.insert(name.to_string());
                }
            }
        }
    }
    out
}

/// Flags of a help text: `--long` and, where given, `-s`, from the lines that start a flag
/// (indented at most six spaces; descriptions and their continuations are indented more).
fn flags(help: &str) -> BTreeMap<String, Option<String>> {
    let mut out = BTreeMap::new();
    for line in help.lines() {
        let rest = line.trim_start();
        let indent = line.len() - rest.len();
        if !(2..=6).contains(&indent) || !rest.starts_with('-') {
            continue;
        }
        let mut short = None;
        let mut words = rest.split([',', ' ']).filter(|w| !w.is_empty());
        let mut long = None;
        for w in words.by_ref() {
            if let Some(l) = w.strip_prefix("--") {
                // clap writes optional values as `--flag[=<VALUE>]`.
                let name = l.split(['[', '=', '<']).next().unwrap_or(l);
                long = Some(format!("--{name}"));
                break;
            }
            if w.starts_with('-') && w.len() == 2 {
                short = Some(w.to_string());
            } else {
                break;
            }
        }
        if let Some(l) = long {
            out.insert(l, short);
        }
    }
    out
}

#[test]
fn every_docker_flag_is_a_berth_flag() {
    let berth = env!("CARGO_BIN_EXE_berth");
    let docker_top = commands(&help("docker", &[]));
    let berth_top = commands(&help(berth, &[]));
    assert!(
        docker_top.len() > 40 && docker_top.contains("run"),
        "docker's command list did not parse: {docker_top:?}"
    );
    let skipped: BTreeSet<&str> = SKIPPED_COMMANDS.iter().map(|(c, _)| *c).collect();
    let mut missing = Vec::new();
    let mut checked = Vec::new();
    for cmd in &docker_top {
        if skipped.contains(cmd.as_str()) {
            continue;
        }
        if !berth_top.contains(cmd) {
            missing.push(format!("command `{cmd}`"));
            continue;
        }
        let docker_help = help("docker", &[cmd]);
        let subs = commands(&docker_help);
        if subs.is_empty() {
            checked.push(vec![cmd.clone()]);
            continue;
        }
        let berth_subs = commands(&help(berth, &[cmd]));
        for s in subs {
            if berth_subs.contains(&s) {
                checked.push(vec![cmd.clone(), s]);
            } else {
                missing.push(format!("command `{cmd} {s}`"));
            }
        }
    }
    for cmd in &checked {
        let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
        let name = cmd.join(" ");
        let docker_flags = flags(&help("docker", &args));
        let berth_flags = flags(&help(berth, &args));
        assert!(
            !berth_flags.is_empty(),
            "berth {name} --help lists no flags (parse failure?)"
        );
        for (long, short) in &docker_flags {
            match berth_flags.get(long) {
                None => missing.push(format!("{name}: {long}")),
                Some(berth_short) => {
                    if let Some(s) = short {
                        if berth_short.as_ref() != Some(s) {
                            missing.push(format!("{name}: {s} (short for {long})"));
                        }
                    }
                }
            }
        }
    }
    assert!(
        checked.len() > 60,
        "too few commands checked: {}",
        checked.len()
    );
    assert!(
        missing.is_empty(),
        "berth lacks what docker has ({} items):\n  {}",
        missing.len(),
        missing.join("\n  ")
    );
}

#[test]
fn flag_parser_reads_both_help_styles() {
    let docker = "Options:\n  -a, --attach list                      Attach to STDIN\n      --add-host list     Add a\n                          --not-a-flag continuation\n";
    let f = flags(docker);
    assert_eq!(f.get("--attach"), Some(&Some("-a".to_string())));
    assert_eq!(f.get("--add-host"), Some(&None));
    assert!(!f.contains_key("--not-a-flag"));
    let clap = "Options:\n      --sig-proxy[=<SIG_PROXY>]\n          Proxy\n  -d, --detach\n          Run container in background\n      --name <NAME>\n          Assign a name\n";
    let f = flags(clap);
    assert_eq!(f.get("--detach"), Some(&Some("-d".to_string())));
    assert_eq!(f.get("--name"), Some(&None));
    assert_eq!(f.get("--sig-proxy"), Some(&None));
}

#[test]
fn new_run_flags_are_carried_out_or_refused() {
    let d = Daemon::start();
    let tmp = TempDir::new("run");
    let dir = tmp.0.clone();
    let cid = dir.join("cid");
    let cid_s = cid.to_str().unwrap();
    // --cidfile: the id is written; an existing file is refused and left alone.
    let id = d.ok(&["run", "-d", "--cidfile", cid_s, "busybox", "sleep", "60"]);
    assert_eq!(std::fs::read_to_string(&cid).unwrap(), id);
    let out = d.berth(&["run", "--cidfile", cid_s, "busybox", "true"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("container ID file found"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read_to_string(&cid).unwrap(), id);
    // --label-file, --domainname, exec --env-file.
    std::fs::write(dir.join("labels"), "# c\nfrom.file=yes\n\n").unwrap();
    std::fs::write(dir.join("env"), "FROM_FILE=1\n").unwrap();
    let lf = dir.join("labels").display().to_string();
    let ef = dir.join("env").display().to_string();
    let out = d.ok(&[
        "run",
        "--rm",
        "--label-file",
        &lf,
        "--domainname",
        "example.org",
        "busybox",
        "cat",
        "/proc/sys/kernel/domainname",
    ]);
    assert_eq!(out, "example.org");
    let c = d.ok(&["create", "--label-file", &lf, "busybox", "true"]);
    assert_eq!(
        d.ok(&[
            "inspect",
            "-f",
            "{{index .Config.Labels \"from.file\"}}",
            &c
        ]),
        "yes"
    );
    assert_eq!(
        d.ok(&[
            "exec",
            "--env-file",
            &ef,
            &id,
            "sh",
            "-c",
            "echo $FROM_FILE"
        ]),
        "1"
    );
    // -a stdout: only stdout comes back.
    let out = d.berth(&[
        "run",
        "--rm",
        "-a",
        "stdout",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2",
    ]);
    assert_eq!(stdout(&out).trim(), "out");
    assert!(!stderr(&out).contains("err"), "{}", stderr(&out));
    let out = d.berth(&["run", "-d", "-a", "stdout", "busybox", "true"]);
    assert!(
        stderr(&out).contains("Conflicting options: -a and -d"),
        "{}",
        stderr(&out)
    );
    // --pull never does not pull; other platforms are refused.
    let out = d.berth(&["run", "--pull", "never", "127.0.0.1:1/none:x", "true"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("No such image"), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("Unable to find image"),
        "{}",
        stderr(&out)
    );
    let out = d.berth(&["run", "--platform", "linux/s390x", "busybox", "true"]);
    assert!(stderr(&out).contains("not supported"), "{}", stderr(&out));
    let out = d.berth(&["save", "--platform", "windows/amd64", "busybox"]);
    assert!(stderr(&out).contains("not supported"), "{}", stderr(&out));
    // logs --details: the attributes the log options name go before each line.
    let c = d.ok(&[
        "run",
        "-d",
        "--log-opt",
        "labels=team",
        "-l",
        "team=a b",
        "busybox",
        "echo",
        "hi",
    ]);
    d.ok(&["wait", &c]);
    assert_eq!(d.ok(&["logs", "--details", &c]), "team=a+b hi");
    // --use-api-socket: the daemon's socket and the client's credentials go in.
    let cfg = d.data_root.parent().unwrap().join("docker-config");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::write(
        cfg.join("config.json"),
        r#"{"auths":{"127.0.0.1:1":{"auth":"dTpw"}}}"#,
    )
    .unwrap();
    let out = d.ok(&[
        "run",
        "--rm",
        "--use-api-socket",
        "busybox",
        "sh",
        "-c",
        "test -S /var/run/docker.sock && cat $DOCKER_CONFIG/config.json",
    ]);
    assert!(out.contains("dTpw"), "{out}");
    // Refusals.
    for (args, msg) in [
        (&["start", "--checkpoint", "cp1", "x"][..], "checkpoint"),
        (
            &["volume", "create", "--type", "mount", "v"][..],
            "cluster volumes",
        ),
        (&["volume", "ls", "--cluster"][..], "cluster volumes"),
        (
            &["network", "create", "--config-only", "n"][..],
            "config-only",
        ),
        (&["network", "create", "--ingress", "n"][..], "swarm"),
        (
            &["run", "--disable-content-trust=false", "busybox", "true"][..],
            "notary",
        ),
    ] {
        let out = d.berth(args);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(stderr(&out).contains(msg), "{args:?}: {}", stderr(&out));
    }
    // --sig-proxy (default): a signal to the CLI reaches the container.
    let mut child = Command::new(common::berth_bin())
        .args(["-H", &d.host(), "run", "--rm", "busybox", "sh", "-c"])
        .arg("trap 'echo got-term; exit 3' TERM; echo ready; while true; do sleep 0.1; done")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(lines.next().unwrap().unwrap(), "got-term");
    assert_eq!(child.wait().unwrap().code(), Some(3));
    d.ok(&["rm", "-f", &id]);
}

/// A scratch directory removed on drop, also when the test fails.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("berth-cliflags-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn pull_modes_subcommands_and_formats() {
    let d = Daemon::start();
    let reg = common::BerthRegistry::start("cliflags");
    let img = format!("{}/flags/bb:1", reg.addr);
    d.ok(&["tag", "busybox", &img]);
    d.ok(&["image", "push", "-q", &img]);
    d.ok(&["rmi", &img]);
    // -q: the pull of a missing image says nothing; --pull always pulls and says so.
    let out = d.berth(&["run", "-q", "--rm", &img, "echo", "ran"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "ran");
    assert_eq!(stderr(&out), "");
    let out = d.berth(&["container", "run", "--pull", "always", "--rm", &img, "true"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("Status:"), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("Unable to find image"),
        "{}",
        stderr(&out)
    );
    for verb in ["push", "pull"] {
        let out = d.berth(&[verb, "--platform", "linux/arm64", &img]);
        assert!(stderr(&out).contains("not supported"), "{}", stderr(&out));
    }
    // The management subcommands docker has.
    assert_eq!(
        d.ok(&["image", "pull", "-q", "--platform", "linux", &img]),
        img
    );
    assert!(d.ok(&["images", "--tree"]).contains("└─ linux/"));
    // --format on version and info.
    assert!(!d
        .ok(&["version", "--format", "{{.Server.ApiVersion}}"])
        .is_empty());
    assert_eq!(d.ok(&["info", "-f", "{{json .Containers}}"]), "0");
    // Filters and flags that are refused or carried out.
    let out = d.berth(&["search", "--filter", "bogus=1", "x"]);
    assert!(stderr(&out).contains("invalid filter"), "{}", stderr(&out));
    let out = d.berth(&["network", "rm", "-f", "no-such-net"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(d
        .ok(&["network", "inspect", "-v", "bridge"])
        .contains("\"Name\": \"bridge\""));
    for (args, msg) in [
        (&["volume", "update", "v"][..], "cluster volumes"),
        (
            &["builder", "prune", "-f", "--filter", "until=1h"][..],
            "not supported",
        ),
    ] {
        let out = d.berth(args);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(stderr(&out).contains(msg), "{args:?}: {}", stderr(&out));
    }
}
