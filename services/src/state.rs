//! What the supervisor must not forget when it is restarted: per service, the restart
//! count, the current backoff, recent exit times (for the start limit), a failed mark,
//! when its current run started, and why it is not running (stopped by hand, exited under
//! its policy, or waiting out a backoff until a given time); and whether the onboot stage
//! already ran. Times are CLOCK_BOOTTIME milliseconds, which
//! keep counting across our own restarts and ignore wall-clock jumps. Written to a small
//! TOML file under /run (tmpfs: it lives exactly as long as the boot), replaced whole
//! ([`hoist_guest::atomic`]), so a crash mid-write leaves the previous version.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use hoist_guest::paths::SUPERVISOR_STATE as PATH;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Persisted {
    #[serde(default)]
    pub onboot_done: bool,
    /// The ready line was printed (once per boot, not again after our own restart).
    #[serde(default)]
    pub ready_done: bool,
    /// Why the boot stopped (a required onboot stage failed), if it did.
    #[serde(default)]
    pub boot_failed: Option<String>,
    #[serde(default)]
    pub service: BTreeMap<String, Record>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub restarts: u32,
    pub backoff_ms: u64,
    #[serde(default)]
    pub exits_ms: Vec<u64>,
    #[serde(default)]
    pub failed: Option<String>,
    /// Why the service is down and must stay down (or wait) after a supervisor restart.
    #[serde(default)]
    pub held: Option<Held>,
    /// Boot-time ms when the current run started (adopted runs keep their start time).
    #[serde(default)]
    pub started_ms: Option<u64>,
    #[serde(default)]
    pub last_exit: Option<u32>,
    /// [`crate::plan::Plan::id`] of the plan the current task was started from.
    #[serde(default)]
    pub plan: Option<String>,
}

/// A service that is not running on purpose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Held {
    /// Stopped by hand: stays stopped until started by hand.
    Stopped,
    /// Ended and not restarted, by policy.
    Exited { status: u32 },
    /// Restarts at this boot-time ms.
    Backoff { until_ms: u64 },
}

/// The saved state; a missing or unreadable file is a fresh start.
pub fn load(path: &Path) -> Persisted {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text).unwrap_or_else(|e| {
            log::warn!("{}: {e}; starting with fresh counters", path.display());
            Persisted::default()
        }),
        Err(_) => Persisted::default(),
    }
}

pub fn save(path: &Path, state: &Persisted) -> std::io::Result<()> {
    let text = toml::to_string(state).map_err(std::io::Error::other)?;
    hoist_guest::atomic::write(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_a_missing_file_is_fresh() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/state.toml");
        assert_eq!(load(&path), Persisted::default());
        let mut s = Persisted { onboot_done: true, ..Default::default() };
        let web = Record { restarts: 3, backoff_ms: 400, exits_ms: vec![10, 20], ..Default::default() };
        s.service.insert("web".into(), web);
        let api = Record { held: Some(Held::Backoff { until_ms: 1234 }), started_ms: Some(7), ..Default::default() };
        s.service.insert("api".into(), api);
        s.service.insert("db".into(), Record { held: Some(Held::Exited { status: 3 }), ..Default::default() });
        s.service.insert("ui".into(), Record { held: Some(Held::Stopped), ..Default::default() });
        save(&path, &s).expect("save");
        assert_eq!(load(&path), s);
        std::fs::write(&path, "garbage = [").expect("write");
        assert_eq!(load(&path), Persisted::default());
    }
}
