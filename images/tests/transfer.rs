//! The blobs `hoist apply` sends: from layouts made by `create_oci_layout` and from a
//! `docker save`-style archive; digests agree with import, bytes agree with digests,
//! tampering is refused, tags select.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use hoist_config::ImageSource;
use hoist_images::oci::{self, BlobData, BlobKind, ImageConfig, OciError, Transfer, create_oci_layout};
use hoist_images::tree::Tree;
use serde_json::{Value, json};

mod common;
use common::{gzip, sha256};

fn tree(text: &str) -> Tree {
    let mut t = Tree::new();
    t.insert_dir("etc", 0o755);
    t.insert_file("etc/motd", 0o644, text.as_bytes().to_vec());
    t.insert_file("bin/app", 0o755, vec![7u8; 5000]);
    t
}

fn config() -> ImageConfig {
    ImageConfig { cmd: vec!["/bin/app".into()], ..ImageConfig::default() }
}

fn oci(dir: &Path, tag: Option<&str>) -> ImageSource {
    ImageSource::Oci { dir: dir.to_path_buf(), tag: tag.map(String::from) }
}

fn bytes(data: &BlobData) -> Vec<u8> {
    let mut out = Vec::new();
    data.open().expect("open blob").read_to_end(&mut out).expect("read blob");
    out
}

/// Every blob yields exactly `size` bytes hashing to its digest.
fn assert_blobs_hash(t: &Transfer) {
    for b in &t.blobs {
        let data = bytes(&b.data);
        assert_eq!(data.len() as u64, b.size, "{}", b.digest);
        assert_eq!(sha256(&data), b.digest);
    }
}

fn blob_file(dir: &Path, digest: &str) -> PathBuf {
    dir.join("blobs/sha256").join(&digest[7..])
}

#[test]
fn layout_blobs_are_the_manifest_config_and_layers_import_reads() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("layout");
    let created = create_oci_layout(&dir, "v1", &tree("hi"), &config()).expect("create");

    let t = oci::blobs(&oci(&dir, Some("v1"))).expect("blobs");
    // The image digest is the one import gives (and `hoist apply` sends in `images`).
    let imported = oci::import(&oci(&dir, Some("v1"))).expect("import");
    assert_eq!(imported.digest, created);
    assert_eq!(t.image, imported.digest);
    assert_eq!(t.manifest, t.image);
    let kinds: Vec<BlobKind> = t.blobs.iter().map(|b| b.kind).collect();
    assert_eq!(kinds, [BlobKind::Manifest, BlobKind::Config, BlobKind::Layer]);
    assert_eq!(t.blobs[0].digest, t.manifest);
    assert_eq!(t.blobs[0].media_type, "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(t.blobs[1].media_type, "application/vnd.oci.image.config.v1+json");
    assert_eq!(t.blobs[2].media_type, "application/vnd.oci.image.layer.v1.tar+gzip");
    assert_blobs_hash(&t);
    // Exactly as stored: the manifest's own descriptors name the other blobs.
    for b in &t.blobs {
        assert_eq!(bytes(&b.data), fs::read(blob_file(&dir, &b.digest)).expect("stored blob"));
    }
    let manifest: Value = serde_json::from_slice(&bytes(&t.blobs[0].data)).expect("manifest json");
    assert_eq!(manifest["config"]["digest"], t.blobs[1].digest.as_str());
    assert_eq!(manifest["layers"][0]["digest"], t.blobs[2].digest.as_str());
    assert_eq!(t.size(), t.blobs.iter().map(|b| b.size).sum::<u64>());
    // Without a tag, the only image.
    assert_eq!(oci::blobs(&oci(&dir, None)).expect("untagged").image, created);
}

