//! `docker://` images against a real registry on loopback (Debian's docker-registry with
//! TLS from a test CA and htpasswd auth, images pushed by skopeo): pulls by tag and by
//! digest into the cache, nothing downloaded twice (the registry's access log counts),
//! clear errors for a wrong password, an unknown tag and a registry that is down, the lock
//! file's pins surviving a moved tag until `--update`, and a host built from a pulled
//! image booting with its service up.

use std::path::Path;
use std::time::Duration;

use hoist_images::oci::{self, ImageConfig};
use hoist_tests::host::text;
use hoist_tests::registry::{self, PASSWORD, Registry};
use hoist_tests::{BOOT_TIMEOUT, boot, busybox_image, busybox_tree, http_get, pki_dir, wait_line};

/// Every request line in the access log (manifests, blobs, auth probes).
fn requests(r: &Registry) -> usize {
    r.log().lines().filter(|l| l.contains("\"GET /v2/") || l.contains("\"HEAD /v2/")).count()
}

#[test]
fn pulls_are_cached_by_digest_and_failures_say_what_failed() {
    let work = tempfile::tempdir().expect("tempdir");
    let mut r = Registry::start(work.path());
    let d1 = r.push(busybox_image(), "latest", "acme/busybox:1");
    let home = r.home(&work.path().join("home"), PASSWORD);
    let cache = work.path().join("cache");
    let by_tag = format!("docker://{}/acme/busybox:1", r.host());

    let first = registry::hoist(&home, &cache, &["image", "pull", &by_tag]);
    assert!(first.status.success(), "{}", text(&first));
    assert!(String::from_utf8_lossy(&first.stdout).contains(&d1), "pulled another digest than {d1}: {}", text(&first));
    eprintln!("first pull:\n{}", String::from_utf8_lossy(&first.stderr));
    let blobs = r.blob_gets();
    assert!(blobs >= 2, "config and layer downloaded: {blobs}\n{}", r.log());

    // By tag again: the manifest is asked for, no blob.
    let again = registry::hoist(&home, &cache, &["image", "pull", &by_tag]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(String::from_utf8_lossy(&again.stderr).contains("(in the cache)"), "{}", text(&again));
    assert_eq!(r.blob_gets(), blobs, "a blob was downloaded twice");
    // By digest: nothing is asked of the registry at all.
    let asked = requests(&r);
    let by_digest = format!("docker://{}/acme/busybox@{d1}", r.host());
    let pinned = registry::hoist(&home, &cache, &["image", "inspect", &by_digest]);
    assert!(pinned.status.success(), "{}", text(&pinned));
    assert!(String::from_utf8_lossy(&pinned.stdout).contains("platform:   linux/amd64"), "{}", text(&pinned));
    assert_eq!(requests(&r), asked, "a pinned, cached image went to the registry:\n{}", r.log());

    // A wrong password, an unknown tag: final, and said so.
    let wrong_home = r.home(&work.path().join("wrong"), "not-the-password");
    let refused = registry::hoist(&wrong_home, &cache, &["image", "pull", &by_tag]);
    let said = String::from_utf8_lossy(&refused.stderr).to_string();
    assert!(!refused.status.success(), "{}", text(&refused));
    eprintln!("wrong password:\n{said}");
    assert!(said.contains("refused the credentials of user \"alice\""), "{said}");
    assert!(said.contains("/acme/busybox:1"), "the error names the reference: {said}");
    let unknown =
        registry::hoist(&home, &cache, &["image", "pull", &format!("docker://{}/acme/busybox:nope", r.host())]);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("not found in"), "{}", text(&unknown));

    // The registry down: unreachable, after retries; the cache is intact and still serves
    // the pinned image.
    let (count, bytes) = cache_usage(&cache);
    r.down();
    let down = registry::hoist(&home, &cache, &["image", "pull", &by_tag]);
    assert!(!down.status.success(), "{}", text(&down));
    assert!(String::from_utf8_lossy(&down.stderr).contains("is unreachable"), "{}", text(&down));
    eprintln!("registry down:\n{}", String::from_utf8_lossy(&down.stderr));
    assert_eq!(cache_usage(&cache), (count, bytes), "the cache changed");
    let offline = registry::hoist(&home, &cache, &["image", "inspect", &by_digest]);
    assert!(offline.status.success(), "{}", text(&offline));
}

