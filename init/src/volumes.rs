//! The volume helper: PID 1 runs its own binary again as `/init --volumes`, a child that
//! finds, checks and mounts every `[volume.NAME]` and writes how each ended up
//! ([`hoist_guest::volume::State`]) for the supervisor. A child, because it runs e2fsprogs
//! and waits for them: in PID 1 the main loop's reaper would take their exit statuses.
//!
//! Per volume, in a thread of its own, with every wait bounded:
//! 1. find the disk by serial or by-id name (sysfs), or by the label or UUID of the ext
//!    filesystem on it, polling until the volume's `wait` has passed; two disks that
//!    match are refused rather than guessed between;
//! 2. read its first and last MiB ([`hoist_guest::disk`]): an ext filesystem with the
//!    volume's label is checked with `e2fsck -p` (exit 4 and up: left unmounted, said
//!    why, never retried in a loop); a blank disk, or one with hoist's format marker, is
//!    formatted; anything else is refused and left untouched, named in the reason;
//! 3. formatting writes the marker into the disk's last block first, runs mke2fs on all
//!    but the last MiB, then zeroes the marker: a power cut anywhere before that leaves the
//!    marker, and the next boot formats again;
//! 4. mounts ext4 `nodev,nosuid` at [`hoist_guest::volume::mount_point`].

use std::io::Read;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hoist_guest::disk::{self, Found};
use hoist_guest::paths;
use hoist_guest::volume::{Selector, Spec, State, mount_point, state_path};

use crate::blockdev::{self, Disk};
use crate::console;

/// The argument that makes `/init` the volume helper (only when it is not PID 1).
pub const ARG: &str = "--volumes";

/// Drivers of the disks a volume can be on (and the virtio PCI transport under virtio_blk).
const BLOCK_DRIVERS: &[&str] = &["virtio_pci", "virtio_blk", "virtio_scsi", "nvme", "sd_mod", "ahci", "ata_piix"];
/// How often the disks are listed again while one is awaited.
const POLL: Duration = Duration::from_millis(100);
/// The most of a tool's output kept for the console (its end).
const OUTPUT_MAX: usize = 4096;

/// Starts the helper; PID 1's reaper collects it when it exits. Its pid, if it started.
pub fn spawn() -> Option<nix::unistd::Pid> {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg(ARG).env_clear().env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").stdin(Stdio::null());
    cmd.process_group(0);
    let child = cmd.spawn();
    if let Err(e) = &child {
        // Nothing will write the states: say so in each, so services do not wait for ever.
        log::error!("volume helper: {e}");
        if let Ok(config) = crate::read_boot_config(Path::new(paths::BOOT_CONFIG)) {
            for spec in &config.volumes {
                write_state(&spec.name, &failed(spec.required, format!("the volume helper did not start: {e}")));
            }
        }
    }
    child.ok().map(|c| nix::unistd::Pid::from_raw(c.id() as i32))
}

