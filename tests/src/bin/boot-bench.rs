//! boot-bench: boots the demo host (plus a third idle service, so the workload matches the
//! baselines' three containers) K times per variant, round-robin, and prints medians of
//! the boot timeline (guest uptime at each phase and at the ready line), the time from
//! QEMU start to ready on the host, shutdown time, initramfs size and memory figures.
//!
//! Variants: one hoist build per `--compress` value, plus, with `--baseline FILE`, an
//! initrd from ../shared/bench/baselines (`build.sh`, e.g. out/shell.initrd) booted with
//! the same kernel and QEMU command, so ratios come from the same process and machine.
//!
//!   cargo build --release --workspace --bins
//!   target/release/boot-bench --runs 5 --compress lz4,gzip,zstd --baseline /tmp/baseline/shell.initrd

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hoist_guest::console::Line;
use hoist_images::compress::Compression;
use hoist_tests::{BOOT_TIMEOUT, build_host_with, wait_line};

const DEMO: &str = r#"
version = 1
[host]
hostname = "demo"
[service.web]
image = "@IMAGE@"
command = ["sh", "-c", "httpd -f -p 80 -h /www & trap 'kill $!; exit 0' TERM; echo web up; wait"]
stop_timeout = "5s"
[service.ticker]
image = "@IMAGE@"
command = ["sh", "-c", "trap 'echo ticker got SIGTERM; exit 0' TERM; echo ticker started; while true; do sleep 60 & wait $!; done"]
stop_timeout = "5s"
[service.idle]
image = "@IMAGE@"
command = ["sh", "-c", "trap 'exit 0' TERM; echo idle up; while true; do sleep 60 & wait $!; done"]
stop_timeout = "5s"
"#;

/// What each DEMO service prints once its SIGTERM trap is set: shutdown is timed from
/// then, so that no service meets the stop signal before it can handle it.
const DEMO_UP: [&str; 3] = ["[web] web up", "[ticker] ticker started", "[idle] idle up"];

struct Variant {
    name: String,
    kernel: PathBuf,
    initrd: PathBuf,
    cmdline: String,
    /// A hoist build (its lines are [`Line`]s); otherwise a baseline that prints [`BASELINE_READY`].
    hoist: bool,
}

/// What a baseline initrd prints when its services run: `READY <uptime seconds> ...`.
const BASELINE_READY: &str = "READY ";

fn is_ready(l: &Line) -> bool {
    matches!(l, Line::Ready { .. })
}

#[derive(Default)]
struct Samples(BTreeMap<String, Vec<f64>>);

impl Samples {
    fn add(&mut self, key: &str, v: f64) {
        self.0.entry(key.to_string()).or_default().push(v);
    }

    fn median(&self, key: &str) -> Option<f64> {
        let mut v = self.0.get(key)?.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        Some(if v.len() % 2 == 1 { v[v.len() / 2] } else { (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0 })
    }

    fn range(&self, key: &str) -> String {
        match self.0.get(key) {
            Some(v) if !v.is_empty() => {
                let min = v.iter().copied().fold(f64::INFINITY, f64::min);
                let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                format!("{:.2} / {:.2} / {:.2}", min, self.median(key).unwrap_or(0.0), max)
            }
            _ => "-".to_string(),
        }
    }
}

fn arg_value(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("usage: boot-bench [--runs K] [--compress lz4,gzip,zstd,none] [--baseline INITRD]");
        println!("       boot-bench --faults   (restart latency, containerd kill recovery, shutdown time)");
        println!("       boot-bench --api      (latency of status over mTLS from the host, 20 calls)");
        return;
    }
    if args.iter().any(|a| a == "--faults") {
        faults();
        return;
    }
    if args.iter().any(|a| a == "--api") {
        api();
        return;
    }
    let runs: usize = arg_value(&args, "--runs").and_then(|r| r.parse().ok()).unwrap_or(5);
    let compressions = arg_value(&args, "--compress").unwrap_or_else(|| "lz4".into());
    let work = tempfile::tempdir().expect("tempdir");
    let mut variants = Vec::new();
    for c in compressions.split(',') {
        let compression: Compression = c.parse().unwrap_or_else(|_| panic!("--compress {c}: lz4, gzip, zstd or none"));
        let dir = work.path().join(c);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let out = build_host_with(&dir, DEMO, compression);
        let size = std::fs::metadata(out.join("initrd.img")).map(|m| m.len()).unwrap_or(0);
        println!("built hoist-{c}: initrd.img {:.1} MB", size as f64 / 1e6);
        variants.push(Variant {
            name: format!("hoist-{c}"),
            kernel: out.join("kernel"),
            initrd: out.join("initrd.img"),
            cmdline: std::fs::read_to_string(out.join("cmdline")).expect("cmdline").trim().to_string(),
            hoist: true,
        });
    }
    if let Some(initrd) = arg_value(&args, "--baseline") {
        let kernel = hoist_images::kernel::newest_kernel(Path::new("/boot")).expect("kernel");
        let name = Path::new(&initrd).file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
        variants.push(Variant {
            name: format!("baseline-{name}"),
            kernel,
            initrd: PathBuf::from(initrd),
            cmdline: "console=ttyS0 quiet panic=-1".into(),
            hoist: false,
        });
    }
    let mut samples: Vec<Samples> = variants.iter().map(|_| Samples::default()).collect();
    for round in 0..runs {
        for (v, s) in variants.iter().zip(samples.iter_mut()) {
            match boot_once(v, s) {
                Ok(()) => println!("round {}/{runs} {}: ok", round + 1, v.name),
                Err(e) => println!("round {}/{runs} {}: FAILED: {e}", round + 1, v.name),
            }
        }
    }
    report(&variants, &samples);
}

