//! Console output for PID 1: a `log` backend that writes `hoist-init: ...` lines to the
//! console (our stderr, which the kernel opened on /dev/console), the `hoist: ...` lines
//! others read (typed, [`hoist_guest::console::Line`]), and the boot clock.
//!
//! Timestamps are guest uptime from CLOCK_BOOTTIME, the clock /proc/uptime shows, so the
//! phase lines line up with the kernel's own timestamps and ignore wall-clock jumps.

use std::io::Write;
use std::time::Duration;

use hoist_guest::console::{Line, PREFIX};
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

/// Prints one boot-timeline line ([`Line::Phase`]) and records it in `timeline` so the
/// supervisor can print the whole breakdown with the ready line.
pub fn phase(timeline: &mut Vec<(String, u64)>, name: &str) {
    let uptime_ms = uptime_ms() as u64;
    print(&Line::Phase { name: name.to_string(), uptime_ms });
    timeline.push((name.to_string(), uptime_ms));
}

/// A console line that others read (`hoist run`, the tests). Never panics.
pub fn print(line: &Line) {
    let _ = std::io::stderr().write_all(format!("{line}\n").as_bytes());
}

/// A free-text `hoist: ...` line for people (a panic, a fatal error). Never panics.
pub fn say(text: &str) {
    let _ = std::io::stderr().write_all(format!("{PREFIX}{text}\n").as_bytes());
}
