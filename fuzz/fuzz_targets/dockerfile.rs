//! The Dockerfile parser, instruction decoding and variable expansion on arbitrary text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lookup = |k: &str| match k {
        "A" => Some("x y".to_string()),
        "E" => Some(String::new()),
        _ => None,
    };
    if let Ok(df) = berth_build::parse(text, "Dockerfile") {
        for node in &df.nodes {
            let _ = berth_build::Instruction::from_node(node, df.escape, &lookup);
        }
    }
    for escape in ['\\', '`'] {
        let _ = berth_build::expand::word(text, escape, &lookup);
        let _ = berth_build::expand::words(text, escape, &lookup);
        let _ = berth_build::expand::vars_only(text, escape, &lookup);
        let _ = berth_build::expand::split_raw(text, escape);
    }
    let _ = berth_build::instruction::json_array(text);
    let _ = berth_build::instruction::command(text);
});
