//! Importing from an OCI image layout directory (`oci-layout`, `index.json`, `blobs/`).

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::digest::{self, HashingReader, sha256_hex};
use super::layer::{self, Compression};
use super::limits::{Budget, Limits};
use super::spec::{
    self, CONTAINERD_NAME, ConfigBlob, DOCKER_CONFIG, DOCKER_LIST, DOCKER_MANIFEST, Descriptor, Index, LAYOUT_VERSION,
    Manifest, OCI_CONFIG, OCI_INDEX, OCI_MANIFEST, OciLayout, REF_NAME,
};
use super::{Image, OciError, open};
use crate::tree::Tree;

/// Indexes nested deeper than this are refused (a real one has two levels).
const MAX_DEPTH: usize = 4;

/// Imports the image tagged `tag` (annotation `org.opencontainers.image.ref.name`, or
/// containerd's `io.containerd.image.name`) from the layout at `dir`; without a tag, the
/// layout must hold a single image. A multi-platform index is followed to linux/amd64.
pub fn import_oci_layout(dir: &Path, tag: Option<&str>) -> Result<Image, OciError> {
    import(dir, tag, &Limits::default())
}

/// [`import_oci_layout`] within `limits`.
pub(super) fn import(dir: &Path, tag: Option<&str>, limits: &Limits) -> Result<Image, OciError> {
    import_selected(select_manifest(dir, tag)?, limits)
}

/// Imports the image whose manifest or index is the blob `digest` of the layout at `dir`
/// (the build host's registry cache: no `index.json` is read), within `limits`.
pub(super) fn import_digest(dir: &Path, digest: &str, limits: &Limits) -> Result<Image, OciError> {
    import_selected(select_digest(dir, digest)?, limits)
}

fn import_selected(selected: Selected, limits: &Limits) -> Result<Image, OciError> {
    let Selected { blobs, desc, manifest, .. } = selected;
    let config_data = blobs.read("config", &manifest.config)?;
    let config: ConfigBlob = spec::parse(&format!("config {}", manifest.config.digest), &config_data)?;
    let platform = config.platform();
    let diff_ids = config.rootfs.map(|r| r.diff_ids).unwrap_or_default();
    if diff_ids.len() != manifest.layers.len() {
        return Err(OciError::LayerCount {
            image: desc.digest,
            layers: manifest.layers.len(),
            diff_ids: diff_ids.len(),
        });
    }

    let mut rootfs = Tree::new();
    let budget = Budget::new(limits);
    for (layer, diff_id) in manifest.layers.iter().zip(&diff_ids) {
        let compression = layer_compression(layer)?;
        sha256_hex(diff_id)?;
        let (file, path) = blobs.open("layer", layer)?;
        let name = path.display().to_string();
        let blob = layer::Blob { name: &name, digest: Some(&layer.digest), size: Some(layer.size) };
        // One byte more than expected, so a blob growing under us still fails the check.
        let raw = file.take(layer.size.saturating_add(1));
        layer::apply(&mut rootfs, &layer.digest, raw, Some(compression), blob, Some(diff_id), &budget)?;
    }
    Ok(Image { rootfs, config: config.config.into(), digest: desc.digest, platform })
}

/// The image manifest `tag` selects in the layout at `dir`, verified, with its descriptor
/// and its bytes as stored.
pub(super) struct Selected {
    pub blobs: Blobs,
    /// The manifest's descriptor (after following any index); its digest is the image's.
    pub desc: Descriptor,
    pub manifest: Manifest,
    pub data: Vec<u8>,
}

/// Reads `oci-layout` and `index.json`, picks the descriptor for `tag` and follows nested
/// indexes to the linux/amd64 manifest; every blob on the way is verified before it is
/// parsed. The manifest's config must be an image config.
pub(super) fn select_manifest(dir: &Path, tag: Option<&str>) -> Result<Selected, OciError> {
    let root = open::dir(dir)?;
    let layout_file = dir.join("oci-layout");
    let layout: OciLayout =
        spec::parse(&layout_file.display(), &open::read_json_file(root.as_fd(), "oci-layout".as_ref(), &layout_file)?)?;
    if layout.version != LAYOUT_VERSION {
        return Err(OciError::LayoutVersion { path: layout_file, version: layout.version });
    }
    let index_file = dir.join("index.json");
    let index: Index =
        spec::parse(&index_file.display(), &open::read_json_file(root.as_fd(), "index.json".as_ref(), &index_file)?)?;
    if index.manifests.is_empty() {
        return Err(OciError::NoImages { path: index_file });
    }
    let desc = select(&index.manifests, tag)?.clone();
    follow(Blobs::open_dir(dir, &root)?, desc)
}

