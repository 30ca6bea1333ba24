//! `hoist apply --plan` reads every image before it talks to a host, so a hostile image's
//! warnings and a foreign architecture show without one (issue 9, defects 5 and 6).

use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};

fn sha256(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

fn append(builder: &mut tar::Builder<Vec<u8>>, name: &[u8], kind: tar::EntryType, data: &[u8]) {
    let mut header = tar::Header::new_ustar();
    header.as_mut_bytes()[..name.len()].copy_from_slice(name);
    header.set_entry_type(kind);
    header.set_mode(0o644);
    header.set_size(data.len() as u64);
    header.set_cksum();
    builder.append(&header, data).expect("append");
}

/// A `docker save` archive of one arm64 image whose only layer holds a fifo named with a
/// terminal escape (skipped with a warning) and one plain file.
fn hostile_archive(path: &Path) {
    let mut layer = tar::Builder::new(Vec::new());
    append(&mut layer, b"\x1b[31mred", tar::EntryType::Fifo, b"");
    append(&mut layer, b"hello", tar::EntryType::Regular, b"hi\n");
    let layer = layer.into_inner().expect("layer");
    let config = serde_json::json!({
        "architecture": "arm64",
        "os": "linux",
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": [sha256(&layer)] },
    })
    .to_string();
    let manifest =
        serde_json::json!([{ "Config": "config.json", "RepoTags": ["app:latest"], "Layers": ["layer.tar"] }]);
    let mut archive = tar::Builder::new(Vec::new());
    append(&mut archive, b"layer.tar", tar::EntryType::Regular, &layer);
    append(&mut archive, b"config.json", tar::EntryType::Regular, config.as_bytes());
    append(&mut archive, b"manifest.json", tar::EntryType::Regular, manifest.to_string().as_bytes());
    std::fs::write(path, archive.into_inner().expect("archive")).expect("write archive");
}

fn apply_plan(dir: &Path, extra: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hoist"))
        .arg("apply")
        .arg(dir.join("host.toml"))
        .args(["--plan", "--target"])
        .arg(dir.join("no-such-host"))
        .args(extra)
        .output()
        .expect("run hoist");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_foreign_image_is_refused_unless_allowed_and_hostile_names_are_escaped() {
    let dir = tempfile::tempdir().expect("tempdir");
    hostile_archive(&dir.path().join("app.tar"));
    std::fs::write(dir.path().join("host.toml"), "version = 1\n[service.web]\nimage = \"docker-archive:app.tar\"\n")
        .expect("write host.toml");

    let (ok, stderr) = apply_plan(dir.path(), &[]);
    assert!(!ok, "{stderr}");
    assert!(!stderr.contains('\x1b'), "a raw ESC reached the terminal: {stderr:?}");
    assert!(stderr.contains("hoist: warning: layer ") && stderr.contains("skipping \\x1b[31mred"), "{stderr}");
    let image = format!("docker-archive:{}", dir.path().join("app.tar").display());
    let refusal = format!(
        "hoist: error: service web: image {image}: built for linux/arm64, but the host is linux/amd64 \
         (--allow-foreign-arch uses it anyway)"
    );
    assert!(stderr.contains(&refusal), "{stderr}");

    // Allowed: a warning, and the apply goes on to look for the host (absent here).
    let (_, stderr) = apply_plan(dir.path(), &["--allow-foreign-arch"]);
    assert!(!stderr.contains('\x1b'), "a raw ESC reached the terminal: {stderr:?}");
    assert!(stderr.contains("hoist: warning: ") && stderr.contains("is for linux/arm64, not linux/amd64"), "{stderr}");
    assert!(!stderr.contains("built for linux/arm64"), "{stderr}");
}
