//! The control API: generated types ([`pb`]), the server the supervisor runs ([`server`]),
//! log sources ([`logs`]), and how clients connect ([`client`]). Served on a Unix socket
//! inside the guest (root only: it lives under /run/hoist, mode 0700) and on TCP with
//! mutual TLS: only clients holding a certificate from this host's CA get in.

pub mod client;
pub mod logs;
pub mod server;

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod pb {
    tonic::include_proto!("hoist.v1");
}

pub use hoist_guest::api::{MAX_MESSAGE, PORT, SOCKET};
pub use hoist_guest::pki::{SERVER_NAME, TLS_DIR};
