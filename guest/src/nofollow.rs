//! Directories on ground others can write (a volume: services write it), opened one
//! component at a time relative to an opened parent, never through a symlink, and named by
//! their descriptor from then on ([`fd_path`]), so no path is looked up twice. PID 1 uses
//! it for the state directories it mounts, the supervisor for the directories it binds
//! into services.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

fn cstring(path: &Path) -> std::io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in path"))
}

/// Opens directory `path` (relative to `at`, or to the working directory) without
/// following a symlink in its last component: a symlink or a file there is ENOTDIR.
pub fn open_dir(at: Option<&OwnedFd>, path: &Path) -> std::io::Result<OwnedFd> {
    let c = cstring(path)?;
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: a valid C string and directory descriptor; the result is checked.
    let fd = unsafe { libc::openat(at.map_or(libc::AT_FDCWD, |f| f.as_raw_fd()), c.as_ptr(), flags) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a descriptor we just opened and own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The directory `name` (one component) in `parent`, made with `mode` if missing, and
/// whether it was made here. Whatever is there is opened with [`open_dir`], so a symlink
/// or a file in its place is an error.
pub fn make_dir(parent: &OwnedFd, name: &str, mode: u32) -> std::io::Result<(OwnedFd, bool)> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    }
    let c = cstring(Path::new(name))?;
    // SAFETY: valid descriptor and C string; the result is checked.
    let made = unsafe { libc::mkdirat(parent.as_raw_fd(), c.as_ptr(), mode) } == 0;
    if !made {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(e);
        }
    }
    Ok((open_dir(Some(parent), Path::new(name))?, made))
}

/// The path that names what `fd` holds (`/proc/self/fd/N`): a mount source that is not
/// looked up again.
pub fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_are_made_once_and_links_and_files_refused() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = open_dir(None, tmp.path()).expect("open");
        let (_, made) = make_dir(&root, "a", 0o700).expect("make");
        assert!(made);
        let (_, made) = make_dir(&root, "a", 0o700).expect("again");
        assert!(!made, "an existing directory is opened, not made");
        std::os::unix::fs::symlink(tmp.path(), tmp.path().join("link")).expect("symlink");
        let e = make_dir(&root, "link", 0o700).expect_err("a symlink");
        assert_eq!(e.raw_os_error(), Some(libc::ENOTDIR), "O_DIRECTORY | O_NOFOLLOW on a symlink");
        std::fs::write(tmp.path().join("file"), b"x").expect("file");
        assert_eq!(make_dir(&root, "file", 0o700).expect_err("a file").raw_os_error(), Some(libc::ENOTDIR));
        for bad in ["", ".", "..", "a/b"] {
            assert!(make_dir(&root, bad, 0o700).is_err(), "{bad:?}");
        }
        assert!(fd_path(&root).starts_with("/proc/self/fd/"));
    }
}