#[test]
fn a_host_from_a_registry_image_boots_and_its_lock_holds_until_update() {
    let work = tempfile::tempdir().expect("tempdir");
    let r = Registry::start(work.path());
    let d1 = r.push(busybox_image(), "latest", "acme/web:1");
    let home = r.home(&work.path().join("home"), PASSWORD);
    let cache = work.path().join("cache");
    let config = work.path().join("host.toml");
    let toml = format!(
        "version = 1\n[service.web]\nimage = \"docker://{}/acme/web:1\"\ncommand = [\"httpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/www\"]\n",
        r.host()
    );
    std::fs::write(&config, toml).expect("host.toml");
    let build = |out: &str, extra: &[&str]| {
        let out = work.path().join(out);
        let mut args = vec!["build", config.to_str().expect("utf-8"), "-o", out.to_str().expect("utf-8"), "--pki"];
        let pki = pki_dir().display().to_string();
        args.push(&pki);
        args.extend_from_slice(extra);
        let o = registry::hoist(&home, &cache, &args);
        assert!(o.status.success(), "hoist build: {}", text(&o));
        (out, String::from_utf8_lossy(&o.stderr).to_string())
    };
    let lock = work.path().join("host.lock");

    let (out1, _) = build("out1", &[]);
    let pinned = std::fs::read_to_string(&lock).expect("host.lock written");
    assert!(pinned.contains(&d1), "{pinned}");
    let blobs = r.blob_gets();

    // Booted: the service runs from the pulled image.
    let port = hoist_qemu::free_tcp_port().expect("port");
    let mut vm = boot(&out1, &[(port, 80)]);
    wait_line(&vm, "ready", BOOT_TIMEOUT, |l| matches!(l, hoist_guest::console::Line::Ready { .. })).expect("ready");
    let page = http_get(port, "/", Duration::from_secs(30)).expect("the service answers");
    assert!(page.contains("Hello from hoist"), "{page}");
    let exit = vm.shutdown(Duration::from_secs(60)).expect("shutdown");
    assert!(exit.clean, "{exit:?}");

    // Again: nothing downloaded, the same bytes.
    let (out2, said) = build("out2", &[]);
    assert!(said.contains(&format!("pinned to {d1}")), "{said}");
    assert_eq!(r.blob_gets(), blobs, "the second build downloaded blobs:\n{}", r.log());
    assert_same(&out1, &out2);

    // The tag moves: the lock holds, until --update moves it.
    let mut tree = busybox_tree().clone();
    tree.insert_file("www/index.html", 0o644, b"<h1>version 2</h1>\n".to_vec());
    let v2 = work.path().join("v2");
    oci::create_oci_layout(&v2, "latest", &tree, &ImageConfig::default()).expect("v2 image");
    let d2 = r.push(&v2, "latest", "acme/web:1");
    assert_ne!(d1, d2);
    let (out3, _) = build("out3", &[]);
    assert_same(&out1, &out3);
    assert_eq!(std::fs::read_to_string(&lock).expect("lock"), pinned, "the lock moved without --update");
    let (out4, said) = build("out4", &["--update"]);
    eprintln!("build --update:\n{said}");
    assert!(said.contains(&format!("moved from {d1} to {d2}")), "{said}");
    assert!(std::fs::read_to_string(&lock).expect("lock").contains(&d2));
    assert_ne!(std::fs::read(out1.join("initrd.img")).ok(), std::fs::read(out4.join("initrd.img")).ok());

    // Prune: the old image goes (manifest, config, layer), what host.lock pins stays, so
    // the next build downloads nothing.
    let pruned = registry::hoist(&home, &cache, &["image", "prune"]);
    assert!(pruned.status.success(), "{}", text(&pruned));
    let said = String::from_utf8_lossy(&pruned.stdout).to_string();
    assert!(said.contains("removed 3 blobs") && said.contains("for 1 lock files"), "{said}");
    let blobs = r.blob_gets();
    let (out5, _) = build("out5", &[]);
    assert_eq!(r.blob_gets(), blobs, "prune removed what the lock pins");
    assert_same(&out4, &out5);
}

fn assert_same(a: &Path, b: &Path) {
    for f in ["kernel", "initrd.img", "cmdline"] {
        assert!(
            std::fs::read(a.join(f)).ok() == std::fs::read(b.join(f)).ok(),
            "{f} differs between {} and {}",
            a.display(),
            b.display()
        );
    }
}

fn cache_usage(cache: &Path) -> (usize, u64) {
    let dir = cache.join("blobs/sha256");
    let entries: Vec<_> = std::fs::read_dir(dir).expect("cache").flatten().collect();
    (entries.len(), entries.iter().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum())
}

