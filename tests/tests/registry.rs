//! `docker://` images against a real registry on loopback (Debian's docker-registry with
//! TLS from a test CA and htpasswd auth, images pushed by skopeo): pulls by tag and by
//! digest into the cache, nothing downloaded twice (the registry's access log counts),
//! clear errors for a wrong password, an unknown tag and a registry that is down, the lock
//! file's pins surviving a moved tag until `--update`, and a host built from a pulled
//! image booting with its service up.

use std::path::Path;
use std::time::Duration;

use hoist_images::oci::{self, ImageConfig};
use hoist_tests::registry::{self, PASSWORD, Registry};
use hoist_tests::{BOOT_TIMEOUT, boot, busybox_image, busybox_tree, http_get, pki_dir, wait_line};

fn text(o: &std::process::Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

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
