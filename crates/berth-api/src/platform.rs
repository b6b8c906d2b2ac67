//! The host's platform as Docker names it (GOOS/GOARCH), and which `--platform` values name it:
//! berth keeps and runs images of the host's platform only.

/// GOARCH of this machine, as image configs and platforms spell it.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "loongarch64" => "loong64",
        "mips64" => "mips64le",
        other => other,
    }
}

/// Whether a `--platform` value names the host's platform (`linux` or `linux/<arch>`).
pub fn is_host(p: &str) -> bool {
    p == "linux" || p.strip_prefix("linux/") == Some(go_arch())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_platform_forms() {
        assert!(is_host("linux"));
        assert!(is_host(&format!("linux/{}", go_arch())));
        assert!(!is_host("linux/s390x-nope"));
        assert!(!is_host("windows"));
    }
}
