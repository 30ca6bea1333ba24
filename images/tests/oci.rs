//! Image import/export: round trips through `create_oci_layout`, hand-built OCI layouts and
//! `docker save` archives, tampering, whiteouts, tag selection and directory import.

use std::fs;
use std::path::{Path, PathBuf};

use hoist_images::oci::{
    ImageConfig, OciError, create_layered_oci_layout, create_oci_layout, import_dir, import_docker_archive,
    import_oci_layout,
};
use hoist_images::tree::{Entry, Node, Tree};
use serde_json::{Value, json};

mod common;
use common::{blob, gzip, sha256};

const TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const TAR_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
const DOCKER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

fn sample_tree() -> Tree {
    let mut t = Tree::new();
    t.insert_dir("etc", 0o755);
    t.insert_file("etc/hostname", 0o644, b"hoist\n".to_vec());
    t.insert_file("usr/bin/tool", 0o755, b"#!/bin/sh\necho hi\n".to_vec());
    t.insert_file("usr/bin/su", 0o4755, b"setuid".to_vec());
    t.insert_symlink("bin", "usr/bin");
    t.insert_symlink("etc/long", &"../".repeat(40));
    t.insert("data", Entry { node: Node::Dir { mode: 0o700 }, uid: 1000, gid: 1001 });
    t.insert("dev/null", Entry::root(Node::CharDev { mode: 0o666, major: 1, minor: 3 }));
    let deep = format!("{}/file", "very-long-directory-name".repeat(6));
    t.insert_file(&deep, 0o600, vec![0u8; 3000]);
    t
}

fn sample_config() -> ImageConfig {
    ImageConfig {
        entrypoint: vec!["/usr/bin/tool".into()],
        cmd: vec!["--serve".into(), "8080".into()],
        env: vec!["PATH=/usr/bin".into(), "MODE=test".into()],
        working_dir: "/data".into(),
        user: "1000:1001".into(),
    }
}

fn paths(tree: &Tree) -> Vec<&str> {
    tree.iter().map(|(p, _)| std::str::from_utf8(p).expect("UTF-8 path in this test")).collect()
}

fn file_data<'a>(tree: &'a Tree, path: &str) -> Option<&'a [u8]> {
    match tree.get(path).map(|e| &e.node) {
        Some(Node::File { data, .. }) => Some(data.as_slice()),
        _ => None,
    }
}

// ---- hand-built layers and layouts ----

enum T<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8]),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    /// A name written raw into the header, bypassing the tar crate's checks.
    RawName(&'a [u8]),
}

fn tar_of(entries: &[T]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(0);
        let r = match e {
            T::Dir(p) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                b.append_data(&mut h, p, std::io::empty())
            }
            T::File(p, data) => {
                h.set_size(data.len() as u64);
                b.append_data(&mut h, p, *data)
            }
            T::Symlink(p, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                b.append_link(&mut h, p, target)
            }
            T::Hardlink(p, target) => {
                h.set_entry_type(tar::EntryType::Link);
                b.append_link(&mut h, p, target)
            }
            T::RawName(name) => {
                h.as_old_mut().name[..name.len()].copy_from_slice(name);
                h.set_cksum();
                b.append(&h, std::io::empty())
            }
        };
        r.expect("build tar");
    }
    b.into_inner().expect("finish tar")
}

fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).expect("zstd")
}

/// One layer: (media type, uncompressed tar).
fn layer(media_type: &'static str, tar: Vec<u8>) -> (&'static str, Vec<u8>) {
    (media_type, tar)
}

/// Writes an image (config + layers + manifest) into the layout at `dir`; returns the
/// manifest descriptor. The config's diff_ids are computed from the tars.
fn write_image(dir: &Path, layers: &[(&'static str, Vec<u8>)], run: Value) -> Value {
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for (media_type, tar) in layers {
        let stored = match *media_type {
            TAR => tar.clone(),
            TAR_ZSTD => zstd(tar),
            _ => gzip(tar),
        };
        descs.push(blob(dir, media_type, &stored));
        diff_ids.push(sha256(tar));
    }
    let config = json!({
        "architecture": "amd64", "os": "linux", "config": run,
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    });
    let config = blob(dir, "application/vnd.oci.image.config.v1+json", config.to_string().as_bytes());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config,
        "layers": descs,
    });
    blob(dir, "application/vnd.oci.image.manifest.v1+json", manifest.to_string().as_bytes())
}

