//! The control API's server side: the server the supervisor runs ([`server`]) and its log
//! sources ([`logs`]). The proto, the generated types ([`pb`]) and how clients connect
//! ([`client`]) are in `hoist-api`, which `hoist ctl` links without this crate. Served on
//! a Unix socket inside the guest (root only: it lives under /run/hoist, mode 0700) and
//! on TCP with mutual TLS: only clients holding a certificate from this host's CA get in.

pub mod logs;
pub mod server;

/// The generated types and the client live in `hoist-api`, shared with `hoist ctl`;
/// re-exported so `hoist_services::api::{client, pb, PORT, ...}` keep working.
pub use hoist_api::{MAX_MESSAGE, PORT, SERVER_NAME, SOCKET, TLS_DIR, client, pb};
