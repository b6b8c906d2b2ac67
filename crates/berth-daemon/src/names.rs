//! Random container names in Docker's `adjective_name` style, from berth's own word lists, and
//! the rules user-given container, network and volume names must follow. Beside `error` it imports
//! no other module of the daemon and keeps no table of names: whether a name is taken is the
//! caller's to say.

use crate::error::{Error, Result};

/// The longest container, network or volume name: one file name component (a volume's
/// directory is named after it), which also keeps listings and messages readable.
pub const MAX_LEN: usize = 255;

/// A `kind` name (`"container"`, `"network"`, `"volume"`) longer than [`MAX_LEN`] is a 400;
/// the message does not repeat the name.
pub fn check_len(kind: &str, name: &str) -> Result<()> {
    if name.len() > MAX_LEN {
        return Err(Error::bad_request(format!(
            "{kind} name is too long ({} characters), the limit is {MAX_LEN}",
            name.len()
        )));
    }
    Ok(())
}

const ADJECTIVES: &[&str] = &[
    "agile", "amber", "ardent", "bold", "brave", "bright", "calm", "candid", "clever", "cosmic",
    "crisp", "daring", "deft", "eager", "earnest", "fair", "fervent", "fond", "gentle", "glad",
    "golden", "grand", "hardy", "hearty", "humble", "jolly", "keen", "kind", "lively", "loyal",
    "lucid", "merry", "mellow", "nimble", "noble", "patient", "placid", "plucky", "proud", "quick",
    "quiet", "rapid", "serene", "sharp", "sleek", "snappy", "steady", "stoic", "sunny", "swift",
    "tidy", "upbeat", "vivid", "warm", "wise", "witty", "zealous", "zesty",
];

const NAMES: &[&str] = &[
    "anchor",
    "atoll",
    "barge",
    "beacon",
    "bollard",
    "brig",
    "buoy",
    "capstan",
    "cove",
    "current",
    "cutter",
    "davit",
    "delta",
    "dinghy",
    "dock",
    "estuary",
    "fathom",
    "ferry",
    "fjord",
    "galley",
    "gulf",
    "harbor",
    "hawser",
    "helm",
    "inlet",
    "isthmus",
    "jetty",
    "keel",
    "ketch",
    "lagoon",
    "lighthouse",
    "mariner",
    "mast",
    "mooring",
    "narrows",
    "pier",
    "pilot",
    "port",
    "quay",
    "reef",
    "rudder",
    "schooner",
    "shoal",
    "skiff",
    "sloop",
    "sound",
    "strait",
    "tide",
    "tugboat",
    "wharf",
];

/// A fresh name; `taken` says whether a candidate is in use.
pub fn generate(taken: impl Fn(&str) -> bool) -> String {
    let mut seed = nanos_seed();
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        seed = next(seed);
        let a = ADJECTIVES[(seed % ADJECTIVES.len() as u64) as usize];
        seed = next(seed);
        let n = NAMES[(seed % NAMES.len() as u64) as usize];
        let name = if attempt <= 8 {
            format!("{a}_{n}")
        } else {
            format!("{a}_{n}{}", seed % 100)
        };
        if !taken(&name) {
            return name;
        }
    }
}

fn nanos_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t ^ u64::from(std::process::id()) << 32
}

/// xorshift64*: enough to spread names, not for anything secret.
fn next(mut x: u64) -> u64 {
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    x.wrapping_mul(0x2545_F491_4F6C_DD1D).max(1)
}

/// Docker's rule for user-given names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`, optional leading '/'.
pub fn valid(name: &str) -> bool {
    let n = name.strip_prefix('/').unwrap_or(name);
    let mut chars = n.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && n.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let n = generate(|_| false);
        assert!(n.contains('_') && valid(&n));
        let first = generate(|_| false);
        let other = generate(|c| c == first);
        assert_ne!(other, first);
        assert!(valid("/web-1.a_b"));
        assert!(!valid("-x"));
        assert!(!valid("a"));
        assert!(!valid("a b"));
        assert!(check_len("volume", &"v".repeat(MAX_LEN)).is_ok());
        let e = check_len("volume", &"v".repeat(5000)).unwrap_err();
        assert_eq!(e.0.status, 400);
        assert!(e.0.message.contains("too long (5000 characters)"));
    }
}
