//! The harness against real QEMU and the real kernel in /boot, booting a tiny busybox
//! initramfs made here. Missing QEMU, kernel, busybox or cpio fails the test with a reason.
//! At most two VMs run at once (the CI machine has two cores).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hoist_qemu::{Accel, QemuError, VmBuilder};

const BOOT: Duration = Duration::from_secs(60);

static RUNNING: Mutex<usize> = Mutex::new(0);
static FREED: Condvar = Condvar::new();
const MAX_VMS: usize = 2;

/// One of `MAX_VMS` slots; declare it before the `Vm` so it is released after the VM dies.
struct Slot;

fn vm_slot() -> Slot {
    let mut running = RUNNING.lock().unwrap_or_else(PoisonError::into_inner);
    while *running >= MAX_VMS {
        running = FREED.wait(running).unwrap_or_else(PoisonError::into_inner);
    }
    *running += 1;
    Slot
}

impl Drop for Slot {
    fn drop(&mut self) {
        *RUNNING.lock().unwrap_or_else(PoisonError::into_inner) -= 1;
        FREED.notify_one();
    }
}

/// The newest /boot/vmlinuz-* (by version), after checking every tool these tests need.
fn kernel() -> PathBuf {
    let qemu = Command::new("qemu-system-x86_64").arg("--version").output();
    assert!(
        qemu.is_ok_and(|o| o.status.success()),
        "qemu-system-x86_64 is not installed: these tests boot real VMs (apt-get install qemu-system-x86)"
    );
    for (tool, package) in [("/bin/busybox", "busybox-static"), ("/usr/bin/cpio", "cpio")] {
        assert!(Path::new(tool).is_file(), "{tool} is missing: apt-get install {package}");
    }
    let mut kernels: Vec<PathBuf> = std::fs::read_dir("/boot")
        .expect("/boot must be readable: the tests boot the host's kernel")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("vmlinuz-")))
        .collect();
    kernels.sort_by_key(|p| version_key(p));
    let kernel = kernels.pop().expect("no /boot/vmlinuz-*: apt-get install linux-image-cloud-amd64");
    std::fs::File::open(&kernel).unwrap_or_else(|e| panic!("{} is not readable ({e}): run as root", kernel.display()));
    kernel
}

fn version_key(path: &Path) -> Vec<u64> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse().ok()).collect()
}

fn kernel_version(kernel: &Path) -> String {
    let name = kernel.file_name().and_then(|n| n.to_str()).expect("kernel file name");
    name.strip_prefix("vmlinuz-").expect("vmlinuz-VERSION").to_string()
}

/// A kernel plus a busybox initramfs whose /init runs `script` (after mounting /proc, /sys).
struct Guest {
    _dir: tempfile::TempDir,
    kernel: PathBuf,
    initrd: PathBuf,
}

impl Guest {
    fn new(script: &str) -> Guest {
        Self::with_modules(script, &[])
    }

    /// `modules` are copied to /modules in load order; the script loads them itself.
    fn with_modules(script: &str, modules: &[PathBuf]) -> Guest {
        let kernel = kernel();
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        for d in ["bin", "proc", "sys", "dev", "modules"] {
            std::fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("copy busybox");
        let list = Command::new("/bin/busybox").arg("--list").output().expect("busybox --list");
        for applet in String::from_utf8_lossy(&list.stdout).lines().filter(|a| !a.is_empty() && *a != "busybox") {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).expect("applet link");
        }
        for m in modules {
            std::fs::copy(m, root.join("modules").join(m.file_name().expect("module name"))).expect("copy module");
        }
        let init = format!("#!/bin/sh\nmount -t proc proc /proc\nmount -t sysfs sys /sys\n{script}\n");
        std::fs::write(root.join("init"), init).expect("write /init");
        let mut perms = std::fs::metadata(root.join("init")).expect("stat /init").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(root.join("init"), perms).expect("chmod /init");

        let initrd = dir.path().join("initrd.img");
        let out = std::fs::File::create(&initrd).expect("create initrd");
        let status = Command::new("sh")
            .args(["-c", "find . | cpio -o -H newc --quiet"])
            .current_dir(&root)
            .stdout(out)
            .status()
            .expect("run cpio");
        assert!(status.success(), "cpio failed: {status}");
        Guest { _dir: dir, kernel, initrd }
    }

    fn builder(&self) -> VmBuilder {
        VmBuilder::new(&self.kernel, &self.initrd).memory_mib(256)
    }
}

/// Module files to insmod (in order) so `virtio_net` works, or none if it is built in.
fn virtio_net_modules(kernel: &Path) -> Vec<PathBuf> {
    let version = kernel_version(kernel);
    let dir = Path::new("/lib/modules").join(&version);
    let builtin = std::fs::read_to_string(dir.join("modules.builtin"))
        .unwrap_or_else(|e| panic!("{}/modules.builtin: {e}: install the modules of {version}", dir.display()));
    let mut modules = Vec::new();
    for name in ["virtio_pci", "virtio_net"] {
        if builtin.lines().any(|l| l.ends_with(&format!("/{name}.ko"))) {
            continue;
        }
        let out = Command::new("modprobe")
            .args(["-S", &version, "--show-depends", name])
            .output()
            .expect("modprobe (kmod) is needed to find module dependencies");
        assert!(out.status.success(), "modprobe --show-depends {name}: {}", String::from_utf8_lossy(&out.stderr));
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some(path) = line.strip_prefix("insmod ").and_then(|l| l.split_whitespace().next()) {
                let path = PathBuf::from(path);
                assert_eq!(path.extension().and_then(|e| e.to_str()), Some("ko"), "compressed module {path:?}");
                if !modules.contains(&path) {
                    modules.push(path);
                }
            }
        }
    }
    modules
}

