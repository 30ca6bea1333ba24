//! Importing a plain rootfs directory.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::digest::tree_digest;
use super::{Image, ImageConfig, OciError};
use crate::tree::{Entry, Node, Tree};

/// Reads the tree under `dir` without following symlinks: directories and regular files
/// keep their permission bits, symlinks stay symlinks, everything is owned by root (host
/// uids mean nothing in the guest, and the result stays reproducible); other file types
/// are skipped with a warning. The config is empty and the digest covers the whole tree.
pub fn import_dir(dir: &Path) -> Result<Image, OciError> {
    let meta = fs::metadata(dir).map_err(|source| OciError::Read { path: dir.to_path_buf(), source })?;
    if !meta.is_dir() {
        return Err(OciError::BadPath { path: dir.to_path_buf(), reason: "not a directory" });
    }
    let mut rootfs = Tree::new();
    walk(dir, "", &mut rootfs)?;
    let digest = tree_digest(&rootfs);
    Ok(Image { rootfs, config: ImageConfig::default(), digest, platform: String::new() })
}

fn walk(dir: &Path, rel: &str, tree: &mut Tree) -> Result<(), OciError> {
    let read_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| OciError::Read { path, source }
    };
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(read_err(dir))? {
        names.push(entry.map_err(read_err(dir))?.file_name());
    }
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let Some(name) = name.to_str() else {
            return Err(OciError::BadPath { path, reason: "name is not UTF-8" });
        };
        let rel = if rel.is_empty() { name.to_string() } else { format!("{rel}/{name}") };
        let meta = fs::symlink_metadata(&path).map_err(read_err(&path))?;
        let mode = meta.permissions().mode() & 0o7777;
        let kind = meta.file_type();
        let node = if kind.is_dir() {
            Node::Dir { mode }
        } else if kind.is_file() {
            Node::File { mode, data: fs::read(&path).map_err(read_err(&path))?.into() }
        } else if kind.is_symlink() {
            let target = fs::read_link(&path).map_err(read_err(&path))?;
            let Some(target) = target.to_str() else {
                return Err(OciError::BadPath { path, reason: "symlink target is not UTF-8" });
            };
            Node::Symlink { target: target.to_string() }
        } else {
            log::warn!("{}: skipping special file", hoist_guest::text::escape(&path.to_string_lossy()));
            continue;
        };
        tree.insert(&rel, Entry::root(node));
        if kind.is_dir() {
            walk(&path, &rel, tree)?;
        }
    }
    Ok(())
}