/// The image manifest the blob `digest` is, or selects if an index, in the layout at `dir`;
/// its size is taken from the file, its content checked against the digest before use.
pub(super) fn select_digest(dir: &Path, digest: &str) -> Result<Selected, OciError> {
    let root = open::dir(dir)?;
    let blobs = Blobs::open_dir(dir, &root)?;
    let name = sha256_hex(digest)?;
    let path = dir.join("blobs/sha256").join(name);
    let (_, stat) = open::file_at(blobs.sha256.as_fd(), name.as_ref(), &path)?;
    let size = u64::try_from(stat.st_size).unwrap_or(0);
    let desc = Descriptor {
        media_type: String::new(),
        digest: digest.to_string(),
        size,
        platform: None,
        annotations: Default::default(),
    };
    follow(blobs, desc)
}

/// Follows `desc` through nested indexes to the linux/amd64 image manifest.
fn follow(blobs: Blobs, mut desc: Descriptor) -> Result<Selected, OciError> {
    let mut depth = 0;
    let (manifest, data) = loop {
        let kind = if matches!(desc.media_type.as_str(), OCI_INDEX | DOCKER_LIST) { "index" } else { "manifest" };
        let data = blobs.read(kind, &desc)?;
        let what = format!("{kind} {}", desc.digest);
        match desc.media_type.as_str() {
            OCI_INDEX | DOCKER_LIST => {}
            OCI_MANIFEST | DOCKER_MANIFEST => break (spec::parse::<Manifest>(&what, &data)?, data),
            // mediaType is required in descriptors, but old tools left it out: look inside.
            "" => {
                let value: serde_json::Value = spec::parse(&what, &data)?;
                if value.get("manifests").is_none() {
                    break (spec::parse::<Manifest>(&what, &data)?, data);
                }
            }
            other => {
                return Err(OciError::MediaType { what, media_type: other.to_string() });
            }
        }
        let nested: Index = spec::parse(&format!("index {}", desc.digest), &data)?;
        depth += 1;
        if depth > MAX_DEPTH {
            return Err(OciError::TooDeep { index: desc.digest });
        }
        desc = match nested.manifests.iter().find(|d| d.is_linux_amd64()) {
            Some(d) => d.clone(),
            None => return Err(OciError::NoPlatform { index: desc.digest }),
        };
    };

    if !matches!(manifest.config.media_type.as_str(), OCI_CONFIG | DOCKER_CONFIG | "") {
        return Err(OciError::MediaType {
            what: format!("config {}", manifest.config.digest),
            media_type: manifest.config.media_type,
        });
    }
    Ok(Selected { blobs, desc, manifest, data })
}

/// How a layer is compressed, from its media type; other media types are refused.
pub(super) fn layer_compression(layer: &Descriptor) -> Result<Compression, OciError> {
    Compression::from_media_type(&layer.media_type).ok_or_else(|| OciError::MediaType {
        what: format!("layer {}", layer.digest),
        media_type: layer.media_type.clone(),
    })
}

/// Picks the descriptor for `tag`, or the only one. Several candidates are narrowed to
/// linux/amd64 when their platform says so.
fn select<'a>(manifests: &'a [Descriptor], tag: Option<&str>) -> Result<&'a Descriptor, OciError> {
    let candidates: Vec<&Descriptor> = match tag {
        Some(tag) => manifests
            .iter()
            .filter(|d| [REF_NAME, CONTAINERD_NAME].iter().any(|k| d.annotations.get(*k).is_some_and(|v| v == tag)))
            .collect(),
        None => manifests.iter().collect(),
    };
    if let [only] = candidates.as_slice() {
        return Ok(only);
    }
    let amd64: Vec<&Descriptor> = candidates.iter().copied().filter(|d| d.is_linux_amd64()).collect();
    if let [only] = amd64.as_slice() {
        return Ok(only);
    }
    let mut available: Vec<String> = manifests
        .iter()
        .flat_map(|d| [REF_NAME, CONTAINERD_NAME].map(|k| d.annotations.get(k).cloned()))
        .flatten()
        .collect();
    available.sort();
    available.dedup();
    Err(match tag {
        Some(tag) if candidates.is_empty() => OciError::NoSuchTag { tag: tag.to_string(), available },
        Some(tag) => OciError::AmbiguousTag { tag: tag.to_string() },
        None => OciError::NoTagGiven { available },
    })
}

