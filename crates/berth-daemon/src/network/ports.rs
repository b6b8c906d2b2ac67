//! Published ports: what `-p` and `-P` ask for, the host ports taken for them (held by a bound
//! socket, or by a userland proxy), and how they show in inspect and ps.

use crate::container::service::Service;
use crate::container::{Published, Record};
use crate::error::{Error, Result};
use berth_network::nft::{PortMap, Proto};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, OwnedFd};

/// One port binding asked for: container port/proto, host address, host port or range.
pub(super) struct Wanted {
    pub proto: Proto,
    pub container_port: u16,
    /// An IPv6 address (`[::]`, `[::1]`…) is always served by a userland proxy.
    pub host_ip: Option<IpAddr>,
    /// (first, last); (0, 0) for any free port.
    host_ports: (u16, u16),
}

pub(super) fn parse_port_key(k: &str) -> Result<(u16, Proto)> {
    let (p, proto) = k.split_once('/').unwrap_or((k, "tcp"));
    let proto = match proto {
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        other => {
            return Err(Error::bad_request(format!(
                "invalid proto {other:?} in port {k}: berth publishes tcp and udp"
            )))
        }
    };
    let port = p
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| Error::bad_request(format!("invalid port {k:?}")))?;
    Ok((port, proto))
}

fn parse_host_ports(s: &str) -> Result<(u16, u16)> {
    if s.is_empty() {
        return Ok((0, 0));
    }
    let bad = || Error::bad_request(format!("invalid host port {s:?}"));
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let a: u16 = a.parse().map_err(|_| bad())?;
    let b: u16 = b.parse().map_err(|_| bad())?;
    if a > b {
        return Err(bad());
    }
    Ok((a, b))
}

/// What `-p` and `-P` ask for (the docker CLI has expanded container port ranges already).
pub(super) fn wanted_ports(r: &Record) -> Result<Vec<Wanted>> {
    let h = &r.host_config;
    let mut out = Vec::new();
    let bindings = h.port_bindings.clone().unwrap_or_default();
    for (key, list) in &bindings {
        let (container_port, proto) = parse_port_key(key)?;
        let list = list.clone().unwrap_or_default();
        let list = if list.is_empty() {
            vec![berth_api::container::PortBinding::default()]
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
                        return Err(Error::bad_request(format!(
                            "invalid host IP {ip:?} for port {key}"
                        )))
                    }
                },
            };
            out.push(Wanted {
                proto,
                container_port,
                host_ip,
                host_ports: parse_host_ports(&b.host_port)?,
            });
        }
    }
    if h.publish_all_ports {
        for key in r.config.exposed_ports.iter().flatten().map(|(k, _)| k) {
            if bindings.contains_key(key) {
                continue;
            }
            let (container_port, proto) = parse_port_key(key)?;
            out.push(Wanted {
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
pub(super) fn bind_port(
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

pub(super) fn take_port(w: &Wanted, for_proxy: bool) -> Result<(OwnedFd, u16)> {
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
    Err(Error::internal(if lo == hi && lo != 0 {
        format!("driver failed programming external connectivity on endpoint: Bind for {shown_ip}:{lo} failed: port is already allocated ({e})")
    } else {
        format!("driver failed programming external connectivity on endpoint: no free port in {shown_ip}:{lo}-{hi} ({e})")
    }))
}

/// Hand a taken host port to a userland proxy (listening first, for TCP).
pub(super) fn proxy_port(d: &Service, id: &str, p: &Published, fd: OwnedFd) -> Result<u32> {
    if p.proto == Proto::Tcp {
        nix::sys::socket::listen(&fd, nix::sys::socket::Backlog::MAXCONN)
            .map_err(|e| Error::internal(format!("listening on host port {}: {e}", p.host_port)))?;
    }
    d.net.spawn_proxy(
        id,
        p.proto,
        fd,
        SocketAddr::new(p.container_ip.into(), p.container_port),
    )
}

/// How a host address shows in inspect and lists (`0.0.0.0` for any).
pub(super) fn shown(ip: Option<IpAddr>) -> IpAddr {
    ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// Whether a published port is served by a userland proxy: with `userland-proxy`, and on an
/// IPv6 host address that is not NATed to the container's IPv6 address (`nat6`: the
/// container has one and the host address is not `::1`, which NAT cannot reach).
pub(super) fn proxied(d: &Service, host_ip: Option<IpAddr>, nat6: bool) -> bool {
    d.net.cfg.userland_proxy || host_ip.is_some_and(|a| a.is_ipv6() && !nat6)
}

/// The `[::]` binding that goes with a binding on every address (`-p 8080:80`) of a
/// container that has an IPv6 address, on the same host port, as dockerd makes it.
pub(super) fn v6_twin(w: &Wanted, port: u16) -> Wanted {
    Wanted {
        proto: w.proto,
        container_port: w.container_port,
        host_ip: Some(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)),
        host_ports: (port, port),
    }
}

/// The NAT entries of the published ports: those on IPv4, and those on IPv6 host addresses
/// to a container's IPv6 address.
pub fn port_maps(r: &Record) -> Vec<PortMap> {
    r.net
        .ports
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

/// The `Ports` of a container list row.
pub fn summary_ports(r: &Record) -> Vec<berth_api::container::PortSummary> {
    let mut out = Vec::new();
    let running = r.is_running();
    for key in r.config.exposed_ports.iter().flatten().map(|(k, _)| k) {
        let Ok((port, proto)) = parse_port_key(key) else {
            continue;
        };
        let published = running
            && r.net
                .ports
                .iter()
                .any(|p| p.container_port == port && p.proto == proto);
        if !published {
            out.push(berth_api::container::PortSummary {
                ip: None,
                private_port: port,
                public_port: None,
                kind: proto.as_str().into(),
            });
        }
    }
    if running {
        for p in &r.net.ports {
            out.push(berth_api::container::PortSummary {
                ip: Some(shown(p.host_ip).to_string()),
                private_port: p.container_port,
                public_port: Some(p.host_port),
                kind: p.proto.as_str().into(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

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
