//! Opening an image source's files without being led astray.
//!
//! An image source may belong to someone else, who can plant a FIFO (the build hangs), a
//! device (it reads forever) or a symlink to a file the build may read and they may not.
//! Every file is opened with `O_NOFOLLOW | O_NONBLOCK` relative to its directory's
//! descriptor (a FIFO's open does not wait for a writer), and `fstat` on the open file
//! must say it is a regular file before a byte is read. Directories inside a source are
//! opened the same way with `O_DIRECTORY`. Only the path the user named is followed if it
//! is a symlink: that one is their choice.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, AtFlags, OFlag, openat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat, fstatat};

use super::OciError;

/// JSON documents (index.json, manifests, configs, manifest.json) larger than this are
/// refused before they are read; real ones are a few KiB.
pub(super) const MAX_JSON: u64 = 16 << 20;

/// The user-named directory `path`, symlinks followed.
pub(super) fn dir(path: &Path) -> Result<OwnedFd, OciError> {
    open(AT_FDCWD, path, path, OFlag::O_DIRECTORY, SFlag::S_IFDIR, "not a directory")
}

/// The directory `name` inside `parent` (shown as `shown` in errors), not followed if a symlink.
pub(super) fn dir_at(parent: BorrowedFd<'_>, name: &Path, shown: &Path) -> Result<OwnedFd, OciError> {
    open(parent, name, shown, OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW, SFlag::S_IFDIR, "not a directory")
}

/// The user-named regular file `path`, symlinks followed.
pub(super) fn file(path: &Path) -> Result<(File, FileStat), OciError> {
    let fd = open(AT_FDCWD, path, path, OFlag::empty(), SFlag::S_IFREG, "not a regular file")?;
    stat_file(fd, path)
}

/// The regular file `name` inside `parent`, not followed if a symlink.
pub(super) fn file_at(parent: BorrowedFd<'_>, name: &Path, shown: &Path) -> Result<(File, FileStat), OciError> {
    let fd = open(parent, name, shown, OFlag::O_NOFOLLOW, SFlag::S_IFREG, "not a regular file")?;
    stat_file(fd, shown)
}

/// Reads all of a small file (a JSON document), refusing one larger than [`MAX_JSON`]
/// before reading it and one that grows past it while being read.
pub(super) fn read_json_file(parent: BorrowedFd<'_>, name: &Path, shown: &Path) -> Result<Vec<u8>, OciError> {
    let (file, stat) = file_at(parent, name, shown)?;
    let size = u64::try_from(stat.st_size).unwrap_or(0);
    if size > MAX_JSON {
        return Err(OciError::TooLargeJson { what: shown.display().to_string(), size, limit: MAX_JSON });
    }
    let mut data = Vec::new();
    file.take(MAX_JSON + 1).read_to_end(&mut data).map_err(|source| read_err(shown, source))?;
    if data.len() as u64 > MAX_JSON {
        return Err(OciError::TooLargeJson {
            what: shown.display().to_string(),
            size: data.len() as u64,
            limit: MAX_JSON,
        });
    }
    Ok(data)
}

fn stat_file(fd: OwnedFd, shown: &Path) -> Result<(File, FileStat), OciError> {
    let stat = fstat(&fd).map_err(|e| read_err(shown, e.into()))?;
    Ok((File::from(fd), stat))
}

fn open(
    parent: BorrowedFd<'_>,
    name: &Path,
    shown: &Path,
    flags: OFlag,
    kind: SFlag,
    wrong_kind: &'static str,
) -> Result<OwnedFd, OciError> {
    let flags = flags | OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK | OFlag::O_NOCTTY;
    let fd = match openat(parent, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::ELOOP) if flags.contains(OFlag::O_NOFOLLOW) => {
            return Err(OciError::BadPath { path: shown.to_path_buf(), reason: "is a symlink" });
        }
        Err(Errno::ENOTDIR) if kind == SFlag::S_IFDIR => {
            // O_DIRECTORY | O_NOFOLLOW on a symlink says ENOTDIR: tell the two apart.
            let link = fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW)
                .is_ok_and(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK);
            let reason = if link && flags.contains(OFlag::O_NOFOLLOW) { "is a symlink" } else { wrong_kind };
            return Err(OciError::BadPath { path: shown.to_path_buf(), reason });
        }
        Err(e) => return Err(read_err(shown, e.into())),
    };
    let stat = fstat(fd.as_fd()).map_err(|e| read_err(shown, e.into()))?;
    if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != kind {
        return Err(OciError::BadPath { path: shown.to_path_buf(), reason: wrong_kind });
    }
    Ok(fd)
}

fn read_err(path: &Path, source: io::Error) -> OciError {
    OciError::Read { path: path.to_path_buf(), source }
}