#[test]
fn a_tampered_layout_blob_is_refused() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("layout");
    create_oci_layout(&dir, "v1", &tree("hi"), &config()).expect("create");
    let t = oci::blobs(&oci(&dir, None)).expect("blobs");
    let layer = blob_file(&dir, &t.blobs[2].digest);
    let good = fs::read(&layer).expect("layer");

    let mut flipped = good.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    fs::write(&layer, &flipped).expect("tamper");
    let err = oci::blobs(&oci(&dir, None)).expect_err("flipped byte");
    assert!(matches!(err, OciError::DigestMismatch { what: "layer", .. }), "{err}");

    fs::write(&layer, &good[..good.len() - 1]).expect("truncate");
    let err = oci::blobs(&oci(&dir, None)).expect_err("truncated");
    assert!(matches!(err, OciError::SizeMismatch { what: "layer", .. }), "{err}");

    fs::write(&layer, &good).expect("restore");
    let config = blob_file(&dir, &t.blobs[1].digest);
    let mut text = fs::read(&config).expect("config");
    text[0] = b' ';
    fs::write(&config, &text).expect("tamper config");
    let err = oci::blobs(&oci(&dir, None)).expect_err("config");
    assert!(matches!(err, OciError::DigestMismatch { what: "config", .. }), "{err}");
}

#[test]
fn a_two_image_layout_is_picked_by_tag() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (a, b, both) = (tmp.path().join("a"), tmp.path().join("b"), tmp.path().join("both"));
    let digest_a = create_oci_layout(&a, "alpha", &tree("a"), &config()).expect("create a");
    let digest_b = create_oci_layout(&b, "beta", &tree("b"), &config()).expect("create b");
    // One layout holding both: their blobs together, both manifests in the index.
    fs::create_dir_all(both.join("blobs/sha256")).expect("mkdir");
    let mut manifests = Vec::new();
    for dir in [&a, &b] {
        for entry in fs::read_dir(dir.join("blobs/sha256")).expect("blobs") {
            let entry = entry.expect("entry");
            fs::copy(entry.path(), both.join("blobs/sha256").join(entry.file_name())).expect("copy");
        }
        let index: Value = serde_json::from_slice(&fs::read(dir.join("index.json")).expect("index")).expect("json");
        manifests.push(index["manifests"][0].clone());
    }
    fs::copy(a.join("oci-layout"), both.join("oci-layout")).expect("oci-layout");
    fs::write(both.join("index.json"), json!({ "schemaVersion": 2, "manifests": manifests }).to_string())
        .expect("index");

    let alpha = oci::blobs(&oci(&both, Some("alpha"))).expect("alpha");
    let beta = oci::blobs(&oci(&both, Some("beta"))).expect("beta");
    assert_eq!(alpha.image, digest_a);
    assert_eq!(beta.image, digest_b);
    assert_eq!(beta.image, oci::import(&oci(&both, Some("beta"))).expect("import").digest);
    assert_ne!(alpha.blobs[2].digest, beta.blobs[2].digest);
    assert_blobs_hash(&beta);
    let err = oci::blobs(&oci(&both, None)).expect_err("no tag");
    assert!(matches!(err, OciError::NoTagGiven { .. }), "{err}");
    let err = oci::blobs(&oci(&both, Some("gamma"))).expect_err("unknown tag");
    assert!(matches!(err, OciError::NoSuchTag { .. }), "{err}");
}

fn tar_with(path: &str, data: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    b.append_data(&mut h, path, data).expect("tar entry");
    b.into_inner().expect("tar")
}

