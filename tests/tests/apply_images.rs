//! Images that travel with `hoist apply`: only the blobs the host lacks are sent (a
//! one-layer change sends that layer, not the image), the host serves the new content, a
//! blob whose bytes do not match its digest is refused and nothing changes (FAULTS row
//! 16), and ten applies in a row do not keep images no generation needs (MemAvailable).

use std::path::{Path, PathBuf};
use std::time::Duration;

use hoist_api::{client, pb};
use hoist_images::oci::{ImageConfig, create_layered_oci_layout};
use hoist_images::tree::Tree;
use hoist_tests::host::{Host, text};
use hoist_tests::{busybox_tree, http_get, pki_dir};

/// Bytes that do not compress: a top layer this big shows in MemAvailable if it is kept.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (x >> 33) as u8
        })
        .collect()
}

/// Incompressible bytes in each top layer: kept images show plainly in memory use.
const NOISE: usize = 8 << 20;

/// The shared lower layer: busybox and twice [`NOISE`], the same bytes in every version.
fn base() -> &'static Tree {
    static BASE: std::sync::OnceLock<Tree> = std::sync::OnceLock::new();
    BASE.get_or_init(|| {
        let mut tree = busybox_tree().clone();
        tree.insert_file("base/noise", 0o644, noise(0, 2 * NOISE));
        tree
    })
}

/// [`base`] as the lower layer, and a top layer with page `v{n}` and [`NOISE`].
fn layered(work: &Path, n: u64) -> PathBuf {
    let mut top = Tree::new();
    top.insert_file("www/index.html", 0o644, format!("<h1>version {n}</h1>\n").into_bytes());
    top.insert_file("www/noise", 0o644, noise(n, NOISE));
    let dir = work.join(format!("image-v{n}"));
    create_layered_oci_layout(&dir, "latest", &[base().clone(), top], &ImageConfig::default()).expect("layered image");
    dir
}

fn host(image: &str) -> String {
    format!(
        r#"
version = 1
[service.web]
image = "{image}"
command = ["sh", "-c", "httpd -f -p 80 -h /www & trap 'kill $!; exit 0' TERM; wait"]
ready = {{ tcp = 80 }}
[service.inspector]
image = "@IMAGE@"
binds = ["/var/lib/containerd:/ctr:ro"]
host_pid = true
command = ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
"#
    )
}

/// (sent_bytes, image_bytes) from the first line of `apply --json`.
fn sent(out: &std::process::Output) -> (u64, u64) {
    let first = String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or_default().to_string();
    let v: serde_json::Value = serde_json::from_str(&first).unwrap_or_else(|e| panic!("{e}: {}", text(out)));
    (v["sent_bytes"].as_u64().expect("sent_bytes"), v["image_bytes"].as_u64().expect("image_bytes"))
}

/// kB containerd keeps on the host (content and snapshots, in RAM without a disk).
fn stored_kb(h: &Host) -> u64 {
    let out = h.hoist(&["ctl", "exec", "inspector", "--", "du", "-sk", "/ctr"]);
    assert!(out.status.success(), "{}", text(&out));
    let du = String::from_utf8_lossy(&out.stdout).to_string();
    du.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("du said {du:?}"))
}

/// VmRSS of containerd and the supervisor, for the record.
fn rss(h: &Host) -> String {
    let script = "for p in containerd hoist-supervisor; do echo $p $(grep VmRSS /proc/$(pidof $p)/status); done";
    let out = h.hoist(&["ctl", "exec", "inspector", "--", "sh", "-c", script]);
    String::from_utf8_lossy(&out.stdout).replace('\n', "; ")
}

/// A /proc/meminfo field of the host, in kB (MemAvailable; Shmem: what tmpfs holds, which
/// is where containerd keeps images on a host without a disk).
fn meminfo_kb(h: &Host, field: &str) -> u64 {
    let out = h.hoist(&["ctl", "exec", "web", "--", "cat", "/proc/meminfo"]);
    assert!(out.status.success(), "{}", text(&out));
    let meminfo = String::from_utf8_lossy(&out.stdout).to_string();
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in {meminfo}"))
}