fn tagged(mut desc: Value, tag: &str) -> Value {
    desc["annotations"] = json!({ "org.opencontainers.image.ref.name": tag });
    desc
}

fn write_index(dir: &Path, manifests: Vec<Value>) {
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("oci-layout");
    let index = json!({ "schemaVersion": 2, "manifests": manifests });
    fs::write(dir.join("index.json"), index.to_string()).expect("index.json");
}

/// The manifest of a one-image layout, and the path of its blob.
fn manifest_of(dir: &Path) -> (Value, PathBuf) {
    let index: Value = serde_json::from_slice(&fs::read(dir.join("index.json")).expect("index")).expect("index json");
    let digest = index["manifests"][0]["digest"].as_str().expect("digest").to_string();
    let path = dir.join("blobs/sha256").join(&digest[7..]);
    let manifest = serde_json::from_slice(&fs::read(&path).expect("manifest")).expect("json");
    (manifest, path)
}

fn blob_path(dir: &Path, digest: &str) -> PathBuf {
    dir.join("blobs/sha256").join(&digest[7..])
}

// ---- create / import round trip ----

#[test]
fn create_then_import_round_trips() {
    let tmp = tempdir();
    let out = tmp.path().join("layout");
    let (tree, config) = (sample_tree(), sample_config());
    let digest = create_oci_layout(&out, "v1", &tree, &config).expect("create");

    let image = import_oci_layout(&out, Some("v1")).expect("import");
    assert_eq!(image.rootfs, tree);
    assert_eq!(image.config, config);
    assert_eq!(image.digest, digest);
    // Without a tag, the only image is taken.
    assert_eq!(import_oci_layout(&out, None).expect("import untagged").digest, digest);
}

#[test]
fn hard_links_survive_create_and_import() {
    let data: std::sync::Arc<Vec<u8>> = std::sync::Arc::new(b"one inode ".repeat(500));
    let mut tree = Tree::new();
    for path in ["a/first", "b/second", &format!("{}/third", "long-directory-name".repeat(8))] {
        tree.insert(path, Entry::root(Node::File { mode: 0o640, data: data.clone() }));
    }
    let tmp = tempdir();
    let dir = tmp.path().join("layout");
    create_oci_layout(&dir, "latest", &tree, &ImageConfig::default()).expect("create");
    let (manifest, _) = manifest_of(&dir);
    let layer = fs::read(blob_path(&dir, manifest["layers"][0]["digest"].as_str().expect("digest"))).expect("layer");
    let mut tar = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&layer[..]), &mut tar).expect("gunzip");
    assert_eq!(tar.windows(data.len()).filter(|w| *w == data.as_slice()).count(), 1, "the data once");

    let image = import_oci_layout(&dir, None).expect("import");
    let shared = |p: &str| match &image.rootfs.get(p).expect("linked path").node {
        Node::File { data: d, .. } => d.clone(),
        other => panic!("{p}: {other:?}"),
    };
    assert_eq!(*shared("a/first"), *data);
    assert!(std::sync::Arc::ptr_eq(&shared("a/first"), &shared("b/second")));
    assert!(std::sync::Arc::ptr_eq(&shared("a/first"), &shared(&format!("{}/third", "long-directory-name".repeat(8)))));
}

