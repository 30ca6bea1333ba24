//! The boot timeline PID 1 hands to the supervisor in [`crate::paths::TIMELINE`]: one
//! `NAME MS` line per phase, MS being guest uptime in milliseconds. The supervisor adds its
//! own phases and prints the whole list with its ready line ([`crate::console::Line::Timeline`]).

/// Guest uptime in ms (CLOCK_BOOTTIME, what /proc/uptime shows): the timeline's and the
/// log files' clock.
pub fn uptime_ms() -> u128 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into the valid, exclusively borrowed `ts`.
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) } != 0 {
        return 0;
    }
    ts.tv_sec as u128 * 1000 + ts.tv_nsec as u128 / 1_000_000
}

/// The file's text for `phases`.
pub fn format(phases: &[(String, u64)]) -> String {
    phases.iter().map(|(name, ms)| format!("{name} {ms}\n")).collect()
}

/// The phases in `text`; lines that do not parse are skipped.
pub fn parse(text: &str) -> Vec<(String, u64)> {
    text.lines().filter_map(|l| l.split_once(' ').and_then(|(n, ms)| Some((n.to_string(), ms.parse().ok()?)))).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_timeline_reads_back() {
        let phases = vec![("init".to_string(), 1650), ("network".to_string(), 2004)];
        let text = super::format(&phases);
        assert_eq!(text, "init 1650\nnetwork 2004\n");
        assert_eq!(super::parse(&text), phases);
        assert_eq!(super::parse("bad\nx y\nok 3\n"), [("ok".to_string(), 3)]);
    }
}