fn boot_once(v: &Variant, s: &mut Samples) -> Result<(), String> {
    let started = Instant::now();
    let mut vm = hoist_qemu::VmBuilder::new(&v.kernel, &v.initrd)
        .cmdline(v.cmdline.clone())
        .spawn()
        .map_err(|e| e.to_string())?;
    if !v.hoist {
        let ready = vm.wait_for_line(BASELINE_READY, BOOT_TIMEOUT).map_err(|e| e.to_string())?;
        s.add("host_ready_s", started.elapsed().as_secs_f64());
        let up = ready.split_whitespace().nth(1).and_then(|x| x.parse::<f64>().ok()).ok_or("no uptime on READY")?;
        s.add("ready", up);
        vm.kill();
        return Ok(());
    }
    let ready = wait_line(&vm, "the ready line", BOOT_TIMEOUT, is_ready)?;
    s.add("host_ready_s", started.elapsed().as_secs_f64());
    s.add("ready", ready.field("uptime_ms").ok_or("no uptime_ms")? as f64 / 1000.0);
    let timeline = wait_line(&vm, "the timeline line", Duration::from_secs(10), |l| matches!(l, Line::Timeline(_)))?;
    if let Line::Timeline(phases) = timeline {
        for (k, ms) in phases {
            s.add(&k, ms as f64 / 1000.0);
        }
    }
    let memory = wait_line(&vm, "the memory line", Duration::from_secs(10), |l| matches!(l, Line::Memory(_)))?;
    for key in ["pid1_rss_kb", "supervisor_rss_kb", "containerd_rss_kb"] {
        if let Some(kb) = memory.field(key) {
            s.add(key, kb as f64);
        }
    }
    for up in DEMO_UP {
        vm.wait_for_line(up, Duration::from_secs(30)).map_err(|e| e.to_string())?;
    }
    let t = Instant::now();
    let exit = vm.shutdown(Duration::from_secs(60)).map_err(|e| e.to_string())?;
    if !exit.clean {
        return Err(format!("unclean exit: {}", exit.reason));
    }
    s.add("shutdown_s", t.elapsed().as_secs_f64());
    Ok(())
}

fn report(variants: &[Variant], samples: &[Samples]) {
    println!("\nmin / median / max; guest uptime in s unless noted");
    let keys = [
        ("init", "kernel -> /init"),
        ("root", "root switch done"),
        ("mounts", "API mounts done"),
        ("modules", "modules loaded"),
        ("network", "network up"),
        ("containerd", "containerd ready (API)"),
        ("ticker", "service ticker running"),
        ("web", "service web running"),
        ("idle", "service idle running"),
        ("ready", "READY line"),
        ("host_ready_s", "host: QEMU start -> ready"),
        ("shutdown_s", "host: powerdown -> QEMU exit"),
        ("pid1_rss_kb", "PID 1 Rss kB"),
        ("supervisor_rss_kb", "supervisor Rss kB"),
        ("containerd_rss_kb", "containerd Rss kB"),
    ];
    print!("{:<30}", "");
    for v in variants {
        print!(" | {:>22}", v.name);
    }
    println!();
    for (key, label) in keys {
        print!("{label:<30}");
        for s in samples {
            print!(" | {:>22}", s.range(key));
        }
        println!();
    }
    if let Some(base) = variants.iter().position(|v| !v.hoist) {
        for (v, s) in variants.iter().zip(samples).filter(|(v, _)| v.hoist) {
            if let (Some(ours), Some(theirs)) = (s.median("ready"), samples[base].median("ready")) {
                println!(
                    "{} ready / {} ready (guest uptime, medians): {:.2}",
                    v.name,
                    variants[base].name,
                    ours / theirs
                );
            }
            if let (Some(ours), Some(theirs)) = (s.median("host_ready_s"), samples[base].median("host_ready_s")) {
                println!("{} / {} (host, QEMU start -> ready): {:.2}", v.name, variants[base].name, ours / theirs);
            }
        }
    }
}

