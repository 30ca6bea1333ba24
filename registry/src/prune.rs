//! `hoist image prune`: removes from the cache every blob that no lock file needs. The
//! cache remembers the lock files that builds read or wrote (`ROOT/locks`, one absolute
//! path a line); a lock that is gone no longer counts. What a pin needs is its blob and,
//! through it, every manifest of an index that is cached, and their configs and layers.
//! Images pulled by hand (`hoist image pull`) and never locked are removed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::cache::{Cache, CacheError};
use crate::lock::Lock;
use crate::manifest::{Document, MAX_JSON};

const LOCKS: &str = "locks";

/// What a prune found and did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub locks: Vec<PathBuf>,
    pub kept: u64,
    pub kept_bytes: u64,
    pub removed: u64,
    pub removed_bytes: u64,
}

/// Remembers `lock` (made absolute) as one whose pins the cache must keep.
pub fn remember(cache: &Cache, lock: &Path) -> Result<(), CacheError> {
    let lock = std::path::absolute(lock).map_err(|cause| CacheError::Io { path: lock.to_path_buf(), cause })?;
    // Builds remember their locks side by side: one read-modify-write at a time.
    let _list = crate::cache::CacheLock::take(&cache.root().join(".locks.lock"), libc::LOCK_EX)?;
    let mut known = known_locks(cache);
    if known.contains(&lock) {
        return Ok(());
    }
    known.push(lock);
    write_locks(cache, &known)
}

fn known_locks(cache: &Cache) -> Vec<PathBuf> {
    let text = std::fs::read_to_string(cache.root().join(LOCKS)).unwrap_or_default();
    text.lines().filter(|l| l.starts_with('/')).map(PathBuf::from).collect()
}

fn write_locks(cache: &Cache, locks: &[PathBuf]) -> Result<(), CacheError> {
    let text: String = locks.iter().map(|p| format!("{}\n", p.display())).collect();
    use std::io::Write;
    let path = cache.root().join(LOCKS);
    let (tmp, mut file) = cache.tmp_file()?;
    let written = file.write_all(text.as_bytes()).and_then(|()| file.sync_all());
    match written.and_then(|()| std::fs::rename(&tmp, &path)) {
        Ok(()) => Ok(()),
        Err(cause) => {
            let _ = std::fs::remove_file(&tmp);
            Err(CacheError::Io { path, cause })
        }
    }
}

/// Every blob the pins `digests` need that the cache holds.
pub fn needed(cache: &Cache, digests: impl IntoIterator<Item = String>) -> Result<BTreeSet<String>, CacheError> {
    let mut keep = BTreeSet::new();
    let mut todo: Vec<String> = digests.into_iter().collect();
    while let Some(digest) = todo.pop() {
        if !keep.insert(digest.clone()) {
            continue;
        }
        // A blob that is not cached, or too big or not JSON (a layer), ends the walk
        // there; an error reading one stops the prune rather than drop what it needs.
        let data = match cache.read(&digest, MAX_JSON as u64) {
            Ok(Some(data)) => data,
            Ok(None) | Err(CacheError::TooLong { .. } | CacheError::Size { .. }) => continue,
            Err(e) => return Err(e),
        };
        let Ok(doc) = Document::parse(&digest, &data) else { continue };
        todo.extend(doc.manifests.iter().flatten().map(|d| d.digest.clone()));
        todo.extend(doc.config.iter().chain(&doc.layers).map(|d| d.digest.clone()));
    }
    Ok(keep)
}

/// Removes (or with `dry_run`, counts) the blobs no remembered lock needs.
pub fn prune(cache: &Cache, dry_run: bool) -> Result<Report, String> {
    // Alone: no build is between pulling and reading what it pinned.
    let _alone = cache.lock_exclusive().map_err(|e| e.to_string())?;
    let _list =
        crate::cache::CacheLock::take(&cache.root().join(".locks.lock"), libc::LOCK_EX).map_err(|e| e.to_string())?;
    let mut report = Report::default();
    let mut pins = Vec::new();
    for path in known_locks(cache) {
        match Lock::load(&path) {
            Ok(lock) if path.exists() => {
                pins.extend(lock.images.into_values());
                report.locks.push(path);
            }
            Ok(_) => {}
            Err(e) => return Err(format!("{e} (fix or remove it: its pins would be pruned)")),
        }
    }
    let keep = needed(cache, pins).map_err(|e| e.to_string())?;
    let dir = cache.root().join("blobs/sha256");
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let size = entry.metadata().map_or(0, |m| m.len());
        if keep.contains(&format!("sha256:{name}")) {
            report.kept += 1;
            report.kept_bytes += size;
            continue;
        }
        if !dry_run {
            std::fs::remove_file(entry.path()).map_err(|e| format!("{}: {e}", entry.path().display()))?;
        }
        report.removed += 1;
        report.removed_bytes += size;
    }
    if !dry_run {
        write_locks(cache, &report.locks).map_err(|e| e.to_string())?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use sha2::Digest;

    use super::*;

    fn put(cache: &Cache, data: &[u8]) -> String {
        let digest = format!("sha256:{:x}", sha2::Sha256::digest(data));
        cache.put(&digest, data).expect("put");
        digest
    }

    #[test]
    fn only_what_a_remembered_lock_needs_stays() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let cache = Cache::open(&tmp.path().join("cache")).expect("cache");
        let layer = put(&cache, b"layer");
        let config = put(&cache, b"{}");
        let manifest = format!(
            r#"{{"config": {{"digest": "{config}", "size": 2}}, "layers": [{{"digest": "{layer}", "size": 5}}]}}"#
        );
        let manifest = put(&cache, manifest.as_bytes());
        let index = format!(r#"{{"manifests": [{{"digest": "{manifest}", "size": 1}}]}}"#);
        let index = put(&cache, index.as_bytes());
        let stray = put(&cache, b"pulled by hand");

        let lock_path = tmp.path().join("host.lock");
        let mut lock = Lock::default();
        lock.images.insert("docker.io/library/nginx:1".into(), index.clone());
        lock.save(&lock_path, "host.toml").expect("save");
        remember(&cache, &lock_path).expect("remember");
        remember(&cache, &lock_path).expect("remember twice");

        let dry = prune(&cache, true).expect("dry run");
        assert_eq!((dry.kept, dry.removed), (4, 1));
        assert!(cache.has(&stray, None).expect("has"), "a dry run removed something");
        let report = prune(&cache, false).expect("prune");
        assert_eq!(report.locks, [std::path::absolute(&lock_path).expect("absolute")]);
        assert_eq!((report.kept, report.removed, report.removed_bytes), (4, 1, 14));
        for d in [&layer, &config, &manifest, &index] {
            assert!(cache.has(d, None).expect("has"), "{d} was pruned");
        }
        assert!(!cache.has(&stray, None).expect("has"));

        // The lock gone: nothing is needed any more, and it is forgotten.
        std::fs::remove_file(&lock_path).expect("rm");
        let report = prune(&cache, false).expect("prune");
        assert_eq!((report.kept, report.removed), (0, 4));
        assert!(known_locks(&cache).is_empty());
    }
}
