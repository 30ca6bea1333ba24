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

/// Inside the guest.
pub const SOCKET: &str = "/run/hoist/control.sock";
/// TCP port in the guest; `hoist run` publishes it on 127.0.0.1.
pub const PORT: u16 = 7443;
/// Server side of the PKI in the guest: ca.pem, server.pem, server.key.
pub const TLS_DIR: &str = "/etc/hoist/tls";
/// Largest request or reply message (bytes); bigger ones are refused.
pub const MAX_MESSAGE: usize = 4 << 20;
/// The DNS name in the server certificate that clients check.
pub const SERVER_NAME: &str = "hoist";
