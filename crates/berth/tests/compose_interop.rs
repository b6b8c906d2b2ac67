//! `berth compose` and docker-compose 1.29 (Debian's, Python) against the same berthd: a
//! project either one made is listed, shown and removed by the other, and docker-compose
//! runs a two-service project (busybox httpd + a healthchecked dependency) on berthd.

mod common;
use common::compose::{ok, Dir};
use common::{stderr, stdout, Daemon};
use std::path::Path;

/// docker-compose 1.29 run in `dir` against the test daemon (Debian's package
/// `docker-compose`, a test dependency like skopeo).
fn docker_compose(d: &Daemon, dir: &Path, args: &[&str]) -> String {
    let have = std::process::Command::new("dpkg")
        .args(["-s", "docker-compose"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        have,
        "docker-compose 1.29 is missing: apt-get install docker-compose"
    );
    let out = std::process::Command::new("docker-compose")
        .current_dir(dir)
        .env("DOCKER_HOST", d.host())
        .env_remove("COMPOSE_PROJECT_NAME")
        .env_remove("COMPOSE_FILE")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run docker-compose");
    assert!(
        out.status.success(),
        "docker-compose {args:?} failed ({:?}): {}\n--- stdout ---\n{}\n--- daemon log ---\n{}",
        out.status.code(),
        stderr(&out),
        stdout(&out),
        d.daemon_log()
    );
    stdout(&out)
}

/// Nothing of the project is left: containers and networks (by label).
fn assert_gone(d: &Daemon, project: &str) {
    let label = format!("label=com.docker.compose.project={project}");
    assert_eq!(d.ok(&["ps", "-aq", "--filter", &label]), "");
    assert_eq!(d.ok(&["network", "ls", "-q", "--filter", &label]), "");
}

const TWO: &str = r#"
version: "2.4"
services:
  web:
    image: busybox
    command: ["sh", "-c", "echo hi > /index.html; exec httpd -f -p 80 -h /"]
    depends_on:
      db:
        condition: service_healthy
  db:
    image: busybox
    command: ["sh", "-c", "touch /ready; exec sleep 1000"]
    healthcheck:
      test: ["CMD", "test", "-f", "/ready"]
      interval: 1s
      retries: 20
"#;

#[test]
fn docker_compose_project_runs_then_berth_lists_and_removes_it() {
    let d = Daemon::start_pooled();
    let dir = Dir::new("dc-two");
    dir.write("docker-compose.yml", TWO);
    docker_compose(&d, &dir.0, &["-p", "dctwo", "up", "-d"]);
    // docker-compose 1.29 waited for db's health before starting web; web serves over the
    // project network, reached by its service name from db.
    let page = d.ok(&["exec", "dctwo_db_1", "wget", "-qO-", "http://web/"]);
    assert_eq!(page.trim(), "hi");
    let health = d.ok(&["inspect", "-f", "{{.State.Health.Status}}", "dctwo_db_1"]);
    assert_eq!(health.trim(), "healthy");

    // berth compose sees the project by its labels alone, from anywhere.
    let elsewhere = Dir::new("dc-two-elsewhere");
    let ls = ok(&d, &elsewhere.0, &["ls"]);
    let line = ls
        .lines()
        .find(|l| l.starts_with("dctwo "))
        .unwrap_or_else(|| panic!("dctwo not listed:\n{ls}"));
    assert!(line.contains("running(2)"), "{line}");
    let ps = ok(
        &d,
        &elsewhere.0,
        &["-p", "dctwo", "ps", "--format", "{{.Name}} {{.Service}}"],
    );
    let mut rows: Vec<&str> = ps.lines().collect();
    rows.sort();
    assert_eq!(rows, ["dctwo_db_1 db", "dctwo_web_1 web"]);

    ok(&d, &elsewhere.0, &["-p", "dctwo", "down"]);
    assert_gone(&d, "dctwo");
    let ls = ok(&d, &elsewhere.0, &["ls", "-a", "-q"]);
    assert!(!ls.lines().any(|l| l == "dctwo"), "{ls}");
}

#[test]
fn berth_compose_project_is_seen_by_docker_compose() {
    let d = Daemon::start_pooled();
    let dir = Dir::new("berth-two");
    dir.write("docker-compose.yml", TWO);
    ok(&d, &dir.0, &["-p", "btwo", "up", "-d"]);
    let ps = docker_compose(&d, &dir.0, &["-p", "btwo", "ps"]);
    for name in ["btwo-web-1", "btwo-db-1"] {
        let line = ps
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} not in docker-compose ps:\n{ps}"));
        assert!(line.contains("Up"), "{line}");
    }
    let q = docker_compose(&d, &dir.0, &["-p", "btwo", "ps", "-q"]);
    assert_eq!(q.lines().count(), 2, "{q}");
    // And docker-compose takes it down.
    docker_compose(&d, &dir.0, &["-p", "btwo", "down"]);
    assert_gone(&d, "btwo");
}
