//! Port publishing, the service's part: host ports taken for a sandbox's port requests
//! (held by a bound socket, or handed to a userland proxy), the NAT rules for them, and
//! taking them again after a restart. Keeps the held sockets and the proxies it started, by
//! container id; the [`Published`] list is kept by [`super::sandbox`]. Touches no endpoint
//! and no address pool.

use super::NetworkService;
use crate::nft::Proto;
use crate::ports::{bind_port, port_maps, take_port, v6_twin, PortRequest, Published};
use crate::{Error, Result};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::OwnedFd;

impl NetworkService {
    /// Whether a published port is served by a userland proxy: with `userland-proxy`, and on
    /// an IPv6 host address that is not NATed to the container's IPv6 address (`nat6`: the
    /// container has one and the host address is not `::1`, which NAT cannot reach).
    fn proxied(&self, host_ip: Option<IpAddr>, nat6: bool) -> bool {
        self.host.cfg.userland_proxy || host_ip.is_some_and(|a| a.is_ipv6() && !nat6)
    }

    /// Hand a taken host port to a userland proxy (listening first, for TCP).
    fn proxy_port(&self, id: &str, p: &Published, fd: OwnedFd) -> Result<u32> {
        if p.proto == Proto::Tcp {
            nix::sys::socket::listen(&fd, nix::sys::socket::Backlog::MAXCONN).map_err(|e| {
                Error::Internal(format!("listening on host port {}: {e}", p.host_port))
            })?;
        }
        self.spawn_proxy(
            id,
            p.proto,
            fd,
            SocketAddr::new(p.container_ip.into(), p.container_port),
        )
    }

    /// Take host ports for container `id`'s port requests, to its first endpoint's addresses
    /// (`target`, and `target6` if it has an IPv6 one). On error nothing stays taken.
    pub(crate) fn publish(
        &self,
        id: &str,
        wanted: &[PortRequest],
        target: Option<Ipv4Addr>,
        target6: Option<Ipv6Addr>,
    ) -> Result<Vec<Published>> {
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let Some(target) = target else {
            return Err(Error::Invalid(
                "publishing ports needs an IPv4 address on the container's first network: berth does not publish ports of containers on IPv6-only networks".into(),
            ));
        };
        let mut fds = Vec::new();
        let mut published = Vec::new();
        match self.take_ports(id, wanted, target, target6, &mut fds, &mut published) {
            Ok(()) => {
                self.hold_ports(id, fds);
                Ok(published)
            }
            Err(e) => {
                self.stop_proxies(id, &published);
                Err(e)
            }
        }
    }

    fn take_ports(
        &self,
        id: &str,
        wanted: &[PortRequest],
        target: Ipv4Addr,
        target6: Option<Ipv6Addr>,
        fds: &mut Vec<OwnedFd>,
        published: &mut Vec<Published>,
    ) -> Result<()> {
        for w in wanted {
            let nat6 =
                target6.filter(|_| w.host_ip.is_some_and(|h| h.is_ipv6() && !h.is_loopback()));
            let via_proxy = self.proxied(w.host_ip, nat6.is_some());
            let (fd, port) = take_port(w, via_proxy)?;
            let mut p = Published {
                proto: w.proto,
                host_ip: w.host_ip,
                host_port: port,
                container_ip: target,
                container_ip6: nat6,
                container_port: w.container_port,
                proxy_pid: 0,
            };
            if via_proxy {
                p.proxy_pid = self.proxy_port(id, &p, fd)?;
            } else {
                fds.push(fd);
            }
            published.push(p);
            // Every address means IPv6 ones too when the container has an IPv6 address.
            if let (None, Some(t6)) = (w.host_ip, target6) {
                let twin = v6_twin(w, port);
                let via_proxy = self.proxied(twin.host_ip, true);
                let (fd, _) = take_port(&twin, via_proxy)?;
                let mut p6 = Published {
                    host_ip: twin.host_ip,
                    container_ip6: Some(t6),
                    proxy_pid: 0,
                    ..p
                };
                if via_proxy {
                    p6.proxy_pid = self.proxy_port(id, &p6, fd)?;
                } else {
                    fds.push(fd);
                }
                published.push(p6);
            }
        }
        Ok(())
    }

