//! The build host's cache of registry blobs, shared by every build: `ROOT/blobs/sha256/HEX`
//! with an `oci-layout` file, so hoist-images reads it as a layout (by digest; there is no
//! `index.json`). A blob enters only whole and verified: it is written to `ROOT/tmp/`
//! through a hash and a size cap, synced, and renamed into place once its digest matches.
//! A crash or a bad download leaves at most a temporary file, which the next writer's
//! sweep removes. A cached blob is checked again before it is trusted ([`Cache::has`]).
//!
//! The root is `$HOIST_CACHE`, else `$XDG_CACHE_HOME/hoist/oci`, else
//! `~/.cache/hoist/oci`. Nothing is followed through a symlink: the root's own directories
//! must be real directories, and blobs real files.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

const LAYOUT: &[u8] = b"{\"imageLayoutVersion\":\"1.0.0\"}";
/// Temporary files older than this are a crashed writer's, not a running one's.
const STALE_TMP: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("{path}: {cause}")]
    Io { path: PathBuf, cause: io::Error },
    #[error("{path}: not a directory of its own (a symlink or another file type); refusing to use it")]
    NotADir { path: PathBuf },
    #[error("invalid digest {0:?}: expected sha256:<64 lowercase hex>")]
    Digest(String),
    #[error("blob {digest}: more than the {size} bytes its descriptor says")]
    TooLong { digest: String, size: u64 },
    #[error("blob {digest}: {actual} bytes, its descriptor says {size}")]
    Size { digest: String, size: u64, actual: u64 },
    #[error("blob {expected}: the registry sent content with digest {actual}; nothing was cached")]
    Mismatch { expected: String, actual: String },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> CacheError + '_ {
    move |cause| CacheError::Io { path: path.to_path_buf(), cause }
}

/// The hex part of a sha256 digest; anything else (which could name a path) is refused.
pub fn sha256_hex(digest: &str) -> Result<&str, CacheError> {
    match digest.strip_prefix("sha256:") {
        Some(hex) if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) => Ok(hex),
        _ => Err(CacheError::Digest(digest.to_string())),
    }
}

