//! Choosing the accelerator. `/dev/kvm` can open and still be useless: under nested
//! virtualization QEMU aborts on the first guest instruction ("failed to set MSR"). So the
//! probe runs a real guest: a 64 KiB firmware whose reset vector writes to `isa-debug-exit`,
//! which makes QEMU exit with status 85. Anything else (abort, error, hang past 5 s) is TCG.

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
/// `isa-debug-exit` turns `out 0xf4, 0x2a` into exit status (0x2a << 1) | 1.
const PROBE_OK_STATUS: i32 = 85;

impl Accel {
    /// Resolves `Auto` to `Kvm` or `Tcg`, using `qemu` for the probe.
    pub(crate) fn resolve(self, qemu: &Path) -> Accel {
        match self {
            Accel::Kvm | Accel::Tcg => self,
            Accel::Auto => match from_env(std::env::var(ACCEL_ENV).ok().as_deref()) {
                Accel::Auto => {
                    if kvm_usable_with(qemu) {
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

/// Whether KVM works on this machine with `qemu-system-x86_64`; probed once, then cached.
pub fn kvm_usable() -> bool {
    kvm_usable_with(Path::new(crate::builder::QEMU))
}

fn kvm_usable_with(qemu: &Path) -> bool {
    static USABLE: OnceLock<bool> = OnceLock::new();
    *USABLE.get_or_init(|| {
        let started = Instant::now();
        let usable = probe(qemu);
        log::info!("KVM {} (probe took {:?})", if usable { "works" } else { "unusable: using TCG" }, started.elapsed());
        usable
    })
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
        assert_eq!(Accel::Tcg.resolve(missing), Accel::Tcg);
        assert_eq!(Accel::Kvm.resolve(missing), Accel::Kvm);
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
