//! Registry credentials as the docker CLI keeps them: `auths` in `$DOCKER_CONFIG/config.json`
//! (default `~/.docker/config.json`), read for pull and push and written by login and logout.

use berth_distribution::{normalize_registry, AuthConfig};
use serde_json::Value;
use std::path::PathBuf;

pub fn config_path() -> PathBuf {
    match std::env::var_os("DOCKER_CONFIG") {
        Some(d) => PathBuf::from(d).join("config.json"),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
            .join(".docker/config.json"),
    }
}

fn load() -> Result<Value, String> {
    let p = config_path();
    match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| format!("{}: {e}", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(serde_json::json!({})),
        Err(e) => Err(format!("{}: {e}", p.display())),
    }
}

fn save(v: &Value) -> Result<(), String> {
    let p = config_path();
    if let Some(dir) = p.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let tmp = p.with_extension("json.tmp");
    let data = serde_json::to_vec_pretty(v).map_err(|e| e.to_string())?;
    std::fs::write(&tmp, data).map_err(|e| format!("{}: {e}", tmp.display()))?;
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600));
    std::fs::rename(&tmp, &p).map_err(|e| format!("{}: {e}", p.display()))
}

/// Every stored credential (`auths` of the config file), for `run --use-api-socket`.
pub fn all_auths() -> Result<serde_json::Map<String, Value>, String> {
    Ok(load()?
        .get("auths")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default())
}

/// The key Docker uses for a registry in `auths`.
pub fn key_for(registry: &str) -> String {
    let r = normalize_registry(registry);
    if r == "docker.io" {
        "https://index.docker.io/v1/".into()
    } else {
        r
    }
}

/// The `X-Registry-Auth` value for an image's registry, if credentials are stored.
pub fn header_for_image(image: &str) -> Option<String> {
    let first = image.split('/').next().unwrap_or("");
    let registry = if image.contains('/')
        && (first.contains('.') || first.contains(':') || first == "localhost")
    {
        first.to_string()
    } else {
        "docker.io".to_string()
    };
    let v = load().ok()?;
    let auths = v.get("auths")?.as_object()?;
    let want = normalize_registry(&registry);
    let entry = auths
        .iter()
        .find(|(k, _)| normalize_registry(k) == want)
        .map(|(_, e)| e)?;
    let auth = entry.get("auth")?.as_str()?.to_string();
    Some(
        AuthConfig {
            auth,
            serveraddress: key_for(&registry),
            ..AuthConfig::default()
        }
        .encode(),
    )
}

/// Store credentials after a successful login.
pub fn store(registry: &str, user: &str, password: &str) -> Result<(), String> {
    let mut v = load()?;
    if !v.is_object() {
        v = serde_json::json!({});
    }
    // config.json's `auth` is standard base64 of `user:password`.
    let auth = data_encoding::BASE64.encode(format!("{user}:{password}").as_bytes());
    let auths = v
        .as_object_mut()
        .ok_or("config.json is not an object")?
        .entry("auths")
        .or_insert_with(|| serde_json::json!({}));
    if let Some(o) = auths.as_object_mut() {
        o.insert(key_for(registry), serde_json::json!({ "auth": auth }));
    }
    save(&v)
}

/// Forget a registry's credentials; false when there were none.
pub fn erase(registry: &str) -> Result<bool, String> {
    let mut v = load()?;
    let want = normalize_registry(registry);
    let Some(auths) = v.get_mut("auths").and_then(|a| a.as_object_mut()) else {
        return Ok(false);
    };
    let keys: Vec<String> = auths
        .keys()
        .filter(|k| normalize_registry(k) == want)
        .cloned()
        .collect();
    for k in &keys {
        auths.remove(k);
    }
    if keys.is_empty() {
        return Ok(false);
    }
    save(&v)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert_eq!(key_for("docker.io"), "https://index.docker.io/v1/");
        assert_eq!(key_for("127.0.0.1:5000"), "127.0.0.1:5000");
    }
}
