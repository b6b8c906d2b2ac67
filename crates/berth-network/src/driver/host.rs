//! The `host` and `null` drivers: one predefined network each, whose sandboxes are the
//! host's namespace (`host`) or a namespace with only loopback (`null`). They touch nothing
//! on the host.

use super::Network;
use super::{BoxFuture, Driver, HostNet};
use crate::record::NetworkRecord;
use crate::{link, Error, Result};
use berth_api::network::CreateRequest;
use std::os::fd::BorrowedFd;

/// The host's network namespace.
pub struct Host;

/// No networking but loopback.
pub struct Null;

fn only_one(name: &str) -> Error {
    Error::Forbidden(format!(
        "only one instance of \"{name}\" network is allowed"
    ))
}

macro_rules! predefined_only {
    ($t:ty, $name:literal) => {
        impl Driver for $t {
            fn name(&self) -> &'static str {
                $name
            }
            fn check_create(&self) -> Result<()> {
                Err(only_one($name))
            }
            fn connectable(&self) -> bool {
                false
            }
            fn configure<'a>(
                &'a self,
                _host: &'a HostNet,
                _req: &'a CreateRequest,
                _rec: &'a mut NetworkRecord,
                _others: &'a [NetworkRecord],
            ) -> BoxFuture<'a, Result<()>> {
                Box::pin(async { Err(only_one($name)) })
            }
            fn bring_up<'a>(&'a self, _: &'a HostNet, _: &'a Network) -> BoxFuture<'a, Result<()>> {
                Box::pin(async { Ok(()) })
            }
            fn tear_down<'a>(
                &'a self,
                _: &'a HostNet,
                _: &'a Network,
            ) -> BoxFuture<'a, Result<()>> {
                Box::pin(async { Ok(()) })
            }
            fn join<'a>(
                &'a self,
                _: &'a HostNet,
                _: &'a link::Endpoint,
                _: BorrowedFd<'a>,
            ) -> BoxFuture<'a, Result<()>> {
                Box::pin(async {
                    Err(Error::Forbidden(format!(
                        "the {} network has no endpoints of its own to connect",
                        $name
                    )))
                })
            }
            fn unplug<'a>(&'a self, _: &'a HostNet, _: &'a str) -> BoxFuture<'a, Result<()>> {
                Box::pin(async { Ok(()) })
            }
        }
    };
}

predefined_only!(Host, "host");
predefined_only!(Null, "null");
