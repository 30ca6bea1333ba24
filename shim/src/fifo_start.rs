//! Starting a crun container without running `crun start`.
//!
//! `crun create` leaves the container's first process blocked reading
//! `<root>/<id>/exec.fifo`; `crun start` opens that FIFO for writing, unlinks it (crun's
//! state then says "running") and writes one byte, and the process goes on to exec the
//! service. Under emulation one more crun process costs most of a second, so the shim does
//! those three steps itself. It falls back to `crun start` whenever the shortcut would
//! skip something crun does (poststart hooks) or the FIFO is not where crun keeps it; runc
//! (whose FIFO runs the other way) always gets `runc start`.

use std::io::Write as _;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use crate::runtime::{Runtime, has_hooks};

/// What the shortcut did.
#[derive(Debug, PartialEq, Eq)]
pub enum Started {
    /// The byte is written: the container runs.
    Done,
    /// Not applicable here: run the runtime's `start`.
    UseRuntime(&'static str),
}

/// Starts container `id` through crun's exec FIFO, if `rt` is crun and the bundle has no
/// poststart hooks.
pub fn start(rt: &Runtime, id: &str) -> Result<Started, String> {
    if !rt.is_crun() {
        return Ok(Started::UseRuntime("not crun"));
    }
    // Nothing is written yet: whatever is odd about the bundle, crun start judges it.
    match rt.bundle_config() {
        Ok(config) if has_hooks(&config, "poststart") => return Ok(Started::UseRuntime("poststart hooks")),
        Ok(_) => {}
        Err(_) => return Ok(Started::UseRuntime("config.json not readable here")),
    }
    release(&rt.root.join(id).join("exec.fifo"))
}

/// Opens `fifo` for writing without blocking, unlinks it and writes one byte. A FIFO
/// without a reader means the container's process is gone.
pub fn release(fifo: &Path) -> Result<Started, String> {
    let file = match std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(fifo)
    {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(Started::UseRuntime("no exec.fifo")),
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
            return Err("the container's process exited before it was started".into());
        }
        Err(e) => return Err(format!("{}: {e}", fifo.display())),
    };
    let meta = file.metadata().map_err(|e| format!("{}: {e}", fifo.display()))?;
    if !meta.file_type().is_fifo() {
        return Err(format!("{}: not a FIFO", fifo.display()));
    }
    std::fs::remove_file(fifo).map_err(|e| format!("{}: {e}", fifo.display()))?;
    // One byte, a 0, as crun writes it.
    (&file).write_all(&[0]).map_err(|e| format!("{}: {e}", fifo.display()))?;
    Ok(Started::Done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    #[test]
    fn a_waiting_reader_gets_one_byte_and_the_fifo_is_gone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("exec.fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
        // The container's side: a reader opened before start, as crun's create leaves it.
        let mut reader =
            std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(&fifo).expect("reader");
        assert_eq!(release(&fifo), Ok(Started::Done));
        assert!(!fifo.exists(), "exec.fifo must be unlinked, as crun start does");
        let mut byte = [9u8; 2];
        assert_eq!(reader.read(&mut byte).expect("read"), 1);
        assert_eq!(byte[0], 0);
    }

    #[test]
    fn runc_hooks_and_odd_bundles_go_to_the_runtime() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = |bin: &str| Runtime {
            binary: std::path::PathBuf::from(bin),
            root: dir.path().join("root"),
            bundle: dir.path().to_path_buf(),
        };
        assert_eq!(start(&rt("/usr/sbin/runc"), "web"), Ok(Started::UseRuntime("not crun")));
        assert_eq!(start(&rt("/usr/bin/crun"), "web"), Ok(Started::UseRuntime("config.json not readable here")));
        std::fs::write(dir.path().join("config.json"), br#"{"hooks":{"poststart":[{"path":"/x"}]}}"#).expect("config");
        assert_eq!(start(&rt("/usr/bin/crun"), "web"), Ok(Started::UseRuntime("poststart hooks")));
        std::fs::write(dir.path().join("config.json"), b"{}").expect("config");
        assert_eq!(start(&rt("/usr/bin/crun"), "web"), Ok(Started::UseRuntime("no exec.fifo")));
    }

    #[test]
    fn no_reader_is_an_error_and_no_fifo_falls_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("exec.fifo");
        assert_eq!(release(&fifo), Ok(Started::UseRuntime("no exec.fifo")));
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
        assert!(release(&fifo).expect_err("no reader").contains("exited"));
        let file = dir.path().join("plain");
        std::fs::write(&file, b"").expect("file");
        assert!(release(&file).expect_err("not a fifo").contains("not a FIFO"));
        std::os::unix::fs::symlink(&file, dir.path().join("link")).expect("symlink");
        assert!(release(&dir.path().join("link")).is_err(), "a symlink is never followed");
    }
}
