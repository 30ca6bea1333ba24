//! Memory figures printed once at the ready line: what PID 1, the supervisor and
//! containerd cost, read from /proc (smaps_rollup, because VmRSS is synced lazily on 6.1).

use std::path::Path;

/// `Rss:` in kB from a smaps_rollup text.
pub fn rss_kb(smaps_rollup: &str) -> Option<u64> {
    smaps_rollup.lines().find_map(|l| l.strip_prefix("Rss:")?.trim().strip_suffix("kB")?.trim().parse().ok())
}

fn rss_of(proc: &Path, pid: &str) -> Option<u64> {
    rss_kb(&std::fs::read_to_string(proc.join(pid).join("smaps_rollup")).ok()?)
}

/// The pid of the first process whose comm is `name`.
pub fn pid_of(proc: &Path, name: &str) -> Option<String> {
    std::fs::read_dir(proc).ok()?.flatten().find_map(|e| {
        let pid = e.file_name().to_str()?.to_string();
        pid.parse::<u32>().ok()?;
        let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
        (comm.trim() == name).then_some(pid)
    })
}

/// `pid1_rss_kb`, `supervisor_rss_kb`, `containerd_rss_kb` (those that cannot be read are
/// left out), for the console's [`hoist_guest::console::Line::Memory`].
pub fn memory(proc: &Path) -> Vec<(String, u64)> {
    let mut fields = Vec::new();
    let me = std::process::id().to_string();
    for (label, pid) in
        [("pid1", Some("1".to_string())), ("supervisor", Some(me)), ("containerd", pid_of(proc, "containerd"))]
    {
        if let Some(kb) = pid.and_then(|p| rss_of(proc, &p)) {
            fields.push((format!("{label}_rss_kb"), kb));
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_is_read_from_smaps_rollup() {
        let text =
            "55d0-7ffd ---p 00000000 00:00 0 [rollup]\nRss:                1788 kB\nPss:                 653 kB\n";
        assert_eq!(rss_kb(text), Some(1788));
        assert_eq!(rss_kb("Pss: 1 kB\n"), None);
    }

    #[test]
    fn memory_reads_this_machines_proc() {
        let fields = memory(Path::new("/proc"));
        assert!(fields.iter().any(|(k, kb)| k == "supervisor_rss_kb" && *kb > 0), "{fields:?}");
    }
}