#[test]
fn create_is_reproducible() {
    let tmp = tempdir();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let (tree, config) = (sample_tree(), sample_config());
    let da = create_oci_layout(&a, "v1", &tree, &config).expect("create a");
    fs::create_dir(&b).expect("empty b is accepted");
    let db = create_oci_layout(&b, "v1", &tree, &config).expect("create b");
    assert_eq!(da, db);

    let files = |root: &Path| -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        let mut todo = vec![root.to_path_buf()];
        while let Some(dir) = todo.pop() {
            for e in fs::read_dir(&dir).expect("read_dir") {
                let p = e.expect("entry").path();
                if p.is_dir() {
                    todo.push(p);
                } else {
                    let rel = p.strip_prefix(root).expect("prefix").display().to_string();
                    out.push((rel, fs::read(&p).expect("read")));
                }
            }
        }
        out.sort();
        out
    };
    let (fa, fb) = (files(&a), files(&b));
    assert_eq!(fa.len(), 5, "oci-layout, index.json, layer, config, manifest");
    assert_eq!(fa, fb);

    // The digest does follow the content.
    let mut other = tree.clone();
    other.insert_file("etc/hostname", 0o644, b"other\n".to_vec());
    let dc = create_oci_layout(&tmp.path().join("c"), "v1", &other, &config).expect("create c");
    assert_ne!(da, dc);
    // And a non-empty output directory is refused.
    assert!(matches!(create_oci_layout(&a, "v1", &tree, &config), Err(OciError::BadPath { .. })));
}

// ---- verification ----

fn created_layout(tmp: &tempfile::TempDir) -> (PathBuf, Value) {
    let out = tmp.path().join("layout");
    create_oci_layout(&out, "v1", &sample_tree(), &sample_config()).expect("create");
    let (manifest, _) = manifest_of(&out);
    (out, manifest)
}

#[test]
fn a_flipped_byte_in_a_layer_is_caught() {
    let tmp = tempdir();
    let (out, manifest) = created_layout(&tmp);
    let digest = manifest["layers"][0]["digest"].as_str().expect("layer digest");
    let path = blob_path(&out, digest);
    let mut data = fs::read(&path).expect("layer");
    let mid = data.len() / 2;
    data[mid] ^= 0x01;
    fs::write(&path, &data).expect("tamper");

    let err = import_oci_layout(&out, Some("v1")).expect_err("tampered layer");
    assert!(matches!(err, OciError::DigestMismatch { what: "layer", .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(digest), "{msg}");
    assert!(msg.contains(&sha256(&data)), "{msg}");
}

#[test]
fn a_truncated_layer_is_caught() {
    let tmp = tempdir();
    let (out, manifest) = created_layout(&tmp);
    let digest = manifest["layers"][0]["digest"].as_str().expect("layer digest");
    let path = blob_path(&out, digest);
    let data = fs::read(&path).expect("layer");
    fs::write(&path, &data[..data.len() - 10]).expect("truncate");

    let err = import_oci_layout(&out, Some("v1")).expect_err("truncated layer");
    assert!(
        matches!(err, OciError::SizeMismatch { what: "layer", expected, actual, .. }
            if expected == data.len() as u64 && actual == expected - 10),
        "{err:?}"
    );
    assert!(err.to_string().contains(&digest[7..]), "{err}");
}

#[test]
fn a_changed_manifest_is_caught() {
    let tmp = tempdir();
    let (out, _) = created_layout(&tmp);
    let (_, path) = manifest_of(&out);
    let text = fs::read_to_string(&path).expect("manifest");
    // Same size, still valid JSON, different content: only the digest can tell.
    let changed = text.replacen("\"schemaVersion\":2", "\"schemaVersion\":3", 1);
    assert_ne!(text, changed);
    fs::write(&path, changed).expect("tamper");
    let err = import_oci_layout(&out, None).expect_err("tampered manifest");
    assert!(matches!(err, OciError::DigestMismatch { what: "manifest", .. }), "{err:?}");
}

#[test]
fn a_changed_config_is_caught() {
    let tmp = tempdir();
    let (out, manifest) = created_layout(&tmp);
    let path = blob_path(&out, manifest["config"]["digest"].as_str().expect("config digest"));
    let text = fs::read_to_string(&path).expect("config");
    fs::write(&path, text.replace("--serve", "--SERVE")).expect("tamper");
    let err = import_oci_layout(&out, None).expect_err("tampered config");
    assert!(matches!(err, OciError::DigestMismatch { what: "config", .. }), "{err:?}");
}

#[test]
fn a_wrong_diff_id_is_caught_even_with_good_blobs() {
    let tmp = tempdir();
    let dir = tmp.path();
    let good = tar_of(&[T::File("a", b"a")]);
    // Describe one tar but ship another, with a correct blob digest for what is shipped.
    let layer_blob = blob(dir, TAR, &tar_of(&[T::File("a", b"evil")]));
    let config = json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": { "type": "layers", "diff_ids": [sha256(&good)] },
    });
    let config = blob(dir, "application/vnd.oci.image.config.v1+json", config.to_string().as_bytes());
    let manifest = json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config, "layers": [layer_blob],
    });
    let m = blob(dir, "application/vnd.oci.image.manifest.v1+json", manifest.to_string().as_bytes());
    write_index(dir, vec![m]);
    let err = import_oci_layout(dir, None).expect_err("diff_id mismatch");
    assert!(matches!(err, OciError::DiffIdMismatch { .. }), "{err:?}");
}