/// A `docker save`-style archive of one image with three layers: a plain tar, a gzipped
/// one, and the first again through a symlink. Returns the uncompressed and stored layers.
fn docker_archive(path: &Path) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let tars = vec![tar_with("etc/os", b"base"), tar_with("bin/sh", &[3u8; 4000])];
    let stored = vec![tars[0].clone(), gzip(&tars[1])];
    let diff_ids = [sha256(&tars[0]), sha256(&tars[1]), sha256(&tars[0])];
    let config = json!({
        "architecture": "amd64", "os": "linux", "config": { "Cmd": ["sh"] },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    })
    .to_string();
    let config_name = format!("{}.json", &sha256(config.as_bytes())[7..]);
    let manifest = json!([{
        "Config": config_name, "RepoTags": ["app:1"],
        "Layers": ["l0/layer.tar", "l1/layer.tar", "l2/layer.tar"],
    }])
    .to_string();
    let mut b = tar::Builder::new(fs::File::create(path).expect("archive"));
    let members = [
        ("l0/layer.tar", &stored[0][..]),
        ("l1/layer.tar", &stored[1][..]),
        (config_name.as_str(), config.as_bytes()),
        ("manifest.json", manifest.as_bytes()),
    ];
    for (name, data) in members {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, data).expect("member");
    }
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "l2/layer.tar", "../l0/layer.tar").expect("link");
    b.finish().expect("finish archive");
    (tars, stored)
}

#[test]
fn a_docker_archive_travels_under_a_made_manifest() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let file = tmp.path().join("app.tar");
    let (_, stored) = docker_archive(&file);
    let source = ImageSource::DockerArchive { file: file.clone(), reference: Some("app:1".into()) };

    let t = oci::blobs(&source).expect("blobs");
    assert_eq!(t.image, oci::import(&source).expect("import").digest);
    let kinds: Vec<BlobKind> = t.blobs.iter().map(|b| b.kind).collect();
    // The repeated layer is sent once.
    assert_eq!(kinds, [BlobKind::Manifest, BlobKind::Config, BlobKind::Layer, BlobKind::Layer]);
    assert_blobs_hash(&t);
    assert_eq!(t.blobs[1].digest, t.image);
    assert_eq!(bytes(&t.blobs[2].data), stored[0]);
    assert_eq!(bytes(&t.blobs[3].data), stored[1]);
    assert!(matches!(t.blobs[2].data, BlobData::File { .. }), "layers stay in the archive");

    let manifest = bytes(&t.blobs[0].data);
    assert_eq!(t.manifest, sha256(&manifest));
    assert_eq!(t.blobs[0].media_type, "application/vnd.oci.image.manifest.v1+json");
    let layer = |media_type: &str, data: &[u8]| {
        format!(r#"{{"mediaType":"{media_type}","digest":"{}","size":{}}}"#, sha256(data), data.len())
    };
    let expected = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{},{},{}]}}"#,
        t.image,
        t.blobs[1].size,
        layer("application/vnd.oci.image.layer.v1.tar", &stored[0]),
        layer("application/vnd.oci.image.layer.v1.tar+gzip", &stored[1]),
        layer("application/vnd.oci.image.layer.v1.tar", &stored[0]),
    );
    assert_eq!(String::from_utf8(manifest).expect("utf-8"), expected);
    // Deterministic: the same archive gives the same manifest.
    assert_eq!(oci::blobs(&source).expect("again").manifest, t.manifest);
}

#[test]
fn a_docker_layer_not_matching_its_diff_id_is_refused() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let file = tmp.path().join("app.tar");
    docker_archive(&file);
    // Flip a byte inside the first (uncompressed) layer's data, past its tar header.
    let mut data = fs::read(&file).expect("archive");
    let at = data.windows(4).position(|w| w == b"base").expect("layer data");
    data[at] = b'B';
    fs::write(&file, &data).expect("tamper");
    let source = ImageSource::DockerArchive { file, reference: None };
    let err = oci::blobs(&source).expect_err("tampered layer");
    assert!(matches!(err, OciError::DigestMismatch { what: "layer", .. }), "{err}");
}

#[test]
fn a_directory_cannot_be_sent() {
    let err = oci::blobs(&ImageSource::Dir { dir: "/images/web".into() }).expect_err("dir");
    assert_eq!(
        err.to_string(),
        "/images/web: a plain directory cannot be sent to a running host; make an OCI layout with `hoist image create`"
    );
}
