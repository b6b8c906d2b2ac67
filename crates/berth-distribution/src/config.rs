//! Client configuration (insecure registries, mirrors, certs.d, upload sizes) and the rules that
//! pick plain HTTP or HTTPS for a registry.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use url::Url;

use crate::Error;

/// Default directory of per-registry TLS files: `<certs_dir>/<host[:port]>/*.crt` (extra CAs),
/// `<name>.cert` + `<name>.key` (client certificate).
pub const DEFAULT_CERTS_DIR: &str = "/etc/berth/certs.d";
/// Default largest blob uploaded with a single `PUT`.
pub const DEFAULT_MONOLITHIC_THRESHOLD: u64 = 8 << 20;
/// Default size of one `PATCH` of a chunked upload.
pub const DEFAULT_CHUNK_SIZE: u64 = 8 << 20;

/// Configuration of a [`crate::Client`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Registries reached without TLS verification, falling back to plain HTTP: `host[:port]`
    /// names (matched exactly against the registry name) or CIDRs (matched against the
    /// registry's IP, resolving names).
    pub insecure_registries: Vec<String>,
    /// Pull mirrors: registry name (`docker.io`, `host:port`) → mirror base URLs
    /// (`https://mirror.example.com`; a missing scheme means https). Tried in order, before the
    /// registry itself, for manifests and blobs; never used for pushes, tags or login. As with
    /// Docker, the registry's credentials are offered to its mirrors when they challenge.
    pub mirrors: HashMap<String, Vec<String>>,
    /// Per-registry TLS files, see [`DEFAULT_CERTS_DIR`].
    pub certs_dir: PathBuf,
    /// `User-Agent` of every request.
    pub user_agent: String,
    /// Blobs up to this size are uploaded with one `PUT`; larger ones in `PATCH` chunks.
    pub monolithic_threshold: u64,
    /// Size of each `PATCH` of a chunked upload (at least 1).
    pub chunk_size: u64,
}

impl Default for ClientConfig {
    fn default() -> ClientConfig {
        ClientConfig {
            insecure_registries: Vec::new(),
            mirrors: HashMap::new(),
            certs_dir: PathBuf::from(DEFAULT_CERTS_DIR),
            user_agent: format!("berth/{}", env!("CARGO_PKG_VERSION")),
            monolithic_threshold: DEFAULT_MONOLITHIC_THRESHOLD,
            chunk_size: DEFAULT_CHUNK_SIZE,
        }
    }
}

/// The parsed `insecure_registries` list.
#[derive(Debug, Default, Clone)]
pub(crate) struct Insecure {
    names: Vec<String>,
    nets: Vec<IpNet>,
}

impl Insecure {
    pub(crate) fn parse(entries: &[String]) -> Result<Insecure, Error> {
        let mut out = Insecure::default();
        for entry in entries {
            let e = entry.trim();
            if e.contains("://") {
                return Err(Error::Config(format!(
                    "insecure registry {e:?} must be host[:port] or a CIDR, without a scheme"
                )));
            }
            if e.contains('/') {
                let net: IpNet = e.parse().map_err(|_| {
                    Error::Config(format!("insecure registry {e:?} is not a valid CIDR"))
                })?;
                out.nets.push(net);
            } else if !e.is_empty() {
                out.names.push(e.to_ascii_lowercase());
            }
        }
        Ok(out)
    }

    /// Whether the registry name (`host[:port]`) is listed.
    pub(crate) fn matches_name(&self, name: &str) -> bool {
        self.names.iter().any(|n| n.eq_ignore_ascii_case(name))
    }

    /// Whether an address lies in one of the CIDRs.
    pub(crate) fn matches_ip(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.nets.iter().any(|n| n.contains(&ip))
    }

    pub(crate) fn has_nets(&self) -> bool {
        !self.nets.is_empty()
    }
}

/// A registry name split into host and optional port; `[::1]:5000` style for IPv6.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RegistryName {
    /// `host[:port]` as used in URLs, certs.d directory names and `insecure_registries`.
    pub authority: String,
    /// Host without brackets or port.
    pub host: String,
    pub port: Option<u16>,
}

impl RegistryName {
    /// Parse `host[:port]`; a leading `http(s)://` and a trailing path are dropped (Docker
    /// ignores them in registry names too). Docker Hub's names map to its API host.
    pub(crate) fn parse(registry: &str) -> Result<RegistryName, Error> {
        let invalid = |reason| Error::InvalidInput {
            what: "registry",
            value: registry.to_string(),
            reason,
        };
        let s = registry.trim();
        let s = s
            .strip_prefix("https://")
            .or_else(|| s.strip_prefix("http://"))
            .unwrap_or(s);
        let s = s.split('/').next().unwrap_or("");
        if s.is_empty() {
            return Err(invalid("empty registry name"));
        }
        let s = match s.to_ascii_lowercase().as_str() {
            "docker.io" | "index.docker.io" | "registry.hub.docker.com" => {
                "registry-1.docker.io".to_string()
            }
            other => other.to_string(),
        };
        let url = Url::parse(&format!("http://{s}/")).map_err(|_| invalid("not host[:port]"))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid("credentials do not belong in the registry name"));
        }
        let host = url
            .host_str()
            .ok_or_else(|| invalid("not host[:port]"))?
            .to_string();
        // Url drops port 80 for http; keep what the caller wrote.
        let port = match s.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(':') && !p.contains(']') => Some(
                p.parse::<u16>()
                    .map_err(|_| invalid("port is not a number"))?,
            ),
            _ => None,
        };
        let authority = match port {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        Ok(RegistryName {
            authority,
            host,
            port,
        })
    }

    /// `localhost`, `127.0.0.0/8` or `::1`.
    pub(crate) fn is_loopback(&self) -> bool {
        if self.host == "localhost" {
            return true;
        }
        self.host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    pub(crate) fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }
}

