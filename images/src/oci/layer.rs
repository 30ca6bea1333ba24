//! Applying one layer tar to a tree.
//!
//! A layer is first read whole into a list of changes while its uncompressed bytes are
//! hashed; only when that hash matches the layer's diff_id do the changes touch the tree.
//! Whiteouts are applied before the layer's own entries because they hide lower layers
//! only: a `.wh..wh..opq` keeps what the same layer puts in that directory. Parent
//! directories are resolved through symlinks already in the tree (chroot-style, `..` stops
//! at the root), as containerd's applier does, so `lib/x` over `lib -> usr/lib` lands in
//! `usr/lib/x`.

use std::io::{self, Read};

use flate2::read::MultiGzDecoder;
use tar::EntryType;

use super::OciError;
use super::digest::HashingReader;
use crate::tree::{Entry, Node, Tree, normalize};

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub(super) fn from_media_type(media_type: &str) -> Option<Self> {
        match media_type {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar" => Some(Compression::None),
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Some(Compression::Gzip),
            "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => Some(Compression::Zstd),
            _ => None,
        }
    }

    /// By magic bytes, for docker archives whose layers carry no media type.
    pub(super) fn sniff(data: &[u8]) -> Self {
        if data.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if data.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

enum Change {
    /// Removes `parent/name` and its subtree from lower layers.
    Whiteout {
        parent: String,
        name: String,
    },
    /// Clears the lower-layer contents of a directory.
    Opaque(String),
    Put(String, Entry),
    Hardlink {
        path: String,
        target: String,
    },
}

/// Applies the layer `data` (named `layer` in errors) to `tree`. With `diff_id`, the
/// uncompressed tar must hash to it, or the tree is left untouched.
pub(super) fn apply(
    tree: &mut Tree,
    layer: &str,
    data: &[u8],
    compression: Compression,
    diff_id: Option<&str>,
) -> Result<(), OciError> {
    let changes = read_changes(layer, data, compression, diff_id)?;
    apply_changes(tree, layer, changes)
}

fn read_changes(
    layer: &str,
    data: &[u8],
    compression: Compression,
    diff_id: Option<&str>,
) -> Result<Vec<Change>, OciError> {
    let tar_err = |source| OciError::Tar { layer: layer.to_string(), source };
    let decoder: Box<dyn Read + '_> = match compression {
        Compression::None => Box::new(data),
        Compression::Gzip => Box::new(MultiGzDecoder::new(data)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(data).map_err(tar_err)?),
    };
    let mut archive = tar::Archive::new(HashingReader::new(decoder));
    let mut changes = Vec::new();
    for entry in archive.entries().map_err(tar_err)? {
        if let Some(change) = change(layer, entry.map_err(tar_err)?)? {
            changes.push(change);
        }
    }
    let actual = archive.into_inner().finish().map_err(tar_err)?;
    if let Some(expected) = diff_id
        && actual != expected
    {
        return Err(OciError::DiffIdMismatch { layer: layer.to_string(), expected: expected.to_string(), actual });
    }
    Ok(changes)
}

fn change<R: Read>(layer: &str, mut entry: tar::Entry<'_, R>) -> Result<Option<Change>, OciError> {
    let raw = entry.path_bytes().into_owned();
    let bad = |path: &str, reason| OciError::BadEntry { layer: layer.to_string(), path: path.to_string(), reason };
    let raw = String::from_utf8(raw).map_err(|e| bad(&String::from_utf8_lossy(e.as_bytes()), "path is not UTF-8"))?;
    let path = normalize(&raw).ok_or_else(|| bad(&raw, "path climbs out of the root"))?;
    let kind = entry.header().entry_type();
    if kind == EntryType::XGlobalHeader {
        return Ok(None);
    }
    let (parent, name) = split(&path);
    if let Some(hidden) = name.strip_prefix(WHITEOUT) {
        return Ok(if name == OPAQUE {
            Some(Change::Opaque(parent.to_string()))
        } else if hidden.is_empty() || hidden.starts_with(WHITEOUT) {
            // aufs bookkeeping (.wh..wh.plnk and the like): nothing to apply.
            None
        } else {
            Some(Change::Whiteout { parent: parent.to_string(), name: hidden.to_string() })
        });
    }
    if path.is_empty() {
        // The root directory itself: its mode and owner are the runtime's business.
        return Ok(None);
    }
    let tar_err = |source| OciError::Tar { layer: layer.to_string(), source };
    let (uid, gid) = owner(&mut entry).map_err(tar_err)?;
    let (Ok(uid), Ok(gid)) = (u32::try_from(uid), u32::try_from(gid)) else {
        return Err(bad(&path, "uid or gid out of range"));
    };
    let header = entry.header();
    let mode = numeric(header.mode(), &header.as_old().mode).map_err(tar_err)? & 0o7777;
    let node = match kind {
        EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
            // Cap the up-front allocation: the size comes from a header not yet verified.
            let mut data = Vec::with_capacity(entry.size().min(1 << 26) as usize);
            entry.read_to_end(&mut data).map_err(tar_err)?;
            Node::File { mode, data: data.into() }
        }
        EntryType::Directory => Node::Dir { mode },
        EntryType::Symlink => {
            let target = link_name(&entry).ok_or_else(|| bad(&path, "symlink target is missing or not UTF-8"))?;
            Node::Symlink { target }
        }
        EntryType::Link => {
            let target = link_name(&entry).ok_or_else(|| bad(&path, "link target is missing or not UTF-8"))?;
            let target = normalize(&target).ok_or_else(|| bad(&path, "link target climbs out of the root"))?;
            return Ok(Some(Change::Hardlink { path, target }));
        }
        EntryType::Char => {
            let (Ok(Some(major)), Ok(Some(minor))) = (header.device_major(), header.device_minor()) else {
                return Err(bad(&path, "device numbers missing"));
            };
            Node::CharDev { mode, major, minor }
        }
        EntryType::Block | EntryType::Fifo => {
            let path = hoist_guest::text::escape(&path);
            log::warn!("layer {layer}: skipping {path}: block devices and fifos are not supported");
            return Ok(None);
        }
        other => {
            let path = hoist_guest::text::escape(&path);
            log::warn!("layer {layer}: skipping {path}: unknown tar entry type {:?}", other.as_byte() as char);
            return Ok(None);
        }
    };
    Ok(Some(Change::Put(path, Entry { node, uid, gid })))
}

