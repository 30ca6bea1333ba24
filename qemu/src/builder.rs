//! The QEMU command line, and starting it.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::QemuError;
use crate::accel::Accel;
use crate::vm::Vm;
use crate::workdir::WorkDir;

/// The QEMU binary, looked up in `PATH`.
pub(crate) const QEMU: &str = "qemu-system-x86_64";
/// The kernel command line of [`VmBuilder::new`]: serial console, and reboot (which ends
/// the run, because of `-no-reboot`) instead of hanging on a panic.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 panic=-1";
/// QEMU creates its QMP socket before the guest can run; this only covers a loaded machine.
const QMP_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// `sun_path` holds 108 bytes including the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;

/// How to boot one VM. Build it, then [`spawn`](VmBuilder::spawn) it.
#[derive(Debug, Clone)]
pub struct VmBuilder {
    qemu: PathBuf,
    kernel: PathBuf,
    initrd: PathBuf,
    cmdline: String,
    memory_mib: u32,
    cpus: u32,
    machine: String,
    publish: Vec<(u16, u16)>,
    echo_console: bool,
    work_dir: Option<PathBuf>,
    accel: Accel,
    /// Raw disk images, attached as virtio-blk with a serial: (file, serial).
    disks: Vec<(PathBuf, String)>,
    extra: Vec<String>,
    net: Net,
}

/// Where the VM's one NIC (virtio-net, `eth0` in the guest) is plugged.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Net {
    /// QEMU's user-mode network (slirp), with these extra options (e.g. `net=10.9.0.0/24`).
    User(String),
    /// An existing tap device on the host; published ports do not apply.
    Tap(String),
}

impl VmBuilder {
    /// A VM booting `kernel` with `initrd`, 1024 MiB, 1 CPU, [`DEFAULT_CMDLINE`].
    pub fn new(kernel: impl Into<PathBuf>, initrd: impl Into<PathBuf>) -> Self {
        VmBuilder {
            qemu: PathBuf::from(QEMU),
            kernel: kernel.into(),
            initrd: initrd.into(),
            cmdline: DEFAULT_CMDLINE.to_string(),
            memory_mib: 1024,
            cpus: 1,
            machine: "pc".to_string(),
            publish: Vec::new(),
            echo_console: false,
            work_dir: None,
            accel: Accel::Auto,
            disks: Vec::new(),
            extra: Vec::new(),
            net: Net::User(String::new()),
        }
    }

    /// Reads DIR/kernel, DIR/initrd.img and DIR/cmdline (one line) as written by `hoist build`.
    pub fn from_build_dir(dir: &Path) -> Result<Self, QemuError> {
        let kernel = dir.join("kernel");
        let initrd = dir.join("initrd.img");
        for path in [&kernel, &initrd] {
            std::fs::metadata(path).map_err(|source| QemuError::Input { path: path.clone(), cause: source })?;
        }
        let cmdline_path = dir.join("cmdline");
        let cmdline = std::fs::read_to_string(&cmdline_path)
            .map_err(|source| QemuError::Input { path: cmdline_path, cause: source })?;
        Ok(Self::new(kernel, initrd).cmdline(cmdline.trim()))
    }

    /// The kernel command line (replaces the default).
    pub fn cmdline(mut self, s: impl Into<String>) -> Self {
        self.cmdline = s.into();
        self
    }

    /// Guest memory (default 1024).
    pub fn memory_mib(mut self, m: u32) -> Self {
        self.memory_mib = m;
        self
    }

    /// Guest CPUs (default 1).
    pub fn cpus(mut self, n: u32) -> Self {
        self.cpus = n;
        self
    }

    /// QEMU machine type (default `pc`, which boots faster than `q35` under TCG).
    pub fn machine(mut self, m: impl Into<String>) -> Self {
        self.machine = m.into();
        self
    }

    /// Forwards 127.0.0.1:`host_port` to the guest's TCP `guest_port` (user-mode network).
    pub fn publish(mut self, host_port: u16, guest_port: u16) -> Self {
        self.publish.push((host_port, guest_port));
        self
    }

    /// Copies console output to our stdout (and QEMU's stderr to ours) as it arrives.
    pub fn echo_console(mut self, yes: bool) -> Self {
        self.echo_console = yes;
        self
    }

