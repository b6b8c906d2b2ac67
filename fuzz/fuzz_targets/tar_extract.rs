//! berth-image's safe tar extraction (plain or gzip) of arbitrary bytes into a fresh directory;
//! whatever the archive holds, nothing may be written outside it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

static RUN: AtomicUsize = AtomicUsize::new(0);

fuzz_target!(|data: &[u8]| {
    let base = std::env::temp_dir().join(format!("berth-fuzz-tar-{}", std::process::id()));
    let n = RUN.fetch_add(1, Ordering::Relaxed);
    let dir: PathBuf = base.join(format!("{n}/root"));
    std::fs::create_dir_all(&dir).expect("make the extraction directory");
    let opts = berth_image::archive::ExtractOptions {
        no_overwrite_dir_non_dir: n % 2 == 0,
        chown: (n % 3 == 0).then_some((0, 0)),
        allow_devices: false,
    };
    let _ = berth_image::archive::extract(&mut &data[..], &dir, &opts);
    // Nothing beside the root (its parent is empty apart from it).
    let parent = dir.parent().expect("a parent");
    let beside: Vec<_> = std::fs::read_dir(parent)
        .expect("read the parent")
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n != "root")
        .collect();
    assert!(beside.is_empty(), "written outside the root: {beside:?}");
    let _ = std::fs::remove_dir_all(parent);
});
