//! `berth compose` image and watch commands end to end against a private daemon: `build`
//! (inline Dockerfile, args, target, a context with .dockerignore), `up --build` and no-op
//! re-ups, `pull_policy`, `pull`, `push` to a registry, `images`, `events --json`, and
//! `watch` syncing edited files into the running container (not ignored ones), restarting
//! after a sync and rebuilding.

mod common;
use common::compose::{command, compose, ok, Dir};
use common::{stderr, stdout, BerthRegistry, Daemon};
use serde_json::Value;
use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Stdio};

fn fails(d: &Daemon, dir: &Path, args: &[&str]) -> String {
    let out = compose(d, dir, args);
    assert!(
        !out.status.success(),
        "compose {args:?} should fail: {}",
        stdout(&out)
    );
    stderr(&out)
}

/// A `berth compose` running in the background (events, watch), killed on drop.
struct Bg(Child);

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn id_of(d: &Daemon, name: &str) -> String {
    d.ok(&["inspect", "-f", "{{.Id}}", name]).trim().to_string()
}

const BUILT: &str = r#"
name: built
services:
  inline:
    build:
      context: .
      dockerfile_inline: |
        FROM busybox AS base
        ARG WHO=nobody
        RUN echo "base $$WHO" > /who
        FROM base AS final
        RUN echo final >> /who
      args:
        WHO: compose
      target: base
    command: ["sleep", "1000"]
  ctx:
    build: ./app
    command: ["sleep", "1000"]
"#;

#[test]
fn build_inline_args_target_and_context_then_up_build_recreates_only_on_change() {
    let d = Daemon::start_pooled();
    let dir = Dir::new("built");
    dir.write("compose.yaml", BUILT)
        .write(
            "app/Dockerfile",
            "FROM busybox\nCOPY . /app\nCMD [\"sleep\", \"1000\"]\n",
        )
        .write("app/keep.txt", "v1\n")
        .write("app/secret.key", "do not send\n")
        .write("app/.dockerignore", "*.key\n");
    ok(&d, &dir.0, &["build", "--build-arg", "WHO=flag"]);
    // The flag's value won over the file's; the target stopped before `final`.
    let who = d.ok(&["run", "--rm", "built-inline", "cat", "/who"]);
    assert_eq!(who.trim(), "base flag");
    let ls = d.ok(&["run", "--rm", "built-ctx", "ls", "/app"]);
    assert!(ls.contains("keep.txt"), "{ls}");
    assert!(!ls.contains("secret.key"), "ignored file sent: {ls}");

    // `up --build` builds with the file's args again.
    ok(&d, &dir.0, &["up", "-d", "--build"]);
    let who = d.ok(&["exec", "built-inline-1", "cat", "/who"]);
    assert_eq!(who.trim(), "base compose");
    let before = (id_of(&d, "built-inline-1"), id_of(&d, "built-ctx-1"));
    // Nothing changed: the same containers.
    ok(&d, &dir.0, &["up", "-d"]);
    assert_eq!(
        before,
        (id_of(&d, "built-inline-1"), id_of(&d, "built-ctx-1"))
    );
    // `up --build` with only ctx's context changed rebuilds both, recreates only ctx.
    dir.write("app/keep.txt", "v2\n");
    ok(&d, &dir.0, &["up", "-d", "--build"]);
    assert_eq!(id_of(&d, "built-inline-1"), before.0);
    assert_ne!(id_of(&d, "built-ctx-1"), before.1);
    let v = d.ok(&["exec", "built-ctx-1", "cat", "/app/keep.txt"]);
    assert_eq!(v.trim(), "v2");
    ok(&d, &dir.0, &["down", "--rmi", "local"]);
}

