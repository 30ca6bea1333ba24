use super::*;

fn digest_of(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

#[test]
fn a_blob_enters_only_whole_and_matching() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = Cache::open(&dir.path().join("c")).expect("open");
    assert!(dir.path().join("c/oci-layout").is_file());
    let data = b"layer bytes";
    let digest = digest_of(data);
    assert!(!cache.has(&digest, Some(data.len() as u64)).expect("has"));

    // Wrong content under the right name: refused, nothing left behind.
    let mut w = cache.writer(&digest, Some(data.len() as u64)).expect("writer");
    w.write(b"layer bytez").expect("write");
    assert!(matches!(w.finish(), Err(CacheError::Mismatch { .. })));
    // Longer than the descriptor: refused while writing.
    let mut w = cache.writer(&digest, Some(3)).expect("writer");
    assert!(matches!(w.write(data), Err(CacheError::TooLong { .. })));
    drop(w);
    // Shorter: refused at the end.
    let mut w = cache.writer(&digest, Some(100)).expect("writer");
    w.write(data).expect("write");
    assert!(matches!(w.finish(), Err(CacheError::Size { .. })));
    assert_eq!(std::fs::read_dir(dir.path().join("c/tmp")).expect("tmp").count(), 0, "temporary files left");
    assert!(!cache.has(&digest, None).expect("has"));

    cache.put(&digest, data).expect("put");
    assert!(cache.has(&digest, Some(data.len() as u64)).expect("has"));
    assert_eq!(cache.read(&digest, 1024).expect("read").as_deref(), Some(&data[..]));
    assert_eq!(cache.usage().expect("usage"), (1, data.len() as u64));
}

#[test]
fn a_damaged_blob_is_not_trusted_and_is_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = Cache::open(dir.path()).expect("open");
    let digest = digest_of(b"good");
    cache.put(&digest, b"good").expect("put");
    std::fs::write(cache.path(&digest).expect("path"), b"bad!").expect("damage");
    assert!(!cache.has(&digest, Some(4)).expect("has"));
    assert!(!cache.path(&digest).expect("path").exists(), "the damaged blob stays");
}

#[test]
fn symlinks_and_odd_digests_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).expect("mkdir");
    std::os::unix::fs::symlink(&elsewhere, dir.path().join("link")).expect("symlink");
    assert!(matches!(Cache::open(&dir.path().join("link")), Err(CacheError::NotADir { .. })));

    let cache = Cache::open(&dir.path().join("c")).expect("open");
    for bad in ["sha256:../../etc/passwd", "sha512:00", "sha256:ABC", ""] {
        assert!(matches!(cache.path(bad), Err(CacheError::Digest(_))), "{bad}");
    }
    // A symlink planted where a blob goes is not followed, and is not a blob.
    let digest = digest_of(b"x");
    std::fs::write(dir.path().join("target"), b"x").expect("write");
    std::os::unix::fs::symlink(dir.path().join("target"), cache.path(&digest).expect("path")).expect("plant");
    assert!(!cache.has(&digest, None).expect("has"));
    assert_eq!(std::fs::read(dir.path().join("target")).expect("target"), b"x");
}

#[test]
fn a_shared_hold_keeps_an_exclusive_one_out_until_dropped() {
    use std::os::fd::AsRawFd;
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = Cache::open(dir.path()).expect("open");
    let try_exclusive = || {
        let f = std::fs::OpenOptions::new().read(true).open(dir.path().join(".lock")).expect("lock file");
        // SAFETY: flock on a descriptor this closure owns.
        unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
    };
    let held = cache.lock_shared().expect("shared");
    let other = cache.lock_shared().expect("a second build shares it");
    assert!(!try_exclusive(), "a prune could start while builds hold the cache");
    drop((held, other));
    assert!(try_exclusive());
    let _alone = cache.lock_exclusive().expect("exclusive");
}
