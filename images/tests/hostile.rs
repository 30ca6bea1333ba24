//! Hostile image sources: files that are not what a layout or archive should hold (FIFOs,
//! devices, symlinks out), and layers built to cost far more than they weigh (gzip bombs,
//! sparse files, size claims in headers). Each must end in an error, quickly, without
//! hanging or allocating what the input claims.

use std::fs;
use std::io::Read as _;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use hoist_config::ImageSource;
use hoist_images::oci::{Limits, OciError, import_docker_archive, import_oci_layout, import_with};
use serde_json::json;

mod common;
use common::{blob, gzip, sha256};

const TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// A one-image layout at `dir` whose one layer is `tar`, stored as `media_type`; returns
/// the path of the layer blob.
fn layout(dir: &Path, media_type: &str, tar: &[u8]) -> PathBuf {
    let stored = if media_type == TAR { tar.to_vec() } else { gzip(tar) };
    let layer = blob(dir, media_type, &stored);
    let config = json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": { "type": "layers", "diff_ids": [sha256(tar)] },
    });
    let config = blob(dir, "application/vnd.oci.image.config.v1+json", config.to_string().as_bytes());
    let manifest = json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config, "layers": [layer.clone()],
    });
    let manifest = blob(dir, "application/vnd.oci.image.manifest.v1+json", manifest.to_string().as_bytes());
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("oci-layout");
    fs::write(dir.join("index.json"), json!({ "schemaVersion": 2, "manifests": [manifest] }).to_string())
        .expect("index.json");
    dir.join("blobs/sha256").join(&layer["digest"].as_str().expect("digest")[7..])
}

fn small_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(5);
    b.append_data(&mut h, "etc/hostname", &b"hoist"[..]).expect("append");
    b.into_inner().expect("tar")
}

/// Runs `f` on another thread and waits at most 20 s for it: an import that blocks on a
/// FIFO fails the test instead of hanging it.
fn within_deadline<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(value) => value,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("import still blocked after 20 s"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("the import thread panicked (above)"),
    }
}

fn import_err(dir: &Path) -> OciError {
    let dir = dir.to_path_buf();
    within_deadline(move || import_oci_layout(&dir, None).map(|_| ()).expect_err("hostile layout imported"))
}

fn mkfifo(path: &Path) {
    let _ = fs::remove_file(path);
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o644)).expect("mkfifo");
}

fn expect_bad(err: &OciError, path: &Path, reason: &str) {
    match err {
        OciError::BadPath { path: p, reason: r } if p == path && *r == reason => {}
        other => panic!("expected {}: {reason}, got {other:?}", path.display()),
    }
}

#[test]
fn fifos_in_a_layout_are_refused_without_blocking() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let layer = layout(tmp.path(), TAR_GZIP, &small_tar());
    import_oci_layout(tmp.path(), None).expect("the layout is good before");
    mkfifo(&layer);
    expect_bad(&import_err(tmp.path()), &layer, "not a regular file");
    let index = tmp.path().join("index.json");
    mkfifo(&index);
    expect_bad(&import_err(tmp.path()), &index, "not a regular file");
}

#[test]
fn a_fifo_as_a_docker_archive_is_refused_without_blocking() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let archive = tmp.path().join("image.tar");
    mkfifo(&archive);
    let err = within_deadline(move || import_docker_archive(&archive, None).map(|_| ()).expect_err("fifo"));
    assert!(matches!(err, OciError::BadPath { reason: "not a regular file", .. }), "{err:?}");
}

#[test]
fn symlinks_out_of_a_layout_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("layout");
    let layer = layout(&dir, TAR_GZIP, &small_tar());
    // Copies outside the layout, with the right content: only the symlink is wrong.
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).expect("outside");
    for (inside, name) in [(&layer, "layer"), (&dir.join("index.json"), "index.json")] {
        let copy = outside.join(name);
        fs::copy(inside, &copy).expect("copy out");
        fs::remove_file(inside).expect("remove");
        symlink(&copy, inside).expect("symlink out");
        expect_bad(&import_err(&dir), inside, "is a symlink");
        fs::remove_file(inside).expect("remove symlink");
        fs::copy(&copy, inside).expect("copy back");
    }
    import_oci_layout(&dir, None).expect("good again");
    fs::rename(dir.join("blobs"), outside.join("blobs")).expect("move blobs out");
    symlink(outside.join("blobs"), dir.join("blobs")).expect("symlink blobs");
    expect_bad(&import_err(&dir), &dir.join("blobs"), "is a symlink");
}

