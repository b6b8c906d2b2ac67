//! A container's endpoints, translated for the network service: its network mode, the
//! endpoints asked for at create and connect (kept in its record), and the calls that take
//! addresses and host ports before a start, wire them once its init exists, give them back
//! when it stops, and take them again after a daemon restart. The mechanics are the
//! service's (`berth_network::service`); this module only reads and updates the record.

use super::ports::wanted_ports;
use super::{net_err, Network};
use crate::container::handle::Container;
use crate::container::service::Service;
use crate::container::Record;
use crate::error::{Error, Result};
use berth_api::network::EndpointSettings;
use berth_network::endpoint::{check_mac, Endpoint, Sandbox};
use berth_network::files::parse_link;
use berth_network::service::sandbox::SandboxState;
use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::sync::Arc;

/// How a container is networked, from its `NetworkMode`.
pub enum Mode {
    /// Its own namespace with endpoints on bridge networks (the default bridge or user ones).
    Bridge,
    /// Its own namespace with only loopback.
    None,
    /// The host's namespace.
    Host,
    /// Another container's namespace.
    Container(String),
}

pub fn mode(r: &Record) -> Mode {
    match r.host_config.network_mode.as_str() {
        "none" => Mode::None,
        "host" => Mode::Host,
        m => match m.strip_prefix("container:") {
            Some(other) => Mode::Container(other.to_string()),
            None => Mode::Bridge,
        },
    }
}

/// The network a bridge-mode container was created on (its eth0).
pub(crate) fn primary_name(r: &Record) -> &str {
    match r.host_config.network_mode.as_str() {
        "" | "default" => "bridge",
        m => m,
    }
}

/// The container's sandbox, as the network service knows it.
pub fn sandbox(r: &Record) -> Sandbox {
    Sandbox {
        id: r.id.clone(),
        name: r.bare_name().to_string(),
        hostname: r.config.hostname.clone(),
        dns: r.host_config.dns.clone().unwrap_or_default(),
        primary: primary_name(r).to_string(),
    }
}

/// The names a container answers to on a user-defined network.
pub fn dns_names(r: &Record, ep: &Endpoint) -> Vec<String> {
    berth_network::endpoint::dns_names(&sandbox(r), ep)
}

/// At create: the endpoints the network mode and `NetworkingConfig` ask for; checks links.
pub fn configure(
    d: &Service,
    r: &mut Record,
    requested: BTreeMap<String, EndpointSettings>,
) -> Result<()> {
    let h = &r.host_config;
    let links = h.links.clone().unwrap_or_default();
    match mode(r) {
        Mode::Container(_) | Mode::Host | Mode::None
            if r.config.mac_address.as_ref().is_some_and(|m| !m.is_empty()) =>
        {
            return Err(Error::bad_request(
                "conflicting options: mac-address and the network mode",
            ));
        }
        Mode::Container(other) => {
            // At create the hostname was filled with the short id; anything else came from -h.
            if !r.config.hostname.is_empty() && r.config.hostname != r.short_id() {
                return Err(Error::bad_request(
                    "conflicting options: hostname and the network mode",
                ));
            }
            if h.port_bindings.as_ref().is_some_and(|p| !p.is_empty()) || h.publish_all_ports {
                return Err(Error::bad_request(
                    "conflicting options: port publishing and the container type network mode",
                ));
            }
            d.find(&other)?;
            return Ok(());
        }
        Mode::Host | Mode::None => {
            let name = if matches!(mode(r), Mode::Host) {
                "host"
            } else {
                "none"
            };
            let n = d.net.find(name)?;
            if !links.is_empty() {
                return Err(Error::bad_request(format!(
                    "conflicting options: links and network mode {name}"
                )));
            }
            r.net
                .endpoints
                .insert(name.into(), d.net.endpoint(&n, None)?);
            return Ok(());
        }
        Mode::Bridge => {}
    }
    let primary = primary_name(r).to_string();
    let pn = d.net.find(&primary)?;
    // The docker CLI keys the primary endpoint by the name the user typed or "default".
    let mut rest = requested;
    let primary_cfg = rest
        .remove(&primary)
        .or_else(|| rest.remove("default"))
        .or_else(|| rest.remove(&pn.rec.id));
    if !pn.driver.connectable() {
        return Err(Error::bad_request(format!(
            "network {primary} cannot be used as a network mode"
        )));
    }
    let mut ep = d.net.endpoint(&pn, primary_cfg.as_ref())?;
    // The container-wide MAC address (`Config.MacAddress`, API < 1.44) is the primary
    // endpoint's.
    if let Some(mac) = r.config.mac_address.clone().filter(|m| !m.is_empty()) {
        check_mac(&mac)?;
        let mac = mac.to_ascii_lowercase();
        if ep.requested_mac.is_empty() {
            ep.requested_mac = mac;
        } else if ep.requested_mac != mac {
            return Err(Error::bad_request(
                "the container-wide MAC address must match the endpoint-specific MAC address for the main network, or be left empty",
            ));
        }
    }
    if !links.is_empty() {
        // On the default bridge links are /etc/hosts entries and variables; on a user-defined
        // network, names its embedded DNS answers for this container only.
        if pn.rec.predefined && pn.rec.name != "bridge" {
            return Err(Error::bad_request(format!(
                "--link is not supported on network {}",
                pn.rec.name
            )));
        }
        for l in &links {
            let (target, alias) = parse_link(l)?;
            d.find(target)?;
            ep.links.push(format!("{target}:{alias}"));
        }
    }
    r.host_config.network_mode = pn.rec.name.clone();
    r.net.endpoints.insert(pn.rec.name.clone(), ep);
    for (key, cfg) in rest {
        let n = d.net.find(&key)?;
        if !n.driver.connectable() {
            return Err(Error::bad_request(format!(
                "container cannot be connected to network {} and to {}",
                n.rec.name, pn.rec.name
            )));
        }
        r.net
            .endpoints
            .insert(n.rec.name.clone(), d.net.endpoint(&n, Some(&cfg))?);
    }
    Ok(())
}

