//! The task's root filesystem: containerd's mounts (an overlay, or a bind of a snapshot)
//! mounted onto `BUNDLE/rootfs` at create, and unmounted at delete.

use std::path::Path;

use nix::mount::{MntFlags, MsFlags};

use crate::proto::Mount;

/// Flags named in mount options; everything else is the filesystem's data string.
fn flag(option: &str) -> Option<(bool, MsFlags)> {
    Some(match option {
        "ro" => (true, MsFlags::MS_RDONLY),
        "rw" => (false, MsFlags::MS_RDONLY),
        "nosuid" => (true, MsFlags::MS_NOSUID),
        "suid" => (false, MsFlags::MS_NOSUID),
        "nodev" => (true, MsFlags::MS_NODEV),
        "dev" => (false, MsFlags::MS_NODEV),
        "noexec" => (true, MsFlags::MS_NOEXEC),
        "exec" => (false, MsFlags::MS_NOEXEC),
        "bind" => (true, MsFlags::MS_BIND),
        "rbind" => (true, MsFlags::MS_BIND | MsFlags::MS_REC),
        "noatime" => (true, MsFlags::MS_NOATIME),
        "relatime" => (true, MsFlags::MS_RELATIME),
        "sync" => (true, MsFlags::MS_SYNCHRONOUS),
        _ => return None,
    })
}

/// Flags and data of a mount's options.
pub fn options(options: &[String]) -> (MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for o in options {
        match flag(o) {
            Some((true, f)) => flags |= f,
            Some((false, f)) => flags &= !f,
            None => data.push(o.as_str()),
        }
    }
    (flags, data.join(","))
}

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("mount {kind} on {target}: {source}")]
    Mount { kind: String, target: String, source: nix::Error },
    #[error("{0}: {1}")]
    Dir(String, std::io::Error),
}

/// Mounts each of `mounts` on `rootfs`, in order (containerd gives at most one for the
/// snapshotters hoist uses). A bind that asks for `ro` is remounted read-only, as the
/// kernel ignores MS_RDONLY on the first bind.
pub fn mount_all(mounts: &[Mount], rootfs: &Path) -> Result<(), MountError> {
    if mounts.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(rootfs).map_err(|e| MountError::Dir(rootfs.display().to_string(), e))?;
    for m in mounts {
        let (flags, data) = options(&m.options);
        let err = |source| MountError::Mount { kind: m.r#type.clone(), target: rootfs.display().to_string(), source };
        let data = (!data.is_empty()).then_some(data.as_str());
        nix::mount::mount(Some(m.source.as_str()), rootfs, Some(m.r#type.as_str()), flags, data).map_err(err)?;
        if flags.contains(MsFlags::MS_BIND) && flags.contains(MsFlags::MS_RDONLY) {
            let again = flags | MsFlags::MS_REMOUNT;
            nix::mount::mount(None::<&str>, rootfs, None::<&str>, again, None::<&str>).map_err(err)?;
        }
    }
    Ok(())
}

/// Unmounts everything on `rootfs` (lazily: a process that still holds it does not keep
/// the task from going away). Nothing mounted is fine.
pub fn unmount_all(rootfs: &Path) {
    for _ in 0..16 {
        if nix::mount::umount2(rootfs, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_flags_and_data() {
        let opts: Vec<String> =
            ["ro", "lowerdir=/a:/b", "nosuid", "upperdir=/u", "rw"].iter().map(|s| s.to_string()).collect();
        let (flags, data) = options(&opts);
        assert_eq!(flags, MsFlags::MS_NOSUID, "a later rw clears ro");
        assert_eq!(data, "lowerdir=/a:/b,upperdir=/u");
        let (flags, data) = options(&["rbind".to_string(), "ro".to_string()]);
        assert_eq!(flags, MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_RDONLY);
        assert_eq!(data, "");
    }
}
