//! Query strings with `filters` (prune and event filters) and `since`/`until`, and the time,
//! duration and size parsers behind them.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    berth_daemon::fuzzing::query(s);
    // The same text as the value of each parameter.
    let enc: String = s.bytes().map(|b| format!("%{b:02X}")).collect();
    for k in ["filters", "since", "until"] {
        berth_daemon::fuzzing::query(&format!("{k}={enc}"));
    }
    let _ = berth_api::timefmt::parse(s);
    let _ = berth_api::duration::parse(s);
});
