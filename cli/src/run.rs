//! `hoist run`: boot a built host under QEMU, console on the terminal. Ctrl-C (or SIGTERM)
//! asks the guest to power off through QMP (the ACPI power button) and waits; QEMU is
//! killed if the guest has not powered off by the deadline. Exit status 0 when the guest
//! powered itself off, or rebooted on request (`hoist ctl reboot`: QEMU runs with
//! `-no-reboot`, so the run ends there); 1 for any other end (a panic, a kill).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;

#[derive(clap::Args)]
pub struct RunArgs {
    /// A directory written by `hoist build`
    dir: PathBuf,
    /// Forward 127.0.0.1:HOST on this machine to the guest's port GUEST (TCP); repeatable
    #[arg(short, long, value_name = "HOST:GUEST")]
    publish: Vec<String>,
    /// Guest memory in MiB
    #[arg(long, default_value_t = 1024)]
    memory: u32,
    /// Guest CPUs
    #[arg(long, default_value_t = 1)]
    cpus: u32,
    /// How long the guest gets to power off after Ctrl-C before QEMU is killed (seconds)
    #[arg(long, default_value_t = 60)]
    shutdown_timeout: u64,
    /// Print the QEMU command line and exit (creates no disk image)
    #[arg(long)]
    dry_run: bool,
    /// Attach a raw disk image as virtio-blk: FILE[,serial=S][,size=N]. A missing FILE is
    /// created sparse (0600) with size N (e.g. 2G); an existing one is used as it is. The
    /// guest finds it by its serial (default disk0, disk1, ...); repeatable
    #[arg(long, value_name = "FILE[,serial=S][,size=N]")]
    disk: Vec<String>,
}

