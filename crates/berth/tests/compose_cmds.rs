//! `berth compose` commands on a service's containers, end to end against a private daemon:
//! exec (exit code, -e/-u/-w, --index), port, top, scale, stats, kill --remove-orphans; run
//! (one-off containers, environment precedence, dependencies, --rm, -d --service-ports); cp
//! both ways, attach, wait; with Compose's messages for what is not there.

mod common;
use common::compose::{command, compose, ok, refused, Dir};
use common::{stderr, stdout, Daemon};
use serde_json::Value;
use std::io::BufRead;
use std::process::Stdio;

/// Names of the project's containers (every state), sorted.
fn names(d: &Daemon, project: &str) -> Vec<String> {
    let out = d.ok(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=com.docker.compose.project={project}"),
        "--format",
        "{{.Names}}",
    ]);
    let mut v: Vec<String> = out.lines().map(str::to_string).collect();
    v.sort();
    v
}

fn inspect(d: &Daemon, name: &str) -> Value {
    let v: Value = serde_json::from_str(&d.ok(&["inspect", name])).expect("inspect JSON");
    v[0].clone()
}

const SCALED: &str = r#"
services:
  web:
    image: busybox
    command: ["sleep", "600"]
  pub:
    image: busybox
    command: ["sleep", "601"]
    ports:
      - target: 80
        host_ip: 127.0.0.1
"#;

