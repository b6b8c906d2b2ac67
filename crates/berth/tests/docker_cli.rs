//! The real docker CLI (28.x, on PATH) drives berth unchanged.

mod common;
use common::{stderr, stdout, Daemon};

fn have_docker() -> bool {
    std::process::Command::new("docker")
        .arg("--version")
        .output()
        .is_ok()
}

#[test]
fn docker_cli_runs_containers() {
    assert!(
        have_docker(),
        "the docker CLI must be on PATH for interop tests"
    );
    let d = Daemon::start();
    let out = d.docker(&["version", "--format", "{{.Server.APIVersion}}"]);
    assert_eq!(stdout(&out).trim(), "1.50", "{}", stderr(&out));
    let out = d.docker(&["run", "--rm", "busybox", "echo", "hello via docker"]);
    assert_eq!(stdout(&out), "hello via docker\n", "{}", stderr(&out));
    let out = d.docker(&["run", "--rm", "busybox", "sh", "-c", "echo e >&2; exit 9"]);
    assert_eq!((out.status.code(), stderr(&out).as_str()), (Some(9), "e\n"));
    let out = d.docker(&["run", "--rm", "busybox", "nosuchcmd"]);
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    let out = d.docker(&[
        "run",
        "-d",
        "--name",
        "dk",
        "busybox",
        "sh",
        "-c",
        "echo ready; sleep 60",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = d.docker(&["ps", "--format", "{{.Names}}\t{{.Image}}\t{{.Command}}"]);
    assert!(
        stdout(&out).starts_with("dk\tbusybox\t\"sh -c"),
        "{} {}",
        stdout(&out),
        stderr(&out)
    );
    let out = d.docker(&["exec", "dk", "cat", "/etc/hostname"]);
    assert_eq!(stdout(&out).trim().len(), 12, "{}", stderr(&out));
    let out = d.docker(&["exec", "dk", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3));
    let out = d.docker(&["exec", "dk", "nosuchcmd"]);
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("executable file not found"),
        "{}",
        stdout(&out)
    );
    let out = d.docker(&["logs", "dk"]);
    assert_eq!(stdout(&out), "ready\n");
    let out = d.docker(&[
        "inspect",
        "-f",
        "{{.State.Running}} {{.Config.Image}}",
        "dk",
    ]);
    assert_eq!(stdout(&out).trim(), "true busybox");
    let out = d.docker(&["rm", "dk"]);
    assert_eq!(out.status.code(), Some(1));
    let out = d.docker(&["rm", "-f", "dk"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = d.docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(stdout(&out).trim(), "busybox:latest", "{}", stderr(&out));
    // The pull goes to a registry on loopback where nothing listens.
    let out = d.docker(&["run", "--rm", "127.0.0.1:9/nosuchimage"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("Unable to find image"),
        "{}",
        stderr(&out)
    );
}

/// `docker <args>` that must succeed; returns trimmed stdout.
fn dok(d: &Daemon, args: &[&str]) -> String {
    let out = d.docker(args);
    assert!(
        out.status.success(),
        "docker {args:?} failed ({:?}): {}",
        out.status.code(),
        stderr(&out)
    );
    stdout(&out).trim().to_string()
}

#[test]
fn docker_cli_files_images_and_lifecycle() {
    let d = Daemon::start();
    let tmp = std::env::temp_dir().join(format!("berth-dockercli-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    dok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "box",
            "busybox",
            "sh",
            "-c",
            "echo hi > /made; sleep 60",
        ],
    );
    common::eventually("file made", || {
        d.docker(&["exec", "box", "test", "-f", "/made"])
            .status
            .success()
    });
    // cp both ways, diff, top, pause/unpause, rename, commit.
    dok(&d, &["cp", "box:/made", tmp.join("made").to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(tmp.join("made")).unwrap(), "hi\n");
    std::fs::write(tmp.join("in"), "in\n").unwrap();
    dok(&d, &["cp", tmp.join("in").to_str().unwrap(), "box:/tmp/in"]);
    assert_eq!(dok(&d, &["exec", "box", "cat", "/tmp/in"]), "in");
    let diff = dok(&d, &["diff", "box"]);
    assert!(diff.lines().any(|l| l == "A /made"), "{diff}");
    assert!(dok(&d, &["top", "box"]).contains("sleep 60"));
    dok(&d, &["pause", "box"]);
    assert_eq!(
        dok(&d, &["inspect", "-f", "{{.State.Status}}", "box"]),
        "paused"
    );
    dok(&d, &["unpause", "box"]);
    dok(&d, &["rename", "box", "box2"]);
    let id = dok(&d, &["commit", "-m", "via docker", "box2", "committed:v1"]);
    assert!(id.starts_with("sha256:"), "{id}");
    assert_eq!(
        dok(&d, &["run", "--rm", "committed:v1", "cat", "/made"]),
        "hi"
    );
    let tar = tmp.join("export.tar");
    dok(&d, &["export", "-o", tar.to_str().unwrap(), "box2"]);
    assert!(std::fs::metadata(&tar).unwrap().len() > 1_000_000);
    dok(&d, &["stop", "-t", "1", "box2"]);
    dok(&d, &["start", "box2"]);
    dok(&d, &["restart", "-t", "1", "box2"]);
    dok(&d, &["kill", "box2"]);
    assert_eq!(dok(&d, &["wait", "box2"]), "137");
    dok(&d, &["rm", "box2"]);
    // Images: tag, history, save/load, rmi.
    dok(&d, &["tag", "busybox", "other:1"]);
    assert!(
        dok(&d, &["history", "--format", "{{.Comment}}", "committed:v1"]).starts_with("via docker")
    );
    let saved = tmp.join("saved.tar");
    dok(&d, &["save", "-o", saved.to_str().unwrap(), "other:1"]);
    dok(&d, &["rmi", "other:1", "committed:v1"]);
    assert_eq!(
        dok(&d, &["load", "-i", saved.to_str().unwrap()]),
        "Loaded image: other:1"
    );
    assert_eq!(
        dok(&d, &["image", "inspect", "-f", "{{.Os}}", "other:1"]),
        "linux"
    );
    let out = d.docker(&["import", "-"]);
    assert!(!out.status.success());
    dok(&d, &["rmi", "other:1"]);
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn docker_cli_networks_ports_and_names() {
    let d = Daemon::start();
    let subnet = d.user_subnet(0);
    let id = dok(&d, &["network", "create", "--subnet", &subnet, "dnet"]);
    assert_eq!(id.len(), 64, "{id}");
    let ls = dok(&d, &["network", "ls", "--format", "{{.Name}}"]);
    assert!(ls.lines().any(|l| l == "dnet"), "{ls}");
    assert_eq!(
        dok(
            &d,
            &[
                "network",
                "inspect",
                "-f",
                "{{range .IPAM.Config}}{{.Subnet}}{{end}}",
                "dnet"
            ]
        ),
        subnet
    );
    let port = common::free_port();
    let web = dok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "dweb",
            "--network",
            "dnet",
            "--network-alias",
            "site",
            "-p",
            &format!("127.0.0.1:{port}:80"),
            "busybox",
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            "/etc",
        ],
    );
    assert_eq!(
        dok(&d, &["port", "dweb"]),
        format!("80/tcp -> 127.0.0.1:{port}")
    );
    let ps = dok(&d, &["ps", "--format", "{{.Ports}} {{.Networks}}"]);
    assert_eq!(ps, format!("127.0.0.1:{port}->80/tcp dnet"));
    let body = std::process::Command::new("curl")
        .args([
            "-s",
            "-m",
            "3",
            &format!("http://127.0.0.1:{port}/hostname"),
        ])
        .output()
        .unwrap();
    assert_eq!(stdout(&body).trim(), &web[..12]);
    let out = dok(
        &d,
        &[
            "run",
            "--rm",
            "--network",
            "dnet",
            "busybox",
            "wget",
            "-qO-",
            "http://site/hostname",
        ],
    );
    assert_eq!(out, &web[..12]);
    let ip = dok(
        &d,
        &[
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            "dweb",
        ],
    );
    let out = dok(
        &d,
        &[
            "run",
            "--rm",
            "--network",
            "dnet",
            "busybox",
            "nslookup",
            "dweb",
        ],
    );
    assert!(out.contains(&format!("Address: {ip}")), "{out}");
    dok(&d, &["network", "disconnect", "dnet", "dweb"]);
    let out = d.docker(&["network", "rm", "bridge"]);
    assert!(!out.status.success());
    dok(&d, &["rm", "-f", "dweb"]);
    dok(&d, &["network", "rm", "dnet"]);
}

#[test]
fn docker_cli_network_modes_connect_and_publish_all() {
    let d = Daemon::start();
    let out = dok(
        &d,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "busybox",
            "ip",
            "-o",
            "link",
        ],
    );
    assert_eq!(out.lines().count(), 1, "{out}");
    let web = dok(
        &d,
        &[
            "run", "-d", "--name", "dw", "--expose", "80", "-P", "busybox", "httpd", "-f", "-p",
            "80", "-h", "/etc",
        ],
    );
    let mapping = dok(&d, &["port", "dw", "80/tcp"]);
    let port = mapping.rsplit(':').next().unwrap();
    let body = std::process::Command::new("curl")
        .args([
            "-s",
            "-m",
            "3",
            &format!("http://127.0.0.1:{port}/hostname"),
        ])
        .output()
        .unwrap();
    assert_eq!(stdout(&body).trim(), &web[..12]);
    let out = dok(
        &d,
        &[
            "run",
            "--rm",
            "--network",
            "container:dw",
            "busybox",
            "wget",
            "-qO-",
            "http://127.0.0.1/hostname",
        ],
    );
    assert_eq!(out, &web[..12]);
    dok(
        &d,
        &["network", "create", "--subnet", &d.user_subnet(0), "dcon"],
    );
    dok(
        &d,
        &["network", "connect", "--alias", "webby", "dcon", "dw"],
    );
    let out = dok(
        &d,
        &[
            "run",
            "--rm",
            "--network",
            "dcon",
            "busybox",
            "wget",
            "-qO-",
            "http://webby/hostname",
        ],
    );
    assert_eq!(out, &web[..12]);
    let nets = dok(
        &d,
        &["inspect", "-f", "{{len .NetworkSettings.Networks}}", "dw"],
    );
    assert_eq!(nets, "2");
    dok(&d, &["rm", "-f", "dw"]);
    dok(&d, &["network", "rm", "dcon"]);
}
