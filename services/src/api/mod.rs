//! The control API's server side: the server the supervisor runs ([`server`]), who may
//! call what ([`auth`]: roles from the client certificate, one table, audit lines), its
//! limits ([`limits`]), its log sources ([`logs`]) and blob uploads ([`blobs`]). The
//! proto, the generated types ([`hoist_api::pb`]) and how clients connect
//! ([`hoist_api::client`]) are in `hoist-api`, which `hoist ctl` links without this crate.
//! Served on a Unix socket inside the guest (root only: it lives under /run/hoist, mode
//! 0700; its callers are admins) and on TCP with mutual TLS: only clients holding a
//! certificate from this host's CA get in, with the role their certificate names.

pub mod auth;
pub mod blobs;
pub mod limits;
pub mod logs;
pub mod server;
