//! Replacing a file so that a reader, or the next boot after a power cut, finds the old
//! content or the new, never a torn mix (DESIGN.md decision 10): write a temporary file
//! beside it, fsync it, rename it over the old one, fsync the directory.
//!
//! The same code writes the guest's state files and the build's outputs on the host, where
//! a root build may write into a directory someone else can reach. So the temporary file
//! has an unpredictable name and is made with `O_CREAT | O_EXCL | O_NOFOLLOW` relative to
//! the opened directory: a symlink or file planted beside the target is never followed or
//! reused, and the rename names the directory by its descriptor, not its path. Files are
//! 0600 unless the caller asks for another mode ([`write_mode`]); the process's umask can
//! only take bits away.
//!
//! The exception is [`rewrite_in_place`], for files other processes bind-mounted (a rename
//! would not reach them): the same inode, rewritten, so not torn-proof.

use std::ffi::{CString, OsStr};
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Replaces `path` with `data` atomically, mode 0600; creates the parent directory if needed.
pub fn write(path: &Path, data: &[u8]) -> std::io::Result<()> {
    write_mode(path, data, 0o600)
}

/// Rewrites `path` in place (made 0644 if missing), never through a symlink: for files
/// other processes bind-mounted, which a replacement by rename would not reach. A reader
/// may see old and new text mixed between the write and the truncate; the files this is
/// for (resolv.conf, hosts) are short and read again on failure.
pub fn rewrite_in_place(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    file.write_all_at(data, 0)?;
    file.set_len(data.len() as u64)
}

/// [`write`] with another mode for the new file.
pub fn write_mode(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let Some(name) = path.file_name() else {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{}: no file name", path.display())));
    };
    Dir::open(dir)?.write(name, data, mode)
}

/// An opened directory that files are replaced in, named by its descriptor from then on.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

/// A directory someone other than its owner (this user or root) could change.
#[derive(Debug, thiserror::Error)]
pub enum UnsafeDir {
    #[error("{path}: owned by uid {owner}, not by this user (uid {me}) or root")]
    Owner { path: PathBuf, owner: u32, me: u32 },
    #[error("{path}: writable by its group or others (mode {mode:o}); chmod go-w it or pick another directory")]
    Writable { path: PathBuf, mode: u32 },
    #[error("{path}: {cause}")]
    Io { path: PathBuf, cause: std::io::Error },
}

impl Dir {
    pub fn open(path: &Path) -> std::io::Result<Dir> {
        let c = cstring(path.as_os_str())?;
        // SAFETY: `c` is a valid NUL-terminated path; the flags ask for no file creation.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by open and is owned by nothing else.
        Ok(Dir { fd: unsafe { OwnedFd::from_raw_fd(fd) }, path: path.to_path_buf() })
    }

    /// Refuses a directory another user could change (plant, swap or remove files in):
    /// owned by someone other than this user or root, or writable by its group or others.
    /// The check is on the opened directory, the one every later write goes into.
    pub fn check_private(&self) -> Result<(), UnsafeDir> {
        use std::os::unix::fs::MetadataExt;
        let file = std::fs::File::from(self.fd.try_clone().map_err(|cause| self.unsafe_io(cause))?);
        let meta = file.metadata().map_err(|cause| self.unsafe_io(cause))?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if meta.uid() != me && meta.uid() != 0 {
            return Err(UnsafeDir::Owner { path: self.path.clone(), owner: meta.uid(), me });
        }
        if meta.mode() & 0o022 != 0 {
            return Err(UnsafeDir::Writable { path: self.path.clone(), mode: meta.mode() & 0o7777 });
        }
        Ok(())
    }

    fn unsafe_io(&self, cause: std::io::Error) -> UnsafeDir {
        UnsafeDir::Io { path: self.path.clone(), cause }
    }

    /// Replaces `name` in this directory with `data`, as a new file of `mode`.
    pub fn write(&self, name: &OsStr, data: &[u8], mode: u32) -> std::io::Result<()> {
        self.write_with(name, mode, |file| file.write_all(data))
    }

