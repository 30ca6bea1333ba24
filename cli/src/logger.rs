//! The CLI's logger: what the libraries report with `log` (an image's skipped device
//! nodes, a foreign image allowed by `--allow-foreign-arch`) goes to stderr as
//! `hoist: warning: ...`, escaped ([`hoist_guest::text::escape_message`]), above the
//! build's spinner when one is shown. Warnings and errors by default; each `-v` shows one
//! level more (info, debug, trace), and `HOIST_LOG=off|error|warn|info|debug|trace`
//! overrides both.

use std::sync::Mutex;

use log::{Level, LevelFilter, Log, Metadata, Record};

/// The spinner on screen, if any: lines are printed above it, not through it.
static BAR: Mutex<Option<indicatif::ProgressBar>> = Mutex::new(None);

struct Stderr;

/// Installs the logger at the level `-v` (counted) and `HOIST_LOG` ask for.
pub fn init(verbose: u8) {
    let level = level(verbose, std::env::var("HOIST_LOG").ok().as_deref());
    // Only fails if a logger is already set, which would then be kept.
    let _ = log::set_logger(&Stderr);
    log::set_max_level(level);
}

fn level(verbose: u8, env: Option<&str>) -> LevelFilter {
    if let Some(level) = env.and_then(|e| e.trim().parse::<LevelFilter>().ok()) {
        return level;
    }
    match verbose {
        0 => LevelFilter::Warn,
        1 => LevelFilter::Info,
        2 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    }
}

/// Routes log lines above `bar` while it is shown (None: plain stderr again).
pub fn set_bar(bar: Option<indicatif::ProgressBar>) {
    if let Ok(mut slot) = BAR.lock() {
        *slot = bar;
    }
}

fn line(record: &Record<'_>) -> String {
    let message = record.args().to_string();
    let message = hoist_guest::text::escape_message(&message);
    match record.level() {
        Level::Error => format!("hoist: error: {message}"),
        Level::Warn => format!("hoist: warning: {message}"),
        level => format!("hoist: {}: {}: {message}", level.as_str().to_lowercase(), record.target()),
    }
}

impl Log for Stderr {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = line(record);
        match BAR.lock().ok().and_then(|b| b.clone()) {
            Some(bar) if !bar.is_hidden() => bar.suspend(|| eprintln!("{line}")),
            _ => eprintln!("{line}"),
        }
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_level_comes_from_v_unless_hoist_log_says() {
        assert_eq!(level(0, None), LevelFilter::Warn);
        assert_eq!(level(2, None), LevelFilter::Debug);
        assert_eq!(level(9, None), LevelFilter::Trace);
        assert_eq!(level(0, Some("debug")), LevelFilter::Debug);
        assert_eq!(level(3, Some("off")), LevelFilter::Off);
        assert_eq!(level(1, Some("nonsense")), LevelFilter::Info);
    }

    #[test]
    fn lines_are_prefixed_and_escaped() {
        let args = format_args!("layer x: skipping \x1b[31mred\u{9b}: fifo");
        let record = Record::builder().args(args).level(Level::Warn).target("hoist_images::oci").build();
        assert_eq!(line(&record), "hoist: warning: layer x: skipping \\x1b[31mred\\u{009b}: fifo");
    }
}
