//! The directory holding `console.log` and `qmp.sock` for one VM.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::QemuError;

pub(crate) struct WorkDir {
    path: PathBuf,
    /// Created by us in the temp dir, so ours to remove.
    temporary: bool,
}

impl WorkDir {
    /// `dir` if given (created if missing, never removed), else a fresh temp dir.
    pub(crate) fn create(dir: Option<&Path>) -> Result<WorkDir, QemuError> {
        match dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .map_err(|source| QemuError::WorkDir { path: dir.to_path_buf(), cause: source })?;
                Ok(WorkDir { path: dir.to_path_buf(), temporary: false })
            }
            None => Self::fresh(),
        }
    }

    fn fresh() -> Result<WorkDir, QemuError> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!("hoist-qemu-{}-{n}", std::process::id()));
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(WorkDir { path, temporary: true }),
                // Left over from an earlier process with our pid: take the next number.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(source) => return Err(QemuError::WorkDir { path, cause: source }),
            }
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the directory if we created it.
    pub(crate) fn remove(&self) {
        if self.temporary
            && let Err(e) = std::fs::remove_dir_all(&self.path)
        {
            log::warn!("removing {}: {e}", self.path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_dirs_are_distinct_and_removed() {
        let a = WorkDir::create(None).expect("a");
        let b = WorkDir::create(None).expect("b");
        assert_ne!(a.path(), b.path());
        a.remove();
        b.remove();
        assert!(!a.path().exists() && !b.path().exists());
    }

    #[test]
    fn given_dirs_are_kept() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("run");
        let w = WorkDir::create(Some(&dir)).expect("create");
        w.remove();
        assert!(dir.is_dir());
    }
}
