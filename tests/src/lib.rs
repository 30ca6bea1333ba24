//! hoist-tests: shared pieces of the VM tests. They build real hosts with the real
//! `hoist_images::build` (real kernel, containerd, crun or runc, our own init and supervisor) and
//! boot them under real QEMU through `hoist_qemu`. Nothing is mocked.
//!
//! The tests need the release binaries (`cargo build --release --bins`; `tests/run.sh`
//! does it) and the packages `tests/install-deps.sh` installs. When something is missing
//! they fail and say what, instead of skipping quietly.
//!
//! Console lines are read with the grammar that printed them (`hoist_guest::console::Line`:
//! [`wait_line`], [`line_index`], [`count_lines`], [`outcome`]); only lines outside that
//! contract (service output, free-text supervisor and PID 1 lines) are matched as text.
//! The control API is reached through `hoist_api`; [`host::Host`] drives a booted host
//! through the real `hoist` CLI (apply, ctl) for the apply tests.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use hoist_guest::console::Line;
use hoist_images::oci::{self, ImageConfig};
use hoist_images::tree::Tree;

pub mod host;
pub mod newc;
pub mod registry;

/// target/<profile>: where the test binary's own profile put hoist-init & co.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test-binary>, or target/<profile>/<bench-binary>
    let parent = exe.parent().expect("exe dir");
    let dir = if parent.ends_with("deps") { parent.parent().expect("target dir") } else { parent }.to_path_buf();
    for name in ["hoist-init", "hoist-supervisor", "containerd-shim-hoist-v1"] {
        assert!(
            dir.join(name).is_file(),
            "{name} is not built in {}: run `cargo build --release --bins` first (tests/run.sh does)",
            dir.display()
        );
    }
    dir
}

/// Fails loudly when QEMU or a kernel is missing (tests/install-deps.sh installs them).
pub fn require_vm_tools() {
    let qemu = std::process::Command::new("qemu-system-x86_64").arg("--version").output();
    assert!(
        qemu.is_ok_and(|o| o.status.success()),
        "qemu-system-x86_64 not found: run tests/install-deps.sh (VM tests cannot run without it)"
    );
    assert!(
        hoist_images::kernel::newest_kernel(Path::new("/boot")).is_ok(),
        "no kernel in /boot: run tests/install-deps.sh (VM tests cannot run without it)"
    );
}

/// A busybox image (Debian's busybox-static plus its applet links and a web page),
/// created once per test process with `create_oci_layout`, as `hoist image create` does.
pub fn busybox_image() -> &'static Path {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("hoist-test-busybox-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        oci::create_oci_layout(&dir, "latest", busybox_tree(), &ImageConfig::default()).expect("create busybox image");
        dir
    })
}

/// The busybox image's tree: busybox-static, its applet links, a web page, sd-notify and
/// sysprobe (tests/src/sysprobe.c: syscalls a confined service must not make, a fork bomb).
pub fn busybox_tree() -> &'static Tree {
    static TREE: OnceLock<Tree> = OnceLock::new();
    TREE.get_or_init(|| {
        let busybox = std::fs::read("/bin/busybox").expect("/bin/busybox (busybox-static) is needed");
        let mut tree = Tree::new();
        tree.insert_file("bin/busybox", 0o755, busybox);
        let list = std::process::Command::new("/bin/busybox").arg("--list-full").output().expect("busybox --list-full");
        for applet in String::from_utf8_lossy(&list.stdout).lines().filter(|l| !l.is_empty()) {
            if applet != "bin/busybox" {
                tree.insert_symlink(applet, "/bin/busybox");
            }
        }
        tree.insert_file("www/index.html", 0o644, b"<h1>Hello from hoist</h1>\n".to_vec());
        tree.insert_file("bin/sd-notify", 0o755, c_binary("sd-notify"));
        tree.insert_file("bin/sysprobe", 0o755, c_binary("sysprobe"));
        tree
    })
}

/// One control-API PKI per test process, shared by every build (so two builds of the
/// same config are byte-identical, and a test can talk to any host it built).
pub fn pki_dir() -> &'static Path {
    static PKI: OnceLock<PathBuf> = OnceLock::new();
    PKI.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("hoist-test-pki-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        hoist_images::pki::ensure(&dir).expect("test PKI");
        dir
    })
}

/// tests/src/NAME.c (the sd_notify client, sysprobe) compiled statically with the host's cc.
fn c_binary(name: &str) -> Vec<u8> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("src/{name}.c"));
    // A private directory: a predictable name in /tmp could be a planted symlink.
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join(name);
    let status = std::process::Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .unwrap_or_else(|e| panic!("cc (gcc) is needed to build the test image's {name}: {e}"));
    assert!(status.success(), "cc -static failed for {}: install libc6-dev", src.display());
    std::fs::read(&out).unwrap_or_else(|e| panic!("read {}: {e}", out.display()))
}

/// Writes `host.toml` (with `@IMAGE@` replaced by the busybox image) into `work` and builds it into `work/out`.
pub fn build_host(work: &Path, toml: &str) -> PathBuf {
    build_host_with(work, toml, hoist_images::compress::Compression::Lz4)
}

