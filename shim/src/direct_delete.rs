//! Deleting a stopped crun container without running `crun delete`.
//!
//! Once a container's processes are gone, `crun delete` runs its poststop hooks, removes
//! its cgroup and removes its state directory `<root>/<id>`. Under emulation that one more
//! crun process is half of a restart's cleanup, so the shim removes the cgroup and the
//! state itself when nothing else is to be done, and leaves everything else to
//! `crun delete --force`: another runtime, poststop hooks, an init not seen to exit, a
//! systemd cgroup, a cgroup that still holds processes or children, or anything in the
//! state directory that is not a plain file. Nothing is removed before every check passed,
//! and the `status` file goes last, so a failure part way still leaves crun a container
//! it can delete.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::dir::{Dir, Type};
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use nix::unistd::UnlinkatFlags;

use crate::runtime::{Runtime, has_hooks, read_json};

/// What the shortcut did.
#[derive(Debug, PartialEq, Eq)]
pub enum Deleted {
    /// Cgroup and state are gone.
    Done,
    /// Not applicable: run the runtime's `delete --force`.
    UseRuntime(&'static str),
}

/// The cgroup directory a crun status names (`cgroup-path`, under `cgroup_root`), if it
/// is a plain absolute path below it.
pub fn cgroup_dir(status: &serde_json::Value, cgroup_root: &Path) -> Option<PathBuf> {
    let path = Path::new(status.get("cgroup-path")?.as_str()?);
    let mut parts = path.components();
    if parts.next() != Some(Component::RootDir) {
        return None;
    }
    let rest: Vec<&OsStr> = parts
        .map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect::<Option<_>>()?;
    if rest.is_empty() {
        return None;
    }
    Some(rest.iter().fold(cgroup_root.to_path_buf(), |p, n| p.join(n)))
}

/// `status` goes last: until then crun still sees a container it can delete, should an
/// unlink fail and the caller fall back to it.
fn unlink_order(names: &mut [std::ffi::CString]) {
    names.sort_by_key(|n| n.to_bytes() == b"status");
}

/// Deletes stopped container `id` of `rt` (whose init has exited) the way crun would, if
/// nothing calls for crun itself.
pub fn delete(rt: &Runtime, id: &str, init_exited: bool) -> Result<Deleted, String> {
    if !rt.is_crun() {
        return Ok(Deleted::UseRuntime("not crun"));
    }
    if !init_exited {
        return Ok(Deleted::UseRuntime("init not seen to exit"));
    }
    if has_hooks(&rt.bundle_config()?, "poststop") {
        return Ok(Deleted::UseRuntime("poststop hooks"));
    }
    remove(&rt.root.join(id), Path::new("/sys/fs/cgroup"))
}

/// Removes the cgroup a crun state directory names, then the directory.
pub fn remove(state: &Path, cgroup_root: &Path) -> Result<Deleted, String> {
    let status = match read_json(&state.join("status")) {
        Ok(s) => s,
        Err(_) => return Ok(Deleted::UseRuntime("no readable status")),
    };
    if status.get("systemd-cgroup").and_then(|v| v.as_bool()).unwrap_or(false)
        || status.get("scope").and_then(|v| v.as_str()).is_some_and(|s| !s.is_empty())
    {
        return Ok(Deleted::UseRuntime("systemd cgroup"));
    }
    let Some(cgroup) = cgroup_dir(&status, cgroup_root) else { return Ok(Deleted::UseRuntime("no cgroup path")) };
    let mut dir = match Dir::open(state, OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty()) {
        Ok(d) => d,
        Err(_) => return Ok(Deleted::UseRuntime("no state directory")),
    };
    let mut names = Vec::new();
    for entry in dir.iter() {
        let entry = entry.map_err(|e| format!("{}: {e}", state.display()))?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        match entry.file_type() {
            Some(Type::File | Type::Fifo | Type::Symlink) => names.push(entry.file_name().to_owned()),
            _ => return Ok(Deleted::UseRuntime("unexpected entry in the state directory")),
        }
    }
    match std::fs::remove_dir(&cgroup) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        // Processes or child cgroups left: crun kills and removes them.
        Err(_) => return Ok(Deleted::UseRuntime("cgroup not empty")),
    }
    unlink_order(&mut names);
    for name in &names {
        // unlinkat never follows a symlink: the link itself goes.
        nix::unistd::unlinkat(&dir, name.as_c_str(), UnlinkatFlags::NoRemoveDir)
            .map_err(|e| format!("{}/{}: {e}", state.display(), OsStr::from_bytes(name.to_bytes()).display()))?;
    }
    drop(dir);
    std::fs::remove_dir(state).map_err(|e| format!("{}: {e}", state.display()))?;
    Ok(Deleted::Done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_dir(root: &Path, cgroup_path: &str) -> PathBuf {
        let state = root.join("state").join(cgroup_path.replace('/', "_"));
        std::fs::create_dir_all(&state).expect("state");
        let status =
            format!("{{\"pid\":42,\"cgroup-path\":\"{cgroup_path}\",\"systemd-cgroup\":false,\"scope\":\"\"}}");
        std::fs::write(state.join("status"), status).expect("status");
        std::fs::write(state.join("config.json"), "{}").expect("config");
        nix::unistd::mkfifo(&state.join("exec.fifo"), Mode::from_bits_truncate(0o600)).expect("fifo");
        state
    }

    #[test]
    fn the_cgroup_and_the_state_go() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cgroups = dir.path().join("cgroup");
        std::fs::create_dir_all(cgroups.join("hoist/web")).expect("cgroup");
        let outside = dir.path().join("outside");
        std::fs::write(&outside, "keep").expect("outside");
        let state = state_dir(dir.path(), "/hoist/web");
        std::os::unix::fs::symlink(&outside, state.join("link")).expect("symlink");
        assert_eq!(remove(&state, &cgroups), Ok(Deleted::Done));
        assert!(!state.exists());
        assert!(!cgroups.join("hoist/web").exists());
        assert!(cgroups.join("hoist").exists(), "the parent cgroup stays");
        assert_eq!(std::fs::read_to_string(&outside).expect("outside"), "keep", "a symlink is removed, not followed");
    }