/// Before the bundle is written: an address, MAC and interface names for each bridge
/// endpoint, and the host ports to publish, taken by the network service (which keeps
/// them). On error everything taken is given back.
pub fn allocate(d: &Service, c: &Container) -> Result<()> {
    let r = c.snapshot();
    if !matches!(mode(&r), Mode::Bridge) {
        return Ok(());
    }
    let wanted = wanted_ports(&r)?;
    Ok(d.net.allocate(sandbox(&r), &r.net.endpoints, &wanted)?)
}

/// Once the container's init exists (`pid`): its veths, its DNS names, its published ports.
pub async fn wire(d: &Service, c: &Container, pid: i32) -> Result<()> {
    if !matches!(mode(&c.snapshot()), Mode::Bridge) {
        return Ok(());
    }
    let netns = std::fs::File::open(format!("/proc/{pid}/ns/net"))
        .map_err(|e| Error::internal(format!("network namespace of the container: {e}")))?;
    Ok(d.net.wire(&c.id, netns.as_fd()).await?)
}

/// Undo [`allocate`] and [`wire`]: after the container stopped, or when its start failed.
pub fn release(d: &Service, c: &Container) {
    // The veths are not deleted here: they go with the container's network namespace when
    // its last process is gone, which the kernel does in one batch. Deleting them one by one
    // holds the rtnl lock through RCU grace periods and delayed the next container's wiring
    // by 10–30 ms (measured); addresses are not handed out again soon (see ipam::Pool).
    d.net.release(&c.id);
}

/// A container that kept running across a daemon restart: the network service takes its
/// addresses, names and host ports again (the table is rebuilt once all are back). One
/// started by a daemon that kept them in the container's record has them handed over from
/// there.
pub fn readopt(d: &Service, c: &Container) {
    let r = c.snapshot();
    let handed = if d.net.kept(&c.id) {
        None
    } else {
        std::fs::read(c.paths.record())
            .ok()
            .and_then(|b| legacy_state(&b, sandbox(&r)))
    };
    d.net.readopt(&c.id, sandbox(&r), &r.net.endpoints, handed);
}

/// What a record written before the network service kept sandboxes holds of a running
/// container's networking: endpoints with their addresses, and published ports.
fn legacy_state(record: &[u8], sandbox: Sandbox) -> Option<SandboxState> {
    #[derive(serde::Deserialize)]
    struct Old {
        net: OldNet,
    }
    #[derive(serde::Deserialize)]
    struct OldNet {
        #[serde(default)]
        endpoints: BTreeMap<String, Endpoint>,
        #[serde(default)]
        ports: Vec<berth_network::ports::Published>,
    }
    let old: Old = serde_json::from_slice(record).ok()?;
    let endpoints: BTreeMap<String, Endpoint> = old
        .net
        .endpoints
        .into_iter()
        .filter(|(_, e)| !e.ip.is_empty() || !e.ip6.is_empty())
        .collect();
    (!endpoints.is_empty() || !old.net.ports.is_empty()).then_some(SandboxState {
        sandbox,
        endpoints,
        ports: old.net.ports,
    })
}

/// The container's endpoints by network name: what it asked for, with what each has while
/// it runs (from the network service).
pub fn endpoints(d: &Service, r: &Record) -> BTreeMap<String, Endpoint> {
    r.net
        .endpoints
        .iter()
        .map(|(name, cfg)| {
            let live = d.net.live_endpoint(&r.id, name);
            (name.clone(), Endpoint::with_live(cfg, live.as_ref()))
        })
        .collect()
}