/// [`build_host`] with a chosen initramfs compression.
pub fn build_host_with(work: &Path, toml: &str, compression: hoist_images::compress::Compression) -> PathBuf {
    let text = toml.replace("@IMAGE@", &format!("oci:{}:latest", busybox_image().display()));
    let config = work.join("host.toml");
    std::fs::write(&config, text).expect("write host.toml");
    let out = work.join("out");
    let pki = Some(pki_dir().to_path_buf());
    let opts = hoist_images::build::BuildOptions {
        config,
        out: out.clone(),
        bin_dir: bin_dir(),
        compression,
        pki,
        allow_foreign_arch: false,
        pinned: Default::default(),
    };
    hoist_images::build::build(&opts, &hoist_images::build::Quiet).expect("hoist build");
    out
}

/// Boots a built host with `publish` forwards; the VM is killed when dropped.
pub fn boot(out: &Path, publish: &[(u16, u16)]) -> hoist_qemu::Vm {
    require_vm_tools();
    let mut b = hoist_qemu::VmBuilder::from_build_dir(out).expect("build dir").work_dir(out.join("run"));
    for (h, g) in publish {
        b = b.publish(*h, *g);
    }
    b.spawn().expect("spawn QEMU")
}

/// [`boot`] with raw disk images attached as virtio-blk disks (file, serial), in order.
pub fn boot_with_disks(out: &Path, publish: &[(u16, u16)], disks: &[(&Path, &str)]) -> hoist_qemu::Vm {
    require_vm_tools();
    let mut b = hoist_qemu::VmBuilder::from_build_dir(out).expect("build dir").work_dir(out.join("run"));
    for (h, g) in publish {
        b = b.publish(*h, *g);
    }
    for (file, serial) in disks {
        b = b.disk(*file, *serial);
    }
    b.spawn().expect("spawn QEMU")
}

/// Under TCG a boot to ready takes ~10 s; allow for a loaded CI machine.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// HTTP/1.0 GET on 127.0.0.1:port, polled until `timeout`; returns the whole response.
pub fn http_get(port: u16, path: &str, timeout: Duration) -> Result<String, String> {
    use std::io::{Read, Write};
    let deadline = std::time::Instant::now() + timeout;
    let mut last = String::new();
    while std::time::Instant::now() < deadline {
        let attempt = (|| -> std::io::Result<String> {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())?;
            let mut body = String::new();
            s.read_to_string(&mut body)?;
            Ok(body)
        })();
        match attempt {
            Ok(body) if body.starts_with("HTTP/1") => return Ok(body),
            Ok(body) => last = format!("unexpected reply {body:?}"),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Err(format!("GET 127.0.0.1:{port}{path} did not succeed within {timeout:?}: {last}"))
}

/// Waits for the first console line that is a [`Line`] for which `pred` holds (already
/// printed or later), and returns it parsed. `what` names it in the error.
pub fn wait_line(
    vm: &hoist_qemu::Vm,
    what: &str,
    timeout: Duration,
    pred: impl Fn(&Line) -> bool,
) -> Result<Line, String> {
    let text = vm.wait_for(what, timeout, |l| Line::parse(l).is_some_and(|l| pred(&l))).map_err(|e| e.to_string())?;
    Line::parse(&text).ok_or_else(|| format!("{what}: {text:?} does not parse"))
}

/// Index of the first console line that is a [`Line`] for which `pred` holds; `what`
/// names it when there is none (it panics, showing the console).
pub fn line_index(vm: &hoist_qemu::Vm, what: &str, pred: impl Fn(&Line) -> bool) -> usize {
    let lines = vm.console_lines();
    lines
        .iter()
        .position(|l| Line::parse(l).is_some_and(|l| pred(&l)))
        .unwrap_or_else(|| panic!("no {what} line:\n{}", lines.join("\n")))
}

/// How many console lines so far are a [`Line`] for which `pred` holds.
pub fn count_lines(vm: &hoist_qemu::Vm, pred: impl Fn(&Line) -> bool) -> usize {
    vm.console_lines().iter().filter(|l| Line::parse(l).is_some_and(|l| pred(&l))).count()
}

/// A predicate for [`wait_line`], [`line_index`] and [`count_lines`]: the
/// [`Line::Outcome`] of `service` whose `what` (`exited status=N`, ...) and `then`
/// (`restart in N ms`, `not restarted`, ...) satisfy `pred`.
pub fn outcome(service: &str, pred: impl Fn(&str, &str) -> bool) -> impl Fn(&Line) -> bool {
    move |l| matches!(l, Line::Outcome { service: s, what, then, .. } if s == service && pred(what, then))
}

/// Polls the console until `needle` occurs at least `n` times, or fails at the deadline.
pub fn wait_count(vm: &hoist_qemu::Vm, needle: &str, n: usize, timeout: Duration) -> Result<(), String> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let seen = vm.console_lines().iter().filter(|l| l.contains(needle)).count();
        if seen >= n {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(format!("{needle:?} seen {seen} times, wanted {n}, within {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
