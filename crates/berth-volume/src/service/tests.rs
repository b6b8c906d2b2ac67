//! Unit tests of the volume service on a temporary data root (no root needed: no real
//! mounts, a driver that notes what it is asked).

use super::*;

#[test]
fn names() {
    assert!(check_name("data").is_ok());
    assert!(check_name("a1_b.c-d").is_ok());
    assert!(check_name("x").unwrap_err().message.contains("too short"));
    assert!(check_name("-").unwrap_err().message.contains("too short"));
    for bad in ["", "-x", "a/b", "a b", ".x", "é1"] {
        let e = check_name(bad).unwrap_err();
        assert_eq!(e.kind, crate::Kind::BadRequest, "{bad}");
    }
    assert!(check_len(&"v".repeat(MAX_NAME_LEN)).is_ok());
    assert_eq!(
        check_len(&"v".repeat(5000)).unwrap_err().message,
        "volume name is too long (5000 characters), the limit is 255"
    );
}

/// A data root of its own under the temporary directory, removed on drop.
struct TempRoot(PathBuf);

impl TempRoot {
    fn new(tag: &str) -> TempRoot {
        let p = std::env::temp_dir().join(format!("berth-volume-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(p.join("trash")).unwrap();
        TempRoot(p)
    }
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn no_quarantine(_: &Path) -> std::io::Result<PathBuf> {
    panic!("nothing is damaged here")
}

fn named(name: &str) -> Request {
    Request {
        name: Some(name.into()),
        ..Default::default()
    }
}

#[test]
fn references_keep_volumes_until_released() {
    let t = TempRoot::new("refs");
    let s = VolumeService::load(&t.0, None, &no_quarantine).unwrap();
    let v = s.create(named("data")).unwrap();
    assert_eq!(
        v.mountpoint,
        t.0.join("volumes/data/_data").display().to_string()
    );
    assert!(t.0.join("volumes/data/volume.json").exists());
    let (m, created) = s.ensure(named("data"), Some("c1")).unwrap();
    assert!(!created && !m.is_anonymous());
    let e = s.remove("data", false).unwrap_err();
    assert_eq!(e.kind, crate::Kind::Conflict);
    assert_eq!(e.message, "remove data: volume is in use - [c1]");
    assert_eq!(s.ref_counts()[0].1, 1);
    std::fs::write(s.data_dir("data").join("f"), b"12345").unwrap();
    assert_eq!(s.size("data"), 5);
    s.release("c1");
    assert_eq!(s.list(), vec![(m, false)]);
    let trash = s.remove("data", false).unwrap().unwrap();
    assert!(trash.starts_with(t.0.join("trash")) && trash.join("_data/f").exists());
    let e = s.get("data").unwrap_err();
    assert_eq!(
        (e.kind, e.message.as_str()),
        (crate::Kind::NotFound, "get data: no such volume")
    );
    assert!(s.remove("data", true).unwrap().is_none());
    let e = s
        .create(Request {
            name: Some("p".repeat(2)),
            driver: "nope".into(),
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(e.kind, crate::Kind::NotFound);
    assert_eq!(
        e.message,
        "create pp: error looking up volume plugin nope: plugin \"nope\" not found"
    );
    let e = s.create(named("x")).unwrap_err();
    assert_eq!(e.kind, crate::Kind::BadRequest);
    assert!(e.message.starts_with("create x: volume name is too short"));
}

#[test]
fn realize_makes_anonymous_volumes_and_hands_back_a_failure() {
    let t = TempRoot::new("realize");
    let s = VolumeService::load(&t.0, None, &no_quarantine).unwrap();
    let req = crate::PlanRequest {
        binds: vec!["shared:/s:nocopy".into()],
        volumes: vec!["/anon".into()],
        ..Default::default()
    };
    let r = s.realize("c1", crate::plan(&req).unwrap()).unwrap();
    assert_eq!(r.created.len(), 2);
    let anon = &r.mounts[0];
    assert!(anon.anonymous && anon.name.len() == 64);
    assert_eq!(r.copies, vec![(anon.name.clone(), "/anon".to_string())]);
    let metas = s.list();
    let m = metas.iter().find(|(m, _)| m.name == anon.name).unwrap();
    assert!(m.0.is_anonymous() && m.1);
    // A second container shares the named volume; the first one's anonymous volume goes
    // with it, the shared one stays.
    s.realize(
        "c2",
        crate::plan(&crate::PlanRequest {
            binds: vec!["shared:/s".into()],
            ..Default::default()
        })
        .unwrap(),
    )
    .unwrap();
    s.release("c1");
    let removed = s.remove_anonymous(&r.mounts);
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].0, anon.name);
    assert_eq!(s.list().len(), 1);
    // A failure midway: what was made is handed back, c3's references are gone.
    let bad = crate::PlanRequest {
        volumes: vec!["/a".into()],
        mounts: vec![berth_api::container::Mount {
            kind: "volume".into(),
            source: "oo".into(),
            target: "/z".into(),
            volume_options: Some(serde_json::json!({"DriverConfig": {"Options": {"bogus": "1"}}})),
            ..Default::default()
        }],
        ..Default::default()
    };
    let u = s.realize("c3", crate::plan(&bad).unwrap()).unwrap_err();
    assert_eq!(u.error.message, "create oo: invalid option: \"bogus\"");
    assert_eq!((u.created.len(), u.mounts.len()), (1, 1));
    assert_eq!(s.remove_anonymous(&u.mounts).len(), 1);
    assert_eq!(s.list().len(), 1);
}

/// A driver that mounts nothing and notes what it was asked.
struct Noting(std::sync::Arc<Mutex<Vec<&'static str>>>);

impl Driver for Noting {
    fn check_options(&self, _: &crate::driver::Options) -> Result<()> {
        Ok(())
    }
    fn create(&self, data: &Path, _: Option<(u32, u32)>) -> std::io::Result<()> {
        std::fs::create_dir(data)
    }
    fn mounts(&self, _: &crate::driver::Options) -> bool {
        true
    }
    fn mount(&self, _: &crate::driver::Options, _: &Path) -> Result<()> {
        self.0.lock().unwrap().push("mount");
        Ok(())
    }
    fn unmount(&self, _: &Path) -> std::io::Result<()> {
        self.0.lock().unwrap().push("unmount");
        Ok(())
    }
    fn size(&self, _: &crate::driver::Options, _: &Path) -> u64 {
        7
    }
}

#[test]
fn a_driver_is_mounted_while_a_running_container_holds_it() {
    let t = TempRoot::new("driver");
    let mut s = VolumeService::load(&t.0, None, &no_quarantine).unwrap();
    let log = std::sync::Arc::new(Mutex::new(Vec::new()));
    s.register("noting", Box::new(Noting(log.clone())));
    let req = Request {
        name: Some("vv".into()),
        driver: "noting".into(),
        ..Default::default()
    };
    assert_eq!(s.create(req).unwrap().driver, "noting");
    let e = s.create(named("vv")).unwrap_err();
    assert_eq!(e.kind, crate::Kind::Conflict);
    assert_eq!(
        e.message,
        "create vv: a volume with the name vv already exists with driver \"noting\""
    );
    assert_eq!(s.size("vv"), 7);
    let mounts = crate::plan(&crate::PlanRequest {
        mounts: vec![berth_api::container::Mount {
            kind: "volume".into(),
            source: "vv".into(),
            target: "/v".into(),
            volume_options: Some(serde_json::json!({"DriverConfig": {"Name": "noting"}})),
            ..Default::default()
        }],
        ..Default::default()
    })
    .unwrap();
    let c1 = s.realize("c1", mounts.clone()).unwrap().mounts;
    let c2 = s.realize("c2", mounts).unwrap().mounts;
    s.activate_mounts("c1", &c1).unwrap();
    s.activate_mounts("c2", &c2).unwrap();
    assert_eq!(*log.lock().unwrap(), ["mount"]);
    s.deactivate("c1");
    s.sweep();
    assert_eq!(*log.lock().unwrap(), ["mount"]);
    s.release("c2");
    assert_eq!(*log.lock().unwrap(), ["mount", "unmount"]);
    // At boot: a running container found holding it keeps it; the sweep leaves it.
    s.adopt("c3", &c1, true);
    s.sweep();
    assert_eq!(log.lock().unwrap().len(), 2);
    assert!(s.remove("vv", false).is_err());
    s.release("c1");
    s.release("c3");
    assert!(s.remove("vv", false).unwrap().is_some());
    let e = s.activate("vv", "c4").unwrap_err();
    assert_eq!(e.kind, crate::Kind::NotFound);
}

#[test]
fn load_puts_aside_what_it_cannot_read() {
    let t = TempRoot::new("load");
    let s = VolumeService::load(&t.0, None, &no_quarantine).unwrap();
    s.create(named("good")).unwrap();
    std::fs::write(s.data_dir("good").join("half"), b"x").unwrap();
    std::fs::write(t.0.join("volumes/good").join(COPY_MARKER), b"").unwrap();
    std::fs::create_dir_all(t.0.join("volumes/unfinished/_data")).unwrap();
    std::fs::create_dir_all(t.0.join("volumes/damaged/_data")).unwrap();
    std::fs::write(t.0.join("volumes/damaged").join(RECORD), b"{").unwrap();
    let seen = std::cell::RefCell::new(Vec::new());
    let q = |p: &Path| {
        seen.borrow_mut().push(p.to_path_buf());
        std::fs::remove_dir_all(p).map(|()| p.to_path_buf())
    };
    let s = VolumeService::load(&t.0, None, &q).unwrap();
    assert_eq!(*seen.borrow(), vec![t.0.join("volumes/damaged")]);
    let names: Vec<String> = s.list().into_iter().map(|(m, _)| m.name).collect();
    assert_eq!(names, ["good"]);
    // The unfinished copy-up is undone, the unfinished volume is in the trash.
    assert_eq!(std::fs::read_dir(s.data_dir("good")).unwrap().count(), 0);
    assert!(!t.0.join("volumes/unfinished").exists());
    let trash: Vec<_> = std::fs::read_dir(t.0.join("trash"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(trash.len(), 1);
}
