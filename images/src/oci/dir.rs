//! Importing a plain rootfs directory.
//!
//! The directory may belong to someone other than the user running the build (a root
//! build of a user's tree), who can change it while it is read: swap a subdirectory for a
//! symlink to `/etc` between the check and the read, and a by-path walk copies
//! `/etc/shadow` into the image. So the tree is walked by descriptor, never by path: every
//! entry is opened relative to its directory's descriptor with `O_NOFOLLOW`, and `fstat`
//! on what was opened must agree with what `fstatat` saw when the entry was listed (same
//! type, same inode). A symlink is read with `readlinkat`, never followed. An entry that
//! changed between listing and opening is an error, "changed while being read".

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, readlinkat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstatat};

use super::digest::tree_digest;
use super::limits::{Budget, Limits};
use super::{Image, ImageConfig, OciError, open};
use crate::tree::{Entry, Node, Tree};

/// Directories nested deeper than this are refused (a real rootfs has about 15 levels).
const MAX_DEPTH: usize = 128;

/// Reads the tree under `dir` without following symlinks, within the default [`Limits`].
pub fn import_dir(dir: &Path) -> Result<Image, OciError> {
    import(dir, &Limits::default())
}

/// Reads the tree under `dir` without following symlinks: directories and regular files
/// keep their permission bits, symlinks stay symlinks, hard-linked files stay linked (one
/// copy of the data), everything is owned by root (host uids mean nothing in the guest, and
/// the result stays reproducible); other file types are skipped with a warning. The
/// config is empty and the digest covers the whole tree.
pub(super) fn import(dir: &Path, limits: &Limits) -> Result<Image, OciError> {
    let root = open::dir(dir)?;
    let mut walk = Walk { tree: Tree::new(), budget: Budget::new(limits), inodes: HashMap::new() };
    walk.dir(root.as_fd(), dir, b"", 0)?;
    let digest = tree_digest(&walk.tree);
    Ok(Image { rootfs: walk.tree, config: ImageConfig::default(), digest, platform: String::new() })
}

struct Walk {
    tree: Tree,
    budget: Budget,
    /// Files with more than one link already read, by (device, inode).
    inodes: HashMap<(u64, u64), Arc<Vec<u8>>>,
}

impl Walk {
    fn dir(&mut self, fd: BorrowedFd<'_>, path: &Path, rel: &[u8], depth: usize) -> Result<(), OciError> {
        if depth > MAX_DEPTH {
            return Err(OciError::BadPath { path: path.to_path_buf(), reason: "directories nested too deeply" });
        }
        let read_err = |source: Errno| OciError::Read { path: path.to_path_buf(), source: source.into() };
        // "." of the open directory: the listing is of the directory checked, whatever
        // happens to its path.
        let mut listing = Dir::openat(fd, ".", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(read_err)?;
        let mut names = Vec::new();
        for entry in listing.iter() {
            let name = entry.map_err(read_err)?.file_name().to_bytes().to_vec();
            if name != b"." && name != b".." {
                self.budget.entry()?;
                names.push(name);
            }
        }
        names.sort();
        for name in names {
            let name = Path::new(OsStr::from_bytes(&name));
            let host = path.join(name);
            let bytes = name.as_os_str().as_bytes();
            let rel = if rel.is_empty() { bytes.to_vec() } else { [rel, b"/", bytes].concat() };
            let listed = fstatat(fd, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|e| changed_or(&host, e))?;
            let mode = listed.st_mode & 0o7777;
            match kind(&listed) {
                SFlag::S_IFDIR => {
                    let child = open_at(fd, name, &host, OFlag::O_DIRECTORY, &listed)?;
                    self.tree.insert(&rel, Entry::root(Node::Dir { mode }));
                    self.dir(child.as_fd(), &host, &rel, depth + 1)?;
                }
                SFlag::S_IFREG => {
                    let data = self.file(fd, name, &host, &listed)?;
                    self.tree.insert(&rel, Entry::root(Node::File { mode, data }));
                }
                SFlag::S_IFLNK => {
                    // A symlink swapped for anything else makes readlinkat fail with EINVAL.
                    let target = readlinkat(fd, name).map_err(|e| changed_or(&host, e))?;
                    let Some(target) = target.to_str() else {
                        return Err(OciError::BadPath { path: host, reason: "symlink target is not UTF-8" });
                    };
                    self.tree.insert(&rel, Entry::root(Node::Symlink { target: target.to_string() }));
                }
                _ => log::warn!("{}: skipping special file", hoist_guest::text::escape(&host.to_string_lossy())),
            }
        }
        Ok(())
    }

    /// A regular file's bytes, shared with the files already read that are hard links to it.
    fn file(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &Path,
        host: &Path,
        listed: &FileStat,
    ) -> Result<Arc<Vec<u8>>, OciError> {
        let key = (listed.st_dev, listed.st_ino);
        if listed.st_nlink > 1
            && let Some(data) = self.inodes.get(&key)
        {
            // Checked like any other open, so a swap is still seen.
            open_at(dir, name, host, OFlag::empty(), listed)?;
            return Ok(data.clone());
        }
        let file = std::fs::File::from(open_at(dir, name, host, OFlag::empty(), listed)?);
        let data: Arc<Vec<u8>> = read_budgeted(file, host, &self.budget)?.into();
        if listed.st_nlink > 1 {
            self.inodes.insert(key, data.clone());
        }
        Ok(data)
    }
}

/// Reads `file` to its end in chunks, each taken from `budget` before it is kept.
fn read_budgeted(mut file: std::fs::File, host: &Path, budget: &Budget) -> Result<Vec<u8>, OciError> {
    let mut data = Vec::new();
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut chunk).map_err(|source| OciError::Read { path: host.to_path_buf(), source })?;
        if n == 0 {
            return Ok(data);
        }
        budget.bytes(n as u64)?;
        data.extend_from_slice(&chunk[..n]);
    }
}

