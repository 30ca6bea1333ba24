//! Applying one layer tar to a tree.
//!
//! A layer is streamed: the stored blob is hashed as it is decompressed, the tar hashed as
//! it is read, both capped by the image's [`Budget`]. Its entries become a list of changes,
//! which touch the tree only when the blob's digest and size and the tar's diff_id match.
//! Whiteouts are applied before the layer's own entries because they hide lower layers
//! only: a `.wh..wh..opq` keeps what the same layer puts in that directory. Parent
//! directories are resolved through symlinks already in the tree (chroot-style, `..` stops
//! at the root), as containerd's applier does, so `lib/x` over `lib -> usr/lib` lands in
//! `usr/lib/x`.

use std::io::{self, BufRead, BufReader, Read};

use flate2::read::MultiGzDecoder;
use tar::EntryType;

use super::OciError;
use super::digest::HashingReader;
use super::limits::{Budget, Capped};
use crate::tree::{Entry, Node, Tree, normalize_bytes};

const WHITEOUT: &[u8] = b".wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";

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
        parent: Vec<u8>,
        name: Vec<u8>,
    },
    /// Clears the lower-layer contents of a directory.
    Opaque(Vec<u8>),
    Put(Vec<u8>, Entry),
    Hardlink {
        path: Vec<u8>,
        target: Vec<u8>,
    },
}

/// What the stored (compressed) layer blob must be, where something says so.
pub(super) struct Blob<'a> {
    /// Names the blob in errors (its path, or archive:member).
    pub name: &'a str,
    pub digest: Option<&'a str>,
    pub size: Option<u64>,
}

/// Applies the layer read from `raw` (named `layer` in errors) to `tree`, streaming: the
/// blob is hashed as it is decompressed and the uncompressed tar hashed as it is read, and
/// both must match (`blob`, `diff_id`) before the changes touch the tree; on any error the
/// tree is left untouched. `compression` None means sniffed from the first bytes. Every
/// uncompressed byte, and the full size of sparse files, is taken from `budget`.
pub(super) fn apply(
    tree: &mut Tree,
    layer: &str,
    raw: impl Read,
    compression: Option<Compression>,
    blob: Blob<'_>,
    diff_id: Option<&str>,
    budget: &Budget,
) -> Result<(), OciError> {
    let changes = read_changes(layer, raw, compression, blob, diff_id, budget)?;
    apply_changes(tree, layer, changes)
}

fn read_changes(
    layer: &str,
    raw: impl Read,
    compression: Option<Compression>,
    blob: Blob<'_>,
    diff_id: Option<&str>,
    budget: &Budget,
) -> Result<Vec<Change>, OciError> {
    let read_err = |source| OciError::Read { path: blob.name.into(), source };
    let mut buffered = BufReader::with_capacity(1 << 16, raw);
    let compression = match compression {
        Some(c) => c,
        None => Compression::sniff(buffered.fill_buf().map_err(read_err)?),
    };
    let mut stored = HashingReader::new(buffered);
    let unpacked = unpack(layer, &mut stored, compression, budget);
    if let Some(over) = budget.exceeded() {
        return Err(over);
    }
    // A blob that is not what it should be is reported as that, whatever the tar said.
    let (digest, size) = stored.finish_counted().map_err(read_err)?;
    if let Some(expected) = blob.size
        && expected != size
    {
        return Err(OciError::SizeMismatch { what: "layer", blob: blob.name.to_string(), expected, actual: size });
    }
    if let Some(expected) = blob.digest
        && expected != digest
    {
        let (blob, expected) = (blob.name.to_string(), expected.to_string());
        return Err(OciError::DigestMismatch { what: "layer", blob, expected, actual: digest });
    }
    let (changes, actual) = unpacked?;
    if let Some(expected) = diff_id
        && actual != expected
    {
        return Err(OciError::DiffIdMismatch { layer: layer.to_string(), expected: expected.to_string(), actual });
    }
    Ok(changes)
}

/// Decompresses and reads the tar from `stored`; returns its changes and the digest of the
/// whole uncompressed stream (anything after the tar's end included).
fn unpack(
    layer: &str,
    stored: &mut impl Read,
    compression: Compression,
    budget: &Budget,
) -> Result<(Vec<Change>, String), OciError> {
    let tar_err = |source| budget.exceeded().unwrap_or_else(|| OciError::Tar { layer: layer.to_string(), source });
    let decoder: Box<dyn Read + '_> = match compression {
        Compression::None => Box::new(stored),
        Compression::Gzip => Box::new(MultiGzDecoder::new(stored)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(stored).map_err(tar_err)?),
    };
    let mut archive = tar::Archive::new(HashingReader::new(Capped { inner: decoder, budget }));
    let mut changes = Vec::new();
    for entry in archive.entries().map_err(tar_err)? {
        budget.entry()?;
        if let Some(change) = change(layer, entry.map_err(tar_err)?, budget)? {
            changes.push(change);
        }
    }
    let actual = archive.into_inner().finish().map_err(tar_err)?;
    Ok((changes, actual))
}

