//! The control API's PKI file names. `hoist build` makes all six in a PKI directory
//! (`OUT/pki`), puts the server side into the image under [`TLS_DIR`], and the client
//! side stays with the operator.

/// The server side of the PKI in the guest: [`CA_CERT`], [`SERVER_CERT`], [`SERVER_KEY`].
pub const TLS_DIR: &str = "/etc/hoist/tls";

pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca.key";
pub const SERVER_CERT: &str = "server.pem";
pub const SERVER_KEY: &str = "server.key";
pub const CLIENT_CERT: &str = "client.pem";
pub const CLIENT_KEY: &str = "client.key";

/// Every file of a PKI directory.
pub const FILES: [&str; 6] = [CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY, CLIENT_CERT, CLIENT_KEY];

/// What goes into the image, with its mode: the server's key is readable by root only.
pub const SERVER_FILES: [(&str, u32); 3] = [(CA_CERT, 0o644), (SERVER_CERT, 0o644), (SERVER_KEY, 0o600)];

/// The DNS name in the server certificate, the one clients check.
pub const SERVER_NAME: &str = "hoist";
