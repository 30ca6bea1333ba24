//! Writing a one-image, one-layer OCI layout, reproducibly.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use flate2::{Compression as Level, GzBuilder};
use tar::{EntryType, Header};

use super::digest::sha256;
use super::spec::{
    ConfigBlob, Descriptor, Index, LAYOUT_VERSION, Manifest, OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST,
    OciLayout, Platform, REF_NAME, RootFs, to_json,
};
use super::{ImageConfig, OciError};
use crate::tree::{Node, Tree};

/// Writes a new OCI image layout at `out` (created; must not exist or be empty) holding one
/// image with one layer made from `rootfs`, tagged `tag`. Same inputs, same bytes: entries
/// in tree order, mtime 0, owners from the tree, no user or group names, gzip without name
/// or time. Returns the manifest digest.
pub fn create_oci_layout(out: &Path, tag: &str, rootfs: &Tree, config: &ImageConfig) -> Result<String, OciError> {
    create_layered_oci_layout(out, tag, std::slice::from_ref(rootfs), config)
}

/// [`create_oci_layout`] with one layer per tree, bottom first: images that share their
/// lower layers share those blobs byte for byte.
pub fn create_layered_oci_layout(
    out: &Path,
    tag: &str,
    layers: &[Tree],
    config: &ImageConfig,
) -> Result<String, OciError> {
    if tag.is_empty() || tag.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(OciError::InvalidTag(tag.to_string()));
    }
    prepare(out)?;
    let blobs = out.join("blobs/sha256");
    fs::create_dir_all(&blobs).map_err(|source| OciError::Write { path: blobs.clone(), source })?;

    let mut descriptors = Vec::with_capacity(layers.len());
    let mut diff_ids = Vec::with_capacity(layers.len());
    for tree in layers {
        let tar = layer_tar(tree)?;
        descriptors.push(write_blob(&blobs, OCI_LAYER_GZIP, &gzip(&tar))?);
        diff_ids.push(sha256(&tar));
    }
    let config = ConfigBlob {
        architecture: "amd64".to_string(),
        os: "linux".to_string(),
        config: Some(config.into()),
        rootfs: Some(RootFs { kind: "layers".to_string(), diff_ids }),
    };
    let config = write_blob(&blobs, OCI_CONFIG, &to_json(&config))?;
    let manifest =
        Manifest { schema_version: 2, media_type: Some(OCI_MANIFEST.to_string()), config, layers: descriptors };
    let mut manifest = write_blob(&blobs, OCI_MANIFEST, &to_json(&manifest))?;
    manifest.platform = Some(Platform { architecture: "amd64".to_string(), os: "linux".to_string() });
    manifest.annotations = BTreeMap::from([(REF_NAME.to_string(), tag.to_string())]);
    let digest = manifest.digest.clone();
    let index = Index { schema_version: 2, media_type: Some(OCI_INDEX.to_string()), manifests: vec![manifest] };
    write(&out.join("index.json"), &to_json(&index))?;
    write(&out.join("oci-layout"), &to_json(&OciLayout { version: LAYOUT_VERSION.to_string() }))?;
    Ok(digest)
}

/// `out` must be absent (it is created) or an empty directory.
fn prepare(out: &Path) -> Result<(), OciError> {
    match fs::read_dir(out).map(|mut entries| entries.next().is_none()) {
        Ok(true) => Ok(()),
        Ok(false) => Err(OciError::BadPath { path: out.to_path_buf(), reason: "exists and is not empty" }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(out).map_err(|source| OciError::Write { path: out.to_path_buf(), source })
        }
        Err(source) => Err(OciError::Read { path: out.to_path_buf(), source }),
    }
}

/// The uncompressed layer: GNU headers (long names through GNU extensions), tree order.
/// Hard-linked files ([`crate::tree::Entry::inode_key`]) are stored once, the later paths
/// as hard links to the first.
fn layer_tar(tree: &Tree) -> Result<Vec<u8>, OciError> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut first_path = HashMap::new();
    for (bytes, entry) in tree.iter() {
        let path = Path::new(OsStr::from_bytes(bytes));
        let mut h = Header::new_gnu();
        h.set_mtime(0);
        h.set_uid(entry.uid.into());
        h.set_gid(entry.gid.into());
        h.set_size(0);
        let result = match &entry.node {
            Node::Dir { mode } => {
                h.set_entry_type(EntryType::Directory);
                h.set_mode(*mode);
                tar.append_data(&mut h, OsStr::from_bytes(&[bytes, b"/"].concat()), io::empty())
            }
            Node::File { mode, data } => {
                h.set_mode(*mode);
                match entry.inode_key().map(|key| *first_path.entry(key).or_insert(path)) {
                    Some(first) if first != path => {
                        h.set_entry_type(EntryType::Link);
                        tar.append_link(&mut h, path, first)
                    }
                    _ => {
                        h.set_entry_type(EntryType::Regular);
                        h.set_size(data.len() as u64);
                        tar.append_data(&mut h, path, data.as_slice())
                    }
                }
            }
            Node::Symlink { target } => {
                h.set_entry_type(EntryType::Symlink);
                h.set_mode(0o777);
                // set_link_name would tidy the target ("a//b"); keep it byte for byte.
                if target.len() <= 100 {
                    h.set_link_name_literal(target).and_then(|()| tar.append_data(&mut h, path, io::empty()))
                } else {
                    tar.append_link(&mut h, path, target)
                }
            }
            Node::CharDev { mode, major, minor } => {
                h.set_entry_type(EntryType::Char);
                h.set_mode(*mode);
                h.set_device_major(*major)
                    .and_then(|()| h.set_device_minor(*minor))
                    .and_then(|()| tar.append_data(&mut h, path, io::empty()))
            }
        };
        result.map_err(|source| OciError::TarWrite { path: String::from_utf8_lossy(bytes).into_owned(), source })?;
    }
    tar.into_inner().map_err(|source| OciError::TarWrite { path: String::new(), source })
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = GzBuilder::new().mtime(0).operating_system(255).write(Vec::new(), Level::default());
    // Writing into a Vec cannot fail.
    gz.write_all(data).expect("gzip into memory");
    gz.finish().expect("gzip into memory")
}

fn write_blob(blobs: &Path, media_type: &str, data: &[u8]) -> Result<Descriptor, OciError> {
    let digest = sha256(data);
    let hex = digest.trim_start_matches("sha256:");
    write(&blobs.join(hex), data)?;
    Ok(Descriptor {
        media_type: media_type.to_string(),
        digest,
        size: data.len() as u64,
        platform: None,
        annotations: BTreeMap::new(),
    })
}

fn write(path: &Path, data: &[u8]) -> Result<(), OciError> {
    // Not a secret, but never written through a planted symlink either.
    hoist_guest::atomic::write_mode(path, data, 0o644)
        .map_err(|source| OciError::Write { path: path.to_path_buf(), source })
}
