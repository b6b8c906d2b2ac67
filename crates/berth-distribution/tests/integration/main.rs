//! Integration tests of the registry client: Debian's docker-registry for the distribution API,
//! an in-test token server for the bearer flow. All traffic stays on 127.0.0.1.

mod bearer;
mod common;
mod docker_registry;
