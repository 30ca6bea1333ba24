//! The control API's server side: the server the supervisor runs ([`server`]) and its log
//! sources ([`logs`]). The proto, the generated types ([`hoist_api::pb`]) and how clients
//! connect ([`hoist_api::client`]) are in `hoist-api`, which `hoist ctl` links without this
//! crate. Served on a Unix socket inside the guest (root only: it lives under /run/hoist,
//! mode 0700) and on TCP with mutual TLS: only clients holding a certificate from this
//! host's CA get in.

pub mod auth;
pub mod blobs;
pub mod limits;
pub mod logs;
pub mod server;
