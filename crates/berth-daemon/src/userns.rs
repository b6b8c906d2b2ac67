//! User namespace remapping (`--userns-remap`): the subordinate id ranges of the remap user
//! and group in /etc/subuid and /etc/subgid become the uid and gid maps of every container
//! that does not ask for `--userns=host`. `default` stands for the user `berthremap`, made
//! (with ranges of its own) when missing, as dockerd does with `dockremap`. A leaf: it imports no
//! other module of the daemon, and it never touches a container's files; the container service
//! applies the maps.

use berth_image::{IdMap, IdMappings};
use std::path::Path;

/// The user `--userns-remap default` stands for.
pub const DEFAULT_USER: &str = "berthremap";

/// Size of the ranges given to the default user.
const DEFAULT_RANGE: u32 = 65536;

/// The kernel takes at most this many lines in a uid_map or gid_map.
const MAX_MAP_LINES: usize = 340;

/// The daemon's remapping.
#[derive(Debug, Clone)]
pub struct Remap {
    /// `user:group` as `info` shows it.
    pub name: String,
    pub ids: IdMappings,
}

impl Remap {
    /// Host uid and gid of the containers' root.
    pub fn root(&self) -> (u32, u32) {
        self.ids.root()
    }

    /// The OCI `linux.uidMappings` or `gidMappings` value.
    pub fn oci(maps: &[IdMap]) -> serde_json::Value {
        serde_json::Value::Array(
            maps.iter()
                .map(|m| {
                    serde_json::json!({"containerID": m.container, "hostID": m.host, "size": m.size})
                })
                .collect(),
        )
    }

    /// Resolve `--userns-remap` (`default`, `user`, `user:group`, uids or gids allowed),
    /// making the default user and its ranges when missing.
    pub fn setup(spec: &str) -> Result<Remap, String> {
        let (user, group) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        if user.is_empty() || group.is_some_and(str::is_empty) {
            return Err(format!("invalid userns-remap {spec:?}: want user[:group]"));
        }
        if user == "default" {
            if group.is_some() {
                return Err(format!(
                    "invalid userns-remap {spec:?}: \"default\" takes no group"
                ));
            }
            ensure_default_user()?;
        }
        let user = if user == "default" {
            DEFAULT_USER
        } else {
            user
        };
        // /etc/passwd and /etc/group are read directly: the binary is static, and glibc's
        // NSS modules cannot be loaded into it.
        let (user_name, uid) = lookup(Path::new("/etc/passwd"), user, 2)?
            .ok_or_else(|| format!("userns-remap: no such user {user:?}"))?;
        let group_key = group.unwrap_or(&user_name);
        let (group_name, gid) = lookup(Path::new("/etc/group"), group_key, 2)?
            .ok_or_else(|| format!("userns-remap: no such group {group_key:?}"))?;
        let keys = |name: &str, id: u32| [name.to_string(), id.to_string()];
        let uids = maps(
            &read_ranges(Path::new("/etc/subuid"))?,
            &keys(&user_name, uid),
        );
        let gids = maps(
            &read_ranges(Path::new("/etc/subgid"))?,
            &keys(&group_name, gid),
        );
        if uids.is_empty() {
            return Err(format!(
                "userns-remap: no subuid ranges found for user {user_name:?}"
            ));
        }
        if gids.is_empty() {
            return Err(format!(
                "userns-remap: no subgid ranges found for group {group_name:?}"
            ));
        }
        Ok(Remap {
            name: format!("{user_name}:{group_name}"),
            ids: IdMappings { uids, gids },
        })
    }
}

/// The entry of a passwd- or group-style file whose name, or id (field `id_field`), is
/// `key`: its name and id.
fn find_entry(text: &str, key: &str, id_field: usize) -> Option<(String, u32)> {
    let numeric = key.parse::<u32>().is_ok();
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        let id = f.get(id_field)?.parse::<u32>().ok()?;
        let hit = f[0] == key || (numeric && f[id_field] == key);
        hit.then(|| (f[0].to_string(), id))
    })
}

fn lookup(path: &Path, key: &str, id_field: usize) -> Result<Option<(String, u32)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(find_entry(&text, key, id_field))
}

