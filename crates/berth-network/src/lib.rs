//! berth's container networking: address management, bridges and veth pairs over netlink,
//! the nftables table berth owns, and the embedded DNS server of user-defined networks.

pub mod dns;
pub mod ipam;
pub mod ipam6;
pub mod iptables;
pub mod link;
pub mod nft;
pub mod proxy;

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
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub type Result<T> = std::result::Result<T, Error>;