fn change<R: Read>(layer: &str, mut entry: tar::Entry<'_, R>, budget: &Budget) -> Result<Option<Change>, OciError> {
    // Names are bytes: Latin-1 names are as valid in a layer as on Linux.
    let raw = entry.path_bytes().into_owned();
    let bad = |path: &[u8], reason| OciError::BadEntry { layer: layer.to_string(), path: shown(path), reason };
    let path = normalize_bytes(&raw).ok_or_else(|| bad(&raw, "path climbs out of the root"))?;
    let kind = entry.header().entry_type();
    if kind == EntryType::XGlobalHeader {
        return Ok(None);
    }
    let (parent, name) = split(&path);
    if let Some(hidden) = name.strip_prefix(WHITEOUT) {
        return Ok(if name == OPAQUE {
            Some(Change::Opaque(parent.to_vec()))
        } else if hidden.is_empty() || hidden.starts_with(WHITEOUT) {
            // aufs bookkeeping (.wh..wh.plnk and the like): nothing to apply.
            None
        } else {
            Some(Change::Whiteout { parent: parent.to_vec(), name: hidden.to_vec() })
        });
    }
    if path.is_empty() {
        // The root directory itself: its mode and owner are the runtime's business.
        return Ok(None);
    }
    let tar_err = |source| budget.exceeded().unwrap_or_else(|| OciError::Tar { layer: layer.to_string(), source });
    let (uid, gid) = owner(&mut entry).map_err(tar_err)?;
    let (Ok(uid), Ok(gid)) = (u32::try_from(uid), u32::try_from(gid)) else {
        return Err(bad(&path, "uid or gid out of range"));
    };
    let header = entry.header();
    let mode = numeric(header.mode(), &header.as_old().mode).map_err(tar_err)? & 0o7777;
    let node = match kind {
        EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
            Node::File { mode, data: read_data(layer, &mut entry, kind == EntryType::GNUSparse, budget)?.into() }
        }
        EntryType::Directory => Node::Dir { mode },
        EntryType::Symlink => {
            let target = link_name(&entry).ok_or_else(|| bad(&path, "symlink target is missing or not UTF-8"))?;
            Node::Symlink { target }
        }
        EntryType::Link => {
            let target = entry.link_name_bytes().ok_or_else(|| bad(&path, "link target is missing"))?;
            let target = normalize_bytes(&target).ok_or_else(|| bad(&path, "link target climbs out of the root"))?;
            return Ok(Some(Change::Hardlink { path, target }));
        }
        EntryType::Char => {
            let (Ok(Some(major)), Ok(Some(minor))) = (header.device_major(), header.device_minor()) else {
                return Err(bad(&path, "device numbers missing"));
            };
            Node::CharDev { mode, major, minor }
        }
        EntryType::Block | EntryType::Fifo => {
            log::warn!("layer {layer}: skipping {}: block devices and fifos are not supported", shown(&path));
            return Ok(None);
        }
        other => {
            log::warn!(
                "layer {layer}: skipping {}: unknown tar entry type {:?}",
                shown(&path),
                other.as_byte() as char
            );
            return Ok(None);
        }
    };
    Ok(Some(Change::Put(path, Entry { node, uid, gid })))
}

/// A member's bytes, read in chunks as they come: never allocated from the size its
/// header claims. The stream they come from is capped, so a claim larger than what is left
/// of `budget` fails before anything is read. A sparse file's holes are not in the stream:
/// its full size is taken from `budget` up front.
fn read_data<R: Read>(
    layer: &str,
    entry: &mut tar::Entry<'_, R>,
    sparse: bool,
    budget: &Budget,
) -> Result<Vec<u8>, OciError> {
    if sparse {
        budget.bytes(entry.size())?;
    } else {
        budget.check(entry.size())?;
    }
    let mut data = Vec::new();
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        let n = entry.read(&mut chunk).map_err(|source| {
            budget.exceeded().unwrap_or_else(|| OciError::Tar { layer: layer.to_string(), source })
        })?;
        if n == 0 {
            data.shrink_to_fit();
            return Ok(data);
        }
        data.extend_from_slice(&chunk[..n]);
    }
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
                tree.remove(join(&parent, name));
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
                            path: shown(&path),
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
fn resolve_parent(tree: &Tree, layer: &str, path: &[u8]) -> Result<Vec<u8>, OciError> {
    let (parent, name) = split(path);
    Ok(join(&resolve(tree, layer, parent)?, name))
}

/// Follows every symlink in `path` inside the tree ([`Tree::resolve`]).
fn resolve(tree: &Tree, layer: &str, path: &[u8]) -> Result<Vec<u8>, OciError> {
    tree.resolve(path).ok_or_else(|| OciError::BadEntry {
        layer: layer.to_string(),
        path: shown(path),
        reason: "too many levels of symlinks",
    })
}

fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|b| *b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (b"", path),
    }
}

fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    if parent.is_empty() { name.to_vec() } else { [parent, b"/", name].concat() }
}

/// A path from a layer as it may be shown: not-UTF-8 bytes replaced, control characters escaped.
fn shown(path: &[u8]) -> String {
    hoist_guest::text::escape(&String::from_utf8_lossy(path)).into_owned()
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
        assert_eq!(resolve(&t, "l", b"lib/x").ok().as_deref(), Some(&b"usr/lib/x"[..]));
        assert_eq!(resolve(&t, "l", b"abs/lib").ok().as_deref(), Some(&b"usr/lib"[..]));
        assert_eq!(resolve(&t, "l", b"up/etc").ok().as_deref(), Some(&b"etc"[..]));
        assert!(resolve(&t, "l", b"loop/x").is_err());
        assert_eq!(resolve_parent(&t, "l", b"lib").ok().as_deref(), Some(&b"lib"[..]));
    }

    #[test]
    fn compression_is_sniffed() {
        assert_eq!(Compression::sniff(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(Compression::sniff(&[0x28, 0xb5, 0x2f, 0xfd]), Compression::Zstd);
        assert_eq!(Compression::sniff(b"etc/passwd"), Compression::None);
    }
}