    /// The NAT rules of published ports, once the sandbox's endpoints are wired.
    pub(crate) fn add_port_rules(&self, ports: &[Published]) -> Result<()> {
        self.host
            .table
            .add_ports(&port_maps(ports))
            .map_err(|e| Error::Internal(format!("publishing ports: {e}")))
    }

    /// Remove the NAT rules of published ports.
    pub(crate) fn remove_port_rules(&self, ports: &[Published]) -> Result<()> {
        self.host.table.remove_ports(&port_maps(ports))
    }

    /// Give back container `id`'s host ports: the held sockets close, its proxies stop.
    pub(crate) fn unpublish(&self, id: &str, ports: &[Published]) {
        self.drop_ports(id);
        self.stop_proxies(id, ports);
    }

    /// A container that kept running across a restart: its host ports are held again (a
    /// proxy still running keeps serving; one that is gone is started again).
    pub(crate) fn readopt_ports(&self, id: &str, ports: &mut [Published]) {
        let mut fds = Vec::new();
        for p in ports.iter_mut() {
            if p.proxy_pid != 0 && proxy_alive(p) {
                continue;
            }
            let via_proxy = self.proxied(p.host_ip, p.container_ip6.is_some());
            match bind_port(p.proto, p.host_ip, p.host_port, via_proxy) {
                Ok((fd, _)) if via_proxy => match self.proxy_port(id, p, fd) {
                    Ok(pid) => p.proxy_pid = pid,
                    Err(e) => {
                        tracing::warn!("container {id}: proxy for port {}: {e}", p.host_port)
                    }
                },
                Ok((fd, _)) => fds.push(fd),
                Err(e) => {
                    tracing::warn!("container {id}: holding host port {}: {e}", p.host_port)
                }
            }
        }
        self.hold_ports(id, fds);
    }

    fn hold_ports(&self, id: &str, fds: Vec<OwnedFd>) {
        if !fds.is_empty() {
            self.held
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(id.to_string())
                .or_default()
                .extend(fds);
        }
    }

    pub fn drop_ports(&self, id: &str) {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    /// Start a userland proxy for a published port on the socket `fd` (bound, listening for
    /// TCP); it gets the socket as fd 3 and outlives a restart of the daemon.
    fn spawn_proxy(&self, id: &str, proto: Proto, fd: OwnedFd, target: SocketAddr) -> Result<u32> {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let exe = std::env::current_exe()?;
        let raw = fd.as_raw_fd();
        let mut cmd = std::process::Command::new(exe);
        cmd.args(["userland-proxy", proto.as_str(), &target.to_string()])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0);
        // SAFETY: between fork and exec only dup2, which is async-signal-safe, runs; it puts
        // the socket on fd 3 without close-on-exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(raw, crate::proxy::LISTEN_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| Error::Internal(format!("starting userland-proxy: {e}")))?;
        drop(fd);
        let pid = child.id();
        self.proxies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id.to_string())
            .or_default()
            .push(child);
        Ok(pid)
    }

    /// Stop a container's userland proxies: those this process started are killed and reaped,
    /// others (started before a restart) are killed by pid once their command line proves
    /// they are a berth proxy for the port.
    fn stop_proxies(&self, id: &str, ports: &[Published]) {
        let mine = self
            .proxies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id)
            .unwrap_or_default();
        let mine_pids: Vec<u32> = mine.iter().map(|c| c.id()).collect();
        for mut c in mine {
            let _ = c.kill();
            let _ = c.wait();
        }
        for p in ports {
            if p.proxy_pid == 0 || mine_pids.contains(&p.proxy_pid) {
                continue;
            }
            if proxy_alive(p) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(p.proxy_pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// Whether the recorded proxy of a port still runs (its pid is a berth userland-proxy for
/// that container address).
pub fn proxy_alive(p: &Published) -> bool {
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", p.proxy_pid)).unwrap_or_default();
    let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    text.contains("userland-proxy")
        && text.contains(&format!("{}:{}", p.container_ip, p.container_port))
}