    /// Where `console.log` and `qmp.sock` go; created if missing, never removed.
    /// Default: a fresh temp dir, removed on drop unless kept.
    pub fn work_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.work_dir = Some(dir.into());
        self
    }

    /// The accelerator (default [`Accel::Auto`]).
    pub fn accel(mut self, a: Accel) -> Self {
        self.accel = a;
        self
    }

    /// Attaches the raw image `file` as a virtio-blk disk whose serial is `serial` (the
    /// guest sees it in `/sys/block/vdX/serial`). The caller checks the serial: at most
    /// 20 bytes, and no comma.
    pub fn disk(mut self, file: impl Into<PathBuf>, serial: impl Into<String>) -> Self {
        self.disks.push((file.into(), serial.into()));
        self
    }

    /// Extra options for the user-mode network, comma-separated (QEMU's `-netdev user`
    /// syntax: `net=10.9.0.0/24`, `dhcpstart=...`, `dns=...`).
    pub fn user_net_options(mut self, options: impl Into<String>) -> Self {
        self.net = Net::User(options.into());
        self
    }

    /// Plugs the NIC into the host's tap device `ifname` (made by the caller, e.g. `ip
    /// tuntap add NAME mode tap`) instead of the user-mode network. Published ports need
    /// the user-mode network and are ignored.
    pub fn tap(mut self, ifname: impl Into<String>) -> Self {
        self.net = Net::Tap(ifname.into());
        self
    }

    /// One more argument for QEMU, appended after ours.
    pub fn extra_arg(mut self, a: impl Into<String>) -> Self {
        self.extra.push(a.into());
        self
    }

    /// The full QEMU command, for `--dry-run` and logs. `Accel::Auto` is resolved (which may
    /// run the KVM probe). Without [`work_dir`](Self::work_dir) the socket path names a
    /// placeholder; [`spawn`](Self::spawn) uses a fresh temp dir. QEMU starts paused (`-S`):
    /// `spawn` sends `cont` once QMP is connected.
    pub fn command(&self) -> Command {
        let work = self.work_dir.clone().unwrap_or_else(|| std::env::temp_dir().join("hoist-qemu-PID-N"));
        self.command_in(&work.join("qmp.sock"), self.accel.resolve(&self.qemu, &self.kernel))
    }

    fn command_in(&self, qmp_socket: &Path, accel: Accel) -> Command {
        let mut cmd = Command::new(&self.qemu);
        cmd.args(["-nodefaults", "-no-user-config", "-machine", &self.machine])
            .args(accel.args())
            .args(["-m", &self.memory_mib.to_string(), "-smp", &self.cpus.to_string()])
            .args(["-display", "none", "-no-reboot", "-S"])
            .arg("-kernel")
            .arg(&self.kernel)
            .arg("-initrd")
            .arg(&self.initrd)
            .args(["-append", &self.cmdline])
            .args(["-serial", "stdio", "-monitor", "none"])
            .arg("-qmp")
            .arg(qmp_arg(qmp_socket))
            .args(["-netdev", &self.netdev(), "-device", "virtio-net-pci,netdev=n0", "-device", "virtio-rng-pci"]);
        for (i, (file, serial)) in self.disks.iter().enumerate() {
            let mut drive = OsString::from("file=");
            drive.push(escape_commas(file));
            drive.push(format!(",if=none,id=disk{i},format=raw"));
            cmd.arg("-drive").arg(drive).args(["-device", &format!("virtio-blk-pci,drive=disk{i},serial={serial}")]);
        }
        cmd.args(&self.extra);
        cmd
    }

    fn netdev(&self) -> String {
        let options = match &self.net {
            Net::Tap(ifname) => return format!("tap,id=n0,ifname={ifname},script=no,downscript=no"),
            Net::User(options) => options,
        };
        let mut s = "user,id=n0".to_string();
        if !options.is_empty() {
            s.push(',');
            s.push_str(options);
        }
        for (host, guest) in &self.publish {
            s.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"));
        }
        s
    }

    /// Starts QEMU, connects QMP and lets the guest run.
    pub fn spawn(self) -> Result<Vm, QemuError> {
        for path in [&self.kernel, &self.initrd].into_iter().chain(self.disks.iter().map(|(f, _)| f)) {
            std::fs::metadata(path).map_err(|source| QemuError::Input { path: path.clone(), cause: source })?;
        }
        let work = WorkDir::create(self.work_dir.as_deref())?;
        let socket = work.path().join("qmp.sock");
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(QemuError::SocketPath { path: socket });
        }
        let work_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| QemuError::WorkDir { path, cause: source }
        };
        match std::fs::remove_file(&socket) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(work_err(&socket)(e)),
            _ => {}
        }
        let log_path = work.path().join("console.log");
        let log = std::fs::File::create(&log_path).map_err(work_err(&log_path))?;

        let mut cmd = self.command_in(&socket, self.accel.resolve(&self.qemu, &self.kernel));
        // Own process group: a terminal Ctrl-C reaches only us, and we power the guest off.
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
        log::info!("starting {cmd:?}");
        let child = crate::process::spawn_tied(cmd)
            .map_err(|source| QemuError::Spawn { program: self.qemu.display().to_string(), cause: source })?;
        Vm::start(child, work, log, log_path, socket, self.echo_console, QMP_CONNECT_TIMEOUT)
    }
}

/// `-qmp unix:PATH,server=on,wait=off`; commas in QEMU option values are doubled.
fn qmp_arg(socket: &Path) -> OsString {
    let mut arg = OsString::from("unix:");
    arg.push(escape_commas(socket));
    arg.push(",server=on,wait=off");
    arg
}

