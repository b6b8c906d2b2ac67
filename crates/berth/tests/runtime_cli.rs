//! `berth runtime` as an OCI runtime CLI on a bundle made by `crun spec`, the same bundle the
//! benchmarks give crun and runc.

mod common;
use common::{stderr, stdout};
use std::process::Command;

fn rt(root: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(common::berth_bin())
        .arg("runtime")
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .expect("berth runtime")
}

#[test]
fn crun_spec_bundle_lifecycle() {
    let base = std::env::temp_dir().join(format!("berth-rtcli-{}", std::process::id()));
    let bundle = base.join("bundle");
    let root = base.join("state");
    std::fs::create_dir_all(bundle.join("rootfs")).unwrap();
    let st = Command::new("tar")
        .arg("-C")
        .arg(bundle.join("rootfs"))
        .arg("-xf")
        .arg(common::busybox_tar())
        .status()
        .unwrap();
    assert!(st.success());
    let st = Command::new("crun")
        .arg("spec")
        .current_dir(&bundle)
        .status()
        .expect("crun spec (apt-get install crun)");
    assert!(st.success());
    let config = std::fs::read_to_string(bundle.join("config.json")).unwrap();
    let set_args = |args: &str| {
        let c = config
            .replace("\"terminal\": true", "\"terminal\": false")
            .replace("\"sh\"\n", &format!("{args}\n"));
        std::fs::write(bundle.join("config.json"), c).unwrap();
    };
    let b = bundle.to_str().unwrap();
    let id = format!("rtcli-{}", std::process::id());

    set_args("\"sh\", \"-c\", \"echo from-runtime; exit 7\"");
    let out = rt(&root, &["run", "--bundle", b, &id]);
    assert_eq!(stdout(&out), "from-runtime\n", "{}", stderr(&out));
    assert_eq!(out.status.code(), Some(7));

    // `run` passes SIGTERM on to the container, whose shell traps it.
    set_args("\"sh\", \"-c\", \"trap 'echo got-term; exit 3' TERM; echo ready; sleep 30 & wait\"");
    let mut child = Command::new(common::berth_bin())
        .arg("runtime")
        .arg("--root")
        .arg(&root)
        .args(["run", "--bundle", b, &id])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line, "ready\n");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert_eq!(rest, "got-term\n");
    assert_eq!(status.code(), Some(3));

    set_args("\"sleep\", \"30\"");
    // The created init inherits the CLI's stdio, so it must not be a pipe we wait on.
    let st = Command::new(common::berth_bin())
        .arg("runtime")
        .arg("--root")
        .arg(&root)
        .args(["create", "--bundle", b, &id])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let state: serde_json::Value =
        serde_json::from_slice(&rt(&root, &["state", &id]).stdout).unwrap();
    assert_eq!(state["status"], "created");
    let pid = state["pid"].as_i64().unwrap();
    assert!(rt(&root, &["start", &id]).status.success());
    let state: serde_json::Value =
        serde_json::from_slice(&rt(&root, &["state", &id]).stdout).unwrap();
    assert_eq!(state["status"], "running");
    assert!(rt(&root, &["kill", &id, "KILL"]).status.success());
    common::eventually("container stopped", || {
        let s: serde_json::Value =
            serde_json::from_slice(&rt(&root, &["state", &id]).stdout).unwrap_or_default();
        s["status"] == "stopped"
    });
    assert!(rt(&root, &["delete", &id]).status.success());
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| s.contains(") Z "))
                .unwrap_or(true)
    );
    let out = rt(&root, &["state", &id]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    for ctl in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let cg = ctl.path().join("berth").join(&id);
        assert!(!cg.exists(), "cgroup left behind: {}", cg.display());
    }
    std::fs::remove_dir_all(&base).unwrap();
}
