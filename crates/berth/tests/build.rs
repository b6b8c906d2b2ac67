//! `berth build` and `POST /build`: instructions, the step cache and its explanations,
//! multi-stage builds, failures, malformed Dockerfiles and builds through the docker CLI.

mod common;
use common::{stderr, stdout, Daemon};
use std::path::{Path, PathBuf};

/// A build context directory removed on drop.
struct Ctx(PathBuf);

impl Ctx {
    fn new(name: &str) -> Ctx {
        let p = std::env::temp_dir().join(format!("berth-build-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Ctx(p)
    }

    fn write(&self, rel: &str, content: &str) -> &Ctx {
        let p = self.0.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
        self
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run_out(d: &Daemon, image: &str, cmd: &str) -> String {
    d.ok(&["run", "--rm", image, "sh", "-c", cmd])
}

fn inspect(d: &Daemon, image: &str, fmt: &str) -> String {
    d.ok(&["image", "inspect", "-f", fmt, image])
}

fn no_build_containers(d: &Daemon) {
    assert_eq!(d.ok(&["ps", "-aq"]), "", "build containers left behind");
}

#[test]
fn instructions_and_cache() {
    let d = Daemon::start();
    let ctx = Ctx::new("instr");
    ctx.write(
        "Dockerfile",
        r#"# syntax=docker/dockerfile:1
ARG BASE=busybox
FROM ${BASE:-nothing} AS base
ARG VERSION=1
ENV GREETING="hello world" \
    APP=/app
LABEL org.example.version=$VERSION other="x y"
WORKDIR $APP/sub
COPY --chown=1000:1000 src/ ./src/
COPY top.txt /etc/top.txt
ADD bundle.tar /opt/
COPY --chmod=700 top.txt rel.txt
RUN echo "v=$VERSION g=$GREETING" > /built.txt && echo building-step-output
RUN <<EOF
echo heredoc-ran > /heredoc.txt
EOF
COPY <<EOT /inline.txt
inline content $APP
EOT
USER 1000:1000
EXPOSE 8080 53/udp
VOLUME ["/data"]
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5s --retries=2 CMD true
SHELL ["/bin/sh", "-c"]
ONBUILD RUN echo triggered > /tmp/onbuild.txt
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["echo default-cmd"]
"#,
    )
    .write("src/a.txt", "A\n")
    .write("src/deep/b.txt", "B\n")
    .write("top.txt", "TOP\n")
    .write("ignored.log", "no\n")
    .write(".dockerignore", "*.log\n");
    // A tar for ADD's auto-extraction.
    {
        let f = std::fs::File::create(ctx.0.join("bundle.tar")).unwrap();
        let mut b = tar::Builder::new(f);
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        b.append_data(&mut h, "inbundle/x.txt", &b"XX\n"[..])
            .unwrap();
        b.finish().unwrap();
    }
    let out = d.berth(&["build", "-t", "app:1", "-t", "app:latest", ctx.path()]);
    let so = stdout(&out);
    assert!(out.status.success(), "{so}\n{}", stderr(&out));
    assert!(so.contains("Step 1/"), "{so}");
    assert!(so.contains("building-step-output"), "{so}");
    assert!(so.contains("Successfully tagged app:1"), "{so}");
    assert!(so.contains("Successfully tagged app:latest"), "{so}");
    no_build_containers(&d);

    // The filesystem the steps made.
    // The image's ENTRYPOINT is `sh -c`: the argument is the script.
    let files = d.ok(&[
        "run", "--rm", "app:1",
        "cat /built.txt /heredoc.txt /inline.txt /etc/top.txt /app/sub/src/a.txt /app/sub/src/deep/b.txt /opt/inbundle/x.txt; stat -c '%u:%g %a' /app/sub/src/a.txt /app/sub/rel.txt; pwd; id -u; ls /app/sub/src",
    ]);
    assert_eq!(
        files,
        "v=1 g=hello world\nheredoc-ran\ninline content /app\nTOP\nA\nB\nXX\n1000:1000 644\n0:0 700\n/app/sub\n1000\na.txt\ndeep"
    );
    // .dockerignore kept ignored.log out of the context.
    let o = d.berth(&["run", "--rm", "app:1", "ls /app/sub/src"]);
    assert!(!stdout(&o).contains("ignored"));

    // The config the metadata steps set.
    assert_eq!(inspect(&d, "app:1", "{{.Config.User}}"), "1000:1000");
    assert_eq!(inspect(&d, "app:1", "{{.Config.WorkingDir}}"), "/app/sub");
    assert_eq!(
        inspect(
            &d,
            "app:1",
            "{{index .Config.Labels \"org.example.version\"}} {{index .Config.Labels \"other\"}}"
        ),
        "1 x y"
    );
    assert_eq!(
        inspect(&d, "app:1", "{{json .Config.Cmd}}"),
        r#"["echo default-cmd"]"#
    );
    assert_eq!(
        inspect(&d, "app:1", "{{json .Config.Entrypoint}}"),
        r#"["/bin/sh","-c"]"#
    );
    let ports = inspect(&d, "app:1", "{{json .Config.ExposedPorts}}");
    assert!(
        ports.contains("8080/tcp") && ports.contains("53/udp"),
        "{ports}"
    );
    assert!(inspect(&d, "app:1", "{{json .Config.Volumes}}").contains("/data"));
    assert_eq!(inspect(&d, "app:1", "{{.Config.StopSignal}}"), "SIGTERM");
    assert!(inspect(&d, "app:1", "{{json .Config.Env}}").contains("GREETING=hello world"));
    assert!(inspect(&d, "app:1", "{{json .Config.Healthcheck}}").contains("CMD-SHELL"));
    // CMD runs through the ENTRYPOINT.
    assert_eq!(d.ok(&["run", "--rm", "app:1"]), "default-cmd");
    // History: a row per step.
    let hist = d.ok(&[
        "history",
        "--no-trunc",
        "--format",
        "{{.CreatedBy}}",
        "app:1",
    ]);
    assert!(hist.contains("ENV GREETING=hello world APP=/app"), "{hist}");
    assert!(
        hist.contains("LABEL org.example.version=1 other=x y"),
        "{hist}"
    );
    assert!(hist.contains("|1 VERSION=1 /bin/sh -c echo"), "{hist}");

    // An unchanged rebuild is fully cached: no container runs, same image.
    let id1 = inspect(&d, "app:1", "{{.Id}}");
    let out = d.berth(&["build", "--explain-cache", "-t", "app:2", ctx.path()]);
    let so = stdout(&out);
    assert!(out.status.success(), "{so}{}", stderr(&out));
    assert!(!so.contains("Running in"), "{so}");
    assert!(!so.contains("\nbuilding-step-output"), "{so}");
    assert!(so.contains("Using cache"), "{so}");
    assert_eq!(inspect(&d, "app:2", "{{.Id}}"), id1);

    // A build arg change misses from the first RUN that sees it and says why.
    let out = d.berth(&[
        "build",
        "--explain-cache",
        "--build-arg",
        "VERSION=2",
        "-t",
        "app:3",
        ctx.path(),
    ]);
    let so = stdout(&out);
    assert!(out.status.success(), "{so}{}", stderr(&out));
    assert!(
        so.contains("Cache miss: instruction changed")
            || so.contains("Cache miss: build arg VERSION changed from 1 to 2"),
        "{so}"
    );
    assert_eq!(
        d.ok(&["run", "--rm", "app:3", "cat /built.txt"]),
        "v=2 g=hello world"
    );

    // A file edit misses at the COPY that uses it, naming the file; later steps miss
    // because their parent changed.
    ctx.write("src/deep/b.txt", "B2\n");
    let out = d.berth(&["build", "--explain-cache", "-t", "app:4", ctx.path()]);
    let so = stdout(&out);
    assert!(out.status.success(), "{so}{}", stderr(&out));
    assert!(
        so.contains("Cache miss: file src/deep/b.txt changed"),
        "{so}"
    );
    assert!(so.contains("parent changed (step"), "{so}");
    // Editing an ignored file, or a file no step uses, changes nothing.
    ctx.write("ignored.log", "changed\n")
        .write("unused.txt", "u\n");
    let out = d.berth(&["build", "-t", "app:5", ctx.path()]);
    assert!(out.status.success());
    assert_eq!(
        inspect(&d, "app:5", "{{.Id}}"),
        inspect(&d, "app:4", "{{.Id}}")
    );
    // A .dockerignore change that brings a used file back misses.
    ctx.write(".dockerignore", "*.log\nsrc/deep\n");
    let out = d.berth(&["build", "--explain-cache", "-t", "app:6", ctx.path()]);
    let so = stdout(&out);
    assert!(out.status.success(), "{so}{}", stderr(&out));
    assert!(so.contains("Cache miss: file src/deep"), "{so}");
    let o = d.berth(&["run", "--rm", "--entrypoint", "ls", "app:6", "/app/sub/src"]);
    assert_eq!(stdout(&o).trim(), "a.txt");

    // --no-cache runs every step again.
    let out = d.berth(&["build", "--no-cache", "-q", ctx.path()]);
    assert!(out.status.success());
    let id = stdout(&out).trim().to_string();
    assert!(id.starts_with("sha256:"), "{id}");
    assert_ne!(id, inspect(&d, "app:6", "{{.Id}}"));

    // ONBUILD triggers run in a child build; inspect shows them, and SHELL, as Docker's does.
    assert_eq!(
        inspect(
            &d,
            "app:1",
            "{{json .Config.OnBuild}} {{json .Config.Shell}}"
        ),
        r#"["RUN echo triggered > /tmp/onbuild.txt"] ["/bin/sh","-c"]"#
    );
    let child = Ctx::new("onbuild");
    child.write(
        "Dockerfile",
        "FROM app:1\nUSER 0\nRUN cat /tmp/onbuild.txt\n",
    );
    let out = d.berth(&["build", "-t", "child", child.path()]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "--entrypoint",
            "cat",
            "child",
            "/tmp/onbuild.txt"
        ]),
        "triggered"
    );

    // `!` re-includes what an earlier .dockerignore line excluded; --label labels the result.
    ctx.write(".dockerignore", "*.log\n!keep.log\n")
        .write("keep.log", "kept\n")
        .write("Logs.Dockerfile", "FROM busybox\nCOPY *.log /logs/\n");
    let df = format!("{}/Logs.Dockerfile", ctx.path());
    d.ok(&[
        "build",
        "-f",
        &df,
        "--label",
        "built.by=test",
        "-t",
        "logs",
        ctx.path(),
    ]);
    assert_eq!(run_out(&d, "logs", "ls /logs"), "keep.log");
    assert_eq!(
        inspect(&d, "logs", "{{index .Config.Labels \"built.by\"}}"),
        "test"
    );

    // system df counts the cache; builder prune frees it.
    let df = d.ok(&["system", "df"]);
    let line = df
        .lines()
        .find(|l| l.starts_with("Build Cache"))
        .unwrap_or_default()
        .to_string();
    assert!(!line.contains("Build Cache     0"), "{df}");
    let cache_len = || {
        let v: serde_json::Value =
            serde_json::from_str(&d.curl("GET", "/system/df", None).1).unwrap();
        v["BuildCache"].as_array().map(|a| a.len()).unwrap_or(0)
    };
    let before = cache_len();
    // Without -a only dangling cache goes: the steps of tagged images stay (and still hit).
    let pruned = d.ok(&["builder", "prune", "-f"]);
    assert!(pruned.contains("Total reclaimed space"), "{pruned}");
    let kept = cache_len();
    assert!(kept > 0 && kept <= before, "{before} -> {kept}");
    let logs_dockerfile = format!("{}/Logs.Dockerfile", ctx.path());
    let out = d.ok(&[
        "build",
        "-f",
        &logs_dockerfile,
        "--label",
        "built.by=test",
        "-t",
        "logs",
        ctx.path(),
    ]);
    assert!(out.contains("Using cache"), "{out}");
    let pruned = d.ok(&["builder", "prune", "-af"]);
    assert!(pruned.contains("Total reclaimed space"), "{pruned}");
    let (code, body) = d.curl("GET", "/system/df", None);
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["BuildCache"].as_array().map(|a| a.len()),
        Some(0),
        "{body}"
    );
    no_build_containers(&d);
}

#[test]
fn multi_stage_target_and_failures() {
    let d = Daemon::start();
    let ctx = Ctx::new("multi");
    ctx.write(
        "Dockerfile",
        "FROM busybox AS builder\nRUN echo built > /artifact && ln -s /etc /etclink && mkdir /out && echo a > /out/a.txt && echo b > /out/b.txt && echo c > /out/c.log\n\
         FROM busybox AS unused\nRUN echo unused-stage-ran && exit 9\n\
         FROM scratch AS final\nCOPY --from=builder /artifact /artifact\nCOPY --from=builder --chown=7:8 /artifact /owned\nCOPY --from=builder /etclink/passwd /passwd\nCOPY --from=builder /out/*.txt /txt/\nCOPY --from=busybox /bin/busybox /bin/sh\n\
         FROM final AS extra\nENV X=1\n",
    );
    let out = d.berth(&[
        "build",
        "--target",
        "final",
        "--iidfile",
        &format!("{}/iid", ctx.path()),
        "-t",
        "ms",
        ctx.path(),
    ]);
    let so = stdout(&out);
    assert!(out.status.success(), "{so}{}", stderr(&out));
    assert!(!so.contains("unused-stage-ran"), "{so}");
    assert!(!so.contains("ENV X=1"), "{so}");
    let iid = std::fs::read_to_string(ctx.0.join("iid")).unwrap();
    assert_eq!(iid, inspect(&d, "ms", "{{.Id}}"));
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "ms",
            "/bin/sh",
            "-c",
            "echo $(cat /artifact) $(stat -c %u:%g /owned)"
        ]),
        "built 7:8"
    );

    // Globs in COPY --from match the source image's files.
    assert_eq!(
        d.ok(&["run", "--rm", "ms", "/bin/sh", "-c", "echo /txt/*"]),
        "/txt/a.txt /txt/b.txt"
    );
    // A symlink in the source stage resolves inside that image, not on the host.
    assert_eq!(
        d.ok(&["run", "--rm", "ms", "/bin/sh", "-c", "cat /passwd"]),
        d.ok(&["run", "--rm", "busybox", "cat", "/etc/passwd"])
    );

    // The default target is the last stage, which needs the unused one? No: not named.
    let out = d.berth(&["build", "--target", "nope", ctx.path()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("failed to reach build target nope"),
        "{}",
        stderr(&out)
    );

    // A failing RUN: its exit code and message, no image tagged, no container left.
    let bad = Ctx::new("fail");
    bad.write("Dockerfile", "FROM busybox\nRUN echo before\nRUN exit 3\n");
    let out = d.berth(&["build", "-t", "failed:1", bad.path()]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("The command '/bin/sh -c exit 3' returned a non-zero code: 3"),
        "{}",
        stderr(&out)
    );
    assert!(!d.berth(&["image", "inspect", "failed:1"]).status.success());
    no_build_containers(&d);

    // Malformed Dockerfiles: the file, the line and the problem.
    for (text, want) in [
        (
            "FROM busybox\n\nFOO bar\n",
            "Dockerfile:3: unknown instruction: FOO",
        ),
        ("RUN echo\n", "no build stage in current context"),
        (
            "FROM busybox\nENV A\n",
            "Dockerfile:2: ENV must have two arguments",
        ),
        (
            "FROM busybox\nRUN <<EOF\necho\n",
            "unterminated heredoc EOF",
        ),
        (
            "FROM busybox\nCOPY missing.txt /x\n",
            "file not found in build context",
        ),
        ("FROM busybox\nWORKDIR ${A\n", "Dockerfile:2: missing '}'"),
        ("", "cannot be empty"),
        (
            "FROM --platform=linux/s390x busybox\n",
            "platform linux/s390x is not supported",
        ),
    ] {
        bad.write("Dockerfile", text);
        let out = d.berth(&["build", bad.path()]);
        assert!(!out.status.success(), "{text}");
        assert!(stderr(&out).contains(want), "{text}: {}", stderr(&out));
    }

    // A symlink in the context never reaches the host's files: COPY resolves it inside the
    // context (where /etc/passwd does not exist), and RUN --mount refuses a symlink source.
    std::os::unix::fs::symlink("/etc", bad.0.join("hostetc")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", bad.0.join("hostpasswd")).unwrap();
    bad.write("Dockerfile", "FROM busybox\nCOPY hostetc/passwd /x\n");
    let out = d.berth(&["build", bad.path()]);
    assert!(
        stderr(&out).contains("file not found in build context"),
        "{}",
        stderr(&out)
    );
    bad.write(
        "Dockerfile",
        "FROM busybox\nRUN --mount=type=bind,source=hostpasswd,target=/p cat /p\n",
    );
    let out = d.berth(&["build", bad.path()]);
    assert!(stderr(&out).contains("is a symlink"), "{}", stderr(&out));
    // A destination with `..` stays inside the image.
    bad.write(
        "Dockerfile",
        "FROM busybox\nWORKDIR /w\nCOPY Dockerfile ../../../../../up.txt\n",
    );
    d.ok(&["build", "-t", "up", bad.path()]);
    assert_eq!(run_out(&d, "up", "head -c 4 /up.txt"), "FROM");
    // `COPY . dir/` copies the whole context (symlinks as symlinks).
    bad.write("Dockerfile", "FROM busybox\nCOPY . /all/\n");
    d.ok(&["build", "-t", "all", bad.path()]);
    assert_eq!(
        run_out(
            &d,
            "all",
            "readlink /all/hostetc; test -f /all/Dockerfile && echo ok"
        ),
        "/etc\nok"
    );
    std::fs::remove_file(bad.0.join("hostetc")).unwrap();
    std::fs::remove_file(bad.0.join("hostpasswd")).unwrap();

    // What berth's builder does not do is refused clearly.
    let (code, body) = d.curl("POST", "/build?version=2", None);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("DOCKER_BUILDKIT=0"), "{body}");
    let (code, body) = d.curl(
        "POST",
        "/build?remote=https%3A%2F%2Fexample.com%2Fr.git",
        None,
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("remote build contexts"), "{body}");

    // ADD of an unreachable URL fails clearly.
    bad.write(
        "Dockerfile",
        "FROM busybox\nADD http://127.0.0.1:9/file.txt /f\n",
    );
    let out = d.berth(&["build", bad.path()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("ADD failed: failed to GET http://127.0.0.1:9/file.txt"),
        "{}",
        stderr(&out)
    );

    // ADD of a reachable URL downloads it (a local http server, 0600 like Docker).
    let served = Ctx::new("served");
    served.write("file.txt", "served\n");
    let port = common::free_port();
    let server = Killed(
        std::process::Command::new("python3")
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
            ])
            .current_dir(&served.0)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    common::eventually("http server up", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    bad.write(
        "Dockerfile",
        &format!("FROM busybox\nADD http://127.0.0.1:{port}/file.txt /dl/\n"),
    );
    d.ok(&["build", "-t", "dl", bad.path()]);
    drop(server);
    assert_eq!(
        run_out(&d, "dl", "cat /dl/file.txt; stat -c %a /dl/file.txt"),
        "served\n600"
    );

    // A Dockerfile on stdin (no context), and -f naming another file.
    let out = d.berth_stdin(
        &["build", "-t", "stdin-df", "-"],
        Some(b"FROM busybox\nRUN echo from-stdin > /s\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(run_out(&d, "stdin-df", "cat /s"), "from-stdin");
    // A tar context on stdin, with -f naming the Dockerfile inside it.
    let mut b = tar::Builder::new(Vec::new());
    for (name, body) in [
        ("df/Build.file", "FROM busybox\nCOPY data.txt /d\n"),
        ("data.txt", "tar-ctx\n"),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        b.append_data(&mut h, name, body.as_bytes()).unwrap();
    }
    let tarball = b.into_inner().unwrap();
    let out = d.berth_stdin(
        &["build", "-f", "df/Build.file", "-t", "tar-ctx", "-"],
        Some(&tarball),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(run_out(&d, "tar-ctx", "cat /d"), "tar-ctx");
    // A Dockerfile from stdin with a directory context.
    bad.write("ctxfile.txt", "from-dir\n");
    let out = d.berth_stdin(
        &["build", "-f", "-", "-t", "stdin-f", bad.path()],
        Some(b"FROM busybox\nCOPY ctxfile.txt /c\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(run_out(&d, "stdin-f", "cat /c"), "from-dir");
    // Intermediate images stay out of `images` but show with -a.
    let listed = d.ok(&["images", "-q"]).lines().count();
    let all = d.ok(&["images", "-aq"]).lines().count();
    assert!(all > listed, "{listed} vs {all}");
    bad.write("other.Dockerfile", "FROM busybox\nLABEL which=other\n");
    // A Dockerfile that is a symlink resolves inside the context; one pointing out of it
    // finds nothing there.
    let mut b = tar::Builder::new(Vec::new());
    let body = "FROM busybox\nLABEL which=linked\n";
    let mut h = tar::Header::new_gnu();
    h.set_size(body.len() as u64);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    b.append_data(&mut h, "df/real", body.as_bytes()).unwrap();
    for (name, target) in [("df/link", "real"), ("out", "/etc/passwd")] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        b.append_link(&mut h, name, target).unwrap();
    }
    let tarball = b.into_inner().unwrap();
    let out = d.berth_stdin(
        &["build", "-f", "df/link", "-t", "linked", "-"],
        Some(&tarball),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(inspect(&d, "linked", "{{.Config.Labels.which}}"), "linked");
    let out = d.berth_stdin(&["build", "-f", "out", "-"], Some(&tarball));
    assert!(
        stderr(&out).contains("Cannot locate specified Dockerfile: out"),
        "{}",
        stderr(&out)
    );
    let df = format!("{}/other.Dockerfile", bad.path());
    d.ok(&["build", "-f", &df, "-t", "other-df", bad.path()]);
    assert_eq!(inspect(&d, "other-df", "{{.Config.Labels.which}}"), "other");

    // --output type=local exports the result's files; type=tar a tar of them.
    let outdir = ctx.0.join("out");
    d.ok(&[
        "build",
        "--target",
        "final",
        "-o",
        &format!("type=local,dest={}", outdir.display()),
        ctx.path(),
    ]);
    assert_eq!(
        std::fs::read_to_string(outdir.join("artifact")).unwrap(),
        "built\n"
    );
    let tarpath = ctx.0.join("out.tar");
    d.ok(&[
        "build",
        "--target",
        "final",
        "--output",
        &format!("type=tar,dest={}", tarpath.display()),
        ctx.path(),
    ]);
    assert!(tar_has(&tarpath, "artifact"));
    no_build_containers(&d);
}

fn tar_has(p: &Path, name: &str) -> bool {
    let f = std::fs::File::open(p).unwrap();
    tar::Archive::new(f).entries().unwrap().any(|e| {
        e.unwrap()
            .path()
            .unwrap()
            .to_string_lossy()
            .trim_start_matches("./")
            == name
    })
}

#[test]
fn docker_cli_classic_build() {
    let d = Daemon::start();
    let ctx = Ctx::new("docker");
    ctx.write(
        "Dockerfile",
        "FROM busybox\nARG MSG=hi\nCOPY hello.txt /hello.txt\nRUN echo \"$MSG\" >> /hello.txt\nCMD [\"cat\", \"/hello.txt\"]\n",
    )
    .write("hello.txt", "hello\n");
    let run = |args: &[&str]| {
        std::process::Command::new("docker")
            .env("DOCKER_HOST", d.host())
            .env("DOCKER_BUILDKIT", "0")
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&[
        "build",
        "--build-arg",
        "MSG=from-docker",
        "-t",
        "dk:1",
        ctx.path(),
    ]);
    let so = stdout(&out);
    assert!(out.status.success(), "{so}{}", stderr(&out));
    assert!(so.contains("Successfully built"), "{so}");
    assert!(so.contains("Successfully tagged dk:1"), "{so}");
    assert_eq!(d.ok(&["run", "--rm", "dk:1"]), "hello\nfrom-docker");
    // Cached the second time.
    let out = run(&[
        "build",
        "--build-arg",
        "MSG=from-docker",
        "-t",
        "dk:2",
        ctx.path(),
    ]);
    assert!(stdout(&out).contains("Using cache"), "{}", stdout(&out));
    // -q prints the id; a failing RUN exits with its code.
    let out = run(&["build", "-q", ctx.path()]);
    assert!(
        stdout(&out).trim().starts_with("sha256:"),
        "{}",
        stdout(&out)
    );
    ctx.write("Dockerfile", "FROM busybox\nRUN exit 4\n");
    let out = run(&["build", ctx.path()]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("returned a non-zero code: 4"),
        "{}",
        stderr(&out)
    );
    no_build_containers(&d);
}

#[test]
fn run_mounts_and_network() {
    let d = Daemon::start();
    let ctx = Ctx::new("mounts");
    ctx.write(
        "Dockerfile",
        "FROM busybox\n\
         RUN --mount=type=cache,target=/cache echo x >> /cache/log && wc -l < /cache/log | tr -d ' ' > /count\n\
         RUN --mount=type=tmpfs,target=/scratch echo t > /scratch/f && grep -q ' /scratch ' /proc/mounts\n\
         RUN --mount=type=bind,source=data.txt,target=/mnt/data.txt cp /mnt/data.txt /copied\n\
         RUN --network=none sh -c '! ip link show eth0 2>/dev/null'\n",
    )
    .write("data.txt", "bound\n");
    // The live view: a status line naming the running step, redrawn as output arrives.
    let live = d.ok(&["build", "--progress", "tty", "-t", "m1", ctx.path()]);
    assert!(live.contains("[+] Building"), "{live}");
    assert!(live.contains("[+] Built in"), "{live}");
    assert!(live.contains("\x1b[2K"), "{live}");
    assert_eq!(run_out(&d, "m1", "cat /count /copied"), "1\nbound");
    // The cache mount keeps its contents across builds; tmpfs and cache contents stay out of
    // the image.
    d.ok(&["build", "--no-cache", "-t", "m2", ctx.path()]);
    assert_eq!(run_out(&d, "m2", "cat /count"), "2");
    assert_eq!(
        run_out(
            &d,
            "m2",
            "ls -A /cache /scratch | grep -v -e : -e '^$' | wc -l"
        ),
        "0"
    );
    // An unsupported mount type is refused with a clear message.
    ctx.write(
        "Dockerfile",
        "FROM busybox\nRUN --mount=type=secret,id=x true\n",
    );
    let out = d.berth(&["build", ctx.path()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("type=secret is not supported"),
        "{}",
        stderr(&out)
    );
    no_build_containers(&d);
}

#[test]
fn cache_from_an_image_without_local_cache() {
    let d = Daemon::start();
    let ctx = Ctx::new("cachefrom");
    ctx.write(
        "Dockerfile",
        "FROM busybox\nCOPY a.txt /a.txt\nRUN echo ran-once > /ran && echo step-ran\nENV DONE=1\n",
    )
    .write("a.txt", "a\n");
    d.ok(&["build", "-t", "cf:src", ctx.path()]);
    let id = inspect(&d, "cf:src", "{{.Id}}");
    // Move the image out and back in: no intermediate images, no cache records.
    let tarball = ctx.0.join("cf.tar");
    d.ok(&["save", "-o", tarball.to_str().unwrap(), "cf:src"]);
    d.ok(&["rmi", "cf:src"]);
    d.ok(&["builder", "prune", "-af"]);
    d.ok(&["load", "-i", tarball.to_str().unwrap()]);
    // With --cache-from, no step runs and the result has the same files.
    let out = d.berth(&[
        "build",
        "--cache-from",
        "cf:src",
        "--explain-cache",
        "-t",
        "cf:new",
        ctx.path(),
    ]);
    let so = stdout(&out);
    assert!(out.status.success(), "{so}{}", stderr(&out));
    assert!(!so.contains("Running in"), "{so}");
    assert!(so.contains("Cache hit from --cache-from image"), "{so}");
    assert_eq!(run_out(&d, "cf:new", "cat /ran /a.txt"), "ran-once\na");
    assert_eq!(
        inspect(&d, "cf:new", "{{json .Config.Env}}"),
        inspect(&d, &id, "{{json .Config.Env}}")
    );
    // A build arg that changes an ENV changes that step's history text: what follows runs.
    ctx.write(
        "Dockerfile",
        "FROM busybox\nARG V=1\nENV V=$V\nCOPY a.txt /a.txt\nRUN echo $V > /v\n",
    );
    d.ok(&["build", "-t", "cf:env", ctx.path()]);
    d.ok(&["builder", "prune", "-af"]);
    let out = d.berth(&[
        "build",
        "--cache-from",
        "cf:env",
        "--build-arg",
        "V=2",
        "-t",
        "cf:env2",
        ctx.path(),
    ]);
    assert!(stdout(&out).contains("Running in"), "{}", stdout(&out));
    assert_eq!(run_out(&d, "cf:env2", "cat /v"), "2");
    ctx.write(
        "Dockerfile",
        "FROM busybox\nCOPY a.txt /a.txt\nRUN echo ran-once > /ran && echo step-ran\nENV DONE=1\n",
    );
    // A changed file is not taken from the cache image: the COPY and what follows run.
    ctx.write("a.txt", "changed\n");
    let out = d.berth(&[
        "build",
        "--cache-from",
        "cf:src",
        "-t",
        "cf:changed",
        ctx.path(),
    ]);
    let so = stdout(&out);
    assert!(so.contains("Running in"), "{so}");
    assert_eq!(run_out(&d, "cf:changed", "cat /a.txt"), "changed");
    no_build_containers(&d);
}

#[test]
fn independent_stages_build_in_parallel() {
    let d = Daemon::start();
    let ctx = Ctx::new("parallel");
    // Each stage waits (up to 20 s) for the other's file in a shared cache mount: built one
    // after the other, the first would give up and fail the build.
    let wait = |me: &str, other: &str| {
        format!(
            "RUN --mount=type=cache,target=/sync,id=sync touch /sync/{me} && i=0 && \
             while [ ! -e /sync/{other} ]; do sleep 0.1; i=$((i+1)); [ $i -lt 200 ] || exit 7; done && \
             echo {me} > /{me}\n"
        )
    };
    ctx.write(
        "Dockerfile",
        &format!(
            "FROM busybox AS a\n{}FROM busybox AS b\n{}FROM busybox\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n",
            wait("a", "b"),
            wait("b", "a")
        ),
    );
    let out = d.berth(&["build", "-t", "par", ctx.path()]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(run_out(&d, "par", "cat /a /b"), "a\nb");
    // A failing stage fails the build and stops the others.
    ctx.write(
        "Dockerfile",
        "FROM busybox AS a\nRUN exit 5\nFROM busybox AS b\nRUN echo b > /b\nFROM busybox\nCOPY --from=a /etc/hostname /x\nCOPY --from=b /b /b\n",
    );
    let out = d.berth(&["build", ctx.path()]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    no_build_containers(&d);
}

#[test]
fn copy_from_merges_the_source_layers() {
    let d = Daemon::start();
    let ctx = Ctx::new("copyfrom");
    // Two layers: the second deletes a file, adds one, replaces a directory (opaque) and
    // links to the root.
    ctx.write(
        "Dockerfile",
        "FROM busybox AS src\n\
         RUN mkdir -p /d/sub /o && echo k > /d/keep && echo g > /d/gone && echo deep > /d/sub/deep \
         && ln -s /etc /d/link && echo old > /o/old && echo x > /suid && chmod 4755 /suid \
         && mkfifo -m 640 /fifo\n\
         RUN rm /d/gone && echo n > /d/new && rm -rf /o && mkdir /o && echo f > /o/fresh \
         && ln -s / /esc\n\
         FROM busybox\n\
         COPY --from=src /d /d\n\
         COPY --from=src /o /o\n\
         COPY --from=src /suid /fifo /keep/\n\
         COPY --from=src /esc/d/link/passwd /passwd\n\
         COPY --from=src /d/sub /d/keep /two/\n",
    );
    let out = d.berth(&["build", "-t", "merged", ctx.path()]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let show = "ls /d /o /two; readlink /d/link; cat /d/keep /d/new /o/fresh; \
                stat -c '%a %F' /keep/suid /keep/fifo";
    assert_eq!(
        run_out(&d, "merged", show),
        "/d:\nkeep\nlink\nnew\nsub\n\n/o:\nfresh\n\n/two:\ndeep\nkeep\n\
         /etc\nk\nn\nf\n4755 regular file\n640 fifo"
    );
    // The link resolved inside the source image: its /etc/passwd, not the host's.
    assert_eq!(
        run_out(&d, "merged", "cat /passwd"),
        run_out(&d, "busybox", "cat /etc/passwd")
    );
    no_build_containers(&d);
}

/// A child process killed and reaped when dropped (also when a test fails).
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn from_pulls_a_missing_base_and_pull_refreshes_it() {
    let d = Daemon::start();
    let root = Ctx::new("registry");
    let port = common::free_port();
    let addr = format!("127.0.0.1:{port}");
    let _registry = Killed(
        std::process::Command::new(common::berth_bin())
            .args(["registry", "serve", "--addr", &addr, "--root"])
            .arg(root.0.join("root"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    common::eventually("registry up", || {
        std::net::TcpStream::connect(&addr).is_ok()
    });
    let base = format!("{addr}/tools/bb:1");
    d.ok(&["tag", "busybox", &base]);
    d.ok(&["push", &base]);
    d.ok(&["rmi", &base]);
    let ctx = Ctx::new("pull");
    ctx.write(
        "Dockerfile",
        &format!("FROM {base}\nRUN echo pulled > /p\n"),
    );
    // Missing locally: FROM pulls it, its progress in the build output.
    let out = d.berth(&["build", "-t", "pulled", ctx.path()]);
    let so = stdout(&out);
    assert!(out.status.success(), "{so}{}", stderr(&out));
    assert!(
        so.contains("Pulling from tools/bb") || so.contains("Status:"),
        "{so}"
    );
    assert_eq!(run_out(&d, "pulled", "cat /p"), "pulled");
    // --pull asks the registry again even though the image is here; the steps stay cached
    // because the image did not change.
    let out = d.berth(&["build", "--pull", "-t", "pulled2", ctx.path()]);
    let so = stdout(&out);
    assert!(out.status.success(), "{so}{}", stderr(&out));
    assert!(
        so.contains("Image is up to date") || so.contains("Status:"),
        "{so}"
    );
    assert!(so.contains("Using cache"), "{so}");
    no_build_containers(&d);
}

/// `POST /build` with `ctx` as the tar body: (HTTP status, body).
fn post_build(d: &Daemon, ctx: &Ctx) -> (u16, String) {
    let tar = std::process::Command::new("tar")
        .args(["-C", ctx.path(), "-cf", "-", "."])
        .output()
        .unwrap();
    assert!(tar.status.success());
    let body = ctx.0.with_extension("tar");
    std::fs::write(&body, &tar.stdout).unwrap();
    let out = std::process::Command::new("curl")
        .args(["-s", "-o", "-", "-w", "\n%{http_code}", "-X", "POST"])
        .args(["-H", "Content-Type: application/x-tar", "--data-binary"])
        .arg(format!("@{}", body.display()))
        .arg("--unix-socket")
        .arg(&d.sock)
        .arg("http://berth/build")
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&body);
    let text = stdout(&out);
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[test]
fn hostile_dockerfiles_are_refused_and_the_daemon_lives() {
    let d = Daemon::start();
    let ctx = Ctx::new("hostile");
    // Substitutions nested 3,000 deep (18 KB) once overflowed a worker's stack.
    let deep = format!(
        "FROM busybox\nARG X={}x{}\nRUN echo never\n",
        "${A:-".repeat(3000),
        "}".repeat(3000)
    );
    ctx.write("Dockerfile", &deep);
    let (code, body) = post_build(&d, &ctx);
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("Dockerfile:2: variable substitution nesting deeper than 64 levels"),
        "{body}"
    );
    // Over the limits: instructions, bytes.
    ctx.write(
        "Dockerfile",
        &format!("FROM busybox\n{}", "LABEL a=b\n".repeat(5000)),
    );
    let (code, body) = post_build(&d, &ctx);
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("Dockerfile:5001: too many instructions: berth builds at most 5000"),
        "{body}"
    );
    let mut big = "FROM busybox\n".to_string();
    big.push_str(&"# padding\n".repeat(110_000));
    ctx.write("Dockerfile", &big);
    let (code, body) = post_build(&d, &ctx);
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains(&format!(
            "Dockerfile: the Dockerfile is {} bytes; berth accepts at most 1048576",
            big.len()
        )),
        "{body}"
    );
    // Values that double each step stop at the limits instead of exhausting memory.
    let doubling = format!("FROM busybox\nENV A=x\n{}", "ENV A=$A$A\n".repeat(19));
    ctx.write("Dockerfile", &format!("{doubling}ENV B=$A$A$A\n"));
    let out = d.berth(&["build", ctx.path()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("variable substitution makes a value longer than 1048576 bytes"),
        "{}",
        stderr(&out)
    );
    ctx.write("Dockerfile", &format!("{doubling}ENV A=$A$A\n"));
    let out = d.berth(&["build", ctx.path()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("berth builds at most 1048576"),
        "{}",
        stderr(&out)
    );
    // The daemon is alive and builds.
    ctx.write(
        "Dockerfile",
        "FROM busybox\nARG A\nRUN echo ${A:-${A:-ok}} > /f\n",
    );
    d.ok(&["build", "-t", "fine", ctx.path()]);
    assert_eq!(run_out(&d, "fine", "cat /f"), "ok");
    no_build_containers(&d);
}

#[test]
fn classic_builder_details_through_the_docker_cli() {
    let d = Daemon::start();
    let ctx = Ctx::new("details");
    let dockerfile = "FROM busybox\nCOPY . /ctx/\nRUN ls -a /ctx && echo to-stderr >&2\nRUN grep -q 'ahost' /etc/hosts && echo hosts-ok; ulimit -n; df -k /dev/shm | tail -1; cat /sys/fs/cgroup/memory/memory.limit_in_bytes\n";
    ctx.write("Dockerfile", dockerfile)
        .write("a.txt", "a\n")
        .write(".dockerignore", "Dockerfile\n.dockerignore\n");
    let docker = |args: &[&str], stdin: Option<&str>| {
        let mut c = std::process::Command::new("docker");
        c.env("DOCKER_HOST", d.host())
            .env("DOCKER_BUILDKIT", "0")
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        {
            use std::io::Write;
            let mut sin = child.stdin.take().unwrap();
            if let Some(s) = stdin {
                sin.write_all(s.as_bytes()).unwrap();
            }
        }
        child.wait_with_output().unwrap()
    };
    // `.dockerignore` lists the Dockerfile and itself: both are used, neither is copied; RUN
    // stderr comes in red; the resource flags reach the RUN containers.
    let out = docker(
        &[
            "build",
            "--add-host",
            "ahost:10.1.2.3",
            "--ulimit",
            "nofile=123:123",
            "--shm-size",
            "32m",
            "-m",
            "64m",
            "-t",
            "det:1",
            ctx.path(),
        ],
        None,
    );
    let so = stdout(&out);
    assert!(out.status.success(), "{so}{}", stderr(&out));
    assert!(so.contains("a.txt"), "{so}");
    assert_eq!(
        run_out(&d, "det:1", "ls -a /ctx | tr '\\n' ' '"),
        ". .. a.txt"
    );
    assert!(so.contains("\x1b[91mto-stderr\n\x1b[0m"), "{so:?}");
    assert!(so.contains("hosts-ok"), "{so}");
    assert!(so.contains("\n123\n"), "{so}");
    assert!(so.contains(" 32768 "), "{so}");
    assert!(so.contains("67108864"), "{so}");
    // `-f -`: the docker CLI adds the Dockerfile under a generated name, lists it and
    // `.dockerignore` in the `.dockerignore` it sends, and ends the tar without padding; the
    // build finds the Dockerfile and copies neither.
    std::fs::remove_file(ctx.0.join(".dockerignore")).unwrap();
    let out = docker(
        &["build", "-f", "-", "-t", "det:2", ctx.path()],
        Some("FROM busybox\nCOPY . /ctx/\n"),
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(
        run_out(&d, "det:2", "ls -a /ctx | tr '\\n' ' '"),
        ". .. Dockerfile a.txt"
    );
    // Given --cache-from, only those images are cache: a missing one means no cache.
    ctx.write("Dockerfile", "FROM busybox\nRUN echo step > /s\n");
    d.ok(&["build", "-t", "det:3", ctx.path()]);
    let out = d.berth(&["build", "--cache-from", "no-such:image", ctx.path()]);
    let so = stdout(&out);
    assert!(out.status.success(), "{so}{}", stderr(&out));
    assert!(
        so.contains("Running in") && !so.contains("Using cache"),
        "{so}"
    );
    // --rm=false keeps the RUN containers of a successful build.
    let out = d.berth(&["build", "--rm=false", "--no-cache", ctx.path()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let kept = d.ok(&["ps", "-aq"]);
    assert_eq!(kept.lines().count(), 1, "{kept}");
    d.ok(&["rm", &kept]);
    // --cgroup-parent: RUN containers' cgroups go under it, and it is gone afterwards.
    let own = format!("{}-build", d.cgroup_parent);
    ctx.write("Dockerfile", "FROM busybox\nRUN cat /proc/self/cgroup\n");
    let out = d.berth(&["build", "--no-cache", "--cgroup-parent", &own, ctx.path()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(log.contains(&format!(":pids:/{own}/")), "{log}");
    let pids = std::path::Path::new("/sys/fs/cgroup/pids").join(&own);
    assert!(!pids.exists(), "{} left behind", pids.display());
    // What berth's builder cannot do is refused, not ignored.
    for (flags, msg) in [
        (&["--squash"][..], "experimental"),
        (&["--isolation", "hyperv"][..], "Unsupported isolation"),
        (&["--platform", "linux/s390x"][..], "not supported"),
    ] {
        let mut args = vec!["build"];
        args.extend_from_slice(flags);
        args.push(ctx.path());
        let out = d.berth(&args);
        assert!(!out.status.success(), "{flags:?} was accepted");
        assert!(stderr(&out).contains(msg), "{flags:?}: {}", stderr(&out));
    }
    no_build_containers(&d);
}