#[test]
fn a_device_as_index_json_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    layout(tmp.path(), TAR_GZIP, &small_tar());
    let index = tmp.path().join("index.json");
    fs::remove_file(&index).expect("remove");
    use nix::sys::stat::{Mode, SFlag, makedev, mknod};
    // /dev/zero's numbers: read by path, it never ends.
    if let Err(e) = mknod(&index, SFlag::S_IFCHR, Mode::from_bits_truncate(0o644), makedev(1, 5)) {
        eprintln!("SKIPPED a_device_as_index_json_is_refused: mknod needs CAP_MKNOD ({e})");
        return;
    }
    expect_bad(&import_err(tmp.path()), &index, "not a regular file");
}

/// A tar holding one file of `size` zero bytes.
fn zeros_tar(size: u64) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(size);
    b.append_data(&mut h, "zeros", std::io::repeat(0).take(size)).expect("append");
    b.into_inner().expect("tar")
}

#[test]
fn a_gzip_bomb_stops_at_the_cap() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // 32 MiB of zeros in about 32 KiB of gzip, against a 1 MiB cap.
    layout(tmp.path(), TAR_GZIP, &zeros_tar(32 << 20));
    let source = ImageSource::Oci { dir: tmp.path().to_path_buf(), tag: None };
    let limits = Limits { bytes: 1 << 20, ..Limits::default() };
    let err = import_with(&source, &limits).expect_err("bomb");
    assert!(matches!(err, OciError::TooBig { limit, .. } if limit == 1 << 20), "{err:?}");
    assert_eq!(err.to_string(), "unpacks to more than 1 MiB (the cap per image)");
    import_with(&source, &Limits { bytes: 33 << 20, ..Limits::default() }).expect("fits a larger cap");
}

/// Writes a big-endian base-256 number into a tar numeric field, as GNU tar does for
/// values too large for octal.
fn base256(field: &mut [u8], value: u64) {
    field.fill(0);
    field[0] = 0x80;
    let n = field.len();
    field[n - 8..].copy_from_slice(&value.to_be_bytes());
}

#[test]
fn a_sparse_file_counts_at_its_full_size() {
    // One old-GNU sparse entry: 512 stored bytes at the end of a 64 GiB file.
    let logical: u64 = 64 << 30;
    let mut h = tar::Header::new_gnu();
    h.set_path("sparse").expect("path");
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::GNUSparse);
    h.set_size(512);
    let gnu = h.as_gnu_mut().expect("gnu header");
    base256(&mut gnu.realsize, logical);
    base256(&mut gnu.sparse[0].offset, logical - 512);
    base256(&mut gnu.sparse[0].numbytes, 512);
    h.set_cksum();
    let mut tar = h.as_bytes().to_vec();
    tar.extend_from_slice(&[7u8; 512]);
    tar.extend_from_slice(&[0u8; 1024]);
    assert!(tar.len() < 10 << 10);

    let tmp = tempfile::tempdir().expect("tempdir");
    layout(tmp.path(), TAR, &tar);
    let err = import_err(tmp.path());
    assert!(matches!(err, OciError::TooBig { .. }), "{err:?}");
}

#[test]
fn a_member_claiming_4_tib_is_an_error_not_an_abort() {
    // In a layer: the claim is more than the cap, refused before a byte is read.
    let mut h = tar::Header::new_gnu();
    h.set_path("huge").expect("path");
    h.set_mode(0o644);
    h.set_size(4 << 40);
    h.set_cksum();
    let mut tar = h.as_bytes().to_vec();
    tar.extend_from_slice(&[0u8; 4096]);
    let tmp = tempfile::tempdir().expect("tempdir");
    layout(tmp.path(), TAR, &tar);
    let err = import_err(tmp.path());
    assert!(matches!(err, OciError::TooBig { .. }), "{err:?}");

    // In a docker archive: manifest.json's header claims 4 TiB.
    let archive = tmp.path().join("image.tar");
    let mut h = tar::Header::new_gnu();
    h.set_path("manifest.json").expect("path");
    h.set_mode(0o644);
    h.set_size(4 << 40);
    h.set_cksum();
    let mut data = h.as_bytes().to_vec();
    data.extend_from_slice(b"[]");
    fs::write(&archive, &data).expect("archive");
    let err = within_deadline(move || import_docker_archive(&archive, None).map(|_| ()).expect_err("claim"));
    assert!(matches!(err, OciError::TooLargeJson { .. }), "{err:?}");
}