#[test]
fn images_travel_as_missing_blobs_are_verified_and_collected() {
    let port = hoist_qemu::free_tcp_port().expect("port");
    let h = Host::boot_with(&host("@IMAGE@"), &[(port, 80)]);
    let page = |want: &str| {
        let body = http_get(port, "/index.html", Duration::from_secs(30)).expect("GET");
        assert!(body.contains(want), "{want:?} not served: {body}");
    };
    page("Hello from hoist");

    // A new image: the host has none of its blobs.
    let v1 = h.config("v1.toml", &host(&format!("oci:{}:latest", layered(&h.work, 1).display())));
    let out = h.apply(&v1, &["--settle", "500ms", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let (first_sent, first_total) = sent(&out);
    assert_eq!(first_sent, first_total, "nothing of a new image was on the host: {}", text(&out));
    page("version 1");
    eprintln!("first image: {first_sent} bytes sent");

    // One layer changed: only it (and the small manifest and config) travels.
    let v2 = h.config("v2.toml", &host(&format!("oci:{}:latest", layered(&h.work, 2).display())));
    let started = std::time::Instant::now();
    let out = h.apply(&v2, &["--settle", "500ms", "--json"]);
    let latency = started.elapsed();
    assert!(out.status.success(), "{}", text(&out));
    let (sent_bytes, total) = sent(&out);
    eprintln!("one changed layer: {sent_bytes} of {total} bytes sent; apply latency {latency:?} (0.5 s settle)");
    assert!(sent_bytes * 2 < total, "the unchanged lower layer was sent again: {sent_bytes} of {total}");
    assert!(sent_bytes >= NOISE as u64, "the new top layer ({sent_bytes} bytes) must travel");
    page("version 2");

    // A blob whose bytes are not what its digest says is refused; nothing is kept.
    h.rt.block_on(async {
        let mut c = client::tcp(&h.addr, pki_dir()).await.expect("connect");
        let claimed = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"; // "hello"
        let chunk = pb::BlobChunk {
            digest: claimed.into(),
            size: 5,
            media_type: "application/octet-stream".into(),
            data: b"hellx".to_vec(),
        };
        let err = c.upload_blob(tokio_stream::iter(vec![chunk])).await.expect_err("tampered blob");
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
        let image = pb::ImageBlobs { image: claimed.into(), blobs: vec![claimed.into()] };
        let missing = c.missing_blobs(pb::MissingBlobsRequest { images: vec![image] }).await.expect("missing");
        assert_eq!(missing.into_inner().missing, [claimed], "a refused blob is not kept");
    });
    let generations = h.history().generations.len();

    // A tampered layout is refused before anything is sent or applied.
    let bad = layered(&h.work, 99);
    let blobs = bad.join("blobs/sha256");
    let biggest = std::fs::read_dir(&blobs)
        .expect("blobs")
        .map(|e| e.expect("entry").path())
        .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .expect("a blob");
    let mut data = std::fs::read(&biggest).expect("read blob");
    let last = data.len() - 1;
    data[last] ^= 0xff;
    std::fs::write(&biggest, data).expect("tamper");
    let tampered = h.config("bad.toml", &host(&format!("oci:{}:latest", bad.display())));
    let out = h.apply(&tampered, &["--settle", "500ms"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(h.history().generations.len(), generations, "nothing recorded");
    page("version 2");

    // Ten applies in a row: images no kept generation uses are removed.
    let after_one = meminfo_kb(&h, "MemAvailable");
    let shmem_one = meminfo_kb(&h, "Shmem");
    let stored_one = stored_kb(&h);
    let rss_one = rss(&h);
    for n in 3..13 {
        let cfg = h.config(&format!("v{n}.toml"), &host(&format!("oci:{}:latest", layered(&h.work, n).display())));
        let out = h.apply(&cfg, &["--settle", "500ms"]);
        assert!(out.status.success(), "apply {n}: {}", text(&out));
    }
    page("version 12");
    // The collection runs after each rollout ends: wait until it took v9, the last one
    // out of the lineage (12, 11, 10).
    h.vm.wait_for_line("image-v9:latest removed", Duration::from_secs(60)).expect("v9 collected");
    let after_ten = meminfo_kb(&h, "MemAvailable");
    let shmem_ten = meminfo_kb(&h, "Shmem");
    let stored_ten = stored_kb(&h);
    let grew = after_one.saturating_sub(after_ten);
    let stored = stored_ten.saturating_sub(stored_one);
    eprintln!("MemAvailable: {after_one} kB after one apply, {after_ten} kB after ten more ({grew} kB less)");
    eprintln!("containerd storage: {stored_one} kB after one apply, {stored_ten} kB after ten more");
    eprintln!("Shmem (tmpfs): {shmem_one} kB after one apply, {shmem_ten} kB after ten more");
    eprintln!("RSS after one apply: {rss_one}; after ten more: {}", rss(&h));
    // Kept without collection: 10 x (8 MiB blob + 8 MiB unpacked) = 160 MiB. Kept with it:
    // three generations' images instead of two, one image (16 MiB) more. MemAvailable also
    // moves with containerd's heap and the kernel's caches: it gets half the leak as slack.
    let image_kb = (2 * NOISE as u64) >> 10;
    assert!(stored < image_kb * 3 / 2, "ten applies kept {stored} kB of images no generation needs");
    let shmem = shmem_ten.saturating_sub(shmem_one);
    assert!(shmem < image_kb * 3 / 2, "tmpfs grew {shmem} kB over ten applies: images were not removed");
    assert!(grew < image_kb * 10 / 2, "ten applies took {grew} kB of memory: images were not removed");
    assert!(h.vm.console().contains("removed: no kept generation uses it"), "nothing was collected");
}
