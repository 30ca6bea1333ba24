//! hoist-registry: images from registries (`image = "docker://nginx:1.27"`) for the
//! build host. Nothing here runs on a booted host.
//!
//! - [`pull`]: resolves a reference (a tag, or a pinned digest) and streams what the cache
//!   lacks from the registry over oci-client: an index is followed to the platform asked
//!   for (the build host's by default), every blob is written to a temporary file through
//!   a hash and a size cap and renamed into the cache only once it matches its digest,
//!   and transient errors are retried with backoff (a wrong digest is final).
//! - [`cache`]: the build host's content-addressed store, shared by every build: an OCI
//!   layout with blobs and no index, read by hoist-images' `import_pinned`.
//! - [`auth`]: credentials from `~/.docker/config.json` (`auths`, credential helpers).
//! - [`certs`]: a registry's own CA certificates from `certs.d` directories, as skopeo
//!   and docker find them; the system's roots are always trusted.
//! - [`lock`]: `host.lock`, the digest each `docker://` reference of a config is pinned to.
//! - [`prune`]: removes from the cache what no remembered lock file needs.

pub mod auth;
pub mod cache;
pub mod certs;
pub mod lock;
pub mod manifest;
pub mod prune;
pub mod pull;

pub use cache::Cache;
pub use lock::Lock;
pub use pull::{PullError, Pulled, Puller};
