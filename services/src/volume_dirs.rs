//! The directories a service binds from a volume (`data/db:/var/lib/db`), made before each
//! start with the service's uid and gid. A volume's content is the services' to write, so
//! it is hostile: the path is walked one component at a time from the mount point with
//! `O_NOFOLLOW | O_DIRECTORY`, and a symlink or a file where a directory should be is an
//! error, never followed (a service could otherwise plant `db -> /` and be handed the
//! host's root on its next start). Only directories made here are chowned; existing ones
//! are left as they are. The checked directory, held open, is then bind-mounted on a
//! staging path in /run/hoist ([`stage`]) and the container binds that: the OCI runtime
//! never resolves a path on the volume, so swapping a directory for a symlink after the
//! check (a service sharing the volume could) changes nothing.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use hoist_guest::nofollow;

/// One directory to make: `sub` ("a/b", no '..', no empty parts) under the volume mount
/// point `root`, owned by `uid:gid` when made.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VolumeDir {
    pub volume: String,
    pub sub: String,
    pub uid: u32,
    pub gid: u32,
    /// Where [`stage`] mounts it for the container's spec to bind.
    pub staging: String,
}

/// Whether a filesystem is mounted at `root` (its device differs from its parent's): a
/// volume's directories are never made in the RAM root below an unmounted mount point.
pub fn is_mount_point(root: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let parent = root.parent().map(std::fs::symlink_metadata);
    match (parent, std::fs::symlink_metadata(root)) {
        (Some(Ok(parent)), Ok(here)) => here.is_dir() && parent.dev() != here.dev(),
        _ => false,
    }
}

/// Bind-mounts the directory `fd` holds on `staging` (made 0700 if missing; an earlier
/// run's mount there is detached first).
pub fn stage(fd: &OwnedFd, staging: &Path) -> Result<(), String> {
    use nix::mount::{MntFlags, MsFlags, mount, umount2};
    let err = |what: &str, e: &dyn std::fmt::Display| format!("{}: {what}: {e}", staging.display());
    let _ = umount2(staging, MntFlags::MNT_DETACH);
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(staging).map_err(|e| err("mkdir", &e))?;
    let source = nofollow::fd_path(fd);
    mount(Some(&source), staging, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(|e| err("bind", &e))
}

/// Makes `dir.sub` under `root` (the volume's mount point), component by component, and
/// returns it opened.
pub fn prepare(root: &Path, dir: &VolumeDir) -> Result<OwnedFd, String> {
    let err = |what: &str, e: std::io::Error| format!("volume {} directory {:?}: {what}: {e}", dir.volume, dir.sub);
    let mut fd = nofollow::open_dir(None, root).map_err(|e| err("mount point", e))?;
    for part in dir.sub.split('/').filter(|p| !p.is_empty()) {
        // ENOTDIR: a symlink or a file is there; "." and ".." are EINVAL.
        let (next, made) = nofollow::make_dir(&fd, part, 0o755).map_err(|e| err(part, e))?;
        if made {
            // SAFETY: a descriptor we own; the result is checked.
            if unsafe { libc::fchown(next.as_raw_fd(), dir.uid, dir.gid) } != 0 {
                return Err(err(part, std::io::Error::last_os_error()));
            }
        }
        fd = next;
    }
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    fn dir(sub: &str) -> VolumeDir {
        let me = std::fs::metadata("/proc/self").map(|m| (m.uid(), m.gid())).unwrap_or((0, 0));
        VolumeDir { volume: "data".into(), sub: sub.into(), uid: me.0, gid: me.1, staging: String::new() }
    }

    #[test]
    fn makes_the_path_and_keeps_what_exists() {
        let tmp = tempfile::tempdir().expect("tmp");
        prepare(tmp.path(), &dir("db/main")).expect("made");
        assert!(tmp.path().join("db/main").is_dir());
        std::fs::write(tmp.path().join("db/main/keep"), b"x").expect("write");
        prepare(tmp.path(), &dir("db/main")).expect("again");
        assert!(tmp.path().join("db/main/keep").is_file());
        prepare(tmp.path(), &dir("")).expect("the root itself");
        assert!(!is_mount_point(tmp.path()), "a plain directory");
        assert!(is_mount_point(Path::new("/proc")));
    }

    #[test]
    fn symlinks_and_files_are_refused_not_followed() {
        let tmp = tempfile::tempdir().expect("tmp");
        let outside = tempfile::tempdir().expect("outside");
        std::os::unix::fs::symlink(outside.path(), tmp.path().join("db")).expect("symlink");
        let e = prepare(tmp.path(), &dir("db/main")).expect_err("a symlink");
        assert!(e.contains("volume data directory \"db/main\": db:"), "{e}");
        assert!(!outside.path().join("main").exists(), "nothing made through the link");
        std::fs::write(tmp.path().join("file"), b"x").expect("write");
        assert!(prepare(tmp.path(), &dir("file/x")).is_err());
        assert!(prepare(tmp.path(), &dir("a/../b")).is_err());
    }
}