/// The helper process: sets up every volume, one thread each, then exits.
pub fn main() -> ! {
    console::init_logging(
        std::fs::read_to_string("/proc/cmdline")
            .is_ok_and(|c| crate::system::cmdline_flag(&c, hoist_guest::kernel::DEBUG_FLAG)),
    );
    log::debug!("volumes: helper up at {} ms", console::uptime_ms());
    let config = match crate::read_boot_config(Path::new(paths::BOOT_CONFIG)) {
        Ok(c) => c,
        Err(e) => {
            log::error!("volumes: {}: {e}", paths::BOOT_CONFIG);
            std::process::exit(1)
        }
    };
    // The disks' drivers first: the network thread loads every device's, disks among
    // them, but not necessarily before a volume's wait has run out.
    match crate::loader() {
        Ok(mut loader) => {
            loader.load_for_devices_among(Path::new("/sys"), |m| BLOCK_DRIVERS.contains(&m));
            log::debug!(
                "volumes: disk drivers [{}] loaded at {} ms",
                loader.report.loaded.join(" "),
                console::uptime_ms()
            );
            for (module, why) in &loader.report.failed {
                log::warn!("volumes: module {module}: {why}");
            }
        }
        Err(e) => log::warn!("volumes: {e}"),
    }
    let claims = std::sync::Arc::new(Claims::default());
    let threads: Vec<_> = config
        .volumes
        .into_iter()
        .map(|spec| {
            let claims = claims.clone();
            std::thread::spawn(move || {
                let name = spec.name.clone();
                let job = std::panic::AssertUnwindSafe(|| setup(&spec, &claims));
                let state = std::panic::catch_unwind(job)
                    .unwrap_or_else(|_| failed(spec.required, "volume setup panicked".into()));
                if let State::Failed { reason, .. } = &state {
                    let kind = if spec.required { "required volume" } else { "volume" };
                    console::say(&format!("{kind} {name} not mounted: {reason}"));
                }
                write_state(&name, &state);
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    std::process::exit(0)
}

fn failed(required: bool, reason: String) -> State {
    State::Failed { uptime_ms: console::uptime_ms() as u64, required, reason }
}

fn write_state(name: &str, state: &State) {
    let path = state_path(name);
    if let Err(e) = hoist_guest::atomic::write(&path, state.format().as_bytes()) {
        log::error!("{}: {e}", path.display());
    }
}

/// Disks taken, by `MAJOR:MINOR`, and the volume that took each: two selectors can name one
/// disk (`serial:X` and `/dev/disk/by-id/virtio-X`), and it must not be formatted or
/// checked twice at once.
#[derive(Default)]
struct Claims(std::sync::Mutex<std::collections::BTreeMap<String, String>>);

impl Claims {
    fn claim(&self, disk: &Disk, volume: &str) -> Result<(), String> {
        let mut taken = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match taken.get(&disk.dev) {
            Some(other) if other != volume => {
                Err(format!("/dev/{} is also volume {other}'s disk: one disk is one volume", disk.name))
            }
            _ => {
                taken.insert(disk.dev.clone(), volume.to_string());
                Ok(())
            }
        }
    }
}

fn setup(spec: &Spec, claims: &Claims) -> State {
    match find_check_mount(spec, claims) {
        Ok(state) => state,
        Err(reason) => failed(spec.required, reason),
    }
}

fn find_check_mount(spec: &Spec, claims: &Claims) -> Result<State, String> {
    let started = Instant::now();
    let disk = find(spec, started + spec.wait)?;
    claims.claim(&disk, &spec.name)?;
    log::debug!("volume {}: found {} at {} ms", spec.name, disk.name, console::uptime_ms());
    let node = format!("/dev/{}", disk.name);
    let found = probe(&node, &disk)?;
    let what = format!("{node} ({})", spec.selector);
    match found {
        Found::Ext { ref label, .. } if spec.label.as_ref().is_none_or(|want| want == label) => check(spec, &node)?,
        Found::Blank if let Some(at) = backup_superblock(&node, &disk)? => {
            return Err(format!(
                "{what} has a zeroed start but an ext superblock at byte {at}: a damaged filesystem, not a blank \
                 disk; refused, left untouched (e2fsck -b can recover it)"
            ));
        }
        Found::Blank | Found::Formatting { .. } => {
            if matches!(found, Found::Formatting { .. }) {
                console::say(&format!("volume {}: {what} holds an unfinished format; formatting again", spec.name));
            }
            format(spec, &node, &disk)?;
        }
        other => {
            let want = spec.label.as_deref().unwrap_or(&spec.name);
            return Err(format!(
                "{what} holds {}, not an ext4 filesystem labelled {want:?}: refused, left untouched",
                other.describe()
            ));
        }
    }
    let uuid = match probe(&node, &disk)? {
        Found::Ext { uuid, .. } => uuid,
        other => return Err(format!("{what} holds {} after formatting", other.describe())),
    };
    mount(&spec.name, &node)?;
    let ms = started.elapsed().as_millis();
    console::say(&format!("volume {} mounted: {what} ext4 UUID {uuid} in {ms} ms", spec.name));
    Ok(State::Mounted { uptime_ms: console::uptime_ms() as u64, device: node, uuid })
}

/// The one disk the selector names, once it appears; two that match are refused.
fn find(spec: &Spec, deadline: Instant) -> Result<Disk, String> {
    loop {
        let disks = blockdev::disks(Path::new("/sys"));
        let found: Vec<Disk> = match &spec.selector {
            Selector::Label(_) | Selector::Uuid(_) => {
                disks.into_iter().filter(|d| fs_matches(d, &spec.selector)).collect()
            }
            selector => disks.into_iter().filter(|d| blockdev::matches(d, selector)).collect(),
        };
        match &found[..] {
            [one] => return Ok(one.clone()),
            [] if Instant::now() < deadline => std::thread::sleep(POLL),
            [] => {
                let secs = spec.wait.as_secs_f64();
                let seen: Vec<String> = blockdev::disks(Path::new("/sys"))
                    .iter()
                    .map(|d| format!("{} serial={}", d.name, d.serial.as_deref().unwrap_or("-")))
                    .collect();
                let seen = if seen.is_empty() { "none".to_string() } else { seen.join(", ") };
                return Err(format!("no disk with {} appeared within {secs:.1}s (disks: {seen})", spec.selector));
            }
            many => {
                let names: Vec<&str> = many.iter().map(|d| d.name.as_str()).collect();
                return Err(format!(
                    "{} matches {} disks ({}): refusing to guess",
                    spec.selector,
                    many.len(),
                    names.join(", ")
                ));
            }
        }
    }
}

/// Whether the ext filesystem on `disk` has the label or UUID `selector` names.
fn fs_matches(disk: &Disk, selector: &Selector) -> bool {
    let node = format!("/dev/{}", disk.name);
    match (probe(&node, disk), selector) {
        (Ok(Found::Ext { label, .. }), Selector::Label(want)) => label == *want,
        (Ok(Found::Ext { uuid, .. }), Selector::Uuid(want)) => uuid == *want,
        _ => false,
    }
}

/// Opens the node read-only after checking it is the block device sysfs named.
fn open(node: &str, disk: &Disk, write: bool) -> Result<std::fs::File, String> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(node)
        .map_err(|e| format!("{node}: {e}"))?;
    let meta = file.metadata().map_err(|e| format!("{node}: {e}"))?;
    let dev = format!("{}:{}", libc::major(meta.rdev()), libc::minor(meta.rdev()));
    if !meta.file_type().is_block_device() || dev != disk.dev {
        return Err(format!("{node} is not the block device {} that sysfs names", disk.dev));
    }
    Ok(file)
}

fn probe(node: &str, disk: &Disk) -> Result<Found, String> {
    let file = open(node, disk, false)?;
    let size = disk.size;
    let len = disk::WINDOW.min(size) as usize;
    let mut head = vec![0; len];
    let mut tail = vec![0; len];
    let read = |buf: &mut [u8], at: u64| file.read_exact_at(buf, at).map_err(|e| format!("reading {node}: {e}"));
    read(&mut head, 0)?;
    read(&mut tail, size - len as u64)?;
    Ok(disk::probe(&disk::Window { size, head: &head, tail: &tail }))
}

/// The first backup ext superblock found on the disk, if any.
fn backup_superblock(node: &str, disk: &Disk) -> Result<Option<u64>, String> {
    let file = open(node, disk, false)?;
    let mut buf = [0u8; 1024];
    for at in disk::backup_superblocks(disk.size) {
        file.read_exact_at(&mut buf, at).map_err(|e| format!("reading {node}: {e}"))?;
        if disk::is_ext_superblock(&buf) {
            return Ok(Some(at));
        }
    }
    Ok(None)
}

/// `e2fsck -p`: what it fixed is said; what it could not fix leaves the volume unmounted.
fn check(spec: &Spec, node: &str) -> Result<(), String> {
    let started = Instant::now();
    let (status, output) = run(paths::E2FSCK, &["-p", node])?;
    let secs = started.elapsed().as_secs_f64();
    let summary = match status {
        0 => "clean".to_string(),
        1 | 2 => "errors corrected".to_string(),
        code => {
            let last = output.lines().last().unwrap_or("").to_string();
            let what = if code & 4 != 0 { "errors it cannot fix" } else { "it could not check" };
            return Err(format!("e2fsck -p {node} exited {code} ({what}: {last}); left unmounted, run e2fsck by hand"));
        }
    };
    console::say(&format!("volume {}: e2fsck {node}: {summary} in {secs:.2}s", spec.name));
    if status != 0 {
        for line in output.lines().take(20) {
            console::say(&format!("volume {}: e2fsck: {line}", spec.name));
        }
    }
    Ok(())
}

fn format(spec: &Spec, node: &str, disk: &Disk) -> Result<(), String> {
    if disk.size < disk::MIN_SIZE {
        return Err(format!(
            "{node} is {} bytes, less than the {} MiB a volume needs",
            disk.size,
            disk::MIN_SIZE >> 20
        ));
    }
    let started = Instant::now();
    let marker_at = disk.size - disk::MARKER_LEN as u64;
    let put = |block: &[u8]| -> Result<(), String> {
        let file = open(node, disk, true)?;
        file.write_all_at(block, marker_at).and_then(|()| file.sync_all()).map_err(|e| format!("{node}: {e}"))
    };
    put(&disk::marker_block(&spec.name))?;
    let blocks = ((disk.size - disk::RESERVED_TAIL) / 4096).to_string();
    let label = spec.label.as_deref().unwrap_or(&spec.name);
    let args = ["-t", "ext4", "-F", "-q", "-b", "4096", "-L", label, "-E", "nodiscard", node, &blocks];
    let (status, output) = run(paths::MKE2FS, &args)?;
    if status != 0 {
        return Err(format!("mke2fs {node} exited {status}: {}", output.trim()));
    }
    put(&vec![0; disk::MARKER_LEN])?;
    let secs = started.elapsed().as_secs_f64();
    console::say(&format!("volume {}: formatted {node} ({} MiB) as ext4 in {secs:.2}s", spec.name, disk.size >> 20));
    Ok(())
}

/// Runs a tool to its end: exit status and the first [`OUTPUT_MAX`] bytes of its output.
fn run(program: &str, args: &[&str]) -> Result<(i32, String), String> {
    let mut child = Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("MKE2FS_CONFIG", paths::MKE2FS_CONF)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{program}: {e}"))?;
    let mut output = Vec::new();
    // Both pipes drained, the rest of each dropped past the cap, so the tool never blocks.
    let stderr = child.stderr.take();
    let errs = std::thread::spawn(move || drain(stderr));
    output.extend(drain(child.stdout.take()));
    output.extend(errs.join().unwrap_or_default());
    let status = child.wait().map_err(|e| format!("{program}: {e}"))?;
    let code =
        status.code().unwrap_or_else(|| 128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0));
    Ok((code, String::from_utf8_lossy(&output).into_owned()))
}

fn drain(pipe: Option<impl Read>) -> Vec<u8> {
    let Some(mut pipe) = pipe else { return Vec::new() };
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = pipe.read(&mut buf) {
        if n == 0 {
            break;
        }
        // The end is kept: a tool's verdict is its last line.
        kept.extend_from_slice(&buf[..n]);
        if kept.len() > OUTPUT_MAX {
            kept.drain(..kept.len() - OUTPUT_MAX);
        }
    }
    kept
}

/// Who may use ext4's reserved blocks besides processes with CAP_SYS_RESOURCE: a uid and
/// gid no process runs as. So a full volume is full for every service (root ones too:
/// their capability set lacks CAP_SYS_RESOURCE unless the config adds it), while
/// containerd, the supervisor and the shims (root, all capabilities) still write
/// containerd's root and the logs when they share the volume (`[state]`).
pub const RESERVE_ID: u32 = 4_294_967_294;

fn mount(name: &str, node: &str) -> Result<(), String> {
    use nix::mount::MsFlags;
    let target = mount_point(name);
    std::fs::create_dir_all(&target).map_err(|e| format!("{}: {e}", target.display()))?;
    let flags = MsFlags::MS_NODEV | MsFlags::MS_NOSUID;
    let data = format!("errors=remount-ro,resuid={RESERVE_ID},resgid={RESERVE_ID}");
    nix::mount::mount(Some(node), &target, Some("ext4"), flags, Some(data.as_str()))
        .map_err(|e| format!("mounting {node} on {}: {e}", target.display()))
}
