//! hoist-api: the control API as both sides see it. The proto (`proto/hoist.proto`,
//! compiled by `build.rs` with protoc), the generated types and service stubs ([`pb`]),
//! how a client connects ([`client`]: mutual TLS over TCP from the host, or the Unix
//! socket inside the guest), and where the API listens ([`PORT`], [`SOCKET`],
//! [`MAX_MESSAGE`], the certificate names in [`hoist_guest::pki`]).
//!
//! The server is the supervisor's (`hoist_services::api::server`); this crate has no
//! server logic, so `hoist ctl` and the tests link the API without linking the
//! supervisor or PID 1.

pub mod client;

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod pb {
    tonic::include_proto!("hoist.v1");
}

pub use hoist_guest::api::{MAX_MESSAGE, PORT, SOCKET};
pub use hoist_guest::pki::{SERVER_NAME, TLS_DIR};
