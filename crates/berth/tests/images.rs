//! Local images through the berth CLI: import, tag, inspect, history, save/load, rmi, prune.

mod common;
use common::{stderr, stdout, Daemon};

#[test]
fn image_commands() {
    let d = Daemon::start();
    let tmp = std::env::temp_dir().join(format!("berth-images-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let id = d.ok(&["images", "-q", "--no-trunc", "busybox"]);
    assert!(id.starts_with("sha256:"), "{id}");
    d.ok(&["tag", "busybox", "mybox:1"]);
    let rows = d.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    let mut rows: Vec<&str> = rows.lines().collect();
    rows.sort();
    assert_eq!(rows, vec!["busybox:latest", "mybox:1"]);
    assert_eq!(
        d.ok(&[
            "images",
            "--filter",
            "reference=my*",
            "--format",
            "{{.Repository}}"
        ]),
        "mybox"
    );
    assert_eq!(
        d.ok(&["image", "inspect", "-f", "{{json .Config.Cmd}}", "mybox:1"]),
        r#"["sh"]"#
    );
    assert!(d.ok(&["history", "busybox"]).starts_with("IMAGE"));

    // import with --change and a message, from stdin.
    let tarball = std::fs::read(common::busybox_tar()).unwrap();
    let out = d.berth_stdin(
        &[
            "import",
            "-m",
            "hello",
            "-c",
            "ENTRYPOINT [\"echo\"]",
            "-",
            "echoer",
        ],
        Some(&tarball),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        d.ok(&["run", "--rm", "echoer", "entry", "point"]),
        "entry point"
    );

    // save -> rmi -> load round trip.
    let archive = tmp.join("save.tar");
    d.ok(&["save", "-o", archive.to_str().unwrap(), "mybox:1"]);
    assert_eq!(d.ok(&["rmi", "mybox:1"]), "Untagged: mybox:1");
    assert_eq!(
        d.ok(&["load", "-i", archive.to_str().unwrap()]),
        "Loaded image: mybox:1"
    );
    assert_eq!(
        d.ok(&["run", "--rm", "mybox:1", "echo", "loaded"]),
        "loaded"
    );

    // rmi rules: in use, several tags, unknown.
    d.ok(&["create", "--name", "user", "echoer"]);
    let out = d.berth(&["rmi", "echoer"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("conflict"), "{}", stderr(&out));
    d.ok(&["rm", "user"]);
    let out = d.berth(&["rmi", &id]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("must be forced"), "{}", stderr(&out));
    let out = d.berth(&["rmi", "nosuch"]);
    assert!(
        stderr(&out).contains("No such image: nosuch"),
        "{}",
        stderr(&out)
    );
    d.ok(&["rmi", "echoer"]);
    let out = d.berth_stdin(&["load"], Some(b"this is not a tar archive"));
    assert_eq!(out.status.code(), Some(1));
    assert!(!stderr(&out).is_empty());
    d.ok(&["image", "prune", "-a", "-f"]);
    assert_eq!(d.ok(&["images", "-q"]), "");
    std::fs::remove_dir_all(&tmp).unwrap();
}