// ---- layers ----

#[test]
fn whiteouts_and_opaque_dirs_hide_lower_layers_only() {
    let tmp = tempdir();
    let dir = tmp.path();
    let lower = tar_of(&[
        T::Dir("a"),
        T::File("a/keep", b"keep"),
        T::File("a/gone", b"gone"),
        T::File("a/sub/deep", b"deep"),
        T::Dir("o"),
        T::File("o/old", b"old"),
        T::File("o/oldsub/x", b"x"),
        T::File("f", b"f"),
        T::File("again", b"lower"),
        T::Dir("usr/lib"),
        T::File("usr/lib/libold", b"old"),
        T::Symlink("lib", "usr/lib"),
    ]);
    let upper = tar_of(&[
        // Put before the opaque marker: it must survive, whatever the order.
        T::File("o/new", b"new"),
        T::File("o/.wh..wh..opq", b""),
        T::File("a/.wh.gone", b""),
        T::File("a/.wh.sub", b""),
        T::File(".wh.f", b""),
        // A whiteout and a new file of the same name in one layer: the new file stays.
        T::File(".wh.again", b""),
        T::File("again", b"upper"),
        // Lands in usr/lib through the lower layer's symlink.
        T::File("lib/libnew", b"new"),
        T::Hardlink("a/link", "a/keep"),
    ]);
    let m = write_image(dir, &[layer(TAR_GZIP, lower), layer(TAR_ZSTD, upper)], json!({}));
    write_index(dir, vec![tagged(m, "latest")]);

    let image = import_oci_layout(dir, Some("latest")).expect("import");
    let t = &image.rootfs;
    assert_eq!(
        paths(t),
        ["a", "a/keep", "a/link", "again", "lib", "o", "o/new", "usr", "usr/lib", "usr/lib/libnew", "usr/lib/libold"]
    );
    assert_eq!(file_data(t, "again"), Some(&b"upper"[..]));
    assert_eq!(file_data(t, "a/link"), Some(&b"keep"[..]));
    // A hard link stays one inode: the data is shared (and so written once into a cpio).
    let data = |p: &str| match &t.get(p).expect("linked file").node {
        Node::File { data, .. } => data.clone(),
        other => panic!("{p}: {other:?}"),
    };
    assert!(std::sync::Arc::ptr_eq(&data("a/keep"), &data("a/link")));
    assert!(matches!(&t.get("lib").expect("lib").node, Node::Symlink { target } if target == "usr/lib"));
    assert_eq!(image.config, ImageConfig::default());
}

#[test]
fn paths_that_climb_out_are_rejected() {
    let tmp = tempdir();
    let dir = tmp.path();
    let evil = tar_of(&[T::File("ok", b"ok"), T::RawName(b"a/../../etc/passwd")]);
    let m = write_image(dir, &[layer(TAR, evil)], json!({}));
    write_index(dir, vec![m]);
    let err = import_oci_layout(dir, None).expect_err("escaping path");
    assert!(matches!(err, OciError::BadEntry { ref path, .. } if path == "a/../../etc/passwd"), "{err:?}");
}