const FAULTS: &str = r#"
version = 1
[service.flaky]
image = "@IMAGE@"
command = ["sh", "-c", "sleep 1; exit 1"]
backoff = { initial = "100ms", factor = 1.0, max = "100ms" }
start_limit = { burst = 100, interval = "60s" }
[service.steady]
image = "@IMAGE@"
command = ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
[service.chaos]
image = "@IMAGE@"
host_pid = true
command = ["sh", "-c", "trap 'exit 0' TERM; sleep 30; echo chaos: kill containerd; killall -9 containerd; sleep 100000 & wait"]
"#;

/// Restart latency (exit line to running line of a crashing service, includes its 100 ms
/// backoff), time for containerd to be back with its tasks after SIGKILL, and shutdown time.
fn faults() {
    let work = tempfile::tempdir().expect("tempdir");
    let out = build_host_with(work.path(), FAULTS, Compression::Lz4);
    let mut vm = hoist_qemu::VmBuilder::from_build_dir(&out).expect("build dir").spawn().expect("spawn");
    wait_line(&vm, "the ready line", BOOT_TIMEOUT, is_ready).expect("ready");
    let back =
        wait_line(&vm, "containerd back", Duration::from_secs(120), |l| matches!(l, Line::ContainerdBack { .. }))
            .expect("containerd back");
    let mut latencies = Vec::new();
    let mut exited_at = None;
    for line in vm.console_lines().iter().filter_map(|l| Line::parse(l)) {
        match line {
            Line::Outcome { service, what, uptime_ms, .. } if service == "flaky" && what.starts_with("exited ") => {
                exited_at = Some(uptime_ms);
            }
            Line::Running { service, uptime_ms, .. } if service == "flaky" => {
                if let Some(e) = exited_at.take() {
                    latencies.push(uptime_ms.saturating_sub(e) as f64);
                }
            }
            _ => {}
        }
    }
    let mut s = Samples::default();
    for l in latencies.iter().take(10) {
        s.add("restart_ms", *l);
    }
    let t = Instant::now();
    let exit = vm.shutdown(Duration::from_secs(60)).expect("shutdown");
    println!(
        "restart latency, exit -> running again (ms, {} samples, incl. 100 ms backoff): {}",
        latencies.len().min(10),
        s.range("restart_ms")
    );
    println!("containerd SIGKILL -> answering with its tasks: {}", back.body());
    println!("shutdown (powerdown -> QEMU exit, host): {:.2} s, clean={}", t.elapsed().as_secs_f64(), exit.clean);
}

/// `status` latency from the host through QEMU's port forward and mutual TLS: 20 calls on
/// one connection, and 20 calls each on a fresh connection (TLS handshake included).
fn api() {
    use hoist_api::{client, pb};
    let work = tempfile::tempdir().expect("tempdir");
    let out = build_host_with(work.path(), DEMO, Compression::Lz4);
    let port = hoist_qemu::free_tcp_port().expect("port");
    let mut vm = hoist_qemu::VmBuilder::from_build_dir(&out)
        .expect("build dir")
        .publish(port, hoist_api::PORT)
        .spawn()
        .expect("spawn");
    wait_line(&vm, "the ready line", BOOT_TIMEOUT, is_ready).expect("ready");
    let addr = format!("127.0.0.1:{port}");
    let pki = hoist_tests::pki_dir();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let mut s = Samples::default();
    rt.block_on(async {
        let mut c = client::tcp(&addr, pki).await.expect("connect");
        c.status(pb::StatusRequest {}).await.expect("warm-up");
        for _ in 0..20 {
            let t = Instant::now();
            c.status(pb::StatusRequest {}).await.expect("status");
            s.add("same", t.elapsed().as_secs_f64() * 1000.0);
        }
        for _ in 0..20 {
            let t = Instant::now();
            let mut fresh = client::tcp(&addr, pki).await.expect("connect");
            fresh.status(pb::StatusRequest {}).await.expect("status");
            s.add("fresh", t.elapsed().as_secs_f64() * 1000.0);
        }
    });
    println!("status latency, one connection (ms, min / median / max of 20): {}", s.range("same"));
    println!("status latency, new mTLS connection each (ms, min / median / max of 20): {}", s.range("fresh"));
    let _ = vm.shutdown(Duration::from_secs(60));
}
