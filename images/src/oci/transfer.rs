//! The blobs of an image, as they travel to a running host: its OCI manifest, its config
//! and its layers, each with the digest, size and media type the host checks them against.
//!
//! An OCI layout's blobs are sent exactly as stored, after each is hashed against its
//! descriptor (streamed, so a big layer is never held in memory). A docker archive has no
//! manifest, so one is made here (fixed field order, no whitespace) over the config and the
//! layer members as they sit in the archive; its layers are byte ranges of the archive file.
//! A plain directory is not an image the host can be sent.

use std::collections::HashSet;
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::OciError;
use super::digest::{self, HashingReader};
use super::docker::{self, layer_digest_in_name};
use super::layer::Compression;
use super::layout::{self, layer_compression};
use super::spec::{
    self, ConfigBlob, Descriptor, Manifest, OCI_CONFIG, OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD, OCI_MANIFEST,
};

/// An image ready to send: what the host calls it, its manifest, and every blob.
#[derive(Debug, Clone)]
pub struct Transfer {
    /// The image digest, as [`super::import`] gives it in `Image::digest`.
    pub image: String,
    /// The digest of the OCI image manifest describing it: the image digest itself for an
    /// OCI layout, the made manifest's for a docker archive.
    pub manifest: String,
    /// Manifest first, then config, then layers in order; each digest once.
    pub blobs: Vec<Blob>,
}

impl Transfer {
    /// The sum of every blob's size.
    pub fn size(&self) -> u64 {
        self.blobs.iter().map(|b| b.size).sum()
    }
}

#[derive(Debug, Clone)]
pub struct Blob {
    /// "sha256:<hex>" of the bytes `data` yields.
    pub digest: String,
    pub size: u64,
    pub media_type: String,
    pub kind: BlobKind,
    pub data: BlobData,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobKind {
    Manifest,
    Config,
    Layer,
}

impl fmt::Display for BlobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BlobKind::Manifest => "manifest",
            BlobKind::Config => "config",
            BlobKind::Layer => "layer",
        })
    }
}

/// Where a blob's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobData {
    /// `len` bytes at `offset` in `path` (a layout blob file, or a member of an archive).
    File { path: PathBuf, offset: u64, len: u64 },
    /// Small blobs read or made while listing: manifests and configs.
    Memory(Vec<u8>),
}

impl BlobData {
    /// A reader over the blob's bytes, and no more.
    pub fn open(&self) -> io::Result<Box<dyn Read + Send + '_>> {
        match self {
            BlobData::File { path, offset, len } => {
                let mut file = File::open(path)?;
                file.seek(SeekFrom::Start(*offset))?;
                Ok(Box::new(file.take(*len)))
            }
            BlobData::Memory(data) => Ok(Box::new(data.as_slice())),
        }
    }
}

/// The blobs of the image `source` names, selected as [`super::import`] selects it.
pub fn blobs(source: &hoist_config::ImageSource) -> Result<Transfer, OciError> {
    use hoist_config::ImageSource;
    match source {
        ImageSource::Oci { dir, tag } => oci_layout_blobs(dir, tag.as_deref()),
        ImageSource::DockerArchive { file, reference } => docker_archive_blobs(file, reference.as_deref()),
        ImageSource::Dir { dir } => Err(OciError::NotSendable { dir: dir.clone() }),
        ImageSource::Registry { reference } => Err(OciError::NotPinned { reference: reference.to_string() }),
    }
}

/// The manifest, config and layer blobs of the image `tag` selects in the layout at `dir`,
/// each verified against its descriptor. Nested indexes are not part of the image.
pub fn oci_layout_blobs(dir: &Path, tag: Option<&str>) -> Result<Transfer, OciError> {
    selected_blobs(layout::select_manifest(dir, tag)?)
}

/// [`oci_layout_blobs`] of a registry image in the build cache at `dir`, by the digest of
/// the manifest or index it is pinned to.
pub fn pinned_blobs(dir: &Path, digest: &str) -> Result<Transfer, OciError> {
    selected_blobs(layout::select_digest(dir, digest)?)
}

fn selected_blobs(selected: layout::Selected) -> Result<Transfer, OciError> {
    let layout::Selected { blobs, desc, manifest, data } = selected;
    let media_type = match (desc.media_type.as_str(), &manifest.media_type) {
        ("", Some(inside)) => inside.clone(),
        ("", None) => OCI_MANIFEST.to_string(),
        (outside, _) => outside.to_string(),
    };
    let mut list = Vec::new();
    let mut seen = HashSet::new();
    let mut push = |blob: Blob| {
        if seen.insert(blob.digest.clone()) {
            list.push(blob);
        }
    };
    push(Blob {
        digest: desc.digest.clone(),
        size: desc.size,
        media_type,
        kind: BlobKind::Manifest,
        data: BlobData::Memory(data),
    });
    let config_media_type =
        if manifest.config.media_type.is_empty() { OCI_CONFIG } else { manifest.config.media_type.as_str() };
    push(Blob {
        digest: manifest.config.digest.clone(),
        size: manifest.config.size,
        media_type: config_media_type.to_string(),
        kind: BlobKind::Config,
        data: BlobData::Memory(blobs.read("config", &manifest.config)?),
    });
    for layer in &manifest.layers {
        layer_compression(layer)?;
        let path = blobs.verify_file("layer", layer)?;
        push(Blob {
            digest: layer.digest.clone(),
            size: layer.size,
            media_type: layer.media_type.clone(),
            kind: BlobKind::Layer,
            data: BlobData::File { path, offset: 0, len: layer.size },
        });
    }
    Ok(Transfer { image: desc.digest.clone(), manifest: desc.digest, blobs: list })
}