#[test]
fn latin1_names_are_accepted_as_bytes() {
    use std::os::unix::ffi::OsStrExt;
    let name: &[u8] = b"d/caf\xe9";
    let tmp = tempdir();
    let dir = tmp.path().join("layout");
    fs::create_dir(&dir).expect("layout dir");
    let m = write_image(&dir, &[layer(TAR, tar_of(&[T::Dir("d"), T::RawName(name)]))], json!({}));
    write_index(&dir, vec![m]);
    let image = import_oci_layout(&dir, None).expect("a Latin-1 name imports");
    assert!(matches!(image.rootfs.get(name).map(|e| &e.node), Some(Node::File { .. })));

    // Written back out and read again, the name is the same bytes.
    let again = tmp.path().join("again");
    create_oci_layout(&again, "latest", &image.rootfs, &ImageConfig::default()).expect("create");
    let back = import_oci_layout(&again, None).expect("import again");
    assert!(back.rootfs.get(name).is_some(), "{:?}", back.rootfs.iter().map(|(p, _)| p).collect::<Vec<_>>());

    // The same from a directory.
    let rootfs = tmp.path().join("rootfs");
    fs::create_dir_all(rootfs.join("d")).expect("d");
    fs::write(rootfs.join(std::ffi::OsStr::from_bytes(name)), b"x").expect("Latin-1 file");
    assert!(import_dir(&rootfs).expect("dir import").rootfs.get(name).is_some());
}

#[test]
fn a_multi_platform_index_is_followed_to_linux_amd64() {
    let tmp = tempdir();
    let dir = tmp.path();
    let arm = write_image(dir, &[layer(TAR, tar_of(&[T::File("arch", b"arm64")]))], json!({}));
    let amd = write_image(dir, &[layer(TAR, tar_of(&[T::File("arch", b"amd64")]))], json!({}));
    let with_platform = |mut d: Value, arch: &str| {
        d["platform"] = json!({ "architecture": arch, "os": "linux" });
        d
    };
    let amd_digest = amd["digest"].as_str().expect("digest").to_string();
    let nested = json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [with_platform(arm, "arm64"), with_platform(amd, "amd64")],
    });
    let index = blob(dir, "application/vnd.oci.image.index.v1+json", nested.to_string().as_bytes());
    write_index(dir, vec![tagged(index, "multi")]);

    let image = import_oci_layout(dir, Some("multi")).expect("import");
    assert_eq!(file_data(&image.rootfs, "arch"), Some(&b"amd64"[..]));
    assert_eq!(image.digest, amd_digest);
}

// ---- tags ----

#[test]
fn unknown_tags_and_missing_tags_list_what_is_there() {
    let tmp = tempdir();
    let dir = tmp.path();
    let one = write_image(dir, &[layer(TAR, tar_of(&[T::File("x", b"1")]))], json!({"Cmd": ["one"]}));
    let two = write_image(dir, &[layer(DOCKER_GZIP, tar_of(&[T::File("x", b"2")]))], json!({"Cmd": ["two"]}));
    write_index(dir, vec![tagged(one, "alpha"), tagged(two, "beta")]);

    let err = import_oci_layout(dir, Some("gamma")).expect_err("no such tag");
    assert!(matches!(err, OciError::NoSuchTag { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("gamma") && msg.contains("alpha") && msg.contains("beta"), "{msg}");

    let err = import_oci_layout(dir, None).expect_err("ambiguous");
    assert!(matches!(err, OciError::NoTagGiven { .. }), "{err:?}");
    assert!(err.to_string().contains("alpha, beta"), "{err}");

    let beta = import_oci_layout(dir, Some("beta")).expect("beta");
    assert_eq!(beta.config.cmd, ["two"]);
    assert_eq!(file_data(&beta.rootfs, "x"), Some(&b"2"[..]));
}

// ---- docker save archives ----

struct DockerImage<'a> {
    tags: &'a [&'a str],
    layers: Vec<Vec<u8>>,
    cmd: &'a str,
}

