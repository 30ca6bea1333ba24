//! Choosing the accelerator. `/dev/kvm` can open and still be useless: under nested
//! virtualization QEMU aborts on the first guest instruction ("failed to set MSR"), or the
//! guest runs but a Linux kernel crawls and dies with "KVM internal error: emulation
//! failure" minutes later. So the probe runs real guests, in two steps:
//! 1. a 64 KiB firmware whose reset vector writes to `isa-debug-exit`, which makes QEMU exit
//!    with status 85; anything else (abort, error, hang past 5 s) is TCG;
//! 2. the kernel to be booted, without an initramfs and with `panic=-1`: under working KVM
//!    it reaches "Kernel panic" (no root) and QEMU exits within a second or two; if it has
//!    not within [`KERNEL_PROBE_TIMEOUT`], KVM is no good here.
//!
//! The verdict is kept for the machine's boot (a file named by the boot id in the temp dir,
//! owned by us), so a test suite's many processes pay for the probe once.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Which accelerator QEMU uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Accel {
    /// KVM if it really works here (probed once per process), else TCG.
    /// `HOIST_ACCEL=tcg|kvm|auto` in the environment overrides the probe.
    #[default]
    Auto,
    /// `-accel kvm -cpu host`
    Kvm,
    /// `-accel tcg -cpu max`
    Tcg,
}

/// Name of the environment variable that overrides [`Accel::Auto`].
pub const ACCEL_ENV: &str = "HOIST_ACCEL";

const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// A kernel under working KVM panics for want of a root in about a second.
pub const KERNEL_PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// `isa-debug-exit` turns `out 0xf4, 0x2a` into exit status (0x2a << 1) | 1.
const PROBE_OK_STATUS: i32 = 85;

impl Accel {
    /// Resolves `Auto` to `Kvm` or `Tcg`, using `qemu` and `kernel` for the probe.
    pub(crate) fn resolve(self, qemu: &Path, kernel: &Path) -> Accel {
        match self {
            Accel::Kvm | Accel::Tcg => self,
            Accel::Auto => match from_env(std::env::var(ACCEL_ENV).ok().as_deref()) {
                Accel::Auto => {
                    if kvm_usable_with(qemu, kernel) {
                        Accel::Kvm
                    } else {
                        Accel::Tcg
                    }
                }
                forced => forced,
            },
        }
    }

    /// QEMU arguments for a resolved accelerator (`Auto` counts as TCG).
    pub(crate) fn args(self) -> [&'static str; 4] {
        match self {
            Accel::Kvm => ["-accel", "kvm", "-cpu", "host"],
            Accel::Tcg | Accel::Auto => ["-accel", "tcg", "-cpu", "max"],
        }
    }
}

fn from_env(value: Option<&str>) -> Accel {
    match value.map(str::trim) {
        None | Some("") | Some("auto") => Accel::Auto,
        Some("kvm") => Accel::Kvm,
        Some("tcg") => Accel::Tcg,
        Some(other) => {
            log::warn!("{ACCEL_ENV}={other:?} is not tcg, kvm or auto; choosing automatically");
            Accel::Auto
        }
    }
}

/// Whether KVM works on this machine with `qemu-system-x86_64` for `kernel`; probed once,
/// then cached (in this process, and for this boot of the machine).
pub fn kvm_usable(kernel: &Path) -> bool {
    kvm_usable_with(Path::new(crate::builder::QEMU), kernel)
}

fn kvm_usable_with(qemu: &Path, kernel: &Path) -> bool {
    static USABLE: OnceLock<bool> = OnceLock::new();
    *USABLE.get_or_init(|| {
        if let Some(known) = cached() {
            log::debug!("KVM {} (known for this boot)", if known { "works" } else { "unusable" });
            return known;
        }
        let started = Instant::now();
        let usable = probe(qemu) && probe_kernel(qemu, kernel);
        log::info!("KVM {} (probe took {:?})", if usable { "works" } else { "unusable: using TCG" }, started.elapsed());
        store(usable);
        usable
    })
}

/// The verdict's file for this boot of the machine and this user.
fn cache_path() -> Option<std::path::PathBuf> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let boot = boot.trim();
    if boot.is_empty() || !boot.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        return None;
    }
    Some(std::env::temp_dir().join(format!("hoist-kvm-{boot}-{}", nix::unistd::geteuid())))
}

/// A verdict stored earlier: only from a regular file we own, never through a symlink.
fn cached() -> Option<bool> {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(cache_path()?).ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.uid() != nix::unistd::geteuid().as_raw() {
        return None;
    }
    let mut text = String::new();
    file.take(8).read_to_string(&mut text).ok()?;
    match text.trim() {
        "kvm" => Some(true),
        "tcg" => Some(false),
        _ => None,
    }
}

/// Stores the verdict: a new file of our own, renamed over the name (a planted symlink is
/// replaced, never followed).
fn store(usable: bool) {
    use std::io::Write;
    let Some(path) = cache_path() else { return };
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .and_then(|mut f| f.write_all(if usable { b"kvm" } else { b"tcg" }));
    if written.and_then(|()| std::fs::rename(&tmp, &path)).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

/// The probe's firmware in a new file of the temp dir: created with `O_EXCL` (never an
/// existing file, never through a symlink another user planted at a guessable name).
fn write_probe_firmware() -> std::io::Result<std::path::PathBuf> {
    use std::io::Write;
    let mut last = None;
    for n in 0..100 {
        let path = std::env::temp_dir().join(format!("hoist-qemu-kvm-probe-{}-{n}.bin", std::process::id()));
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut file) => return file.write_all(&probe_firmware()).map(|()| path),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free name")))
}

fn probe(qemu: &Path) -> bool {
    if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        log::debug!("/dev/kvm: {e}");
        return false;
    }
    let firmware = match write_probe_firmware() {
        Ok(path) => path,
        Err(e) => {
            log::debug!("KVM probe firmware: {e}");
            return false;
        }
    };
    let status = run_probe(qemu, &firmware);
    let _ = std::fs::remove_file(&firmware);
    status == Some(PROBE_OK_STATUS)
}

