//! Container images in and out of hoist.
//!
//! **Import** turns a local image into an [`Image`]: a rootfs [`Tree`] held in memory (never
//! unpacked onto the host disk) plus the runnable part of its config. Three sources:
//! an OCI image layout directory ([`import_oci_layout`]), a `docker save` tarball
//! ([`import_docker_archive`]) and a plain rootfs directory ([`import_dir`]). Layers are
//! applied in order with OCI whiteouts (`.wh.NAME`, `.wh..wh..opq`); parent directories are
//! resolved through symlinks already in the tree, as containerd's applier does.
//!
//! **Nothing unverified reaches the tree.** Every JSON blob of an OCI layout (nested index,
//! manifest, config) must match its descriptor's sha256 and size before it is parsed. Layers
//! are streamed, never held whole: the stored blob is hashed as it is decompressed and the
//! uncompressed tar as it is read, and a layer's changes touch the tree only when the blob's
//! digest and size and the tar's `diff_id` all match. In a docker archive, which has no
//! descriptors, layers are checked against the config's `diff_ids`, and the config and any
//! `blobs/sha256/<hex>` member against the digest in their names.
//!
//! **Imports are capped** ([`Limits`]): by default an image may unpack to 4 GiB
//! ([`IMAGE_BYTES`]: every uncompressed layer byte, sparse files at their full size) and
//! 2^20 entries; `hoist build` also caps all its images together at 8 GiB
//! ([`TOTAL_BYTES`]). Member data is read as it comes, never allocated from a header's
//! claim. Files of a source are opened without following symlinks and must be regular
//! files (see `open`); a `dir:` source is walked by descriptor (see [`import_dir`]). What
//! a transfer lists is checked the same way, but `hoist apply` opens a blob again by path
//! to send it ([`BlobData::open`]); the host verifies every byte against its digest.
//!
//! **Transfer** ([`blobs`]) lists the blobs an image is made of (manifest, config, layers),
//! for `hoist apply` to send to a host that lacks them: an OCI layout's as stored, each
//! verified against its descriptor; a docker archive's config and layer members as they are,
//! under an OCI manifest made for them. A plain directory cannot be sent.
//!
//! **Create** ([`create_oci_layout`]) writes a one-image, one-layer OCI layout from a tree
//! ([`create_layered_oci_layout`]: one layer per tree, so images can share lower layers),
//! byte-for-byte reproducible: sorted entries, mtime 0, no user names, gzip without name or
//! time, JSON with a fixed field order.
//!
//! **Registries** (`docker://`): this crate does no network. `hoist build` pulls into the
//! build host's cache, an OCI layout with no index (hoist-registry), and pins each
//! reference to a digest; [`import_pinned`] reads the image from there by the digest of
//! the manifest that pin resolved to, with every check a layout gets.
//!
//! Not supported: signatures and attestations, encrypted layers, digests other than sha256, platforms other
//! than linux/amd64 in multi-platform indexes (an image whose config names another
//! platform is refused by its callers unless allowed: [`Image::check_platform`]), block
//! devices and fifos (skipped with a warning), extended attributes and file capabilities
//! (dropped), symlink targets that are not UTF-8 (an error; file names are bytes, so
//! Latin-1 names are fine). Hard links stay links: the linked paths share one `Arc` of data
//! in the [`Tree`], which [`crate::cpio`] writes as one inode.

mod create;
mod digest;
mod dir;
mod docker;
mod layer;
mod layout;
mod limits;
mod open;
mod spec;
mod transfer;

use std::io;
use std::path::{Path, PathBuf};

use crate::tree::Tree;

pub use create::{create_layered_oci_layout, create_oci_layout};
pub use dir::import_dir;
pub use docker::import_docker_archive;
pub use layout::import_oci_layout;
pub use limits::{IMAGE_BYTES, IMAGE_ENTRIES, Limits, TOTAL_BYTES};
pub use transfer::{Blob, BlobData, BlobKind, Transfer, blobs, docker_archive_blobs, oci_layout_blobs, pinned_blobs};

/// An imported image, unpacked.
#[derive(Debug, Clone)]
pub struct Image {
    pub rootfs: Tree,
    pub config: ImageConfig,
    /// "sha256:..." of the manifest for OCI layouts; of the config (the Docker image ID) for
    /// docker archives, which carry no manifest blob; for a directory, a sha256 over the tree
    /// (paths, kinds, modes, owners, contents), so every source is content-addressed.
    pub digest: String,
    /// "os/architecture" from the image config; empty for a plain directory (unknown).
    pub platform: String,
}

/// The platform every built host runs (an x86 kernel, the build machine's containerd and runc).
pub const TARGET_PLATFORM: &str = "linux/amd64";

/// An image for another platform than [`TARGET_PLATFORM`], refused unless asked for.
#[derive(Debug, thiserror::Error)]
#[error("built for {platform}, but the host is {TARGET_PLATFORM} (--allow-foreign-arch uses it anyway)")]
pub struct ForeignPlatform {
    pub platform: String,
}