fn link_name<R: Read>(entry: &tar::Entry<'_, R>) -> Option<String> {
    String::from_utf8(entry.link_name_bytes()?.into_owned()).ok()
}

/// uid and gid, from the PAX header when it has them (ids too large for the header fields).
fn owner<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<(u64, u64)> {
    let old = entry.header().as_old();
    let mut uid = numeric(entry.header().uid(), &old.uid)?;
    let mut gid = numeric(entry.header().gid(), &old.gid)?;
    if let Some(pax) = entry.pax_extensions()? {
        for ext in pax {
            let ext = ext?;
            let value = ext.value().ok().and_then(|v| v.parse().ok());
            match (ext.key(), value) {
                (Ok("uid"), Some(v)) => uid = v,
                (Ok("gid"), Some(v)) => gid = v,
                _ => {}
            }
        }
    }
    Ok((uid, gid))
}

/// A numeric header field; blank (all NUL or space) reads as 0, as Go's archive/tar (and so
/// containerd) reads it.
fn numeric<T: Default>(parsed: io::Result<T>, raw: &[u8]) -> io::Result<T> {
    match parsed {
        Err(_) if raw.iter().all(|b| matches!(b, 0 | b' ')) => Ok(T::default()),
        other => other,
    }
}

fn apply_changes(tree: &mut Tree, layer: &str, changes: Vec<Change>) -> Result<(), OciError> {
    for change in &changes {
        match change {
            Change::Opaque(dir) => {
                let dir = resolve(tree, layer, dir)?;
                tree.clear_below(&dir);
            }
            Change::Whiteout { parent, name } => {
                let parent = resolve(tree, layer, parent)?;
                tree.remove(&join(&parent, name));
            }
            Change::Put(..) | Change::Hardlink { .. } => {}
        }
    }
    for change in changes {
        match change {
            Change::Put(path, entry) => {
                let path = resolve_parent(tree, layer, &path)?;
                tree.insert(&path, entry);
            }
            Change::Hardlink { path, target } => {
                let resolved = resolve_parent(tree, layer, &target)?;
                let entry = match tree.get(&resolved) {
                    Some(e) if !matches!(e.node, Node::Dir { .. }) => e.clone(),
                    _ => {
                        return Err(OciError::BadEntry {
                            layer: layer.to_string(),
                            path,
                            reason: "hard link target is missing or a directory",
                        });
                    }
                };
                let path = resolve_parent(tree, layer, &path)?;
                tree.insert(&path, entry);
            }
            Change::Opaque(_) | Change::Whiteout { .. } => {}
        }
    }
    Ok(())
}

/// `path` with its parent directory resolved through symlinks; the last component is kept.
fn resolve_parent(tree: &Tree, layer: &str, path: &str) -> Result<String, OciError> {
    let (parent, name) = split(path);
    Ok(join(&resolve(tree, layer, parent)?, name))
}

/// Follows every symlink in `path` inside the tree ([`Tree::resolve`]).
fn resolve(tree: &Tree, layer: &str, path: &str) -> Result<String, OciError> {
    tree.resolve(path).ok_or_else(|| OciError::BadEntry {
        layer: layer.to_string(),
        path: path.to_string(),
        reason: "too many levels of symlinks",
    })
}

fn split(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() { name.to_string() } else { format!("{parent}/{name}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_follows_symlinks_and_stays_inside() {
        let mut t = Tree::new();
        t.insert_dir("usr/lib", 0o755);
        t.insert_symlink("lib", "usr/lib");
        t.insert_symlink("abs", "/usr");
        t.insert_symlink("up", "../../..");
        t.insert_symlink("loop", "loop");
        assert_eq!(resolve(&t, "l", "lib/x").ok().as_deref(), Some("usr/lib/x"));
        assert_eq!(resolve(&t, "l", "abs/lib").ok().as_deref(), Some("usr/lib"));
        assert_eq!(resolve(&t, "l", "up/etc").ok().as_deref(), Some("etc"));
        assert!(resolve(&t, "l", "loop/x").is_err());
        assert_eq!(resolve_parent(&t, "l", "lib").ok().as_deref(), Some("lib"));
    }

    #[test]
    fn compression_is_sniffed() {
        assert_eq!(Compression::sniff(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(Compression::sniff(&[0x28, 0xb5, 0x2f, 0xfd]), Compression::Zstd);
        assert_eq!(Compression::sniff(b"etc/passwd"), Compression::None);
    }
}
