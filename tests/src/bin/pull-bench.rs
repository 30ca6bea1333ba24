//! pull-bench: pull throughput from a registry on loopback (Debian's docker-registry, TLS
//! and basic auth, as in the tests), `hoist image pull` against `skopeo copy` of the same
//! image in the same run, alternating, each into an empty cache or directory; then a
//! `hoist build` of a host with that image with a cold cache and again with a warm one.
//! The image is busybox plus MB of random bytes (incompressible, so the layer is as big).
//!
//! Usage: pull-bench [--runs K] [--mb N]   (defaults: 3 runs, 64 MB)

use std::process::Command;
use std::time::Instant;

use hoist_images::oci::{self, ImageConfig};
use hoist_tests::registry::{self, PASSWORD, Registry, USER};
use hoist_tests::{busybox_tree, pki_dir};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--help" || a == "-h") {
        println!("usage: pull-bench [--runs K] [--mb N]");
        return;
    }
    let (runs, mb) = (arg("--runs", 3).max(1), arg("--mb", 64));
    let work = tempfile::tempdir().expect("tempdir");
    let mut tree = busybox_tree().clone();
    // xorshift: random enough that gzip cannot shrink it, and the same every run.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let noise: Vec<u8> = (0..mb << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    tree.insert_file("noise.bin", 0o644, noise);
    let layout = work.path().join("image");
    oci::create_oci_layout(&layout, "latest", &tree, &ImageConfig::default()).expect("image");
    let r = Registry::start(work.path());
    let digest = r.push(&layout, "latest", "bench/big:1");
    let home = r.home(&work.path().join("home"), PASSWORD);
    let reference = format!("docker://{}/bench/big:1", r.host());
    let size: u64 = walk_size(&layout.join("blobs/sha256"));
    println!("image {digest}: {:.1} MB of blobs; {runs} runs each, alternating", size as f64 / 1e6);

    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let cache = work.path().join(format!("cache{i}"));
        let t = Instant::now();
        let o = registry::hoist(&home, &cache, &["image", "pull", &reference]);
        assert!(o.status.success(), "hoist image pull: {}", String::from_utf8_lossy(&o.stderr));
        ours.push(t.elapsed().as_secs_f64());
        let dest = work.path().join(format!("skopeo{i}"));
        let t = Instant::now();
        let o = Command::new("skopeo")
            .args(["--insecure-policy", "copy", "--src-creds", &format!("{USER}:{PASSWORD}")])
            .arg("--src-cert-dir")
            .arg(r.dir.join("ca"))
            .arg(&reference)
            .arg(format!("oci:{}:latest", dest.display()))
            .output()
            .expect("skopeo");
        assert!(o.status.success(), "skopeo copy: {}", String::from_utf8_lossy(&o.stderr));
        theirs.push(t.elapsed().as_secs_f64());
        println!("run {}: hoist {:.2} s, skopeo {:.2} s", i + 1, ours[i], theirs[i]);
    }
    let (h, s) = (median(ours), median(theirs));
    let mbs = |secs: f64| size as f64 / 1e6 / secs;
    println!(
        "pull, median: hoist {h:.2} s ({:.0} MB/s), skopeo copy {s:.2} s ({:.0} MB/s); hoist/skopeo time {:.2}",
        mbs(h),
        mbs(s),
        h / s
    );

    let config = work.path().join("host.toml");
    std::fs::write(
        &config,
        format!("version = 1\n[service.big]\nimage = \"{reference}\"\ncommand = [\"sleep\", \"1000\"]\n"),
    )
    .expect("host.toml");
    let cache = work.path().join("build-cache");
    let mut times = Vec::new();
    for (i, what) in ["cold cache", "warm cache", "warm cache"].iter().enumerate() {
        let out = work.path().join(format!("out{i}"));
        let pki = pki_dir().display().to_string();
        let gets = r.blob_gets();
        let t = Instant::now();
        let o = registry::hoist(
            &home,
            &cache,
            &["build", config.to_str().expect("utf-8"), "-o", out.to_str().expect("utf-8"), "--pki", &pki],
        );
        assert!(o.status.success(), "hoist build: {}", String::from_utf8_lossy(&o.stderr));
        times.push(t.elapsed().as_secs_f64());
        println!("hoist build, {what}: {:.2} s, {} blobs downloaded", times[i], r.blob_gets() - gets);
    }
    println!("second build with a warm cache: {:.2} s (cold: {:.2} s)", times[1], times[0]);
}

fn walk_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir).expect("blobs").flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum()
}