impl Image {
    /// Refuses an image for another platform, unless `allow` (then it is a warning naming
    /// `what`, e.g. "service web"). An image that does not say (a plain directory, a config
    /// without `os`/`architecture`) is accepted.
    pub fn check_platform(&self, what: &str, allow: bool) -> Result<(), ForeignPlatform> {
        let unknown = self.platform.is_empty() || self.platform.starts_with('/') || self.platform.ends_with('/');
        if unknown || self.platform == TARGET_PLATFORM {
            return Ok(());
        }
        if allow {
            log::warn!(
                "{what}: image is for {}, not {TARGET_PLATFORM} (allowed by --allow-foreign-arch)",
                self.platform
            );
            return Ok(());
        }
        Err(ForeignPlatform { platform: self.platform.clone() })
    }
}

/// The runnable parts of an OCI image config's "config" object.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// "K=V"
    pub env: Vec<String>,
    /// "" = "/"
    pub working_dir: String,
    /// "" = root
    pub user: String,
}

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("cannot read {path}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write {path}")]
    Write { path: PathBuf, source: io::Error },
    #[error("{what}: invalid JSON")]
    Json { what: String, source: serde_json::Error },
    #[error("{path}: image layout version {version:?}, expected \"1.0.0\"")]
    LayoutVersion { path: PathBuf, version: String },
    #[error("{path}: no images")]
    NoImages { path: PathBuf },
    #[error("no image tagged {tag:?} (available: {})", list(available))]
    NoSuchTag { tag: String, available: Vec<String> },
    #[error("several images and no tag given (available: {})", list(available))]
    NoTagGiven { available: Vec<String> },
    #[error("several images tagged {tag:?}")]
    AmbiguousTag { tag: String },
    #[error("invalid digest {0:?}: expected sha256:<64 lowercase hex>")]
    InvalidDigest(String),
    #[error("{what} {blob}: content is {actual}, expected {expected}")]
    DigestMismatch { what: &'static str, blob: String, expected: String, actual: String },
    #[error("{what} {blob}: {actual} bytes, expected {expected}")]
    SizeMismatch { what: &'static str, blob: String, expected: u64, actual: u64 },
    #[error("layer {layer}: uncompressed content is {actual}, diff_id says {expected}")]
    DiffIdMismatch { layer: String, expected: String, actual: String },
    #[error("{image}: {layers} layers but {diff_ids} diff_ids")]
    LayerCount { image: String, layers: usize, diff_ids: usize },
    #[error("{what}: unsupported media type {media_type:?}")]
    MediaType { what: String, media_type: String },
    #[error("index {index}: no linux/amd64 manifest")]
    NoPlatform { index: String },
    #[error("index {index}: indexes nested too deeply")]
    TooDeep { index: String },
    #[error("layer {layer}: cannot read tar")]
    Tar { layer: String, source: io::Error },
    #[error("{path:?}: cannot add to the layer tar")]
    TarWrite { path: String, source: io::Error },
    #[error("layer {layer}: {path:?}: {reason}")]
    BadEntry { layer: String, path: String, reason: &'static str },
    #[error("{archive}: no member {member:?}")]
    MissingMember { archive: PathBuf, member: String },
    #[error("{path}: {reason}")]
    BadPath { path: PathBuf, reason: &'static str },
    #[error("unpacks to more than {} (the cap {scope})", limits::size(*limit))]
    TooBig { limit: u64, scope: &'static str },
    #[error("has more than {limit} entries (the cap {scope})")]
    TooManyEntries { limit: u64, scope: &'static str },
    #[error("{what}: {size} bytes, more than the {} a JSON document may have", limits::size(*limit))]
    TooLargeJson { what: String, size: u64, limit: u64 },
    #[error("invalid tag {0:?}")]
    InvalidTag(String),
    #[error(transparent)]
    Reference(#[from] hoist_config::ReferenceError),
    // A docker archive has no manifests to match a registry (repo) digest against.
    #[error(
        "no image with ID {digest} (a docker archive is matched by image ID, the config digest `docker inspect -f {{{{.Id}}}}` prints, not by registry digest; available: {})",
        list(available)
    )]
    NoSuchImageId { digest: String, available: Vec<String> },
    #[error("{dir}: a plain directory cannot be sent to a running host; make an OCI layout with `hoist image create`")]
    NotSendable { dir: PathBuf },
    #[error("{reference} is in a registry: it is read from the build cache by the digest host.lock pins it to")]
    NotPinned { reference: String },
}

fn list(items: &[String]) -> String {
    if items.is_empty() { "none".to_string() } else { items.join(", ") }
}

/// Imports the image a host config names, within the default [`Limits`].
pub fn import(source: &hoist_config::ImageSource) -> Result<Image, OciError> {
    import_with(source, &Limits::default())
}

/// Imports the image a host config names; it may unpack to no more than `limits` allow.
pub fn import_with(source: &hoist_config::ImageSource, limits: &Limits) -> Result<Image, OciError> {
    use hoist_config::ImageSource;
    match source {
        ImageSource::Oci { dir, tag } => layout::import(dir, tag.as_deref(), limits),
        ImageSource::DockerArchive { file, reference } => docker::import(file, reference.as_deref(), limits),
        ImageSource::Dir { dir } => dir::import(dir, limits),
        ImageSource::Registry { reference } => Err(OciError::NotPinned { reference: reference.to_string() }),
    }
}

/// Imports a registry image from the cache `dir` (an OCI layout that holds blobs only) by
/// the digest of the manifest or index its reference was pinned to.
pub fn import_pinned(dir: &Path, digest: &str, limits: &Limits) -> Result<Image, OciError> {
    layout::import_digest(dir, digest, limits)
}