/// Parse a mirror base URL; a missing scheme means https. The path may carry a prefix.
pub(crate) fn parse_mirror(mirror: &str) -> Result<Url, Error> {
    let m = mirror.trim();
    let with_scheme = if m.contains("://") {
        m.to_string()
    } else {
        format!("https://{m}")
    };
    let bad = |why: &str| Error::Config(format!("mirror {mirror:?}: {why}"));
    let mut url = Url::parse(&with_scheme).map_err(|e| bad(&e.to_string()))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(bad("only http and https mirrors are supported"));
    }
    if url.host_str().is_none() {
        return Err(bad("no host"));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(bad("no query, fragment or credentials allowed"));
    }
    let path = url.path().trim_end_matches('/').to_string();
    let path = path.strip_suffix("/v2").unwrap_or(&path).to_string();
    url.set_path(&path);
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insecure(entries: &[&str]) -> Insecure {
        Insecure::parse(&entries.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn insecure_cidrs_match_addresses() {
        let i = insecure(&["10.0.0.0/8", "fd00::/8", "myreg:5000", "Other.Example"]);
        assert!(i.matches_ip("10.1.2.3".parse().unwrap()));
        assert!(!i.matches_ip("11.0.0.1".parse().unwrap()));
        assert!(i.matches_ip("fd12::1".parse().unwrap()));
        assert!(!i.matches_ip("fe80::1".parse().unwrap()));
        // IPv4-mapped IPv6 addresses match IPv4 networks.
        assert!(i.matches_ip("::ffff:10.9.9.9".parse().unwrap()));
        assert!(i.has_nets());
        let i = insecure(&["192.168.1.0/24"]);
        assert!(i.matches_ip("192.168.1.255".parse().unwrap()));
        assert!(!i.matches_ip("192.168.2.1".parse().unwrap()));
    }

    #[test]
    fn insecure_names_match_exactly() {
        let i = insecure(&["myreg:5000", "Other.Example"]);
        assert!(i.matches_name("myreg:5000"));
        assert!(!i.matches_name("myreg"));
        assert!(!i.matches_name("myreg:5001"));
        assert!(i.matches_name("other.example"));
        assert!(!i.matches_name("other.example:443"));
        assert!(!i.has_nets());
    }

    #[test]
    fn insecure_entries_are_validated() {
        assert!(Insecure::parse(&["http://myreg".into()]).is_err());
        assert!(Insecure::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(Insecure::parse(&["notanip/8".into()]).is_err());
    }

    #[test]
    fn registry_names_parse() {
        let r = RegistryName::parse("127.0.0.1:5000").unwrap();
        assert_eq!(
            (r.authority.as_str(), r.port),
            ("127.0.0.1:5000", Some(5000))
        );
        assert!(r.is_loopback());
        let r = RegistryName::parse("[::1]:5000").unwrap();
        assert_eq!(r.authority, "[::1]:5000");
        assert_eq!(r.host, "::1");
        assert!(r.is_loopback());
        let r = RegistryName::parse("localhost:80").unwrap();
        assert_eq!(r.authority, "localhost:80");
        assert!(r.is_loopback());
        let r = RegistryName::parse("Registry.Example.com").unwrap();
        assert_eq!(r.authority, "registry.example.com");
        assert!(!r.is_loopback());
        assert!(r.ip().is_none());
        assert_eq!(
            RegistryName::parse("docker.io").unwrap().authority,
            "registry-1.docker.io"
        );
        assert_eq!(
            RegistryName::parse("https://index.docker.io/v1/")
                .unwrap()
                .authority,
            "registry-1.docker.io"
        );
        assert!(!RegistryName::parse("128.0.0.1").unwrap().is_loopback());
        for bad in ["", "user:pw@host", "host:port", "host:99999", "bad host"] {
            assert!(RegistryName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mirrors_parse() {
        assert_eq!(
            parse_mirror("mirror.example.com").unwrap().as_str(),
            "https://mirror.example.com/"
        );
        assert_eq!(
            parse_mirror("http://127.0.0.1:5001/v2/").unwrap().as_str(),
            "http://127.0.0.1:5001/"
        );
        assert_eq!(
            parse_mirror("https://m.example/prefix/").unwrap().as_str(),
            "https://m.example/prefix"
        );
        assert!(parse_mirror("ftp://m").is_err());
        assert!(parse_mirror("https://m/?q=1").is_err());
    }
}