/// The `blobs/sha256` directory of a layout, open: every blob is opened relative to it,
/// never followed if a symlink, and must be a regular file ([`open`]).
pub(super) struct Blobs {
    dir: PathBuf,
    sha256: OwnedFd,
}

impl Blobs {
    /// `blobs/sha256` of the layout at `dir`, opened from its open root `root`.
    fn open_dir(dir: &Path, root: &OwnedFd) -> Result<Blobs, OciError> {
        let blobs_dir = open::dir_at(root.as_fd(), "blobs".as_ref(), &dir.join("blobs"))?;
        let sha256 = open::dir_at(blobs_dir.as_fd(), "sha256".as_ref(), &dir.join("blobs/sha256"))?;
        Ok(Blobs { dir: dir.to_path_buf(), sha256 })
    }

    /// Where the blob `desc` names is stored; a digest that is not sha256 hex is refused.
    pub(super) fn path(&self, desc: &Descriptor) -> Result<PathBuf, OciError> {
        Ok(self.dir.join("blobs/sha256").join(sha256_hex(&desc.digest)?))
    }

    /// Opens the blob `desc` names, checked to be a regular file of the size `desc` says.
    pub(super) fn open(&self, what: &'static str, desc: &Descriptor) -> Result<(File, PathBuf), OciError> {
        let path = self.path(desc)?;
        let (file, stat) = open::file_at(self.sha256.as_fd(), sha256_hex(&desc.digest)?.as_ref(), &path)?;
        let actual = u64::try_from(stat.st_size).unwrap_or(0);
        if actual != desc.size {
            return Err(OciError::SizeMismatch { what, blob: path.display().to_string(), expected: desc.size, actual });
        }
        Ok((file, path))
    }

    /// Checks a blob's size and digest against `desc` by streaming it through the hash,
    /// without holding it in memory, and returns its path.
    pub(super) fn verify_file(&self, what: &'static str, desc: &Descriptor) -> Result<PathBuf, OciError> {
        let (file, path) = self.open(what, desc)?;
        let blob = path.display().to_string();
        let read_err = |source| OciError::Read { path: path.clone(), source };
        let reader = HashingReader::new(file.take(desc.size.saturating_add(1)));
        let (digest, actual) = reader.finish_counted().map_err(read_err)?;
        if actual != desc.size {
            return Err(OciError::SizeMismatch { what, blob, expected: desc.size, actual });
        }
        if digest != desc.digest {
            return Err(OciError::DigestMismatch { what, blob, expected: desc.digest.clone(), actual: digest });
        }
        Ok(path)
    }

    /// Reads a JSON blob (index, manifest, config) and checks its size and digest against
    /// `desc` before returning it; one claiming more than [`open::MAX_JSON`] is not read.
    pub(super) fn read(&self, what: &'static str, desc: &Descriptor) -> Result<Vec<u8>, OciError> {
        if desc.size > open::MAX_JSON {
            let what = format!("{what} {}", desc.digest);
            return Err(OciError::TooLargeJson { what, size: desc.size, limit: open::MAX_JSON });
        }
        let (file, path) = self.open(what, desc)?;
        let blob = path.display().to_string();
        let mut data = Vec::new();
        // One byte more than expected, so a blob growing under us still fails the check.
        file.take(desc.size.saturating_add(1))
            .read_to_end(&mut data)
            .map_err(|source| OciError::Read { path: path.clone(), source })?;
        digest::verify(what, &blob, &data, &desc.digest, Some(desc.size))?;
        Ok(data)
    }
}
