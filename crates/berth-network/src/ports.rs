//! Port publishing: what `-p` and `-P` ask for (port requests), the host ports taken for
//! them (held by a bound socket), and the NAT entries they make. Pure parsing and socket
//! binding; the service keeps the held sockets and proxies, and never reads a container.

use crate::nft::{PortMap, Proto};
use crate::{Error, Result};
use berth_api::container::PortBinding;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, OwnedFd};

/// One published port while the container runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    pub proto: Proto,
    /// None: every local address.
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub container_ip: Ipv4Addr,
    /// For a port published on an IPv6 host address other than loopback, to a container
    /// with an IPv6 address: NATed there (the proxy serves only what NAT cannot, `::1`).
    #[serde(default)]
    pub container_ip6: Option<std::net::Ipv6Addr>,
    pub container_port: u16,
    /// The userland proxy serving the port (`userland-proxy: true`), 0 if none.
    #[serde(default)]
    pub proxy_pid: u32,
}

/// One port binding asked for: container port/proto, host address, host port or range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRequest {
    pub proto: Proto,
    pub container_port: u16,
    /// An IPv6 address (`[::]`, `[::1]`…) is always served by a userland proxy.
    pub host_ip: Option<IpAddr>,
    /// (first, last); (0, 0) for any free port.
    pub host_ports: (u16, u16),
}

pub fn parse_port_key(k: &str) -> Result<(u16, Proto)> {
    let (p, proto) = k.split_once('/').unwrap_or((k, "tcp"));
    let proto = match proto {
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        other => {
            return Err(Error::Invalid(format!(
                "invalid proto {other:?} in port {k}: berth publishes tcp and udp"
            )))
        }
    };
    let port = p
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| Error::Invalid(format!("invalid port {k:?}")))?;
    Ok((port, proto))
}

pub fn parse_host_ports(s: &str) -> Result<(u16, u16)> {
    if s.is_empty() {
        return Ok((0, 0));
    }
    let bad = || Error::Invalid(format!("invalid host port {s:?}"));
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let a: u16 = a.parse().map_err(|_| bad())?;
    let b: u16 = b.parse().map_err(|_| bad())?;
    if a > b {
        return Err(bad());
    }
    Ok((a, b))
}

/// What `-p` (`bindings`) and `-P` (`publish_all` of the `exposed` ports) ask for (the
/// docker CLI has expanded container port ranges already).
pub fn port_requests<'a>(
    bindings: Option<&BTreeMap<String, Option<Vec<PortBinding>>>>,
    publish_all: bool,
    exposed: impl Iterator<Item = &'a String>,
) -> Result<Vec<PortRequest>> {
    let mut out = Vec::new();
    let bindings = bindings.cloned().unwrap_or_default();
    for (key, list) in &bindings {
        let (container_port, proto) = parse_port_key(key)?;
        let list = list.clone().unwrap_or_default();
        let list = if list.is_empty() {
            vec![PortBinding::default()]
        } else {
            list
        };
        for b in list {
            let host_ip = match b.host_ip.as_str() {
                "" | "0.0.0.0" => None,
                ip => match ip
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<IpAddr>()
                {
                    Ok(a) => Some(a),
                    Err(_) => {
                        return Err(Error::Invalid(format!(
                            "invalid host IP {ip:?} for port {key}"
                        )))
                    }
                },
            };
            out.push(PortRequest {
                proto,
                container_port,
                host_ip,
                host_ports: parse_host_ports(&b.host_port)?,
            });
        }
    }
    if publish_all {
        for key in exposed {
            if bindings.contains_key(key) {
                continue;
            }
            let (container_port, proto) = parse_port_key(key)?;
            out.push(PortRequest {
                proto,
                container_port,
                host_ip: None,
                host_ports: (0, 0),
            });
        }
    }
    Ok(out)
}

/// Hold a host port: a socket bound to it (TCP: not listening), so no other binding takes it
/// while the DNAT rule sends its traffic to the container.
pub fn bind_port(
    proto: Proto,
    ip: Option<IpAddr>,
    port: u16,
    for_proxy: bool,
) -> std::io::Result<(OwnedFd, u16)> {
    use nix::sys::socket::{
        bind, getsockname, socket, AddressFamily, SockFlag, SockType, SockaddrIn6,
    };
    let ty = match proto {
        Proto::Tcp => SockType::Stream,
        Proto::Udp => SockType::Datagram,
    };
    let family = match ip {
        Some(IpAddr::V6(_)) => AddressFamily::Inet6,
        _ => AddressFamily::Inet,
    };
    let fd = socket(family, ty, SockFlag::SOCK_CLOEXEC, None)?;
    // Only for a proxy's listening socket: two merely bound sockets with SO_REUSEADDR could
    // share a port, and the binding is what refuses a port that is taken.
    if for_proxy && proto == Proto::Tcp {
        // A proxied port may still have connections in TIME_WAIT from an earlier holder.
        nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::ReuseAddr, &true)?;
    }
    match ip {
        Some(IpAddr::V6(a)) => {
            // `[::]` is IPv6 only: 0.0.0.0 is a binding of its own.
            nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::Ipv6V6Only, &true)?;
            bind(
                fd.as_raw_fd(),
                &SockaddrIn6::from(SocketAddrV6::new(a, port, 0, 0)),
            )?;
            let bound: SockaddrIn6 = getsockname(fd.as_raw_fd())?;
            Ok((fd, bound.port()))
        }
        Some(IpAddr::V4(a)) => bind_v4(fd, a, port),
        None => bind_v4(fd, Ipv4Addr::UNSPECIFIED, port),
    }
}

