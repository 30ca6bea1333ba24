//! `hoist run`: boot a built host under QEMU, console on the terminal. Ctrl-C (or SIGTERM)
//! asks the guest to power off through QMP (the ACPI power button) and waits; QEMU is
//! killed if the guest has not powered off by the deadline. Exit status 0 only when the
//! guest powered itself off.

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
    /// Print the QEMU command line and exit
    #[arg(long)]
    dry_run: bool,
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
    let mut builder =
        hoist_qemu::VmBuilder::from_build_dir(&args.dir)?.memory_mib(args.memory).cpus(args.cpus).echo_console(true);
    for p in &args.publish {
        let (host, guest) = parse_publish(p)?;
        builder = builder.publish(host, guest);
    }
    // The control API, on a free local port, recorded for `hoist ctl --target DIR`.
    let api_port = hoist_qemu::free_tcp_port()?;
    builder = builder.publish(api_port, hoist_services::api::PORT).work_dir(args.dir.join("run"));
    if args.dry_run {
        println!("{:?}", builder.command());
        return Ok(ExitCode::SUCCESS);
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }
    let mut vm = builder.spawn()?;
    let record = args.dir.join(crate::ctl::RUN_RECORD);
    let api = format!("127.0.0.1:{api_port}");
    std::fs::write(&record, serde_json::json!({ "api": api, "qemu_pid": vm.pid() }).to_string())?;
    let _remove_record = RemoveOnDrop(record);
    eprintln!(
        "hoist: QEMU pid {}, console log {}, control API {api} (hoist ctl --target {})",
        vm.pid(),
        vm.console_log_path().display(),
        args.dir.display()
    );
    loop {
        match vm.wait_exit(Duration::from_millis(200)) {
            Ok(exit) => return Ok(report(exit)),
            Err(hoist_qemu::QemuError::Timeout { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        if stop.load(Ordering::Relaxed) {
            eprintln!("\nhoist: asking the guest to power off (waiting up to {} s)", args.shutdown_timeout);
            let exit = vm.shutdown(Duration::from_secs(args.shutdown_timeout))?;
            return Ok(report(exit));
        }
    }
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn report(exit: hoist_qemu::VmExit) -> ExitCode {
    if exit.clean {
        eprintln!("hoist: guest powered off");
        ExitCode::SUCCESS
    } else {
        eprintln!("hoist: guest did not power off cleanly: {}", exit.reason);
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_specs_are_checked() {
        assert_eq!(parse_publish("8080:80").expect("ok"), (8080, 80));
        assert!(parse_publish("8080").is_err());
        assert!(parse_publish("0:80").is_err());
        assert!(parse_publish("x:80").expect_err("bad").to_string().contains("\"x\" is not a port"));
    }
}
