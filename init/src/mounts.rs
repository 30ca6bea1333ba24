//! Filesystems: the root switch that lets runc pivot, the API filesystems, and the final
//! unmount at shutdown.

use std::path::Path;

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::unistd::{chdir, chroot};

/// The initramfs is the kernel's `rootfs` mount, which can never be unmounted or pivoted
/// away from, so runc's `pivot_root(".", ".")` fails on it with EINVAL. We bind-mount `/` on
/// a directory, move that mount over `/` and chroot into it: `/` is then an ordinary mount
/// that runc can pivot from. It costs ~0.1 s against ~0.7 s for copying the initramfs into
/// a tmpfs (measured on this machine's TCG guest, see DESIGN.md), and keeps one copy of the
/// files in memory instead of two.
pub fn switch_to_bind_root() -> nix::Result<()> {
    let dir = "/.hoist-root";
    match nix::unistd::mkdir(dir, nix::sys::stat::Mode::from_bits_truncate(0o700)) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
        Err(e) => return Err(e),
    }
    mount(Some("/"), dir, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)?;
    chdir(dir)?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)?;
    chroot(".")?;
    chdir("/")
}

struct ApiMount {
    source: &'static str,
    target: &'static str,
    fstype: &'static str,
    flags: MsFlags,
    data: &'static str,
}

const NOSUID_NODEV: MsFlags = MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV);
const NOSUID_NODEV_NOEXEC: MsFlags = NOSUID_NODEV.union(MsFlags::MS_NOEXEC);

const API_MOUNTS: &[ApiMount] = &[
    ApiMount { source: "proc", target: "/proc", fstype: "proc", flags: NOSUID_NODEV_NOEXEC, data: "" },
    ApiMount { source: "sysfs", target: "/sys", fstype: "sysfs", flags: NOSUID_NODEV_NOEXEC, data: "" },
    ApiMount { source: "devtmpfs", target: "/dev", fstype: "devtmpfs", flags: MsFlags::MS_NOSUID, data: "mode=0755" },
    ApiMount {
        source: "devpts",
        target: "/dev/pts",
        fstype: "devpts",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC),
        data: "gid=5,mode=620,ptmxmode=666",
    },
    ApiMount { source: "shm", target: "/dev/shm", fstype: "tmpfs", flags: NOSUID_NODEV, data: "mode=1777" },
    ApiMount { source: "run", target: "/run", fstype: "tmpfs", flags: NOSUID_NODEV, data: "mode=0755" },
    ApiMount { source: "tmp", target: "/tmp", fstype: "tmpfs", flags: NOSUID_NODEV, data: "mode=1777" },
    ApiMount {
        source: "cgroup2",
        target: "/sys/fs/cgroup",
        fstype: "cgroup2",
        flags: NOSUID_NODEV_NOEXEC,
        data: "nsdelegate",
    },
];

#[derive(Debug, thiserror::Error)]
#[error("mount {fstype} on {target}: {cause}")]
pub struct MountError {
    fstype: &'static str,
    target: &'static str,
    cause: nix::errno::Errno,
}

/// Mounts /proc, /sys, /dev (+pts, shm), /run, /tmp and cgroup2, then makes every mount
/// shared so that mounts made in containers' namespaces can propagate as runc expects.
pub fn mount_api_filesystems() -> Result<(), MountError> {
    for m in API_MOUNTS {
        let _ = std::fs::create_dir_all(m.target);
        let data = (!m.data.is_empty()).then_some(m.data);
        match mount(Some(m.source), m.target, Some(m.fstype), m.flags, data) {
            Ok(()) | Err(nix::errno::Errno::EBUSY) => {}
            Err(cause) => return Err(MountError { fstype: m.fstype, target: m.target, cause }),
        }
    }
    for (link, target) in [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
    ] {
        let _ = std::os::unix::fs::symlink(target, link);
    }
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_SHARED, None::<&str>)
        .map_err(|cause| MountError { fstype: "shared", target: "/", cause })
}

/// Mount points from a /proc/self/mounts text, innermost (last mounted) first.
pub fn mount_points(mounts: &str) -> Vec<String> {
    let mut points: Vec<String> =
        mounts.lines().filter_map(|l| l.split_whitespace().nth(1)).map(|p| p.replace("\\040", " ")).collect();
    points.reverse();
    points
}

/// Unmounts everything it can, innermost first; what stays busy is remounted read-only so
/// that nothing is left half-written. Returns how many mounts stayed mounted.
pub fn unmount_all() -> usize {
    let text = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut busy = 0;
    for point in mount_points(&text) {
        if point == "/" || point == "/proc" {
            continue;
        }
        if umount2(Path::new(&point), MntFlags::empty()).is_err() {
            let ro = MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
            if mount(None::<&str>, point.as_str(), None::<&str>, ro, None::<&str>).is_err() {
                busy += 1;
            }
        }
    }
    busy
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn innermost_mounts_come_first() {
        let text = "rootfs / rootfs rw 0 0\nproc /proc proc rw 0 0\ntmpfs /run tmpfs rw 0 0\nshm /run/my\\040dir tmpfs rw 0 0\n";
        assert_eq!(mount_points(text), ["/run/my dir", "/run", "/proc", "/"]);
    }
}
