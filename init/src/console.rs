//! Console output for PID 1: a `log` backend that writes `hoist-init: ...` lines to the
//! console (our stderr, which the kernel opened on /dev/console), and the boot clock.
//!
//! Timestamps are guest uptime from CLOCK_BOOTTIME, the clock /proc/uptime shows, so the
//! phase lines line up with the kernel's own timestamps and ignore wall-clock jumps.

use std::io::Write;
use std::time::Duration;

use nix::time::{ClockId, clock_gettime};

struct ConsoleLogger;

impl log::Log for ConsoleLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            log::Level::Error => "error: ",
            log::Level::Warn => "warning: ",
            _ => "",
        };
        // One write per line so that lines from several processes do not interleave.
        let line = format!("hoist-init: {level}{}\n", record.args());
        let _ = std::io::stderr().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

static LOGGER: ConsoleLogger = ConsoleLogger;

/// Installs the console logger; `debug` on the kernel command line (hoist.debug) raises the level.
pub fn init_logging(debug: bool) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(if debug { log::LevelFilter::Debug } else { log::LevelFilter::Info });
}

/// Time since boot (CLOCK_BOOTTIME): counts suspend, ignores settimeofday.
pub fn uptime() -> Duration {
    match clock_gettime(ClockId::CLOCK_BOOTTIME) {
        Ok(ts) => Duration::new(ts.tv_sec() as u64, ts.tv_nsec() as u32),
        Err(_) => Duration::ZERO,
    }
}

pub fn uptime_ms() -> u128 {
    uptime().as_millis()
}

/// Prints one boot-timeline line (`hoist: phase NAME uptime_ms=N`) and records it in
/// `timeline` so the supervisor can print the whole breakdown with the ready line.
pub fn phase(timeline: &mut Vec<(String, u128)>, name: &str) {
    let ms = uptime_ms();
    let _ = std::io::stderr().write_all(format!("hoist: phase {name} uptime_ms={ms}\n").as_bytes());
    timeline.push((name.to_string(), ms));
}

/// What [`say`] puts before its line.
pub const PREFIX: &str = "hoist: ";
/// PID 1's last line before a requested reboot. QEMU under `-no-reboot` ends on a reboot and
/// on a kernel panic (`panic=-1`) alike, with a reset: `hoist run` tells them apart by it.
pub const REBOOTING: &str = "rebooting";
/// PID 1's last line before powering off.
pub const POWER_OFF: &str = "power off";

/// A `hoist: ...` line on the console, for lines tests and users look for. Never panics.
pub fn say(line: &str) {
    let _ = std::io::stderr().write_all(format!("{PREFIX}{line}\n").as_bytes());
}

/// Is `console_line` (as read from the serial console) the line `say(line)` printed?
pub fn is_said(console_line: &str, line: &str) -> bool {
    console_line.trim().strip_prefix(PREFIX) == Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn said_lines_are_recognised() {
        assert!(is_said("hoist: rebooting\r", REBOOTING));
        assert!(!is_said("hoist: rebooting soon", REBOOTING));
        assert!(!is_said("rebooting", REBOOTING));
        assert!(!is_said("hoist: power off", REBOOTING));
    }
}
