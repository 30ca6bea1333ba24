//! Where the control API listens and what it accepts; the server in the guest and every
//! client (`hoist ctl`, `hoist run`'s port forward, the tests) agree on these.

/// The Unix socket inside the guest.
pub const SOCKET: &str = crate::paths::CONTROL_SOCKET;
/// TCP port in the guest; `hoist run` publishes it on 127.0.0.1.
pub const PORT: u16 = 7443;
/// Largest request or reply message (bytes); bigger ones are refused.
pub const MAX_MESSAGE: usize = 4 << 20;