#[test]
fn an_index_resolves_to_the_platform_asked_for_and_a_corrupted_blob_is_refused() {
    let work = tempfile::tempdir().expect("tempdir");
    let r = Registry::start(work.path());
    let home = r.home(&work.path().join("home"), PASSWORD);
    let cache = work.path().join("cache");
    let (multi, amd64, arm64) = two_platform_layout(work.path());
    let index = r.push(&multi, "multi", "acme/multi:1");
    let pull = |extra: &[&str]| {
        let reference = format!("docker://{}/acme/multi:1", r.host());
        let mut args = vec!["image", "pull", reference.as_str()];
        args.extend_from_slice(extra);
        registry::hoist(&home, &cache, &args)
    };
    let default = pull(&[]);
    assert!(default.status.success(), "{}", text(&default));
    let said = String::from_utf8_lossy(&default.stdout).to_string();
    assert!(said.contains(&format!("{index} (image manifest {amd64})")), "the index, resolved to amd64: {said}");
    let arm = pull(&["--platform", "linux/arm64"]);
    assert!(String::from_utf8_lossy(&arm.stdout).contains(&format!("(image manifest {arm64})")), "{}", text(&arm));
    let none = pull(&["--platform", "linux/s390x"]);
    let said = String::from_utf8_lossy(&none.stderr).to_string();
    assert!(said.contains("its index has no linux/s390x image (it has linux/amd64, linux/arm64)"), "{said}");

    // A layer flipped in the registry's own storage: refused at once, nothing cached.
    let before: Vec<String> = r.stored_blobs().into_iter().map(|(d, _)| d).collect();
    let mut tree = busybox_tree().clone();
    tree.insert_file("www/other.html", 0o644, b"another layer\n".to_vec());
    let other = work.path().join("other");
    oci::create_oci_layout(&other, "latest", &tree, &ImageConfig::default()).expect("image");
    r.push(&other, "latest", "acme/bad:1");
    let (layer, path) = r
        .stored_blobs()
        .into_iter()
        .filter(|(d, _)| !before.contains(d))
        .max_by_key(|(_, p)| std::fs::metadata(p).map_or(0, |m| m.len()))
        .expect("the new layer");
    let mut data = std::fs::read(&path).expect("stored layer");
    let middle = data.len() / 2;
    data[middle] ^= 0x20;
    std::fs::write(&path, data).expect("corrupt");
    let asked = r.blob_gets();
    let bad = registry::hoist(&home, &cache, &["image", "pull", &format!("docker://{}/acme/bad:1", r.host())]);
    let said = String::from_utf8_lossy(&bad.stderr).to_string();
    assert!(!bad.status.success(), "{}", text(&bad));
    assert!(said.contains("sent bad content") && said.contains("nothing was cached"), "{said}");
    assert_eq!(r.blob_gets() - asked, 2, "config and layer once each: a bad digest is not retried\n{}", r.log());
    let hex = layer.trim_start_matches("sha256:");
    assert!(!cache.join("blobs/sha256").join(hex).exists(), "the corrupted layer was cached");
    assert_eq!(std::fs::read_dir(cache.join("tmp")).expect("tmp").count(), 0, "a partial download was left");
}

/// An OCI layout tagged `multi` whose index names the busybox image for linux/amd64 and the
/// same layer under a config that says linux/arm64; with the two manifests' digests.
fn two_platform_layout(work: &Path) -> (std::path::PathBuf, String, String) {
    use sha2::Digest;
    let src = busybox_image();
    let dir = work.join("multi");
    std::fs::create_dir_all(dir.join("blobs/sha256")).expect("mkdir");
    for e in std::fs::read_dir(src.join("blobs/sha256")).expect("blobs").flatten() {
        std::fs::copy(e.path(), dir.join("blobs/sha256").join(e.file_name())).expect("copy blob");
    }
    std::fs::copy(src.join("oci-layout"), dir.join("oci-layout")).expect("oci-layout");
    let read = |digest: &str| {
        std::fs::read(dir.join("blobs/sha256").join(digest.trim_start_matches("sha256:"))).expect("blob")
    };
    let put = |data: &[u8]| {
        let digest = format!("sha256:{:x}", sha2::Sha256::digest(data));
        std::fs::write(dir.join("blobs/sha256").join(digest.trim_start_matches("sha256:")), data).expect("write");
        (digest, data.len())
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(src.join("index.json")).expect("index")).expect("json");
    let amd64 = index["manifests"][0]["digest"].as_str().expect("digest").to_string();
    let amd64_size = read(&amd64).len();
    let mut manifest: serde_json::Value = serde_json::from_slice(&read(&amd64)).expect("manifest");
    let mut config: serde_json::Value =
        serde_json::from_slice(&read(manifest["config"]["digest"].as_str().expect("config"))).expect("config");
    config["architecture"] = "arm64".into();
    let (config_digest, config_size) = put(&serde_json::to_vec(&config).expect("json"));
    manifest["config"]["digest"] = config_digest.into();
    manifest["config"]["size"] = config_size.into();
    let (arm64, arm64_size) = put(&serde_json::to_vec(&manifest).expect("json"));
    let m = "application/vnd.oci.image.manifest.v1+json";
    let list = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": m, "digest": amd64, "size": amd64_size, "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": m, "digest": arm64, "size": arm64_size, "platform": {"os": "linux", "architecture": "arm64"}},
        ]
    });
    let (list_digest, list_size) = put(&serde_json::to_vec(&list).expect("json"));
    let top = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": list_digest, "size": list_size,
                       "annotations": {"org.opencontainers.image.ref.name": "multi"}}]
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&top).expect("json")).expect("index.json");
    (dir, amd64, arm64)
}