/// Opens `name` in `dir` without following it, and checks it is still what was listed.
fn open_at(
    dir: BorrowedFd<'_>,
    name: &Path,
    host: &Path,
    flags: OFlag,
    listed: &FileStat,
) -> Result<OwnedFd, OciError> {
    let opened = if flags.contains(OFlag::O_DIRECTORY) {
        open::dir_at(dir, name, host)
    } else {
        open::file_at(dir, name, host).map(|(file, _)| OwnedFd::from(file))
    };
    let fd = opened.map_err(|e| match e {
        OciError::BadPath { .. } => changed(host),
        OciError::Read { source, .. } if source.raw_os_error().is_some_and(gone) => changed(host),
        other => other,
    })?;
    let now = nix::sys::stat::fstat(&fd).map_err(|e| changed_or(host, e))?;
    if (now.st_dev, now.st_ino) != (listed.st_dev, listed.st_ino) {
        return Err(changed(host));
    }
    Ok(fd)
}

fn kind(stat: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT
}

/// The errors a path swapped or removed under us gives.
fn gone(errno: i32) -> bool {
    [Errno::ENOENT, Errno::ELOOP, Errno::ENOTDIR, Errno::EINVAL].iter().any(|e| *e as i32 == errno)
}

fn changed(host: &Path) -> OciError {
    OciError::BadPath { path: host.to_path_buf(), reason: "changed while being read" }
}

fn changed_or(host: &Path, errno: Errno) -> OciError {
    if gone(errno as i32) { changed(host) } else { OciError::Read { path: host.to_path_buf(), source: errno.into() } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_and_entries_are_bounded() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut deep = tmp.path().to_path_buf();
        for _ in 0..=MAX_DEPTH + 1 {
            deep.push("d");
        }
        std::fs::create_dir_all(&deep).expect("deep dirs");
        let err = import_dir(tmp.path()).expect_err("too deep");
        assert!(err.to_string().contains("nested too deeply"), "{err}");

        let wide = tempfile::tempdir().expect("tempdir");
        for i in 0..5 {
            std::fs::write(wide.path().join(i.to_string()), b"x").expect("file");
        }
        let err = import(wide.path(), &Limits { entries: 4, ..Limits::default() }).expect_err("too many");
        assert!(matches!(err, OciError::TooManyEntries { limit: 4, .. }), "{err}");
        let err = import(wide.path(), &Limits { bytes: 4, ..Limits::default() }).expect_err("too big");
        assert!(matches!(err, OciError::TooBig { limit: 4, .. }), "{err}");
    }

    #[test]
    fn hard_links_share_their_data() {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::write(tmp.path().join("a"), b"same").expect("file");
        std::fs::hard_link(tmp.path().join("a"), tmp.path().join("b")).expect("link");
        let image = import_dir(tmp.path()).expect("import");
        let data = |p| match image.rootfs.get(p).map(|e| &e.node) {
            Some(Node::File { data, .. }) => data.clone(),
            other => panic!("{p}: {other:?}"),
        };
        assert!(Arc::ptr_eq(&data("a"), &data("b")));
    }
}