/// The config and layer members of the image `reference` selects in a `docker save`
/// archive, and an OCI manifest made for them. Layers stay in the archive file.
pub fn docker_archive_blobs(file: &Path, reference: Option<&str>) -> Result<Transfer, OciError> {
    let docker::Selected { archive, image, config } = docker::select_image(file, reference)?;
    let config_label = archive.label(&image.config);
    let parsed: ConfigBlob = spec::parse(&config_label, &config)?;
    let diff_ids = parsed.rootfs.map(|r| r.diff_ids).unwrap_or_default();
    if diff_ids.len() != image.layers.len() {
        return Err(OciError::LayerCount { image: config_label, layers: image.layers.len(), diff_ids: diff_ids.len() });
    }

    let mut layers = Vec::new();
    let mut layer_blobs = Vec::new();
    for (member, diff_id) in image.layers.iter().zip(&diff_ids) {
        let label = archive.label(member);
        let (offset, len) = archive.locate(member)?;
        let (digest, compression) = hash_range(archive.path(), offset, len)?;
        if let Some(expected) = layer_digest_in_name(member) {
            check("layer", &label, &expected, &digest)?;
        }
        let media_type = match compression {
            Compression::None => {
                // Uncompressed, the stored bytes are the diff_id's: a free check.
                check("layer", &label, diff_id, &digest)?;
                OCI_LAYER
            }
            Compression::Gzip => OCI_LAYER_GZIP,
            Compression::Zstd => OCI_LAYER_ZSTD,
        };
        layers.push(descriptor(media_type, digest.clone(), len));
        layer_blobs.push(Blob {
            digest,
            size: len,
            media_type: media_type.to_string(),
            kind: BlobKind::Layer,
            data: BlobData::File { path: archive.path().to_path_buf(), offset, len },
        });
    }

    let image_id = digest::sha256(&config);
    let config_desc = descriptor(OCI_CONFIG, image_id.clone(), config.len() as u64);
    let manifest = spec::to_json(&Manifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.to_string()),
        config: config_desc,
        layers,
    });
    let manifest_digest = digest::sha256(&manifest);
    let mut blobs = vec![
        Blob {
            digest: manifest_digest.clone(),
            size: manifest.len() as u64,
            media_type: OCI_MANIFEST.to_string(),
            kind: BlobKind::Manifest,
            data: BlobData::Memory(manifest),
        },
        Blob {
            digest: image_id.clone(),
            size: config.len() as u64,
            media_type: OCI_CONFIG.to_string(),
            kind: BlobKind::Config,
            data: BlobData::Memory(config),
        },
    ];
    let mut seen: HashSet<String> = blobs.iter().map(|b| b.digest.clone()).collect();
    blobs.extend(layer_blobs.into_iter().filter(|b| seen.insert(b.digest.clone())));
    Ok(Transfer { image: image_id, manifest: manifest_digest, blobs })
}

fn descriptor(media_type: &str, digest: String, size: u64) -> Descriptor {
    Descriptor { media_type: media_type.to_string(), digest, size, platform: None, annotations: Default::default() }
}

fn check(what: &'static str, blob: &str, expected: &str, actual: &str) -> Result<(), OciError> {
    if expected == actual {
        return Ok(());
    }
    Err(OciError::DigestMismatch {
        what,
        blob: blob.to_string(),
        expected: expected.to_string(),
        actual: actual.to_string(),
    })
}

/// sha256 of `len` bytes at `offset` in `path`, streamed, and how they are compressed.
fn hash_range(path: &Path, offset: u64, len: u64) -> Result<(String, Compression), OciError> {
    let read_err = |source| OciError::Read { path: path.to_path_buf(), source };
    let mut file = File::open(path).map_err(read_err)?;
    file.seek(SeekFrom::Start(offset)).map_err(read_err)?;
    let mut reader = HashingReader::new(file.take(len));
    let mut head = [0u8; 4];
    let mut got = 0;
    while got < head.len() {
        match reader.read(&mut head[got..]).map_err(read_err)? {
            0 => break,
            n => got += n,
        }
    }
    let rest = io::copy(&mut reader, &mut io::sink()).map_err(read_err)?;
    if got as u64 + rest != len {
        return Err(read_err(io::ErrorKind::UnexpectedEof.into()));
    }
    let digest = reader.finish().map_err(read_err)?;
    Ok((digest, Compression::sniff(&head[..got])))
}