/// Writes a `docker save`-style archive: `<hex>.json` configs, `<id>/layer.tar` layers
/// (the second layer of each image gzipped, a duplicate layer stored as a symlink), and
/// manifest.json. `diff_id_of` lets a test lie about a layer.
fn docker_archive(path: &Path, images: &[DockerImage], diff_id_of: &dyn Fn(&[u8]) -> String) {
    let mut members: Vec<(String, Vec<u8>)> = Vec::new();
    let mut links: Vec<(String, String)> = Vec::new();
    let mut manifest = Vec::new();
    for (i, image) in images.iter().enumerate() {
        let mut layer_names = Vec::new();
        let mut diff_ids = Vec::new();
        for (j, tar) in image.layers.iter().enumerate() {
            diff_ids.push(diff_id_of(tar));
            let name = format!("layer{i}{j}/layer.tar");
            let existing = members.iter().find(|(_, d)| *d == *tar).map(|(n, _)| n.clone());
            match existing {
                Some(target) => links.push((name.clone(), format!("../{target}"))),
                None => {
                    let stored = if j == 1 { gzip(tar) } else { tar.clone() };
                    members.push((name.clone(), stored));
                }
            }
            layer_names.push(name);
        }
        let config = json!({
            "architecture": "amd64", "os": "linux",
            "config": { "Cmd": [image.cmd], "Env": ["A=1"] },
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
        })
        .to_string()
        .into_bytes();
        let config_name = format!("{}.json", &sha256(&config)[7..]);
        manifest.push(json!({ "Config": config_name, "RepoTags": image.tags, "Layers": layer_names }));
        members.push((config_name, config));
    }
    members.push(("manifest.json".into(), Value::Array(manifest).to_string().into_bytes()));

    let mut b = tar::Builder::new(fs::File::create(path).expect("archive"));
    for (name, data) in &members {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, data.as_slice()).expect("member");
    }
    for (name, target) in &links {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, name, target).expect("link");
    }
    b.finish().expect("finish archive");
}

fn two_docker_images() -> Vec<DockerImage<'static>> {
    let base = tar_of(&[T::Dir("etc"), T::File("etc/os", b"base")]);
    vec![
        DockerImage {
            tags: &["busybox:latest", "busybox:1.36"],
            layers: vec![base.clone(), tar_of(&[T::File("bin/sh", b"busybox"), T::File("etc/.wh.os", b"")])],
            cmd: "sh",
        },
        DockerImage {
            tags: &["other:1.0"],
            layers: vec![base, tar_of(&[T::File("bin/other", b"other")])],
            cmd: "other",
        },
    ]
}

#[test]
fn docker_archives_import_by_repo_tag() {
    let tmp = tempdir();
    let path = tmp.path().join("images.tar");
    docker_archive(&path, &two_docker_images(), &|tar| sha256(tar));

    let busybox = import_docker_archive(&path, Some("busybox:latest")).expect("busybox");
    assert_eq!(paths(&busybox.rootfs), ["bin", "bin/sh", "etc"]);
    assert_eq!(busybox.config.cmd, ["sh"]);
    assert_eq!(busybox.config.env, ["A=1"]);
    // A bare name means ":latest"; the digest is the config's (the image ID).
    let bare = import_docker_archive(&path, Some("busybox")).expect("bare name");
    assert_eq!(bare.digest, busybox.digest);

    // "other" reuses the base layer through a symlinked member.
    let other = import_docker_archive(&path, Some("other:1.0")).expect("other");
    assert_eq!(paths(&other.rootfs), ["bin", "bin/other", "etc", "etc/os"]);
    assert_ne!(other.digest, busybox.digest);

    let err = import_docker_archive(&path, None).expect_err("two images, no reference");
    assert!(err.to_string().contains("busybox:1.36, busybox:latest, other:1.0"), "{err}");
    let err = import_docker_archive(&path, Some("other:2.0")).expect_err("no such tag");
    assert!(matches!(err, OciError::NoSuchTag { .. }) && err.to_string().contains("other:1.0"), "{err}");
}