/// A path as one value of a QEMU option list: each comma doubled.
fn escape_commas(path: &Path) -> OsString {
    let mut bytes = Vec::new();
    for &b in path.as_os_str().as_encoded_bytes() {
        bytes.push(b);
        if b == b',' {
            bytes.push(b',');
        }
    }
    OsString::from_vec(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(cmd: &Command) -> Vec<String> {
        cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn command_line() {
        let b = VmBuilder::new("/k/vmlinuz", "/k/initrd.img")
            .accel(Accel::Tcg)
            .cpus(2)
            .memory_mib(512)
            .publish(8080, 80)
            .publish(2222, 22)
            .work_dir("/run/x")
            .extra_arg("-d")
            .extra_arg("guest_errors");
        let cmd = b.command();
        assert_eq!(cmd.get_program(), "qemu-system-x86_64");
        let a = args(&cmd).join(" ");
        assert_eq!(
            a,
            "-nodefaults -no-user-config -machine pc -accel tcg -cpu max -m 512 -smp 2 -display none -no-reboot -S \
             -kernel /k/vmlinuz -initrd /k/initrd.img -append console=ttyS0 panic=-1 -serial stdio -monitor none \
             -qmp unix:/run/x/qmp.sock,server=on,wait=off \
             -netdev user,id=n0,hostfwd=tcp:127.0.0.1:8080-:80,hostfwd=tcp:127.0.0.1:2222-:22 \
             -device virtio-net-pci,netdev=n0 -device virtio-rng-pci -d guest_errors"
        );
    }

    #[test]
    fn the_nic_goes_on_user_networking_with_options_or_on_a_tap() {
        let netdev = |b: VmBuilder| {
            let a = args(&b.accel(Accel::Tcg).command());
            let at = a.iter().position(|x| x == "-netdev").expect("-netdev");
            a[at + 1].clone()
        };
        let b = || VmBuilder::new("/k", "/i").publish(7443, 7443);
        assert_eq!(
            netdev(b().user_net_options("net=10.9.0.0/24")),
            "user,id=n0,net=10.9.0.0/24,hostfwd=tcp:127.0.0.1:7443-:7443"
        );
        assert_eq!(netdev(b().tap("hoisttap0")), "tap,id=n0,ifname=hoisttap0,script=no,downscript=no");
    }

    #[test]
    fn disks_are_virtio_blk_with_their_serials() {
        let b = VmBuilder::new("/k", "/i").accel(Accel::Tcg).disk("/d/a,b.img", "data1").disk("/d/logs.img", "logs");
        let args: Vec<String> = b.command().get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        let joined = args.join(" ");
        assert!(
            joined.contains(
                "-drive file=/d/a,,b.img,if=none,id=disk0,format=raw -device virtio-blk-pci,drive=disk0,serial=data1"
            ),
            "{joined}"
        );
        assert!(
            joined.contains(
                "-drive file=/d/logs.img,if=none,id=disk1,format=raw -device virtio-blk-pci,drive=disk1,serial=logs"
            ),
            "{joined}"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        for f in ["k", "i"] {
            std::fs::write(dir.path().join(f), f).expect("file");
        }
        let missing = dir.path().join("missing.img");
        let err = VmBuilder::new(dir.path().join("k"), dir.path().join("i"))
            .disk(&missing, "x")
            .spawn()
            .expect_err("missing disk");
        assert!(err.to_string().contains(&missing.display().to_string()), "{err}");
    }

    #[test]
    fn commas_in_the_socket_path_are_escaped() {
        assert_eq!(qmp_arg(Path::new("/a,b/qmp.sock")), "unix:/a,,b/qmp.sock,server=on,wait=off");
    }

    #[test]
    fn build_dir() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = VmBuilder::from_build_dir(dir.path()).expect_err("empty dir");
        let want =
            format!("cannot read {}: No such file or directory (os error 2)", dir.path().join("kernel").display());
        assert_eq!(err.to_string(), want);
        std::fs::write(dir.path().join("kernel"), "k").expect("kernel");
        std::fs::write(dir.path().join("initrd.img"), "i").expect("initrd");
        let err = VmBuilder::from_build_dir(dir.path()).expect_err("no cmdline");
        assert!(err.to_string().contains("/cmdline: No such file"), "{err}");
        std::fs::write(dir.path().join("cmdline"), "console=ttyS0 quiet\n").expect("cmdline");
        let b = VmBuilder::from_build_dir(dir.path()).expect("complete").accel(Accel::Tcg);
        let a = args(&b.command());
        let i = a.iter().position(|x| x == "-append").expect("-append");
        assert_eq!(a[i + 1], "console=ttyS0 quiet");
        assert_eq!(
            a[a.iter().position(|x| x == "-kernel").expect("-kernel") + 1],
            dir.path().join("kernel").to_str().expect("utf-8")
        );
    }

    #[test]
    fn spawn_reports_a_missing_kernel() {
        let err = VmBuilder::new("/nonexistent/kernel", "/nonexistent/initrd").spawn().expect_err("missing kernel");
        assert_eq!(err.to_string(), "cannot read /nonexistent/kernel: No such file or directory (os error 2)");
    }
}