#[test]
fn pull_policy_and_pull_command() {
    let d = Daemon::start_pooled();
    let reg = BerthRegistry::start("compose-pull");
    let missing = format!("{}/nothing/here:1", reg.addr);
    let dir = Dir::new("policy");
    dir.write(
        "compose.yaml",
        &format!(
            r#"
name: policy
services:
  never:
    image: {missing}
    pull_policy: never
    command: ["sleep", "1000"]
"#
        ),
    );
    let err = fails(&d, &dir.0, &["up", "-d"]);
    assert!(err.contains("pull_policy is never"), "{err}");
    // `pull` skips a never service, so it succeeds without touching the registry.
    ok(&d, &dir.0, &["pull"]);
    // With a policy of always the missing image fails the pull, unless failures are ignored.
    let err = fails(&d, &dir.0, &["pull", "--policy", "always"]);
    assert!(err.contains("Error response from daemon"), "{err}");
    ok(
        &d,
        &dir.0,
        &["pull", "--policy", "always", "--ignore-pull-failures"],
    );

    // missing: busybox is here, so nothing is pulled and up works; build: the image is built
    // though one with its name exists; a build-only service is skipped by `pull`.
    d.ok(&["tag", "busybox", "policy/fresh:1"]);
    dir.write(
        "compose.yaml",
        r#"
name: policy
services:
  here:
    image: busybox
    pull_policy: missing
    command: ["sleep", "1000"]
  fresh:
    image: policy/fresh:1
    pull_policy: build
    build:
      context: .
      dockerfile_inline: |
        FROM busybox
        RUN echo built > /mark
    command: ["sleep", "1000"]
  local:
    build:
      context: .
      dockerfile_inline: "FROM busybox\n"
    command: ["sleep", "1000"]
"#,
    );
    ok(&d, &dir.0, &["pull", "-q"]);
    ok(&d, &dir.0, &["up", "-d"]);
    let mark = d.ok(&["exec", "policy-fresh-1", "cat", "/mark"]);
    assert_eq!(mark.trim(), "built");
    ok(&d, &dir.0, &["down", "--rmi", "local"]);
    d.ok(&["rmi", "policy/fresh:1"]);
}

#[test]
fn push_images_and_events_json() {
    let d = Daemon::start_pooled();
    let reg = BerthRegistry::start("compose-push");
    let image = format!("{}/compose/app:v1", reg.addr);
    let dir = Dir::new("pushed");
    dir.write(
        "compose.yaml",
        &format!(
            r#"
name: pushed
services:
  app:
    image: {image}
    build:
      context: .
      dockerfile_inline: |
        FROM busybox
        RUN echo pushed > /mark
    command: ["sleep", "1000"]
  plain:
    image: busybox
    command: ["sleep", "1000"]
"#
        ),
    );
    let mut ev = command(&d, &dir.0, &["events", "--json"]);
    let mut ev = Bg(ev.stdout(Stdio::piped()).spawn().expect("events"));
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    {
        let out = ev.0.stdout.take().expect("events stdout");
        let lines = lines.clone();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(mut v) = lines.lock() {
                    v.push(l);
                }
            }
        });
    }

    ok(&d, &dir.0, &["build"]);
    ok(&d, &dir.0, &["push"]);
    // What was pushed comes back from the registry after the local copy is gone.
    d.ok(&["rmi", &image]);
    d.ok(&["pull", &image]);
    ok(&d, &dir.0, &["up", "-d"]);

    let json: Value = serde_json::from_str(&ok(&d, &dir.0, &["images", "--format", "json"]))
        .expect("images json");
    let mut rows: Vec<(String, String, String)> = json
        .as_array()
        .expect("array")
        .iter()
        .map(|r| {
            (
                r["ContainerName"].as_str().unwrap_or("").to_string(),
                r["Repository"].as_str().unwrap_or("").to_string(),
                r["Tag"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        [
            (
                "pushed-app-1".to_string(),
                format!("{}/compose/app", reg.addr),
                "v1".to_string()
            ),
            (
                "pushed-plain-1".to_string(),
                "busybox".to_string(),
                "latest".to_string()
            ),
        ]
    );
    let table = ok(&d, &dir.0, &["images"]);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or("")
        .split("  ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(
        header,
        ["CONTAINER", "REPOSITORY", "TAG", "IMAGE ID", "SIZE"]
    );
    let q = ok(&d, &dir.0, &["images", "-q"]);
    assert_eq!(q.lines().count(), 2, "{q}");
    assert!(q.lines().all(|l| l.len() == 64), "{q}");

    // The event stream showed the containers' starts as Compose's JSON lines.
    common::eventually("start events of both services", || {
        let v = lines.lock().map(|v| v.clone()).unwrap_or_default();
        let started: Vec<String> = v
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|j| j["action"] == "start" && j["type"] == "container")
            .filter_map(|j| j["service"].as_str().map(str::to_string))
            .collect();
        started.contains(&"app".to_string()) && started.contains(&"plain".to_string())
    });
    let first: Value = lines
        .lock()
        .ok()
        .and_then(|v| v.first().and_then(|l| serde_json::from_str(l).ok()))
        .expect("an event line");
    for k in ["time", "type", "action", "id", "service", "attributes"] {
        assert!(first.get(k).is_some(), "{k} missing in {first}");
    }
    // --since/--until replay the past and end. A duration becomes whole seconds (Docker's
    // GetTimestamp truncates), so the starts must lie in an earlier second than "0s ago".
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let past = ok(
        &d,
        &dir.0,
        &["events", "--json", "--since", "10m", "--until", "0s", "app"],
    );
    let replayed: Vec<Value> = past
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        replayed
            .iter()
            .any(|j| j["action"] == "start" && j["service"] == "app"),
        "{past}"
    );
    assert!(replayed.iter().all(|j| j["service"] == "app"), "{past}");
    assert!(
        !first["attributes"]
            .as_object()
            .expect("attributes")
            .keys()
            .any(|k| k.starts_with("com.docker.compose.")),
        "{first}"
    );
    drop(ev);
    ok(&d, &dir.0, &["down"]);
    d.ok(&["rmi", &image]);
}