fn parse_publish(spec: &str) -> anyhow::Result<(u16, u16)> {
    let (h, g) =
        spec.split_once(':').with_context(|| format!("--publish {spec}: expected HOST:GUEST, e.g. 8080:80"))?;
    let port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .with_context(|| format!("--publish {spec}: {p:?} is not a port number"))
    };
    Ok((port(h)?, port(g)?))
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    // run.json and run/console.log are written here, as root: not in a directory another
    // user could plant a symlink in.
    let dir = hoist_guest::atomic::Dir::open(&args.dir).with_context(|| args.dir.display().to_string())?;
    dir.check_private().context("build directory")?;
    let mut builder =
        hoist_qemu::VmBuilder::from_build_dir(&args.dir)?.memory_mib(args.memory).cpus(args.cpus).echo_console(true);
    for p in &args.publish {
        let (host, guest) = parse_publish(p)?;
        builder = builder.publish(host, guest);
    }
    let disks = args.disk.iter().enumerate().map(|(i, d)| crate::disk::parse(d, i)).collect::<Result<Vec<_>, _>>()?;
    crate::disk::check_all(&disks)?;
    for d in &disks {
        if !args.dry_run {
            match crate::disk::prepare(d)? {
                crate::disk::Prepared::Created(n) => {
                    eprintln!("hoist: created {} ({n} bytes, sparse), serial {}", d.file.display(), d.serial);
                }
                crate::disk::Prepared::Existing(n) => {
                    if d.size.is_some_and(|s| s != n) {
                        eprintln!(
                            "hoist: {} exists with {n} bytes; size= only applies to a new image, it is used as it is",
                            d.file.display()
                        );
                    }
                }
            }
        }
        builder = builder.disk(&d.file, &d.serial);
    }
    // The control API, on a free local port, recorded for `hoist ctl --target DIR`.
    let api_port = hoist_qemu::free_tcp_port()?;
    builder = builder.publish(api_port, hoist_api::PORT).work_dir(args.dir.join("run"));
    if args.dry_run {
        println!("{:?}", builder.command());
        return Ok(ExitCode::SUCCESS);
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }
    let mut vm = builder.spawn()?;
    let record = args.dir.join(crate::conn::RUN_RECORD);
    let api = format!("127.0.0.1:{api_port}");
    let text = serde_json::json!({ "api": api, "qemu_pid": vm.pid() }).to_string();
    // Into the directory checked above; 0644, as it holds no secret and `hoist ctl` run by
    // another user reads it.
    dir.write(std::ffi::OsStr::new(crate::conn::RUN_RECORD), text.as_bytes(), 0o644)
        .with_context(|| record.display().to_string())?;
    let _remove_record = RemoveOnDrop(record);
    eprintln!(
        "hoist: QEMU pid {}, console log {}, control API {api} (hoist ctl --target {})",
        vm.pid(),
        vm.console_log_path().display(),
        args.dir.display()
    );
    loop {
        match vm.wait_exit(Duration::from_millis(200)) {
            Ok(exit) => return Ok(report(&exit, &vm.console_lines())),
            Err(hoist_qemu::QemuError::Timeout { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        if stop.load(Ordering::Relaxed) {
            eprintln!("\nhoist: asking the guest to power off (waiting up to {} s)", args.shutdown_timeout);
            let exit = vm.shutdown(Duration::from_secs(args.shutdown_timeout))?;
            return Ok(report(&exit, &vm.console_lines()));
        }
    }
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// How a run ended.
#[derive(Debug, PartialEq, Eq)]
enum Ending {
    PoweredOff,
    Rebooted,
    Unclean(String),
}

/// To QEMU a requested reboot and a kernel panic (`panic=-1`) are the same reset. The reboot
/// is the one PID 1 announced last, with no kernel panic after its line; a panic in PID 1
/// itself ends in a power-off, never a reboot.
fn ending(exit: &hoist_qemu::VmExit, console: &[String]) -> Ending {
    use hoist_guest::console::Line;
    use hoist_guest::signals::Action;
    if exit.clean {
        return Ending::PoweredOff;
    }
    let announced = console.iter().rposition(|l| Line::parse(l) == Some(Line::Last(Action::Reboot)));
    if exit.guest_reset() && announced.is_some_and(|i| !console[i..].iter().any(|l| l.contains("Kernel panic"))) {
        return Ending::Rebooted;
    }
    Ending::Unclean(exit.reason.clone())
}

fn report(exit: &hoist_qemu::VmExit, console: &[String]) -> ExitCode {
    match ending(exit, console) {
        Ending::PoweredOff => {
            eprintln!("hoist: guest powered off");
            ExitCode::SUCCESS
        }
        Ending::Rebooted => {
            eprintln!("hoist: guest rebooted; the run ends here (QEMU runs with -no-reboot)");
            ExitCode::SUCCESS
        }
        Ending::Unclean(reason) => {
            eprintln!("hoist: guest did not power off cleanly: {reason}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(clean: bool, reason: &str) -> hoist_qemu::VmExit {
        use std::os::unix::process::ExitStatusExt;
        hoist_qemu::VmExit {
            clean,
            reason: reason.into(),
            status: std::process::ExitStatus::from_raw(0),
            killed: false,
        }
    }

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn a_requested_reboot_is_clean_and_a_panic_is_not() {
        use hoist_guest::console::Line;
        use hoist_guest::signals::Action;
        let reboot = lines(&format!(
            "{}\n{}\n[ 9.1] reboot: Restarting system",
            Line::ShutdownStarted(Action::Reboot),
            Line::Last(Action::Reboot)
        ));
        let panic =
            lines("[ 3.2] Kernel panic - not syncing: Attempted to kill init!\n[ 3.2] Rebooting in 1 seconds..");
        let power_off = lines(&format!("{}\n[ 9.1] reboot: Power down", Line::Last(Action::PowerOff)));
        assert_eq!(ending(&exit(true, "guest-shutdown"), &power_off), Ending::PoweredOff);
        assert_eq!(ending(&exit(false, "guest-reset"), &reboot), Ending::Rebooted);
        assert_eq!(ending(&exit(false, "guest-reset"), &panic), Ending::Unclean("guest-reset".into()));
        // the kernel panicked on the way down after PID 1's line
        let late_panic = [reboot.clone(), panic].concat();
        assert_eq!(ending(&exit(false, "guest-reset"), &late_panic), Ending::Unclean("guest-reset".into()));
        // PID 1's line, but QEMU did not end with a reset
        assert_eq!(ending(&exit(false, "guest-panic"), &reboot), Ending::Unclean("guest-panic".into()));
    }

    #[test]
    fn publish_specs_are_checked() {
        assert_eq!(parse_publish("8080:80").expect("ok"), (8080, 80));
        assert!(parse_publish("8080").is_err());
        assert!(parse_publish("0:80").is_err());
        assert!(parse_publish("x:80").expect_err("bad").to_string().contains("\"x\" is not a port"));
    }
}
