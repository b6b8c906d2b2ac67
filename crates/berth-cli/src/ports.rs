//! `-p`/`--publish` and `--expose` values turned into the API's `PortBindings` and
//! `ExposedPorts`, with Docker's syntax: `[ip:][hostPort:]containerPort[/proto]` and ranges.

use std::collections::BTreeMap;

/// A host binding of one container port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// `80/tcp`.
    pub key: String,
    pub host_ip: String,
    /// A port, a range `a-b` (any free one in it), or empty (any free port).
    pub host_port: String,
}

fn range(s: &str, what: &str, spec: &str) -> Result<(u16, u16), String> {
    let bad = || format!("invalid {what} in port specification: {spec:?}");
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let a: u16 = a.parse().map_err(|_| bad())?;
    let b: u16 = b.parse().map_err(|_| bad())?;
    if a == 0 || a > b {
        return Err(bad());
    }
    Ok((a, b))
}

/// One `-p` value.
pub fn parse_publish(spec: &str) -> Result<Vec<Binding>, String> {
    let (rest, proto) = match spec.rsplit_once('/') {
        Some((r, p)) => (r, p.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto: {proto}"));
    }
    // An IPv6 host address is written in brackets.
    let (ip, rest) = if let Some(r) = rest.strip_prefix('[') {
        let (ip, after) = r
            .split_once(']')
            .ok_or_else(|| format!("invalid IP address in port specification: {spec:?}"))?;
        let after = after
            .strip_prefix(':')
            .ok_or_else(|| format!("invalid port specification: {spec:?}"))?;
        (ip.to_string(), after)
    } else {
        let parts: Vec<&str> = rest.split(':').collect();
        match parts.len() {
            1 | 2 => (String::new(), rest),
            3 => (
                parts[0].to_string(),
                rest.split_once(':').map(|x| x.1).unwrap_or(rest),
            ),
            _ => return Err(format!("invalid port specification: {spec:?}")),
        }
    };
    if !ip.is_empty() && ip.parse::<std::net::IpAddr>().is_err() {
        return Err(format!("invalid IP address: {ip}"));
    }
    let (host, container) = match rest.split_once(':') {
        Some((h, c)) => (h, c),
        None => ("", rest),
    };
    if container.is_empty() {
        return Err(format!("no port specified: {spec}<empty>"));
    }
    let (c0, c1) = range(container, "containerPort", spec)?;
    let mut out = Vec::new();
    if host.is_empty() {
        for p in c0..=c1 {
            out.push(Binding {
                key: format!("{p}/{proto}"),
                host_ip: ip.clone(),
                host_port: String::new(),
            });
        }
        return Ok(out);
    }
    let (h0, h1) = range(host, "hostPort", spec)?;
    if c0 == c1 {
        out.push(Binding {
            key: format!("{c0}/{proto}"),
            host_ip: ip,
            host_port: if h0 == h1 {
                h0.to_string()
            } else {
                format!("{h0}-{h1}")
            },
        });
        return Ok(out);
    }
    if h1 - h0 != c1 - c0 {
        return Err(format!(
            "invalid ranges specified for container and host Ports: {container} and {host}"
        ));
    }
    for (i, p) in (c0..=c1).enumerate() {
        out.push(Binding {
            key: format!("{p}/{proto}"),
            host_ip: ip.clone(),
            host_port: (h0 + i as u16).to_string(),
        });
    }
    Ok(out)
}

/// One `--expose` value: a port or range, with an optional protocol.
pub fn parse_expose(spec: &str) -> Result<Vec<String>, String> {
    let (ports, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    let (a, b) = range(ports, "port", spec)?;
    Ok((a..=b).map(|p| format!("{p}/{proto}")).collect())
}

/// `PortBindings` and the `ExposedPorts` keys for a set of `-p` and `--expose` values.
pub fn bindings(
    publish: &[String],
    expose: &[String],
) -> Result<(serde_json::Value, BTreeMap<String, serde_json::Value>), String> {
    let mut map: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    let mut exposed = BTreeMap::new();
    for spec in publish {
        for b in parse_publish(spec)? {
            exposed.insert(b.key.clone(), serde_json::json!({}));
            map.entry(b.key)
                .or_default()
                .push(serde_json::json!({"HostIp": b.host_ip, "HostPort": b.host_port}));
        }
    }
    for spec in expose {
        for k in parse_expose(spec)? {
            exposed.insert(k, serde_json::json!({}));
        }
    }
    Ok((serde_json::json!(map), exposed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(key: &str, ip: &str, port: &str) -> Binding {
        Binding {
            key: key.into(),
            host_ip: ip.into(),
            host_port: port.into(),
        }
    }

    #[test]
    fn publish_forms() {
        assert_eq!(parse_publish("80").unwrap(), vec![b("80/tcp", "", "")]);
        assert_eq!(
            parse_publish("8080:80").unwrap(),
            vec![b("80/tcp", "", "8080")]
        );
        assert_eq!(
            parse_publish("127.0.0.1:8080:80/udp").unwrap(),
            vec![b("80/udp", "127.0.0.1", "8080")]
        );
        assert_eq!(
            parse_publish("127.0.0.1::80").unwrap(),
            vec![b("80/tcp", "127.0.0.1", "")]
        );
        assert_eq!(
            parse_publish("8000-8001:80-81").unwrap(),
            vec![b("80/tcp", "", "8000"), b("81/tcp", "", "8001")]
        );
        assert_eq!(
            parse_publish("8000-8010:80").unwrap(),
            vec![b("80/tcp", "", "8000-8010")]
        );
        assert_eq!(
            parse_publish("80-81").unwrap(),
            vec![b("80/tcp", "", ""), b("81/tcp", "", "")]
        );
        assert_eq!(
            parse_publish("[::1]:8080:80").unwrap(),
            vec![b("80/tcp", "::1", "8080")]
        );
    }

    #[test]
    fn publish_errors() {
        for bad in [
            "",
            "x",
            "8080:",
            "0",
            "80/icmp",
            "1.2.3:80:80",
            "8000-8002:80-81",
            "a:b:c:d",
            "70000:80",
        ] {
            assert!(parse_publish(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn expose_and_bindings() {
        assert_eq!(parse_expose("80").unwrap(), vec!["80/tcp"]);
        assert_eq!(parse_expose("53-54/udp").unwrap(), vec!["53/udp", "54/udp"]);
        let (pb, ex) = bindings(&["8080:80".into(), "9090:80".into()], &["443".into()]).unwrap();
        assert_eq!(pb["80/tcp"].as_array().unwrap().len(), 2);
        assert!(ex.contains_key("80/tcp") && ex.contains_key("443/tcp"));
    }
}