    #[test]
    fn anything_unusual_is_left_to_crun_untouched() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cgroups = dir.path().join("cgroup");
        // A cgroup with a child: rmdir refuses, crun deals with it.
        std::fs::create_dir_all(cgroups.join("hoist/web/child")).expect("cgroup");
        let state = state_dir(dir.path(), "/hoist/web");
        assert_eq!(remove(&state, &cgroups), Ok(Deleted::UseRuntime("cgroup not empty")));
        assert!(state.join("status").exists(), "nothing removed");
        // A directory in the state directory.
        std::fs::remove_dir(cgroups.join("hoist/web/child")).expect("child");
        std::fs::create_dir(state.join("sub")).expect("sub");
        assert_eq!(remove(&state, &cgroups), Ok(Deleted::UseRuntime("unexpected entry in the state directory")));
        assert!(cgroups.join("hoist/web").exists() && state.join("status").exists(), "nothing removed");
        // A cgroup path that climbs out.
        std::fs::remove_dir(state.join("sub")).expect("sub");
        let bad = state_dir(dir.path(), "/../../etc");
        assert_eq!(remove(&bad, &cgroups), Ok(Deleted::UseRuntime("no cgroup path")));
        assert_eq!(remove(&dir.path().join("missing"), &cgroups), Ok(Deleted::UseRuntime("no readable status")));
    }

    #[test]
    fn runc_hooks_and_a_live_init_go_to_the_runtime() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = |bin: &str| Runtime {
            binary: PathBuf::from(bin),
            root: dir.path().join("root"),
            bundle: dir.path().to_path_buf(),
        };
        assert_eq!(delete(&rt("/usr/sbin/runc"), "web", true), Ok(Deleted::UseRuntime("not crun")));
        assert_eq!(delete(&rt("/usr/bin/crun"), "web", false), Ok(Deleted::UseRuntime("init not seen to exit")));
        std::fs::write(dir.path().join("config.json"), br#"{"hooks":{"poststop":[{"path":"/x"}]}}"#).expect("config");
        assert_eq!(delete(&rt("/usr/bin/crun"), "web", true), Ok(Deleted::UseRuntime("poststop hooks")));
    }

    #[test]
    fn status_is_removed_last() {
        let mut names: Vec<std::ffi::CString> = ["status", "config.json", "exec.fifo", "seccomp.bpf"]
            .iter()
            .map(|n| std::ffi::CString::new(*n).expect("name"))
            .collect();
        unlink_order(&mut names);
        assert_eq!(names.last().map(|n| n.to_bytes()), Some(&b"status"[..]));
        assert_eq!(names.len(), 4);
    }

    #[test]
    fn cgroup_paths_are_plain_and_absolute() {
        let root = Path::new("/sys/fs/cgroup");
        let of = |p: &str| cgroup_dir(&serde_json::json!({ "cgroup-path": p }), root);
        assert_eq!(of("/hoist/web"), Some(PathBuf::from("/sys/fs/cgroup/hoist/web")));
        assert_eq!(of("hoist/web"), None);
        assert_eq!(of("/hoist/../x"), None);
        assert_eq!(of("/"), None);
        assert_eq!(cgroup_dir(&serde_json::json!({}), root), None);
    }
}