#[test]
fn boots_prints_and_powers_off_cleanly() {
    let guest = Guest::new("echo 'hello from guest'\npoweroff -f");
    let _slot = vm_slot();
    let started = Instant::now();
    let mut vm = guest.builder().spawn().expect("spawn QEMU");
    let line = vm.wait_for_line("hello from guest", BOOT).expect("the guest's /init ran");
    eprintln!("spawn to /init output: {:?}", started.elapsed());
    assert_eq!(line, "hello from guest");
    let exit = vm.wait_exit(BOOT).expect("QEMU exits");
    eprintln!("spawn to QEMU exit: {:?}", started.elapsed());
    assert!(exit.clean, "{exit:?}");
    assert_eq!(exit.reason, "guest-shutdown");
    assert!(!exit.killed && exit.status.success());
    assert!(vm.qmp_events().iter().any(|e| e.name == "SHUTDOWN"));

    // Nothing more will come: a wait fails at once, naming the exit and the console tail.
    let t = Instant::now();
    let err = vm.wait_for_line("never printed", BOOT).expect_err("QEMU has exited");
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(matches!(err, QemuError::Exited { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("exit status 0") && msg.contains("hello from guest"), "{msg}");

    let log = std::fs::read_to_string(vm.console_log_path()).expect("console.log");
    assert!(log.contains("hello from guest") && log.contains("Linux version"), "{log}");
    assert!(vm.console().contains("hello from guest"));
    assert!(vm.console_lines().iter().any(|l| l == "hello from guest"));
    // A second wait_exit gives the same answer.
    assert_eq!(vm.wait_exit(Duration::ZERO).expect("again").reason, "guest-shutdown");

    let work = vm.console_log_path().parent().expect("work dir").to_path_buf();
    drop(vm);
    assert!(!work.exists(), "the temp work dir is removed after a passing test");
}

#[test]
fn shutdown_kills_a_guest_that_ignores_the_power_button() {
    let guest = Guest::new("echo 'guest sleeping'\nexec sleep 1000");
    let _slot = vm_slot();
    let mut vm = guest.builder().spawn().expect("spawn QEMU");
    vm.wait_for_line("guest sleeping", BOOT).expect("guest up");
    assert_eq!(vm.qmp("query-status", None).expect("query-status")["status"], "running");
    let t = Instant::now();
    let exit = vm.shutdown(Duration::from_secs(2)).expect("shutdown");
    let took = t.elapsed();
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(10), "{took:?}");
    assert!(!exit.clean && exit.killed, "{exit:?}");
    assert!(exit.reason.contains("did not power off within 2s"), "{}", exit.reason);
    assert!(vm.qmp_events().iter().any(|e| e.name == "POWERDOWN"), "{:?}", vm.qmp_events());
    let err = vm.qmp("query-status", None).expect_err("QEMU is gone");
    assert!(matches!(err, QemuError::QmpClosed { .. }), "{err}");
}

#[test]
fn guest_reboot_is_not_clean() {
    let guest = Guest::new("echo 'about to reboot'\nreboot -f");
    let _slot = vm_slot();
    let mut vm = guest.builder().spawn().expect("spawn QEMU");
    vm.wait_for_line("about to reboot", BOOT).expect("guest up");
    let exit = vm.wait_exit(BOOT).expect("-no-reboot ends the run");
    assert!(!exit.clean, "{exit:?}");
    assert_eq!(exit.reason, "guest-reset");
    assert!(exit.status.success(), "QEMU itself exits 0 on a guest reset: {exit:?}");
}

#[test]
fn guest_panic_is_not_clean() {
    // panic=-1 (the default command line) turns the panic into a reset, which -no-reboot ends.
    let guest = Guest::new("echo 'about to panic'\necho c > /proc/sysrq-trigger\nexec sleep 1000");
    let _slot = vm_slot();
    let mut vm = guest.builder().spawn().expect("spawn QEMU");
    vm.wait_for_line("about to panic", BOOT).expect("guest up");
    vm.wait_for_line("Kernel panic", Duration::from_secs(30)).expect("the kernel reports the panic");
    let exit = vm.wait_exit(BOOT).expect("the panic ends the run");
    assert!(!exit.clean, "{exit:?}");
    assert!(exit.reason == "guest-reset" || exit.reason == "guest-panic", "{}", exit.reason);
}

#[test]
fn published_port_reaches_the_guest() {
    let kernel = kernel();
    let modules = virtio_net_modules(&kernel);
    let names: Vec<String> =
        modules.iter().map(|m| m.file_name().expect("name").to_string_lossy().into_owned()).collect();
    let script = format!(
        "for m in {}; do insmod /modules/$m || echo \"insmod $m failed\"; done\n\
         i=0; while ! ip link show eth0 >/dev/null 2>&1 && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done\n\
         ip addr add 10.0.2.15/24 dev eth0\nip link set eth0 up\n\
         mkdir -p /www && echo 'hello through the published port' > /www/index.html\n\
         httpd -p 80 -h /www && echo 'httpd started'\nexec sleep 1000",
        names.join(" ")
    );
    let guest = Guest::with_modules(&script, &modules);
    let port = hoist_qemu::free_tcp_port().expect("free port");
    let _slot = vm_slot();
    let mut vm = guest.builder().publish(port, 80).spawn().expect("spawn QEMU");
    vm.wait_for_line("httpd started", BOOT).expect("httpd in the guest");

    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last;
    let body = loop {
        match http_get(port) {
            Ok(reply) if reply.starts_with("HTTP/1") => break reply,
            Ok(reply) => last = format!("unexpected reply {reply:?}"),
            Err(e) => last = e.to_string(),
        }
        if Instant::now() >= deadline {
            panic!("GET 127.0.0.1:{port} failed for 30 s: {last}\n{}", vm.console());
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(body.lines().next().is_some_and(|l| l.contains(" 200 ")), "{body}");
    assert!(body.contains("hello through the published port"), "{body}");
    vm.kill();
    let exit = vm.wait_exit(Duration::ZERO).expect("exit after kill");
    assert!(exit.killed && !exit.clean, "{exit:?}");
}

fn http_get(port: u16) -> std::io::Result<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")?;
    let mut reply = String::new();
    s.read_to_string(&mut reply)?;
    Ok(reply)
}

#[test]
fn wait_timeout_reports_the_console_tail() {
    let guest = Guest::new("echo 'guest sleeping'\nexec sleep 1000");
    let _slot = vm_slot();
    let mut vm = guest.builder().spawn().expect("spawn QEMU");
    vm.wait_for_line("guest sleeping", BOOT).expect("guest up");
    let t = Instant::now();
    let err = vm.wait_for_line("never printed", Duration::from_secs(2)).expect_err("no such line");
    assert!(t.elapsed() >= Duration::from_secs(2));
    assert!(matches!(err, QemuError::Timeout { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.starts_with("timed out after 2s waiting for a console line containing \"never printed\""), "{msg}");
    assert!(msg.contains("guest sleeping") && msg.contains("console.log"), "{msg}");

    let err =
        vm.wait_for("a line saying ready", Duration::from_millis(100), |l| l.ends_with("ready")).expect_err("none");
    assert!(err.to_string().contains("waiting for a line saying ready"), "{err}");

    // keep_artifacts keeps the temp work dir and the log; the drop guard still kills QEMU.
    vm.keep_artifacts();
    let pid = vm.pid();
    let work = vm.console_log_path().parent().expect("work dir").to_path_buf();
    drop(vm);
    assert!(work.join("console.log").is_file());
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "QEMU {pid} still exists after drop");
    std::fs::remove_dir_all(&work).expect("clean up");
}

#[test]
fn a_panicking_test_keeps_its_console_log() {
    let guest = Guest::new("echo 'guest sleeping'\nexec sleep 1000");
    let _slot = vm_slot();
    let builder = guest.builder();
    let (tx, rx) = std::sync::mpsc::channel();
    let outcome = std::thread::spawn(move || {
        let vm = builder.spawn().expect("spawn QEMU");
        vm.wait_for_line("guest sleeping", BOOT).expect("guest up");
        tx.send((vm.pid(), vm.console_log_path().to_path_buf())).expect("send");
        panic!("deliberate failure with a live VM");
    })
    .join();
    assert!(outcome.is_err(), "the thread panicked");
    let (pid, log) = rx.recv().expect("the VM had started");
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "QEMU {pid} outlived the panicking thread");
    let text = std::fs::read_to_string(&log).expect("console.log kept");
    assert!(text.contains("guest sleeping"));
    std::fs::remove_dir_all(log.parent().expect("work dir")).expect("clean up");
}

#[test]
fn kvm_probe_is_cached_and_tcg_always_works() {
    let kernel = kernel();
    let t = Instant::now();
    let usable = hoist_qemu::kvm_usable(&kernel);
    eprintln!("KVM usable: {usable} (probe {:?})", t.elapsed());
    let t = Instant::now();
    assert_eq!(hoist_qemu::kvm_usable(&kernel), usable);
    assert!(t.elapsed() < Duration::from_millis(5), "the second answer comes from the cache");
    let cmd = VmBuilder::new("/k", "/i").accel(Accel::Auto).command();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
    let accel = &args[args.iter().position(|a| a == "-accel").expect("-accel") + 1];
    let forced = std::env::var("HOIST_ACCEL").ok();
    let expected =
        forced.as_deref().filter(|v| *v == "kvm" || *v == "tcg").unwrap_or(if usable { "kvm" } else { "tcg" });
    assert_eq!(accel, expected);
}
