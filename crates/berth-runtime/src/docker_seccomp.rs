//! Convert Docker's seccomp profile format (archMap, includes/excludes by capability,
//! architecture and kernel version) into the OCI `linux.seccomp` for this machine, as
//! moby's `profiles/seccomp` does.

use serde::Deserialize;
use serde_json::{json, Value};

use oci_spec::runtime::LinuxSeccomp;

use crate::error::{Error, Result};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Profile {
    default_action: String,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Option<Vec<String>>,
    #[serde(default)]
    arch_map: Option<Vec<ArchMap>>,
    #[serde(default)]
    flags: Option<Vec<String>>,
    #[serde(default)]
    syscalls: Option<Vec<Syscall>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMap {
    architecture: String,
    #[serde(default)]
    sub_architectures: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default)]
    caps: Option<Vec<String>>,
    #[serde(default)]
    arches: Option<Vec<String>>,
    #[serde(default)]
    min_kernel: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Syscall {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    names: Option<Vec<String>>,
    action: String,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<Value>>,
    #[serde(default)]
    includes: Option<Filter>,
    #[serde(default)]
    excludes: Option<Filter>,
}

/// Go's GOARCH name for the architecture this was built for (what Docker profiles use).
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "powerpc64" => "ppc64",
        "loongarch64" => "loong64",
        "mips64" if cfg!(target_endian = "little") => "mips64le",
        "mips" if cfg!(target_endian = "little") => "mipsle",
        other => other,
    }
}

/// libseccomp's name of the native architecture.
fn native_scmp_arch() -> &'static str {
    match go_arch() {
        "386" => "SCMP_ARCH_X86",
        "amd64" => "SCMP_ARCH_X86_64",
        "arm" => "SCMP_ARCH_ARM",
        "arm64" => "SCMP_ARCH_AARCH64",
        "mips64" => "SCMP_ARCH_MIPS64",
        "mips64le" => "SCMP_ARCH_MIPSEL64",
        "mips" => "SCMP_ARCH_MIPS",
        "mipsle" => "SCMP_ARCH_MIPSEL",
        "ppc64" => "SCMP_ARCH_PPC64",
        "ppc64le" => "SCMP_ARCH_PPC64LE",
        "riscv64" => "SCMP_ARCH_RISCV64",
        "s390x" => "SCMP_ARCH_S390X",
        "loong64" => "SCMP_ARCH_LOONGARCH64",
        _ => "SCMP_ARCH_NATIVE",
    }
}

/// (major, minor) of the running kernel.
fn kernel_version() -> (u32, u32) {
    let rel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    parse_version(rel.trim()).unwrap_or((0, 0))
}

fn parse_version(v: &str) -> Option<(u32, u32)> {
    let mut it = v.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    Some((major, minor))
}

fn canon_cap(c: &str) -> String {
    let up = c.to_ascii_uppercase();
    if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    }
}