#[test]
fn docker_archive_references_are_normalized_on_both_sides() {
    let tmp = tempdir();
    let path = tmp.path().join("skopeo.tar");
    let images = [
        // skopeo and newer docker write the full form.
        DockerImage {
            tags: &["docker.io/library/busybox:1.36"],
            layers: vec![tar_of(&[T::File("a", b"1")])],
            cmd: "sh",
        },
        DockerImage {
            tags: &["docker.io/acme/app:1", "localhost:5000/app:latest"],
            layers: vec![tar_of(&[T::File("b", b"2")])],
            cmd: "app",
        },
    ];
    docker_archive(&path, &images, &|tar| sha256(tar));
    let cmd = |reference: &str| match import_docker_archive(&path, Some(reference)) {
        Ok(image) => Ok(image.config.cmd.join(" ")),
        Err(e) => Err(e.to_string()),
    };
    for (reference, want) in [
        ("busybox:1.36", "sh"),
        ("library/busybox:1.36", "sh"),
        ("docker.io/busybox:1.36", "sh"),
        ("index.docker.io/library/busybox:1.36", "sh"),
        ("acme/app:1", "app"),
        ("docker.io/acme/app:1", "app"),
        ("localhost:5000/app", "app"),
    ] {
        assert_eq!(cmd(reference).as_deref(), Ok(want), "{reference}");
    }
    let err = cmd("busybox").expect_err("no busybox:latest");
    assert!(err.starts_with("no image tagged \"docker.io/library/busybox:latest\""), "{err}");
    assert!(cmd("acme/app:2").is_err() && cmd("localhost:5001/app").is_err());
    let err = cmd("Busybox").expect_err("upper case");
    assert!(err.starts_with("invalid image reference \"Busybox\""), "{err}");

    // Digests are image IDs: the config's sha256, which is also Image::digest here.
    let app = import_docker_archive(&path, Some("acme/app:1")).expect("app");
    assert_eq!(cmd(&format!("@{}", app.digest)).as_deref(), Ok("app"));
    assert_eq!(cmd(&format!("acme/app@{}", app.digest)).as_deref(), Ok("app"));
    assert_eq!(cmd(&format!("localhost:5000/app:9@{}", app.digest)).as_deref(), Ok("app"));
    let err = cmd(&format!("busybox@{}", app.digest)).expect_err("the ID is not busybox's");
    assert!(err.starts_with("no image tagged"), "{err}");
    let unknown = format!("sha256:{}", "0".repeat(64));
    let err = cmd(&format!("@{unknown}")).expect_err("no such ID");
    assert!(err.starts_with(&format!("no image with ID {unknown} (a docker archive is matched by image ID")), "{err}");
    assert!(err.contains(&app.digest), "{err}");
    let err = cmd("busybox@sha256:1234").expect_err("short digest");
    assert!(err.contains("64 lowercase hex"), "{err}");
}

#[test]
fn docker_archive_layers_are_checked_against_diff_ids() {
    let tmp = tempdir();
    let path = tmp.path().join("images.tar");
    let images = two_docker_images();
    let lied_about = images[0].layers[1].clone();
    docker_archive(&path, &images, &|tar| {
        if tar == lied_about.as_slice() { sha256(b"something else") } else { sha256(tar) }
    });
    let err = import_docker_archive(&path, Some("busybox:latest")).expect_err("bad diff_id");
    assert!(
        matches!(err, OciError::DiffIdMismatch { ref layer, .. } if layer.ends_with("layer01/layer.tar")),
        "{err:?}"
    );
    // The other image does not use that layer.
    import_docker_archive(&path, Some("other:1.0")).expect("other is fine");
}

