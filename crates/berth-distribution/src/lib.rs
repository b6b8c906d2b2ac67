//! Registry client for the OCI distribution spec (pull, push, login, tags), with Docker's auth
//! conventions, manifest parsing and platform selection; independent of berth's image store.
//!
//! One [`Client`] holds one pooled HTTP/1 client (plain TCP or rustls), the challenges it has
//! seen and a bearer-token cache keyed by registry, scopes and credentials.
//!
//! Behaviour:
//! - Scheme: `localhost`, `127.0.0.0/8` and `::1` are reached over plain HTTP, unless
//!   `certs_dir/<host:port>/` exists (then HTTPS, verified with those CAs) or the name is listed
//!   in `insecure_registries`. Insecure registries (by name, or by a CIDR containing their
//!   address) are tried over HTTPS without certificate verification, then over plain HTTP when
//!   the connection or handshake fails, as Docker does; the scheme that worked is tried first
//!   afterwards. Everything else is HTTPS with the system CAs plus `certs_dir/<host:port>/*.crt`,
//!   and a client certificate from `<name>.cert` + `<name>.key` there. `docker.io` means
//!   `registry-1.docker.io`.
//! - Mirrors: manifests and blobs are tried on each configured mirror before the registry; any
//!   mirror failure moves on. Pushes, existence checks, mounts, tags and login never use mirrors.
//! - Auth: a 401 challenge is answered with Basic credentials or a bearer token from the realm
//!   (`GET` with Basic credentials or anonymously; OAuth2 `POST` with `grant_type=refresh_token`
//!   for an identity token); the request is retried once. Tokens are cached per origin, realm,
//!   service, scopes and credentials until shortly before `expires_in`; the challenge is
//!   remembered per origin so later requests are authorized up front. Registry tokens are sent
//!   as they are.
//! - Redirects are followed for manifest and blob reads; `Authorization` is only sent to the
//!   origin that challenged, never to storage hosts. Upload locations on another origin get no
//!   credentials either.
//! - Memory: blobs stream through [`BlobStream`] and uploads stream from files; manifests are
//!   capped at [`MAX_MANIFEST_SIZE`], error bodies at 64 KiB, tag pages at 16 MiB.

mod auth;
mod body;
mod client;
mod config;
mod digest;
mod error;
mod manifest;
pub mod media;
mod transport;

pub use auth::{normalize_registry, parse_www_authenticate, AuthConfig, Challenge, Credentials};
pub use body::BlobStream;
pub use client::Client;
pub use config::{
    ClientConfig, DEFAULT_CERTS_DIR, DEFAULT_CHUNK_SIZE, DEFAULT_MONOLITHIC_THRESHOLD,
};
pub use digest::{digest_with, parse_digest, sha256_digest, Algorithm, DigestVerifier, Digester};
pub use error::{Error, RegistryError};
pub use manifest::{
    parse_manifest, select_platform, Descriptor, ImageIndex, ImageManifest, Manifest,
    ParsedManifest, Platform, DEFAULT_ARCH, DEFAULT_OS, MAX_MANIFEST_SIZE,
};
pub use transport::NoVerify;