/// Convert a Docker seccomp profile (JSON) into OCI `LinuxSeccomp` for a container whose
/// bounding capability set is `caps` ("CAP_SYS_ADMIN" or "SYS_ADMIN"), keeping only the rules
/// whose `includes`/`excludes` (caps, arches, minKernel) match, as Docker does.
pub fn docker_seccomp_to_oci(json: &[u8], caps: &[String]) -> Result<LinuxSeccomp> {
    let p: Profile =
        serde_json::from_slice(json).map_err(|e| Error::Config(format!("seccomp profile: {e}")))?;
    let caps: Vec<String> = caps.iter().map(|c| canon_cap(c)).collect();
    let arch = go_arch();
    let kernel = kernel_version();
    let kernel_ge = |v: &str| parse_version(v).is_some_and(|want| kernel >= want);

    let mut arches: Vec<String> = Vec::new();
    if p.architectures.as_ref().is_some_and(|a| !a.is_empty())
        && p.arch_map.as_ref().is_some_and(|a| !a.is_empty())
    {
        return Err(Error::Config(
            "seccomp profile: use either 'architectures' or 'archMap', not both".into(),
        ));
    }
    if let Some(a) = &p.architectures {
        arches.extend(a.iter().cloned());
    }
    let native = native_scmp_arch();
    for m in p.arch_map.iter().flatten() {
        if m.architecture == native {
            arches.push(m.architecture.clone());
            arches.extend(m.sub_architectures.iter().flatten().cloned());
        }
    }

    let mut syscalls = Vec::new();
    for s in p.syscalls.iter().flatten() {
        let ex = s.excludes.as_ref();
        let inc = s.includes.as_ref();
        if ex
            .and_then(|f| f.arches.as_ref())
            .is_some_and(|a| a.iter().any(|x| x == arch))
        {
            continue;
        }
        if ex
            .and_then(|f| f.caps.as_ref())
            .is_some_and(|c| c.iter().any(|x| caps.contains(&canon_cap(x))))
        {
            continue;
        }
        if ex
            .and_then(|f| f.min_kernel.as_deref())
            .is_some_and(kernel_ge)
        {
            continue;
        }
        if inc
            .and_then(|f| f.arches.as_ref())
            .is_some_and(|a| !a.is_empty() && !a.iter().any(|x| x == arch))
        {
            continue;
        }
        if inc
            .and_then(|f| f.caps.as_ref())
            .is_some_and(|c| !c.iter().all(|x| caps.contains(&canon_cap(x))))
        {
            continue;
        }
        if inc
            .and_then(|f| f.min_kernel.as_deref())
            .is_some_and(|v| !kernel_ge(v))
        {
            continue;
        }
        let mut names: Vec<String> = s.names.clone().unwrap_or_default();
        if let Some(n) = &s.name {
            if !n.is_empty() {
                names.push(n.clone());
            }
        }
        if names.is_empty() {
            continue;
        }
        let mut rule = json!({ "names": names, "action": s.action });
        if let Some(e) = s.errno_ret {
            rule["errnoRet"] = json!(e);
        }
        if let Some(args) = &s.args {
            if !args.is_empty() {
                rule["args"] = Value::Array(args.clone());
            }
        }
        syscalls.push(rule);
    }

    let mut out = json!({
        "defaultAction": p.default_action,
        "architectures": arches,
        "syscalls": syscalls,
    });
    if let Some(e) = p.default_errno_ret {
        out["defaultErrnoRet"] = json!(e);
    }
    if let Some(f) = p.flags {
        out["flags"] = json!(f);
    }
    serde_json::from_value(out).map_err(|e| Error::Config(format!("seccomp profile: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROFILE: &str = r#"{
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
        "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                    {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}],
        "syscalls": [
            {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["bpf"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 2114060288, "op": "SCMP_CMP_MASKED_EQ"}],
             "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38, "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64", "x32"]}},
            {"names": ["old"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "99.0"}}
        ]}"#;

    fn allowed_names(s: &oci_spec::runtime::LinuxSeccomp) -> Vec<String> {
        s.syscalls()
            .iter()
            .flatten()
            .flat_map(|r| r.names().clone())
            .collect()
    }

    #[test]
    fn default_caps() {
        let s = docker_seccomp_to_oci(PROFILE.as_bytes(), &["CAP_CHOWN".into()]).unwrap();
        let names = allowed_names(&s);
        assert!(names.contains(&"read".into()));
        assert!(!names.contains(&"bpf".into()));
        assert!(names.contains(&"clone".into()));
        assert!(names.contains(&"clone3".into()));
        assert!(!names.contains(&"old".into()));
        if cfg!(target_arch = "x86_64") {
            assert!(names.contains(&"arch_prctl".into()));
            assert_eq!(s.architectures().as_ref().map(|a| a.len()), Some(3));
        }
    }

    #[test]
    fn sys_admin() {
        let s = docker_seccomp_to_oci(PROFILE.as_bytes(), &["SYS_ADMIN".into()]).unwrap();
        let names = allowed_names(&s);
        assert!(names.contains(&"bpf".into()));
        assert!(!names.contains(&"clone".into()));
        assert!(!names.contains(&"clone3".into()));
    }

    #[test]
    fn real_profile_compiles() {
        let Ok(json) = std::fs::read("/work/shared/reference/seccomp-default.json") else {
            return;
        };
        let s = docker_seccomp_to_oci(&json, &["CAP_CHOWN".into()]).unwrap();
        assert!(s.syscalls().as_ref().is_some_and(|v| v.len() > 10));
        crate::seccomp::compile(&s).unwrap();
    }

    #[test]
    fn versions() {
        assert_eq!(parse_version("6.18.44-fc-v657"), Some((6, 18)));
        assert_eq!(parse_version("4.8"), Some((4, 8)));
    }
}