/// A subordinate id file's entries: (owner, start, count).
fn parse_ranges(text: &str) -> Vec<(String, u32, u32)> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            if l.is_empty() || l.starts_with('#') {
                return None;
            }
            let mut f = l.split(':');
            let (owner, start, count) = (f.next()?, f.next()?, f.next()?);
            Some((owner.to_string(), start.parse().ok()?, count.parse().ok()?))
        })
        .filter(|(_, _, count)| *count > 0)
        .collect()
}

fn read_ranges(path: &Path) -> Result<Vec<(String, u32, u32)>, String> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(parse_ranges(&t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// The ranges of an owner (by name or id), in file order, as consecutive container ids.
fn maps(ranges: &[(String, u32, u32)], keys: &[String; 2]) -> Vec<IdMap> {
    let mut out = Vec::new();
    let mut next = 0u32;
    for (_, start, count) in ranges.iter().filter(|(o, _, _)| keys.contains(o)) {
        if out.len() == MAX_MAP_LINES {
            break;
        }
        let Some(end) = next.checked_add(*count) else {
            break;
        };
        out.push(IdMap {
            container: next,
            host: *start,
            size: *count,
        });
        next = end;
    }
    out
}

/// The first start at or above 100000 past every range in `ranges`.
fn free_start(ranges: &[(String, u32, u32)]) -> u32 {
    ranges
        .iter()
        .map(|(_, s, c)| s.saturating_add(*c))
        .fold(100_000, u32::max)
}

/// Make the user `berthremap` (a system user with a group of its own) if it does not exist,
/// and give it a range of 65536 ids in /etc/subuid and /etc/subgid where it has none.
fn ensure_default_user() -> Result<(), String> {
    let exists = lookup(Path::new("/etc/passwd"), DEFAULT_USER, 2)?.is_some();
    if !exists {
        let out = std::process::Command::new("useradd")
            .args(["--system", "--user-group", "--shell", "/bin/false"])
            .arg(DEFAULT_USER)
            .output()
            .map_err(|e| format!("userns-remap: running useradd: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "userns-remap: useradd {DEFAULT_USER}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    for file in ["/etc/subuid", "/etc/subgid"] {
        let path = Path::new(file);
        let ranges = read_ranges(path)?;
        if ranges.iter().any(|(o, _, _)| o == DEFAULT_USER) {
            continue;
        }
        let mut text = std::fs::read_to_string(path).unwrap_or_default();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!(
            "{DEFAULT_USER}:{}:{DEFAULT_RANGE}\n",
            free_start(&ranges)
        ));
        berth_api::fsutil::write_atomic(path, text.as_bytes(), true)
            .map_err(|e| format!("{file}: {e}"))?;
        // write_atomic makes a new file: keep the usual mode of these files.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
            .map_err(|e| format!("{file}: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_entries() {
        let text = "root:x:0:0:root:/root:/bin/sh\nberthremap:x:998:997::/home:/bin/false\n";
        assert_eq!(
            find_entry(text, "berthremap", 2),
            Some(("berthremap".into(), 998))
        );
        assert_eq!(find_entry(text, "998", 2), Some(("berthremap".into(), 998)));
        assert_eq!(find_entry(text, "0", 2), Some(("root".into(), 0)));
        assert_eq!(find_entry(text, "ghost", 2), None);
    }

    #[test]
    fn ranges_and_maps() {
        let text = "# comment\nalice:100000:65536\nbob:165536:65536\n1000:300000:10\nalice:400000:5\nbad:line\n";
        let r = parse_ranges(text);
        assert_eq!(r.len(), 4);
        let m = maps(&r, &["alice".into(), "1000".into()]);
        assert_eq!(
            m,
            vec![
                IdMap {
                    container: 0,
                    host: 100000,
                    size: 65536
                },
                IdMap {
                    container: 65536,
                    host: 300000,
                    size: 10
                },
                IdMap {
                    container: 65546,
                    host: 400000,
                    size: 5
                },
            ]
        );
        assert_eq!(free_start(&r), 400005);
        assert_eq!(free_start(&[]), 100000);
    }
}
