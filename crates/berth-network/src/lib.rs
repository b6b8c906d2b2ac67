//! berth's container networking as a service (Docker's Container Network Model): the
//! [`service::NetworkService`] with its drivers and IPAM behind traits, and the parts under
//! it: address management, bridges, VXLAN and veth pairs over netlink, the nftables table
//! berth owns, IPsec ESP of encrypted overlays ([`esp`]), the load balancing programmed
//! inside sandboxes ([`lb`]), the embedded DNS server, published ports and the files a
//! sandbox mounts. Nothing here knows containers' records or the daemon.

pub mod config;
pub mod dns;
pub mod driver;
pub mod endpoint;
pub mod esp;
pub mod files;
pub mod host;
pub mod ipam;
pub mod ipam6;
pub mod ipam_driver;
pub mod iptables;
pub mod lb;
pub mod link;
pub mod nft;
pub mod ports;
pub mod proxy;
pub mod record;
pub mod service;

/// What can go wrong while wiring a network.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A netlink request failed (what was asked, and the kernel's answer).
    #[error("{0}")]
    Netlink(String),
    /// nft refused a ruleset or could not be run.
    #[error("nftables: {0}")]
    Nft(String),
    /// A subnet, address or name that cannot be used.
    #[error("{0}")]
    Invalid(String),
    /// No address left in a pool.
    #[error("{0}")]
    Exhausted(String),
    /// No such network (or driver).
    #[error("{0}")]
    NotFound(String),
    /// A name or address that another network or endpoint has.
    #[error("{0}")]
    Conflict(String),
    /// An operation the network does not allow (a predefined network, a swarm scope).
    #[error("{0}")]
    Forbidden(String),
    /// Anything else that failed.
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub type Result<T> = std::result::Result<T, Error>;
