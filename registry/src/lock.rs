//! `host.lock`: the digest each `docker://` reference of a config is pinned to, written
//! next to the config (`host.toml` -> `host.lock`) by `hoist build`. With it, a build reads
//! the same bytes even when a tag has moved since; `hoist build --update` moves the pins.
//!
//! ```toml
//! # Written by hoist build: the digest each docker:// image of host.toml is pinned to.
//! version = 1
//!
//! [images]
//! "docker.io/library/nginx:1.27" = "sha256:..."
//! ```
//!
//! Keys are normalized references (as `hoist check` prints them); a reference that carries
//! its own digest needs no entry. The file is written whole and renamed into place, and
//! only when a pin changed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::cache::sha256_hex;

const VERSION: u32 = 1;
/// A lock file is a few lines per image; a bigger one is not ours.
const MAX_BYTES: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{path}: {cause}")]
    Io { path: PathBuf, cause: std::io::Error },
    #[error("{path}: larger than {MAX_BYTES} bytes; not a host.lock")]
    TooLarge { path: PathBuf },
    #[error("{path}:{line}:{column}: {message}")]
    Syntax { path: PathBuf, line: usize, column: usize, message: String },
    #[error("{path}: version {version} is not one this hoist reads (1)")]
    Version { path: PathBuf, version: u32 },
    #[error("{path}:{line}: images.{key:?}: {message}")]
    Entry { path: PathBuf, line: usize, key: String, message: String },
}

/// The pins: normalized reference -> digest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lock {
    pub images: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    version: u32,
    #[serde(default)]
    images: BTreeMap<String, String>,
}

/// `host.toml` -> `host.lock`, in the same directory.
pub fn path_for(config: &Path) -> PathBuf {
    config.with_extension("lock")
}

impl Lock {
    /// Reads the lock at `path`; a missing file is an empty lock.
    pub fn load(path: &Path) -> Result<Lock, LockError> {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        let io = |cause| LockError::Io { path: path.to_path_buf(), cause };
        // One handle, not followed if a symlink, checked and read through the same fd.
        let file = match std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Lock::default()),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(io(std::io::Error::other("a symlink; not followed")));
            }
            Err(e) => return Err(io(e)),
        };
        if !file.metadata().map_err(io)?.is_file() {
            return Err(io(std::io::Error::other("not a regular file")));
        }
        let mut text = String::new();
        file.take(MAX_BYTES + 1).read_to_string(&mut text).map_err(io)?;
        if text.len() as u64 > MAX_BYTES {
            return Err(LockError::TooLarge { path: path.to_path_buf() });
        }
        Lock::parse(path, &text)
    }

    /// Parses lock text; errors name `path`, the line and the key.
    pub fn parse(path: &Path, text: &str) -> Result<Lock, LockError> {
        let raw: Raw = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map_or((1, 1), |s| line_col(text, s.start));
            LockError::Syntax { path: path.to_path_buf(), line, column, message: e.message().to_string() }
        })?;
        if raw.version != VERSION {
            return Err(LockError::Version { path: path.to_path_buf(), version: raw.version });
        }
        for (key, digest) in &raw.images {
            let line = text.find(&format!("\"{key}\"")).map_or(1, |at| line_col(text, at).0);
            let entry =
                |message: String| LockError::Entry { path: path.to_path_buf(), line, key: key.clone(), message };
            let reference = hoist_config::Reference::parse_named(key).map_err(|e| entry(e.to_string()))?;
            if reference.to_string() != *key {
                return Err(entry(format!("not a normalized reference (hoist writes {reference})")));
            }
            sha256_hex(digest).map_err(|e| entry(e.to_string()))?;
        }
        Ok(Lock { images: raw.images })
    }

    pub fn format(&self, config_name: &str) -> String {
        let mut s = format!(
            "# Written by hoist build: the digest each docker:// image of {config_name} is pinned to.\n\
             # Keep it next to the config; `hoist build --update` moves the pins.\n\
             version = {VERSION}\n\n[images]\n"
        );
        for (reference, digest) in &self.images {
            s.push_str(&format!("{} = {}\n", toml_string(reference), toml_string(digest)));
        }
        s
    }

    /// Writes the lock to `path` (a temporary file renamed into place).
    pub fn save(&self, path: &Path, config_name: &str) -> Result<(), LockError> {
        let io = |cause| LockError::Io { path: path.to_path_buf(), cause };
        if std::fs::symlink_metadata(path).is_ok_and(|m| !m.is_file()) {
            return Err(io(std::io::Error::other("not a regular file; refusing to replace it")));
        }
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        // A new file only (a planted name or symlink is an error, never followed), synced
        // before it replaces the old lock, so a crash leaves one or the other whole.
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_NOFOLLOW)
                .mode(0o644)
                .open(&tmp)?;
            f.write_all(self.format(config_name).as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io(e)
        })
    }
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn line_col(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(before.len(), |i| before.len() - i - 1) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn a_lock_reads_back_what_it_wrote() {
        let mut lock = Lock::default();
        lock.images.insert("docker.io/library/nginx:1.27".into(), digest('a'));
        lock.images.insert("registry.local:5000/acme/api:2".into(), digest('b'));
        let text = lock.format("host.toml");
        assert!(text.contains("of host.toml is pinned"), "{text}");
        assert_eq!(Lock::parse(Path::new("host.lock"), &text).expect("parse"), lock);
        // Deterministic: the same pins, the same bytes.
        assert_eq!(lock.clone().format("host.toml"), text);
    }

    #[test]
    fn bad_locks_name_the_file_line_and_key() {
        let cases = [
            ("version = 2\n", "version 2"),
            ("version = 1\n[images]\n\"nginx\" = \"sha256:00\"\n", "host.lock:3: images.\"nginx\""),
            (
                &format!("version = 1\n[images]\n\"nginx:1\" = \"{}\"\n", digest('a')),
                "hoist writes docker.io/library/nginx:1",
            ),
            ("version = 1\n[images]\n\"docker.io/library/nginx:1\" = \"md5:x\"\n", "invalid digest"),
            ("version = 1\nextra = 3\n", "host.lock:2:1"),
            ("version = \n", "host.lock:1:"),
        ];
        for (text, want) in cases {
            let err = Lock::parse(Path::new("host.lock"), text).expect_err(text).to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn saving_replaces_the_file_and_a_missing_one_is_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = path_for(&dir.path().join("host.toml"));
        assert_eq!(path, dir.path().join("host.lock"));
        assert_eq!(Lock::load(&path).expect("missing"), Lock::default());
        let mut lock = Lock::default();
        lock.images.insert("docker.io/library/nginx:1.27".into(), digest('c'));
        lock.save(&path, "host.toml").expect("save");
        assert_eq!(Lock::load(&path).expect("load"), lock);
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 1, "a temporary file was left");
        // A symlinked lock is not followed.
        let link = dir.path().join("other.lock");
        std::os::unix::fs::symlink(&path, &link).expect("symlink");
        assert!(Lock::load(&link).expect_err("symlink").to_string().contains("not followed"));
    }
}