#[test]
fn watch_syncs_restarts_and_rebuilds_but_skips_ignored_files() {
    let d = Daemon::start_pooled();
    let dir = Dir::new("watched");
    dir.write(
        "compose.yaml",
        r#"
name: watched
services:
  web:
    image: busybox
    command: ["sleep", "1000"]
    develop:
      watch:
        - path: ./src
          action: sync
          target: /srv
          ignore:
            - "*.tmp"
  conf:
    image: busybox
    command: ["sh", "-c", "cat /etc/conf/v > /started; trap 'exit 0' TERM; sleep 1000 & wait"]
    develop:
      watch:
        - path: ./conf
          action: sync+restart
          target: /etc/conf
          include:
            - v
  app:
    build: ./app
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"]
    develop:
      watch:
        - path: ./app
          action: rebuild
"#,
    )
    .write("src/index.html", "v0\n")
    .write("conf/v", "1\n")
    .write("app/Dockerfile", "FROM busybox\nCOPY v /v\n")
    .write("app/v", "1\n");
    let _watch = Bg(command(&d, &dir.0, &["watch"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("watch"));
    let cat_in = |ctr: &str, path: &str| {
        d.berth(&["exec", ctr, "cat", path])
            .stdout
            .into_iter()
            .map(char::from)
            .collect::<String>()
    };
    let cat = |path: &str| cat_in("watched-web-1", path);
    // Rewritten until seen: the watcher may not be watching yet at the first write.
    common::eventually("index.html synced", || {
        dir.write("src/index.html", "v1\n");
        cat("/srv/index.html") == "v1\n"
    });
    dir.write("src/scratch.tmp", "ignored\n");
    dir.write("src/sub/page.html", "nested\n");
    common::eventually("sub/page.html synced", || {
        cat("/srv/sub/page.html") == "nested\n"
    });
    assert_eq!(cat("/srv/scratch.tmp"), "", "an ignored file was synced");
    // A removed file goes from the container too.
    std::fs::remove_file(dir.0.join("src/index.html")).expect("rm");
    common::eventually("index.html removed", || cat("/srv/index.html").is_empty());

    // sync+restart: the file is there when the restarted command reads it.
    let app_before = id_of(&d, "watched-app-1");
    dir.write("conf/skip", "not included\n")
        .write("conf/v", "2\n");
    common::eventually("conf restarted with the synced file", || {
        cat_in("watched-conf-1", "/started") == "2\n"
    });
    assert_eq!(cat_in("watched-conf-1", "/etc/conf/skip"), "");
    // rebuild: a new image, a new container with the changed file.
    dir.write("app/v", "2\n");
    common::eventually("app rebuilt", || cat_in("watched-app-1", "/v") == "2\n");
    assert_ne!(id_of(&d, "watched-app-1"), app_before);
    ok(&d, &dir.0, &["down", "--rmi", "local"]);
}