#[test]
fn a_docker_config_not_matching_its_name_is_caught() {
    let tmp = tempdir();
    let path = tmp.path().join("one.tar");
    let config = br#"{"rootfs":{"type":"layers","diff_ids":[]}}"#;
    let name = format!("{}.json", "0".repeat(64));
    let manifest = json!([{ "Config": name, "RepoTags": ["x:1"], "Layers": [] }]).to_string();
    let mut b = tar::Builder::new(fs::File::create(&path).expect("archive"));
    for (n, d) in [(name.as_str(), &config[..]), ("manifest.json", manifest.as_bytes())] {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_size(d.len() as u64);
        b.append_data(&mut h, n, d).expect("member");
    }
    b.finish().expect("finish");
    let err = import_docker_archive(&path, None).expect_err("config digest");
    assert!(matches!(err, OciError::DigestMismatch { what: "config", .. }), "{err:?}");
}

// ---- directories ----

#[test]
fn directories_import_with_modes_and_symlinks() {
    use std::os::unix::fs::{PermissionsExt, symlink};
    let tmp = tempdir();
    let root = tmp.path().join("rootfs");
    fs::create_dir_all(root.join("usr/bin")).expect("dirs");
    fs::create_dir(root.join("empty")).expect("empty dir");
    fs::write(root.join("usr/bin/tool"), b"tool").expect("tool");
    fs::set_permissions(root.join("usr/bin/tool"), fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::write(root.join("config"), b"k=v").expect("config");
    fs::set_permissions(root.join("config"), fs::Permissions::from_mode(0o600)).expect("chmod");
    symlink("usr/bin", root.join("bin")).expect("symlink");
    symlink("/nowhere", root.join("dangling")).expect("dangling symlink");
    // A socket is a special file: skipped with a warning.
    let _socket = std::os::unix::net::UnixListener::bind(root.join("sock")).expect("socket");

    let image = import_dir(&root).expect("import dir");
    let t = &image.rootfs;
    assert_eq!(paths(t), ["bin", "config", "dangling", "empty", "usr", "usr/bin", "usr/bin/tool"]);
    assert_eq!(t.get("usr/bin/tool"), Some(&Entry::root(Node::File { mode: 0o755, data: b"tool".to_vec().into() })));
    assert!(matches!(t.get("config").map(|e| &e.node), Some(Node::File { mode: 0o600, .. })));
    assert!(matches!(t.get("bin").map(|e| &e.node), Some(Node::Symlink { target }) if target == "usr/bin"));
    assert!(t.iter().all(|(_, e)| e.uid == 0 && e.gid == 0));
    assert!(image.digest.starts_with("sha256:") && image.digest.len() == 71);

    assert_eq!(import_dir(&root).expect("again").digest, image.digest);
    fs::write(root.join("config"), b"k=w").expect("change");
    assert_ne!(import_dir(&root).expect("changed").digest, image.digest);
    assert!(import_dir(&root.join("config")).is_err());
}

#[test]
fn a_layered_layout_stacks_its_layers_and_shares_lower_blobs() {
    let mut top1 = Tree::new();
    top1.insert_file("www/index.html", 0o644, b"v1\n".to_vec());
    let mut top2 = Tree::new();
    top2.insert_file("www/index.html", 0o644, b"v2\n".to_vec());
    let (a, b) = (tempdir(), tempdir());
    let da = create_layered_oci_layout(&a.path().join("img"), "latest", &[sample_tree(), top1], &sample_config())
        .expect("create a");
    let db = create_layered_oci_layout(&b.path().join("img"), "latest", &[sample_tree(), top2], &sample_config())
        .expect("create b");
    assert_ne!(da, db);
    let image = import_oci_layout(&b.path().join("img"), None).expect("import b");
    assert_eq!(file_data(&image.rootfs, "www/index.html"), Some(&b"v2\n"[..]));
    let blobs = |dir: &Path| -> std::collections::BTreeSet<String> {
        fs::read_dir(dir.join("img/blobs/sha256"))
            .expect("blobs")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
            .collect()
    };
    let shared = blobs(a.path()).intersection(&blobs(b.path())).count();
    assert_eq!(shared, 1, "the base layer is one blob in both");
}