    /// [`Dir::write`] with the contents streamed in by `fill`.
    pub fn write_with(
        &self,
        name: &OsStr,
        mode: u32,
        fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let target = cstring(name)?;
        let (tmp, file) = self.create_temporary(name, mode)?;
        let written = (|| {
            let mut file = std::fs::File::from(file);
            fill(&mut file)?;
            file.sync_all()?;
            drop(file);
            let dir = self.fd.as_raw_fd();
            // SAFETY: both names are valid NUL-terminated strings relative to our open directory.
            if unsafe { libc::renameat(dir, tmp.as_ptr(), dir, target.as_ptr()) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })();
        if written.is_err() {
            // SAFETY: `tmp` is a valid NUL-terminated name relative to our open directory.
            unsafe { libc::unlinkat(self.fd.as_raw_fd(), tmp.as_ptr(), 0) };
        }
        written?;
        // SAFETY: fsync on our own open descriptor.
        if unsafe { libc::fsync(self.fd.as_raw_fd()) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// A new file `.NAME.RANDOM.tmp`, made here and nowhere else: never an existing file,
    /// never through a symlink.
    fn create_temporary(&self, name: &OsStr, mode: u32) -> std::io::Result<(CString, OwnedFd)> {
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        let mut last = None;
        for _ in 0..16 {
            let mut tmp = b".".to_vec();
            tmp.extend_from_slice(name.as_bytes());
            tmp.extend_from_slice(format!(".{:016x}.tmp", random()?).as_bytes());
            let tmp = cstring(OsStr::from_bytes(&tmp))?;
            // SAFETY: `tmp` is a valid NUL-terminated name relative to our open directory.
            let fd = unsafe { libc::openat(self.fd.as_raw_fd(), tmp.as_ptr(), flags, mode as libc::c_uint) };
            if fd >= 0 {
                // SAFETY: `fd` was just returned by openat and is owned by nothing else.
                return Ok((tmp, unsafe { OwnedFd::from_raw_fd(fd) }));
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::AlreadyExists {
                return Err(err);
            }
            last = Some(err);
        }
        Err(last.expect("the loop ran at least once"))
    }
}

fn cstring(s: &OsStr) -> std::io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in a path"))
}

/// 64 bits from the kernel's random pool, so another user cannot guess a temporary name.
fn random() -> std::io::Result<u64> {
    let mut buf = [0u8; 8];
    // SAFETY: the buffer is valid for writes of its length.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n != buf.len() as isize {
        return Err(std::io::Error::last_os_error());
    }
    Ok(u64::from_ne_bytes(buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_file_is_replaced_whole_and_no_temporary_is_left() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/state.toml");
        write(&path, b"old").expect("first write");
        write(&path, b"new content").expect("second write");
        assert_eq!(std::fs::read(&path).expect("read"), b"new content");
        let names: Vec<_> =
            std::fs::read_dir(dir.path().join("sub")).expect("list").flatten().map(|e| e.file_name()).collect();
        assert_eq!(names, ["state.toml"]);
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        write_mode(&path, b"shared", 0o644).expect("write 0644");
        assert_eq!(std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777, 0o644);
    }

    #[test]
    fn a_symlink_planted_at_the_old_temporary_name_is_not_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"untouched").expect("write victim");
        // The names the build and this module used to write through.
        for old in [".initrd.img.tmp", "initrd.img.tmp"] {
            std::os::unix::fs::symlink(&victim, dir.path().join(old)).expect("plant");
        }
        let path = dir.path().join("initrd.img");
        write(&path, b"secret").expect("write");
        assert_eq!(std::fs::read(&victim).expect("read victim"), b"untouched");
        assert_eq!(std::fs::read(&path).expect("read"), b"secret");
        // Nor is a symlink at the target itself written through: it is replaced.
        std::os::unix::fs::symlink(&victim, dir.path().join("cmdline")).expect("plant");
        write(&dir.path().join("cmdline"), b"console=ttyS0").expect("write");
        assert_eq!(std::fs::read(&victim).expect("read victim"), b"untouched");
        assert!(!std::fs::symlink_metadata(dir.path().join("cmdline")).expect("stat").file_type().is_symlink());
    }

    #[test]
    fn a_directory_others_can_write_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        Dir::open(dir.path()).expect("open").check_private().expect("0755 is private");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o775)).expect("chmod");
        let err = Dir::open(dir.path()).expect("open").check_private().expect_err("group-writable");
        assert_eq!(
            err.to_string(),
            format!(
                "{}: writable by its group or others (mode 775); chmod go-w it or pick another directory",
                dir.path().display()
            )
        );
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).expect("chmod");
        Dir::open(dir.path()).expect("open").check_private().expect_err("world-writable, even sticky");
    }

    #[test]
    fn a_directory_owned_by_another_user_is_refused() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIPPED a_directory_owned_by_another_user_is_refused: needs root to chown");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::chown(dir.path(), Some(65534), None).expect("chown");
        let err = Dir::open(dir.path()).expect("open").check_private().expect_err("someone else's");
        assert!(err.to_string().contains("owned by uid 65534, not by this user (uid 0) or root"), "{err}");
    }
}