/// `POST /networks/{id}/connect`.
pub async fn connect(
    d: &Arc<Service>,
    n: &Arc<Network>,
    c: &Arc<Container>,
    cfg: Option<EndpointSettings>,
) -> Result<()> {
    let _op = c.op.lock().await;
    let r = c.snapshot();
    if !n.driver.connectable() {
        return Err(Error(berth_api::ApiError::new(
            403,
            format!(
                "container cannot be disconnected from host network or connected to {} network",
                n.rec.name
            ),
        )));
    }
    if !matches!(mode(&r), Mode::Bridge) {
        return Err(Error::bad_request(format!(
            "container sharing network namespace with another container or host cannot be connected to any other network ({})",
            r.host_config.network_mode
        )));
    }
    if r.net.endpoints.contains_key(&n.rec.name) {
        return Err(Error(berth_api::ApiError::new(
            403,
            format!(
                "endpoint with name {} already exists in network {}",
                r.bare_name(),
                n.rec.name
            ),
        )));
    }
    let mut ep = d.net.endpoint(n, cfg.as_ref())?;
    for l in cfg
        .as_ref()
        .and_then(|c| c.links.as_ref())
        .into_iter()
        .flatten()
    {
        if n.rec.predefined {
            return Err(Error::bad_request(
                "links at connect (--link) are supported on user-defined networks only",
            ));
        }
        let (target, alias) = parse_link(l)?;
        d.find(target)?;
        ep.links.push(format!("{target}:{alias}"));
    }
    if !r.is_running() || r.state.pid <= 0 {
        c.rec().net.endpoints.insert(n.rec.name.clone(), ep);
        if let Err(e) = c.update(|_| {}) {
            c.rec().net.endpoints.remove(&n.rec.name);
            return Err(e);
        }
        return Ok(());
    }
    let netns = std::fs::File::open(format!("/proc/{}/ns/net", r.state.pid))
        .map_err(|e| Error::internal(format!("network namespace of the container: {e}")))?;
    d.net
        .connect(&sandbox(&r), n, &ep, netns.as_fd())
        .await
        .map_err(net_err)?;
    c.rec().net.endpoints.insert(n.rec.name.clone(), ep);
    // Wired already: the record follows (retried if it cannot be written now).
    c.update_state(|_| {});
    d.events.network_event(
        &n.rec.id,
        &n.rec.name,
        &n.rec.driver,
        "connect",
        Some(&c.id),
    );
    Ok(())
}

/// `POST /networks/{id}/disconnect`.
pub async fn disconnect(d: &Arc<Service>, n: &Arc<Network>, c: &Arc<Container>) -> Result<()> {
    let _op = c.op.lock().await;
    let r = c.snapshot();
    if !r.net.endpoints.contains_key(&n.rec.name) {
        return Err(Error(berth_api::ApiError::new(
            403,
            format!(
                "container {} is not connected to network {}",
                r.bare_name(),
                n.rec.name
            ),
        )));
    }
    if !n.driver.connectable() && r.is_running() {
        return Err(Error(berth_api::ApiError::new(
            403,
            format!(
                "container cannot be disconnected from {} network while running",
                n.rec.name
            ),
        )));
    }
    d.net.disconnect(&c.id, n).await?;
    c.rec().net.endpoints.remove(&n.rec.name);
    c.update_state(|_| {});
    d.events.network_event(
        &n.rec.id,
        &n.rec.name,
        &n.rec.driver,
        "disconnect",
        Some(&c.id),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_over_what_an_older_record_kept() {
        let old = br#"{"net":{"endpoints":{
            "bridge":{"network_id":"n1","endpoint_id":"e","aliases":[],"requested_ip":"",
                "links":[],"ip":"10.222.0.5","prefix":16,"gateway":"10.222.0.1",
                "mac":"02:42:0a:de:00:05","host_ifname":"veth1","ifname":"eth0"},
            "other":{"network_id":"n2","endpoint_id":"f","aliases":[],"requested_ip":"",
                "links":[],"ip":"","prefix":0,"gateway":"","mac":"","host_ifname":"","ifname":""}},
            "ports":[{"proto":"tcp","host_ip":null,"host_port":8080,
                "container_ip":"10.222.0.5","container_port":80}]}}"#;
        let sb = Sandbox {
            id: "c1".into(),
            ..Sandbox::default()
        };
        let st = legacy_state(old, sb.clone()).unwrap();
        assert_eq!(st.sandbox, sb);
        assert_eq!(st.endpoints.len(), 1);
        assert_eq!(st.endpoints["bridge"].ip, "10.222.0.5");
        assert_eq!(st.endpoints["bridge"].host_ifname, "veth1");
        assert_eq!(st.ports[0].host_port, 8080);
        // A record of this daemon (configuration only) hands nothing over.
        let new = br#"{"net":{"endpoints":{"bridge":{"network_id":"n1","endpoint_id":"e",
            "aliases":[],"requested_ip":"","links":[]}}}}"#;
        assert!(legacy_state(new, sb).is_none());
    }
}