#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// `$HOIST_CACHE`, `$XDG_CACHE_HOME/hoist/oci` or `~/.cache/hoist/oci`.
    pub fn default_root() -> PathBuf {
        let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        if let Some(dir) = env("HOIST_CACHE") {
            return dir;
        }
        let base = env("XDG_CACHE_HOME")
            .or_else(|| env("HOME").map(|h| h.join(".cache")))
            .unwrap_or_else(|| PathBuf::from("/var/cache"));
        base.join("hoist/oci")
    }

    /// Opens the cache at `root`, making its directories and `oci-layout` if missing.
    pub fn open(root: &Path) -> Result<Cache, CacheError> {
        for dir in [root.to_path_buf(), root.join("blobs"), root.join("blobs/sha256"), root.join("tmp")] {
            match fs::symlink_metadata(&dir) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(CacheError::NotADir { path: dir }),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir_all(&dir).map_err(io_at(&dir))?;
                    // Another writer may have raced us to it; what is there must still be a dir.
                    if !fs::symlink_metadata(&dir).map_err(io_at(&dir))?.is_dir() {
                        return Err(CacheError::NotADir { path: dir });
                    }
                }
                Err(e) => return Err(CacheError::Io { path: dir, cause: e }),
            }
        }
        let cache = Cache { root: root.to_path_buf() };
        let layout = root.join("oci-layout");
        if fs::symlink_metadata(&layout).is_err() {
            let mut w = cache.tmp_file()?;
            w.1.write_all(LAYOUT).map_err(io_at(&w.0))?;
            fs::rename(&w.0, &layout).map_err(io_at(&layout))?;
        }
        cache.sweep();
        Ok(cache)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Held by a build or pull from before it pulls until it has read what it pinned:
    /// many at once. [`prune`](crate::prune) takes it alone, so it never removes what a
    /// running build is about to read.
    pub fn lock_shared(&self) -> Result<CacheLock, CacheError> {
        CacheLock::take(&self.root.join(".lock"), libc::LOCK_SH)
    }

    pub fn lock_exclusive(&self) -> Result<CacheLock, CacheError> {
        CacheLock::take(&self.root.join(".lock"), libc::LOCK_EX)
    }

    /// Where the blob `digest` is (or would be) stored.
    pub fn path(&self, digest: &str) -> Result<PathBuf, CacheError> {
        Ok(self.root.join("blobs/sha256").join(sha256_hex(digest)?))
    }

    /// Whether the blob `digest` is cached whole: a regular file whose content hashes to
    /// `digest`. A damaged one is removed, so it is fetched again; a right one that is not
    /// `size` bytes (when given) is an error about the descriptor.
    pub fn has(&self, digest: &str, size: Option<u64>) -> Result<bool, CacheError> {
        let path = self.path(digest)?;
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(CacheError::Io { path, cause: e }),
        };
        let matches = meta.is_file() && hash_file(&path)? == digest;
        if !matches {
            log::warn!("cache: {} is damaged; removing it to fetch it again", path.display());
            fs::remove_file(&path).map_err(io_at(&path))?;
            return Ok(false);
        }
        // The blob is right: a descriptor that says another size is wrong, not the cache
        // (and another image's descriptor must not make us drop it).
        match size.filter(|s| *s != meta.len()) {
            Some(size) => Err(CacheError::Size { digest: digest.to_string(), size, actual: meta.len() }),
            None => Ok(true),
        }
    }

    /// Reads a small cached blob (a manifest or index), checked against its digest; one
    /// larger than `limit` is an error, a damaged one is removed (`None`, as if missing).
    pub fn read(&self, digest: &str, limit: u64) -> Result<Option<Vec<u8>>, CacheError> {
        let path = self.path(digest)?;
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(CacheError::Io { path, cause: e }),
        };
        // Bigger than asked for (a layer, say): refused before a byte is read or hashed.
        if meta.is_file() && meta.len() > limit {
            return Err(CacheError::TooLong { digest: digest.to_string(), size: limit });
        }
        let mut data = Vec::new();
        if meta.is_file() {
            let file = open_nofollow(&path)?;
            file.take(limit.saturating_add(1)).read_to_end(&mut data).map_err(io_at(&path))?;
        }
        // Read once and hashed once; not what its name says (or not a file): damaged, removed.
        if !meta.is_file() || data.len() as u64 > limit || format!("sha256:{:x}", Sha256::digest(&data)) != digest {
            log::warn!("cache: {} is damaged; removing it to fetch it again", path.display());
            fs::remove_file(&path).map_err(io_at(&path))?;
            return Ok(None);
        }
        Ok(Some(data))
    }

    /// A writer for the blob `digest` of `size` bytes (when known).
    pub fn writer(&self, digest: &str, size: Option<u64>) -> Result<BlobWriter, CacheError> {
        sha256_hex(digest)?;
        let (path, file) = self.tmp_file()?;
        Ok(BlobWriter {
            cache: self.clone(),
            digest: digest.to_string(),
            size,
            tmp: Some(path),
            file,
            hash: Sha256::new(),
            written: 0,
        })
    }

    /// Stores `data` as the blob `digest` (verified).
    pub fn put(&self, digest: &str, data: &[u8]) -> Result<(), CacheError> {
        let mut w = self.writer(digest, Some(data.len() as u64))?;
        w.write(data)?;
        w.finish()
    }

    /// Number of blobs and their bytes.
    pub fn usage(&self) -> Result<(u64, u64), CacheError> {
        let dir = self.root.join("blobs/sha256");
        let (mut count, mut bytes) = (0, 0);
        for entry in fs::read_dir(&dir).map_err(io_at(&dir))? {
            let meta = entry.and_then(|e| e.metadata()).map_err(io_at(&dir))?;
            if meta.is_file() {
                count += 1;
                bytes += meta.len();
            }
        }
        Ok((count, bytes))
    }

    /// A new temporary file in `ROOT/tmp` (made, never opened if it existed).
    pub(crate) fn tmp_file(&self) -> Result<(PathBuf, File), CacheError> {
        let tmp = self.root.join("tmp");
        for attempt in 0u32..100 {
            let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
            let path = tmp.join(format!("{}-{nanos:x}-{attempt}", std::process::id()));
            match OpenOptions::new().write(true).create_new(true).mode(0o644).open(&path) {
                Ok(f) => return Ok((path, f)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(CacheError::Io { path, cause: e }),
            }
        }
        Err(CacheError::Io { path: tmp, cause: io::Error::other("no free temporary name") })
    }

    /// Removes temporary files a crashed writer left (a day old: a running pull's are newer).
    fn sweep(&self) {
        let tmp = self.root.join("tmp");
        let Ok(entries) = fs::read_dir(&tmp) else { return };
        let now = SystemTime::now();
        for entry in entries.flatten() {
            let old = entry
                .metadata()
                .ok()
                .and_then(|m| m.modified().ok())
                .is_some_and(|t| now.duration_since(t).is_ok_and(|age| age > STALE_TMP));
            if old {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// An flock(2) on a file of the cache, released when dropped (or when the process ends).
pub struct CacheLock {
    _file: File,
}

impl CacheLock {
    pub(crate) fn take(path: &Path, how: libc::c_int) -> Result<CacheLock, CacheError> {
        use std::os::fd::AsRawFd;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(io_at(path))?;
        loop {
            // SAFETY: flock on a descriptor this function owns; no memory is passed.
            let rc = unsafe { libc::flock(file.as_raw_fd(), how) };
            if rc == 0 {
                return Ok(CacheLock { _file: file });
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(CacheError::Io { path: path.to_path_buf(), cause: e });
            }
        }
    }
}

/// A blob on its way into the cache: hashed and counted as it is written, refused past its
/// size, and renamed into place by [`BlobWriter::finish`] only if it is whole and matches.
/// Dropped unfinished, it leaves nothing.
pub struct BlobWriter {
    cache: Cache,
    digest: String,
    size: Option<u64>,
    tmp: Option<PathBuf>,
    file: File,
    hash: Sha256,
    written: u64,
}

impl BlobWriter {
    pub fn write(&mut self, data: &[u8]) -> Result<(), CacheError> {
        self.written += data.len() as u64;
        if let Some(size) = self.size.filter(|s| self.written > *s) {
            return Err(CacheError::TooLong { digest: self.digest.clone(), size });
        }
        self.hash.update(data);
        let path = self.tmp.clone().unwrap_or_default();
        self.file.write_all(data).map_err(io_at(&path))
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    pub fn finish(mut self) -> Result<(), CacheError> {
        if let Some(size) = self.size.filter(|s| *s != self.written) {
            return Err(CacheError::Size { digest: self.digest.clone(), size, actual: self.written });
        }
        let actual = format!("sha256:{:x}", std::mem::take(&mut self.hash).finalize());
        if actual != self.digest {
            return Err(CacheError::Mismatch { expected: self.digest.clone(), actual });
        }
        let tmp = self.tmp.take().unwrap_or_default();
        self.file.sync_all().map_err(io_at(&tmp))?;
        let dest = self.cache.path(&self.digest)?;
        fs::rename(&tmp, &dest).map_err(io_at(&dest))
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            let _ = fs::remove_file(tmp);
        }
    }
}

fn open_nofollow(path: &Path) -> Result<File, CacheError> {
    OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path).map_err(io_at(path))
}

fn hash_file(path: &Path) -> Result<String, CacheError> {
    let mut file = open_nofollow(path)?;
    if !file.metadata().map_err(io_at(path))?.is_file() {
        return Ok(String::new());
    }
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(io_at(path))?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
    }
    Ok(format!("sha256:{:x}", hash.finalize()))
}

#[cfg(test)]
mod tests;
