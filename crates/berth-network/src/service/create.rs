//! Creating and removing user networks: the checks common to every driver, the record
//! (the driver fills its part), bringing it up, and undoing all of it on failure or removal.
//! Leaves driver-specific checks and host changes to the driver, and never touches sandboxes
//! (the caller says whether a network is in use).

use super::{random_id, Network, NetworkService};
use crate::driver;
use crate::record::NetworkRecord;
use crate::{Error, Result};
use berth_api::network::CreateRequest;
use std::sync::Arc;

impl NetworkService {
    /// `POST /networks/create`: the new network's id and a warning.
    pub async fn create(&self, req: CreateRequest) -> Result<(String, String)> {
        let _admin = self.admin.lock().await;
        let name = req.name.clone();
        // dockerd takes any name that is not blank (`test 01` included).
        if name.trim().is_empty() {
            return Err(Error::Invalid(format!("invalid name: {name}")));
        }
        let drv = driver::select(&self.drivers, &req.driver)?;
        drv.check_create()?;
        if self.map().values().any(|n| n.rec.name == name) {
            return Err(Error::Conflict(format!(
                "network with name {name} already exists"
            )));
        }
        // Overlay networks are the swarm's: the daemon makes them on each node.
        let overlay = drv.name() == "overlay";
        let scope_ok = match req.scope.as_str() {
            "" | "local" => true,
            "swarm" => overlay,
            _ => false,
        };
        if !scope_ok {
            return Err(Error::Forbidden(format!(
                "cannot create a {} scoped network: berth networks are local (and this node is not in a swarm)",
                req.scope
            )));
        }
        if req.ingress && !overlay {
            return Err(Error::Forbidden(
                "ingress networks are swarm networks: this node is not in a swarm".into(),
            ));
        }
        let config_from = req
            .config_from
            .as_ref()
            .and_then(|v| v.get("Network"))
            .and_then(|v| v.as_str())
            .is_some_and(|s| !s.is_empty());
        if req.config_only || config_from {
            return Err(Error::Invalid(
                "configuration-only networks (--config-only, --config-from) are not supported by berth".into(),
            ));
        }
        let enable_ipv4 = req.enable_ipv4.unwrap_or(true);
        if !enable_ipv4 && req.enable_ipv6 != Some(true) {
            return Err(Error::Invalid(
                "a network needs IPv4 or IPv6: --ipv4=false needs --ipv6".into(),
            ));
        }
        let ipam = req.ipam.clone().unwrap_or_default();
        if !matches!(ipam.driver.as_str(), "") && ipam.driver != self.ipam.name() {
            return Err(Error::NotFound(format!(
                "plugin \"{}\" not found: berth supports the default IPAM driver",
                ipam.driver
            )));
        }
        let id = random_id()?;
        let mut rec = NetworkRecord::new(id.clone(), name, drv.name(), berth_api::timefmt::now());
        rec.internal = req.internal;
        rec.attachable = req.attachable;
        rec.labels = req.labels.clone().unwrap_or_default();
        rec.enable_ipv4 = enable_ipv4;
        rec.ipam_options = ipam.options.clone().unwrap_or_default();
        let others: Vec<NetworkRecord> = self.all().iter().map(|n| n.rec.clone()).collect();
        drv.configure(&self.host, &req, &mut rec, &others).await?;
        // Validates the gateway and range against the subnet.
        let n = Arc::new(self.network(rec)?);
        if let Err(e) = n.driver.bring_up(&self.host, &n).await {
            n.set_dns(None);
            let _ = n.driver.tear_down(&self.host, &n).await;
            return Err(e);
        }
        let added = match n.rec.rules() {
            Some(r) => self.host.table.add_network(&r),
            None => Ok(()),
        };
        if let Err(e) = added.and_then(|()| self.save(&n.rec)) {
            if let Some(r) = n.rec.rules() {
                let _ = self.host.table.remove_network(&r);
            }
            n.set_dns(None);
            let _ = n.driver.tear_down(&self.host, &n).await;
            return Err(e);
        }
        self.map().insert(id.clone(), n.clone());
        Ok((id, String::new()))
    }

    /// `DELETE /networks/{id}`: `in_use` says whether a running container is on it.
    pub async fn remove(&self, n: &Arc<Network>, in_use: bool) -> Result<()> {
        let _admin = self.admin.lock().await;
        if n.rec.predefined {
            return Err(Error::Forbidden(format!(
                "{} is a pre-defined network and cannot be removed",
                n.rec.name
            )));
        }
        if in_use {
            return Err(Error::Forbidden(format!(
                "error while removing network: network {} id {} has active endpoints",
                n.rec.name, n.rec.id
            )));
        }
        if !self.map().contains_key(&n.rec.id) {
            return Err(Error::NotFound(format!("network {} not found", n.rec.id)));
        }
        n.set_dns(None);
        if let Some(r) = n.rec.rules() {
            if let Err(e) = self.host.table.remove_network(&r) {
                tracing::warn!(
                    "network {}: removing its nftables elements: {e}",
                    n.rec.name
                );
            }
        }
        n.driver.tear_down(&self.host, n).await?;
        match std::fs::remove_file(self.dir.join(format!("{}.json", n.rec.id))) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        self.map().remove(&n.rec.id);
        if n.rec.is_overlay() {
            if let Err(e) = self.sync_underlay() {
                tracing::warn!("network {}: filtering VXLAN's sources: {e}", n.rec.name);
            }
        }
        Ok(())
    }
}