/// 64 KiB of `hlt`, with `mov al, 0x2a; out 0xf4, al; hlt` at the reset vector (0xffff0).
fn probe_firmware() -> Vec<u8> {
    let mut image = vec![0xf4u8; 0x10000];
    image[0xfff0..0xfff5].copy_from_slice(&[0xb0, 0x2a, 0xe6, 0xf4, 0xf4]);
    image
}

fn run_probe(qemu: &Path, firmware: &Path) -> Option<i32> {
    let mut cmd = Command::new(qemu);
    cmd.args(["-nodefaults", "-no-user-config", "-machine", "pc", "-m", "16", "-display", "none"])
        .args(Accel::Kvm.args())
        .args(["-monitor", "none", "-serial", "none", "-no-reboot", "-device", "isa-debug-exit,iobase=0xf4,iosize=1"])
        .arg("-bios")
        .arg(firmware)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().map_err(|e| log::debug!("KVM probe: cannot start {}: {e}", qemu.display())).ok()?;
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).ok()?);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = match rx.recv_timeout(PROBE_TIMEOUT) {
        Ok(status) => status,
        Err(_) => {
            // Not reaped yet (the waiting thread has not returned), so the pid is still ours.
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            log::debug!("KVM probe hung for {PROBE_TIMEOUT:?}");
            return None;
        }
    };
    let code = status.ok()?.code();
    log::debug!("KVM probe exited with {code:?}");
    code
}

/// Step 2: the kernel, under KVM, must panic for want of a root (and QEMU exit, as
/// `-no-reboot` turns the panic's reboot into an exit) within [`KERNEL_PROBE_TIMEOUT`].
fn probe_kernel(qemu: &Path, kernel: &Path) -> bool {
    if !kernel.is_file() {
        log::debug!("KVM kernel probe: no kernel at {}; trusting the firmware probe", kernel.display());
        return true;
    }
    let mut cmd = Command::new(qemu);
    cmd.args(["-nodefaults", "-no-user-config", "-machine", "pc", "-m", "256", "-display", "none"])
        .args(Accel::Kvm.args())
        .args(["-no-reboot", "-serial", "none", "-monitor", "none"])
        .arg("-kernel")
        .arg(kernel)
        .args(["-append", "panic=-1 quiet"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let Ok(mut child) = cmd.spawn() else { return false };
    let Ok(pid) = i32::try_from(child.id()) else { return false };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    match rx.recv_timeout(KERNEL_PROBE_TIMEOUT) {
        Ok(status) => {
            log::debug!("KVM kernel probe: {status:?}");
            status.is_ok_and(|s| s.success())
        }
        Err(_) => {
            // Not reaped yet (the waiting thread has not returned), so the pid is still ours.
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            log::debug!("KVM kernel probe: no panic within {KERNEL_PROBE_TIMEOUT:?}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_firmware_is_never_written_through_a_planted_symlink() {
        let victim = tempfile_path("victim");
        std::fs::write(&victim, b"untouched").expect("write victim");
        let tmp = std::env::temp_dir();
        let pid = std::process::id();
        let planted = [
            tmp.join(format!("hoist-qemu-kvm-probe-{pid}.bin")),
            tmp.join(format!("hoist-qemu-kvm-probe-{pid}-0.bin")),
        ];
        for link in &planted {
            let _ = std::fs::remove_file(link);
            std::os::unix::fs::symlink(&victim, link).expect("plant");
        }
        let written = write_probe_firmware().expect("firmware written");
        assert_eq!(std::fs::read(&victim).expect("read victim"), b"untouched");
        assert!(!planted.contains(&written), "{}", written.display());
        assert_eq!(std::fs::read(&written).expect("read firmware"), probe_firmware());
        for path in planted.iter().chain([&written, &victim]) {
            let _ = std::fs::remove_file(path);
        }
    }

    fn tempfile_path(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("hoist-accel-test-{}-{name}", std::process::id()))
    }

    #[test]
    fn env_values() {
        assert_eq!(from_env(None), Accel::Auto);
        assert_eq!(from_env(Some("tcg")), Accel::Tcg);
        assert_eq!(from_env(Some(" kvm\n")), Accel::Kvm);
        assert_eq!(from_env(Some("auto")), Accel::Auto);
        assert_eq!(from_env(Some("hvf")), Accel::Auto);
    }

    #[test]
    fn explicit_choices_skip_the_probe() {
        let missing = Path::new("/nonexistent/qemu");
        assert_eq!(Accel::Tcg.resolve(missing, missing), Accel::Tcg);
        assert_eq!(Accel::Kvm.resolve(missing, missing), Accel::Kvm);
        assert_eq!(Accel::Kvm.args(), ["-accel", "kvm", "-cpu", "host"]);
        assert_eq!(Accel::Tcg.args(), ["-accel", "tcg", "-cpu", "max"]);
    }

    #[test]
    fn firmware_reset_vector() {
        let image = probe_firmware();
        assert_eq!(image.len(), 65536);
        assert_eq!(&image[0xfff0..0xfff4], &[0xb0, 0x2a, 0xe6, 0xf4]);
    }
}