fn bind_v4(fd: OwnedFd, a: Ipv4Addr, port: u16) -> std::io::Result<(OwnedFd, u16)> {
    use nix::sys::socket::{bind, getsockname, SockaddrIn};
    bind(
        fd.as_raw_fd(),
        &SockaddrIn::from(SocketAddrV4::new(a, port)),
    )?;
    let bound: SockaddrIn = getsockname(fd.as_raw_fd())?;
    Ok((fd, bound.port()))
}

pub fn take_port(w: &PortRequest, for_proxy: bool) -> Result<(OwnedFd, u16)> {
    let shown_ip = shown(w.host_ip);
    let (lo, hi) = w.host_ports;
    let mut last_err = None;
    for port in lo..=hi {
        match bind_port(w.proto, w.host_ip, port, for_proxy) {
            Ok(x) => return Ok(x),
            Err(e) => last_err = Some(e),
        }
    }
    let e = last_err.map(|e| e.to_string()).unwrap_or_default();
    Err(Error::Internal(if lo == hi && lo != 0 {
        format!("driver failed programming external connectivity on endpoint: Bind for {shown_ip}:{lo} failed: port is already allocated ({e})")
    } else {
        format!("driver failed programming external connectivity on endpoint: no free port in {shown_ip}:{lo}-{hi} ({e})")
    }))
}

/// How a host address shows in inspect and lists (`0.0.0.0` for any).
pub fn shown(ip: Option<IpAddr>) -> IpAddr {
    ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// The `[::]` binding that goes with a binding on every address (`-p 8080:80`) of a
/// container that has an IPv6 address, on the same host port, as dockerd makes it.
pub fn v6_twin(w: &PortRequest, port: u16) -> PortRequest {
    PortRequest {
        proto: w.proto,
        container_port: w.container_port,
        host_ip: Some(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)),
        host_ports: (port, port),
    }
}

/// The NAT entries of the published ports: those on IPv4, and those on IPv6 host addresses
/// to a container's IPv6 address.
pub fn port_maps(ports: &[Published]) -> Vec<PortMap> {
    ports
        .iter()
        .filter_map(|p| {
            let container_ip = match p.host_ip {
                None | Some(IpAddr::V4(_)) => IpAddr::V4(p.container_ip),
                Some(IpAddr::V6(_)) => IpAddr::V6(p.container_ip6?),
            };
            Some(PortMap {
                proto: p.proto,
                host_ip: p.host_ip,
                host_port: p.host_port,
                container_ip,
                container_port: p.container_port,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    #[test]
    fn requests_from_bindings_and_publish_all() {
        let b = BTreeMap::from([
            (
                "80/tcp".to_string(),
                Some(vec![PortBinding {
                    host_ip: "[::1]".into(),
                    host_port: "8000-8002".into(),
                }]),
            ),
            ("53/udp".to_string(), None),
        ]);
        let exposed = ["80/tcp".to_string(), "90".to_string()];
        let r = port_requests(Some(&b), true, exposed.iter()).unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(
            (r[0].container_port, r[0].proto, r[0].host_ports),
            (53, Proto::Udp, (0, 0))
        );
        assert_eq!(r[1].host_ip, Some(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        assert_eq!(r[1].host_ports, (8000, 8002));
        // -P adds the exposed ports that have no binding.
        assert_eq!((r[2].container_port, r[2].host_ip), (90, None));
        let bad = BTreeMap::from([(
            "80".to_string(),
            Some(vec![PortBinding {
                host_ip: "nope".into(),
                host_port: String::new(),
            }]),
        )]);
        assert!(port_requests(Some(&bad), false, [].iter()).is_err());
        let twin = v6_twin(&r[0], 4000);
        assert_eq!(twin.host_ports, (4000, 4000));
        assert_eq!(twin.host_ip, Some(IpAddr::V6(Ipv6Addr::UNSPECIFIED)));
    }

    #[test]
    fn port_keys_and_ranges() {
        assert_eq!(parse_port_key("80/tcp").unwrap(), (80, Proto::Tcp));
        assert_eq!(parse_port_key("53/udp").unwrap(), (53, Proto::Udp));
        assert_eq!(parse_port_key("8080").unwrap(), (8080, Proto::Tcp));
        assert!(parse_port_key("80/sctp").is_err());
        assert!(parse_port_key("0/tcp").is_err());
        assert!(parse_port_key("x").is_err());
        assert_eq!(parse_host_ports("").unwrap(), (0, 0));
        assert_eq!(parse_host_ports("8000-8010").unwrap(), (8000, 8010));
        assert!(parse_host_ports("9-1").is_err());
        assert!(parse_host_ports("70000").is_err());
    }

    #[test]
    fn holds_a_port_and_refuses_a_second_binding() {
        let lo = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let (fd, port) = bind_port(Proto::Tcp, lo, 0, false).unwrap();
        assert!(port > 0);
        let again = bind_port(Proto::Tcp, lo, port, false);
        assert!(again.is_err());
        drop(fd);
        assert!(bind_port(Proto::Tcp, lo, port, false).is_ok());
        // IPv6 addresses bind IPv6 sockets, apart from the IPv4 ones.
        let lo6 = Some(IpAddr::V6(Ipv6Addr::LOCALHOST));
        let (fd6, port6) = bind_port(Proto::Udp, lo6, 0, false).unwrap();
        assert!(bind_port(Proto::Udp, lo6, port6, false).is_err());
        drop(fd6);
    }
}
