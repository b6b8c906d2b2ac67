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

#[test]
fn rmi_no_prune_and_history_without_human_units() {
    let d = Daemon::start();
    d.ok(&[
        "import",
        "--change",
        "CMD [\"sh\"]",
        "--change",
        "ENV A=1",
        common::busybox_tar().to_str().unwrap(),
        "parent:1",
    ]);
    d.ok(&["run", "--name", "mk", "busybox", "true"]);
    d.ok(&["rm", "mk"]);
    d.ok(&["run", "--name", "mk", "parent:1", "sh", "-c", "echo x > /x"]);
    d.ok(&["commit", "mk", "child:1"]);
    d.ok(&["rm", "mk"]);
    let parent_id = d.ok(&["image", "inspect", "-f", "{{.Id}}", "parent:1"]);
    d.ok(&["rmi", "parent:1"]);
    // The parent is now untagged; --no-prune leaves it, a plain rmi would take it along.
    d.ok(&["rmi", "--no-prune", "child:1"]);
    let all = d.ok(&["images", "-a", "-q", "--no-trunc"]);
    assert!(all.contains(&parent_id), "{all}");
    // history: sizes in bytes and dates as timestamps with --human=false.
    let h = d.ok(&[
        "history",
        "--human=false",
        "--format",
        "{{.Size}}|{{.CreatedSince}}",
        "busybox",
    ]);
    let first = h.lines().next().unwrap();
    let (size, created) = first.split_once('|').unwrap();
    assert!(size.parse::<u64>().is_ok(), "{first}");
    assert!(created.contains('T') && created.ends_with('Z'), "{first}");
    let h = d.ok(&["history", "--format", "{{.Size}}", "busybox"]);
    assert!(
        h.ends_with("MB") || h.ends_with("kB") || h.ends_with('B'),
        "{h}"
    );
    d.ok(&["rmi", &parent_id]);
}
