//! The `.dockerignore` matcher: patterns from the first part of the input, paths (one a line)
//! from the rest, split at the first NUL.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (patterns, paths) = text.split_once('\0').unwrap_or((text, "a/b/c"));
    let mut m = berth_build::ignore::Matcher::parse(patterns);
    m.keep("Dockerfile");
    for p in paths.lines() {
        let _ = m.excluded(p);
        let _ = m.may_reinclude_under(p);
        let _ = berth_build::ignore::clean(p);
        for pat in &m.patterns {
            let _ = berth_build::ignore::glob(&pat.pattern, p);
        }
    }
});