#[test]
fn exec_port_top_scale_stats_and_kill_on_a_project() {
    let d = Daemon::start_pooled();
    let dir = Dir::new("exec");
    dir.write("compose.yaml", SCALED);
    let c = |args: &[&'static str]| [&["-p", "cmdx"][..], args].concat();
    ok(&d, &dir.0, &c(&["up", "-d", "--scale", "web=2"]));

    // exec: the exit code passes through; -e, -u, -w reach the process; -T gives plain output.
    let out = compose(&d, &dir.0, &c(&["exec", "-T", "web", "sh", "-c", "exit 3"]));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let got = ok(
        &d,
        &dir.0,
        &c(&[
            "exec",
            "-T",
            "-e",
            "A=one",
            "-e",
            "B=two",
            "-u",
            "1000",
            "-w",
            "/tmp",
            "web",
            "sh",
            "-c",
            "echo $A $B $(id -u) $(pwd)",
        ]),
    );
    assert_eq!(got, "one two 1000 /tmp\n");
    // --index picks the replica; hostnames are the containers' short ids.
    let h1 = ok(&d, &dir.0, &c(&["exec", "-T", "web", "hostname"]));
    let h2 = ok(
        &d,
        &dir.0,
        &c(&["exec", "-T", "--index", "2", "web", "hostname"]),
    );
    let id2 = inspect(&d, "cmdx-web-2")["Id"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        id2.starts_with(h2.trim()) && !h2.trim().is_empty(),
        "{h2} vs {id2}"
    );
    assert_ne!(h1, h2);
    refused(
        &d,
        &dir.0,
        &c(&["exec", "-T", "--index", "3", "web", "true"]),
        "service \"web\" is not running container #3",
    );
    refused(
        &d,
        &dir.0,
        &c(&["exec", "-T", "nope", "true"]),
        "no such service: nope",
    );

    // port: the published address of a private port, Compose's message for another port.
    let addr = ok(&d, &dir.0, &c(&["port", "pub", "80"]));
    let host_port = addr
        .trim()
        .strip_prefix("127.0.0.1:")
        .and_then(|p| p.parse::<u16>().ok());
    assert!(matches!(host_port, Some(n) if n > 0), "{addr}");
    refused(
        &d,
        &dir.0,
        &c(&["port", "pub", "81"]),
        "no port 81/tcp for container cmdx-pub-1: 80/tcp",
    );
    refused(&d, &dir.0, &c(&["port", "pub", "http"]), "invalid syntax");

    // top: one table, SERVICE and # first, CMD last.
    let top = ok(&d, &dir.0, &c(&["top"]));
    let mut lines = top.lines();
    let header = lines.next().unwrap_or("");
    assert!(
        header.starts_with("SERVICE  #") && header.ends_with("CMD"),
        "{top}"
    );
    let rows: Vec<&str> = lines.collect();
    assert!(
        rows.iter()
            .any(|l| l.starts_with("pub ") && l.ends_with("sleep 601")),
        "{top}"
    );
    assert_eq!(
        rows.iter().filter(|l| l.starts_with("web ")).count(),
        2,
        "{top}"
    );

    // stats --no-stream: the project's containers only.
    let stats = ok(
        &d,
        &dir.0,
        &c(&["stats", "--no-stream", "--format", "{{.Name}}"]),
    );
    let mut seen: Vec<&str> = stats.lines().collect();
    seen.sort();
    assert_eq!(seen, ["cmdx-pub-1", "cmdx-web-1", "cmdx-web-2"]);

    // scale: up and down for the named service only.
    ok(&d, &dir.0, &c(&["scale", "web=3"]));
    assert_eq!(
        names(&d, "cmdx"),
        ["cmdx-pub-1", "cmdx-web-1", "cmdx-web-2", "cmdx-web-3"]
    );
    ok(&d, &dir.0, &c(&["scale", "web=1"]));
    assert_eq!(names(&d, "cmdx"), ["cmdx-pub-1", "cmdx-web-1"]);
    refused(
        &d,
        &dir.0,
        &c(&["scale", "web"]),
        "invalid scale specifier: web",
    );

    // kill: a service gone from the file is an orphan, killed only with --remove-orphans.
    dir.write(
        "compose.yaml",
        "services:\n  web:\n    image: busybox\n    command: [\"sleep\", \"600\"]\n",
    );
    ok(&d, &dir.0, &c(&["kill"]));
    let running = |n: &str| inspect(&d, n)["State"]["Running"].as_bool();
    assert_eq!(running("cmdx-web-1"), Some(false));
    assert_eq!(running("cmdx-pub-1"), Some(true));
    ok(&d, &dir.0, &c(&["kill", "--remove-orphans"]));
    assert_eq!(running("cmdx-pub-1"), Some(false));
    ok(&d, &dir.0, &c(&["down", "--remove-orphans"]));
    assert!(names(&d, "cmdx").is_empty());
}

const RUN: &str = r#"
services:
  db:
    image: busybox
    command: ["sleep", "600"]
  app:
    image: busybox
    depends_on: [db]
    env_file: [app.env]
    environment:
      WHO: file
    ports:
      - target: 8080
        host_ip: 127.0.0.1
    command: ["sh", "-c", "echo $$WHO"]
"#;

#[test]
fn run_makes_one_off_containers_after_the_dependencies() {
    let d = Daemon::start_pooled();
    let dir = Dir::new("run");
    dir.write("compose.yaml", RUN)
        .write("app.env", "WHO=envfile\nOTHER=envfile\n");
    let c = |args: &[&'static str]| [&["-p", "cmdr"][..], args].concat();

    // Attached: the container's exit code; -e over environment over env_file; db started.
    let out = compose(
        &d,
        &dir.0,
        &c(&[
            "run",
            "--rm",
            "-e",
            "WHO=cli",
            "app",
            "sh",
            "-c",
            "echo $WHO $OTHER; exit 5",
        ]),
    );
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert_eq!(stdout(&out), "cli envfile\n");
    assert_eq!(names(&d, "cmdr"), ["cmdr-db-1"], "the one-off is removed");
    assert_eq!(
        inspect(&d, "cmdr-db-1")["State"]["Running"].as_bool(),
        Some(true)
    );
    assert_eq!(ok(&d, &dir.0, &c(&["run", "--rm", "-T", "app"])), "file\n");
    // -u, -w, a relative -v and --entrypoint override the service.
    dir.write("data.txt", "bound\n");
    let got = ok(
        &d,
        &dir.0,
        &c(&[
            "run",
            "--rm",
            "--no-deps",
            "-u",
            "1000",
            "-w",
            "/tmp",
            "-v",
            "./data.txt:/data.txt:ro",
            "--entrypoint",
            "sh -c",
            "app",
            "echo $(id -u) $(pwd) $(cat /data.txt)",
        ]),
    );
    assert_eq!(got, "1000 /tmp bound\n");

    // Detached with the service's ports: a one-off by Compose's name and labels.
    let id = ok(
        &d,
        &dir.0,
        &c(&["run", "-d", "--service-ports", "app", "sleep", "600"]),
    );
    let v = inspect(&d, id.trim());
    let name = v["Name"]
        .as_str()
        .unwrap_or("")
        .trim_start_matches('/')
        .to_string();
    let suffix = name.strip_prefix("cmdr-app-run-").unwrap_or("");
    assert!(
        suffix.len() == 12 && suffix.bytes().all(|b| b.is_ascii_hexdigit()),
        "{name}"
    );
    let labels = &v["Config"]["Labels"];
    assert_eq!(labels["com.docker.compose.oneoff"], "True");
    let slug = labels["com.docker.compose.slug"].as_str().unwrap_or("");
    assert!(slug.len() == 64 && slug.starts_with(suffix), "{slug}");
    assert!(
        v["HostConfig"]["PortBindings"]["8080/tcp"].is_array(),
        "{}",
        v["HostConfig"]
    );
    // Without --service-ports the service's ports are not published.
    // -p publishes (`-p` after `run` is --publish, before it the project), -l labels.
    let plain = ok(
        &d,
        &dir.0,
        &c(&[
            "run",
            "-d",
            "--no-deps",
            "-p",
            "127.0.0.1::9090",
            "-l",
            "extra=yes",
            "app",
            "sleep",
            "600",
        ]),
    );
    let v = inspect(&d, plain.trim());
    assert_eq!(v["Config"]["Labels"]["extra"], "yes");
    assert_eq!(
        v["HostConfig"]["PortBindings"]["9090/tcp"][0]["HostIp"], "127.0.0.1",
        "{}",
        v["HostConfig"]
    );
    assert!(
        v["HostConfig"]["PortBindings"]["8080/tcp"].is_null(),
        "{}",
        v["HostConfig"]
    );

    refused(
        &d,
        &dir.0,
        &c(&["run", "--service-ports", "-p", "9000:80", "app"]),
        "--service-ports and --publish are incompatible",
    );
    refused(&d, &dir.0, &c(&["run", "nope"]), "no such service: nope");

    // down takes the one-off containers too.
    ok(&d, &dir.0, &c(&["down"]));
    assert!(names(&d, "cmdr").is_empty());
}

const BOX: &str = r#"
services:
  box:
    image: busybox
    command: ["sh", "-c", "while [ ! -e /tmp/stop ]; do echo tick; sleep 0.2; done; exit 7"]
  waiter:
    image: busybox
    command: ["sh", "-c", "while [ ! -e /tmp/go ]; do sleep 0.1; done; exit 4"]
"#;

#[test]
fn cp_both_ways_attach_and_wait() {
    let d = Daemon::start_pooled();
    let dir = Dir::new("cp");
    dir.write("compose.yaml", BOX)
        .write("in.txt", "from the host\n");
    let c = |args: &[&'static str]| [&["-p", "cmdc"][..], args].concat();
    ok(&d, &dir.0, &c(&["up", "-d"]));

    // cp into the service's container and back out.
    ok(&d, &dir.0, &c(&["cp", "in.txt", "box:/tmp/in.txt"]));
    let got = ok(&d, &dir.0, &c(&["exec", "-T", "box", "cat", "/tmp/in.txt"]));
    assert_eq!(got, "from the host\n");
    ok(
        &d,
        &dir.0,
        &c(&[
            "exec",
            "-T",
            "box",
            "sh",
            "-c",
            "echo from the box > /tmp/out.txt",
        ]),
    );
    ok(&d, &dir.0, &c(&["cp", "box:/tmp/out.txt", "out.txt"]));
    let back = std::fs::read_to_string(dir.0.join("out.txt")).unwrap_or_default();
    assert_eq!(back, "from the box\n");
    refused(
        &d,
        &dir.0,
        &c(&["cp", "nope:/etc/hosts", "x"]),
        "no container found for service \"nope\"",
    );
    refused(
        &d,
        &dir.0,
        &c(&["cp", "box:/a", "box:/b"]),
        "copying between services is not supported",
    );

    // attach without stdin: the output, then the container's exit code.
    let mut att = command(&d, &dir.0, &c(&["attach", "--no-stdin", "box"]))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn attach");
    let mut lines = std::io::BufReader::new(att.stdout.take().expect("stdout")).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    assert_eq!(first, "tick");
    ok(&d, &dir.0, &c(&["exec", "-T", "box", "touch", "/tmp/stop"]));
    for _ in lines.by_ref() {}
    let status = att.wait().expect("attach exit");
    assert_eq!(status.code(), Some(7));

    // wait: nothing running is an error; a running container's exit is printed and passed on.
    refused(
        &d,
        &dir.0,
        &c(&["wait", "box"]),
        "no containers for project \"cmdc\"",
    );
    let waiter_id = inspect(&d, "cmdc-waiter-1")["Id"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let waiting = command(&d, &dir.0, &c(&["wait", "--down-project", "waiter"]))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wait");
    // Not an assertion on time: wait must have listed the running container before it exits.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    ok(
        &d,
        &dir.0,
        &c(&["exec", "-T", "waiter", "touch", "/tmp/go"]),
    );
    let out = waiting.wait_with_output().expect("wait exit");
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!("container \"{waiter_id}\" exited with status code 4\n")
    );
    // --down-project took the project down after that first exit.
    assert!(names(&d, "cmdc").is_empty());
    ok(&d, &dir.0, &c(&["down"]));
}

#[test]
fn run_volumes_bare_env_keys_unknown_services_and_dry_run() {
    let d = Daemon::start_pooled();
    let dir = Dir::new("rv");
    dir.write(".env", "FROM_DOTENV=dot\n").write(
        "compose.yaml",
        "name: rv\nservices:\n  app:\n    image: busybox\n    environment:\n      KEEP: file\nvolumes:\n  data: {}\n",
    );
    // A declared volume is the project's; a lone target an anonymous volume; a bare -e KEY
    // takes the project environment (.env) and an unset one leaves the file's value.
    let out = ok(
        &d,
        &dir.0,
        &[
            "run",
            "--rm",
            "-T",
            "-v",
            "data:/d",
            "-v",
            "/anon",
            "-e",
            "FROM_DOTENV",
            "-e",
            "KEEP",
            "app",
            "sh",
            "-c",
            "echo $FROM_DOTENV $KEEP > /d/x; cat /d/x; grep -c ' /anon ' /proc/mounts",
        ],
    );
    assert_eq!(out.trim(), "dot file\n1");
    assert_eq!(
        d.ok(&["run", "--rm", "-v", "rv_data:/d", "busybox", "cat", "/d/x"]),
        "dot file"
    );
    // Flags after the service belong to the command: `-u` here is env's, not run's.
    let out = ok(
        &d,
        &dir.0,
        &["run", "--rm", "-T", "app", "env", "-u", "KEEP"],
    );
    assert!(!out.contains("KEEP="), "{out}");
    assert!(out.contains("PATH="), "{out}");
    refused(
        &d,
        &dir.0,
        &["exec", "nope", "true"],
        "no such service: nope",
    );
    refused(
        &d,
        &dir.0,
        &["--dry-run", "run", "app", "true"],
        "--dry-run is not supported by `compose run`",
    );
    ok(&d, &dir.0, &["down", "-v"]);
    assert_eq!(d.ok(&["volume", "ls", "-q"]), "");
}
