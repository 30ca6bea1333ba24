//! Generations: every config the host ran or tried this boot. Generation 0 is what
//! `hoist build` put in the initramfs; each apply adds one. A record keeps the config
//! text, its digest, the image digest of every container, the plan, the result and when.
//!
//! The store lives in /run (tmpfs): without a persistent disk, generations last until
//! the reboot, which comes back with generation 0. With `[state]`, PID 1 mounts the state
//! volume's directory there: a reboot of the same build comes back on the generation in
//! force (never a tentative one), and a new build starts the store over. Every file is replaced whole
//! ([`hoist_guest::atomic`]). The generation in force is named by one `current` file,
//! written only once a rollout succeeded; a supervisor restarted mid-apply finds the
//! record still `applying` (or `tentative`), marks it `interrupted`, and goes back to
//! `current`, so the host runs one generation or the other, never a mix.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::diff::Change;

/// Where the generations are kept (on the state volume, bind-mounted by PID 1, when the
/// config has `[state]`).
pub const DIR: &str = hoist_guest::paths::GENERATIONS_DIR;
/// How a record's detail starts when some of its keys wait for a reboot.
pub const NOT_IN_EFFECT: &str = "not in effect until a reboot";
/// Records kept at most (the oldest, other than 0 and the current one, are dropped).
pub const KEEP: usize = 32;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub id: u64,
    /// Wall-clock seconds, for people; never used for timing.
    pub time_unix: i64,
    pub digest: String,
    /// built, applying, tentative, active, superseded, rolled-back, interrupted
    pub result: String,
    #[serde(default)]
    pub detail: String,
    /// The generation in force when this one was applied (rolled back to by default).
    #[serde(default)]
    pub previous: u64,
    /// Image digest of every container, by name.
    #[serde(default)]
    pub images: BTreeMap<String, String>,
    #[serde(default)]
    pub plan: Vec<PlanEntry>,
    /// It was in force at some point (a rollback may go back to it).
    #[serde(default)]
    pub was_active: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanEntry {
    pub service: String,
    pub action: String,
    #[serde(default)]
    pub keys: Vec<String>,
}

impl From<&Change> for PlanEntry {
    fn from(c: &Change) -> Self {
        PlanEntry { service: c.service.clone(), action: c.action.to_string(), keys: c.keys.clone() }
    }
}

pub struct Store {
    dir: PathBuf,
}

/// sha256 of a config text, `sha256:<hex>`.
pub fn digest(text: &str) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(text.as_bytes());
    format!("sha256:{}", d.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

pub fn now_unix() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

impl Store {
    /// The store at `dir` as it is, without setting it up (when [`Store::open`] failed:
    /// every write then fails and says so).
    pub fn at(dir: &Path) -> Self {
        Store { dir: dir.to_path_buf() }
    }

    /// Opens (or starts) the store. Generation 0 is recorded from the built config on
    /// first use. Returns the store and what recovery found (lines for the console).
    pub fn open(
        dir: &Path,
        built_text: &str,
        built_images: BTreeMap<String, String>,
    ) -> std::io::Result<(Self, Vec<String>)> {
        std::fs::create_dir_all(dir)?;
        let store = Store { dir: dir.to_path_buf() };
        let mut notes = Vec::new();
        // Kept from another build (a state volume outlives builds): its generations were
        // made against another generation 0, so they are not this host's to go back to.
        if let Some(r) = store.record(0)
            && (r.digest != digest(built_text) || r.images != built_images)
        {
            for entry in std::fs::read_dir(dir)?.flatten() {
                if entry.file_type().is_ok_and(|t| !t.is_dir()) {
                    std::fs::remove_file(entry.path())?;
                }
            }
            notes.push("generations of another build found: starting over from this build (generation 0)".into());
        }
        if store.record(0).is_none() {
            let record = Record {
                id: 0,
                time_unix: now_unix(),
                digest: digest(built_text),
                result: "active".into(),
                detail: "built by hoist build".into(),
                images: built_images,
                was_active: true,
                ..Default::default()
            };
            store.write_config(0, built_text)?;
            store.save(&record)?;
            store.set_current(0)?;
        }
        let current = store.current();
        for mut r in store.list() {
            if matches!(r.result.as_str(), "applying" | "tentative") {
                notes.push(format!(
                    "generation {} was {} when the supervisor restarted: back on generation {current}",
                    r.id, r.result
                ));
                r.detail =
                    format!("interrupted while {} (supervisor restarted); back on generation {current}", r.result);
                r.result = "interrupted".into();
                store.save(&r)?;
            }
        }
        Ok((store, notes))
    }

    fn path(&self, id: u64, ext: &str) -> PathBuf {
        self.dir.join(format!("{id}.{ext}"))
    }

    /// The generation in force (0 when the pointer is missing or unreadable).
    pub fn current(&self) -> u64 {
        std::fs::read_to_string(self.dir.join("current")).ok().and_then(|t| t.trim().parse().ok()).unwrap_or(0)
    }

    pub fn set_current(&self, id: u64) -> std::io::Result<()> {
        hoist_guest::atomic::write(&self.dir.join("current"), format!("{id}\n").as_bytes())
    }

    pub fn record(&self, id: u64) -> Option<Record> {
        let text = read_capped(&self.path(id, "json"), 16 << 20)?;
        serde_json::from_str(&text).ok()
    }

    pub fn config(&self, id: u64) -> Option<String> {
        read_capped(&self.path(id, "toml"), 8 << 20)
    }

    pub fn save(&self, record: &Record) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?;
        hoist_guest::atomic::write(&self.path(record.id, "json"), &json)
    }

    pub fn write_config(&self, id: u64, text: &str) -> std::io::Result<()> {
        hoist_guest::atomic::write(&self.path(id, "toml"), text.as_bytes())
    }

    /// Every readable record, oldest first.
    pub fn list(&self) -> Vec<Record> {
        let mut ids: Vec<u64> = std::fs::read_dir(&self.dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().to_str()?.strip_suffix(".json")?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort_unstable();
        ids.into_iter().filter_map(|id| self.record(id)).collect()
    }

    pub fn next_id(&self) -> u64 {
        self.list().last().map(|r| r.id + 1).unwrap_or(1)
    }

    /// Records a new generation as `applying` (the pointer stays where it is).
    pub fn begin(&self, record: &Record, text: &str) -> std::io::Result<()> {
        self.write_config(record.id, text)?;
        self.save(record)?;
        self.prune();
        Ok(())
    }

    /// Sets a record's result and detail.
    pub fn mark(&self, id: u64, result: &str, detail: &str) -> std::io::Result<()> {
        let mut r = self.record(id).ok_or_else(|| std::io::Error::other(format!("no generation {id}")))?;
        r.result = result.to_string();
        r.detail = detail.to_string();
        self.save(&r)
    }

    /// `id` is now the generation in force; the one before it is `superseded` (or
    /// `rolled-back`, when this was a rollback to an older one).
    pub fn activate(&self, id: u64, rollback: bool) -> std::io::Result<()> {
        let before = self.current();
        if before != id {
            let (result, detail) = if rollback {
                ("rolled-back", format!("rolled back by request to generation {id}"))
            } else {
                ("superseded", format!("replaced by generation {id}"))
            };
            self.mark(before, result, &detail)?;
        }
        let mut r = self.record(id).ok_or_else(|| std::io::Error::other(format!("no generation {id}")))?;
        if !r.detail.starts_with(NOT_IN_EFFECT) {
            r.detail.clear();
        }
        (r.result, r.was_active) = ("active".into(), true);
        self.save(&r)?;
        self.set_current(id)
    }

    /// The generation in force and the two before it: what a rollback goes back to.
    pub fn lineage(&self) -> Vec<Record> {
        let mut out = Vec::new();
        let mut id = Some(self.current());
        while let Some(r) = id.and_then(|i| self.record(i)).filter(|_| out.len() < 3) {
            id = (r.id != 0).then_some(r.previous);
            out.push(r);
        }
        out
    }

    /// Drops the oldest records past [`KEEP`], never 0, one in flight, or the lineage.
    fn prune(&self) {
        let list = self.list();
        let keep: Vec<u64> = self.lineage().iter().map(|r| r.id).collect();
        let extra = list.len().saturating_sub(KEEP);
        let droppable =
            |r: &&Record| r.id != 0 && !keep.contains(&r.id) && !matches!(r.result.as_str(), "applying" | "tentative");
        for r in list.iter().filter(droppable).take(extra) {
            let _ = std::fs::remove_file(self.path(r.id, "json"));
            let _ = std::fs::remove_file(self.path(r.id, "toml"));
        }
    }
}

/// A file's text, if it exists, is UTF-8 and is no bigger than `cap`.
fn read_capped(path: &Path, cap: u64) -> Option<String> {
    use std::io::Read;
    let f = std::fs::File::open(path).ok()?;
    let mut text = String::new();
    f.take(cap + 1).read_to_string(&mut text).ok()?;
    (text.len() as u64 <= cap).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images() -> BTreeMap<String, String> {
        BTreeMap::from([("a".into(), "sha256:1".into())])
    }

    fn store(dir: &Path) -> Store {
        Store::open(dir, "[service.a]\n", images()).expect("open").0
    }

    #[test]
    fn a_reboot_of_the_same_build_keeps_the_generations_and_a_new_build_starts_over() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = store(dir.path());
        s.begin(&Record { id: 1, result: "applying".into(), ..Default::default() }, "[service.b]\n").expect("begin");
        s.activate(1, false).expect("activate");
        s.begin(&Record { id: 2, result: "tentative".into(), previous: 1, ..Default::default() }, "x").expect("try");
        // The same build boots again: generation 1 is in force, the tentative 2 is not.
        let (s, notes) = Store::open(dir.path(), "[service.a]\n", images()).expect("reboot");
        assert_eq!(s.current(), 1);
        assert_eq!(s.record(2).expect("2").result, "interrupted");
        assert_eq!(notes.len(), 1, "{notes:?}");
        // Another build (other config text, or other images): generation 0 is the new build.
        let other = BTreeMap::from([("a".into(), "sha256:2".into())]);
        let (s, notes) = Store::open(dir.path(), "[service.a]\n", other).expect("new build");
        assert_eq!((s.current(), s.next_id()), (0, 1));
        assert!(s.record(1).is_none() && s.config(1).is_none());
        assert!(notes[0].contains("another build"), "{notes:?}");
        let (s, _) = Store::open(dir.path(), "[service.c]\n", BTreeMap::new()).expect("new text");
        assert_eq!(s.config(0).as_deref(), Some("[service.c]\n"));
    }

    #[test]
    fn generation_zero_is_the_build_and_is_current() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = store(dir.path());
        assert_eq!(s.current(), 0);
        let r = s.record(0).expect("record 0");
        assert_eq!((r.result.as_str(), r.digest.clone()), ("active", digest("[service.a]\n")));
        assert_eq!(s.config(0).as_deref(), Some("[service.a]\n"));
        assert_eq!(s.next_id(), 1);
    }

    #[test]
    fn an_apply_in_flight_at_a_restart_is_interrupted_and_current_stays() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = store(dir.path());
        let r = Record { id: 1, result: "applying".into(), previous: 0, ..Default::default() };
        s.begin(&r, "[service.b]\n").expect("begin");
        let (s, notes) = Store::open(dir.path(), "[service.a]\n", images()).expect("reopen");
        assert_eq!(s.current(), 0);
        assert_eq!(s.record(1).expect("1").result, "interrupted");
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("back on generation 0"), "{notes:?}");
        assert_eq!(s.config(0).as_deref(), Some("[service.a]\n"), "generation 0 is not rewritten");
    }

    #[test]
    fn activating_supersedes_the_one_before_and_a_rollback_says_so() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = store(dir.path());
        s.begin(&Record { id: 1, result: "applying".into(), ..Default::default() }, "x").expect("begin");
        s.activate(1, false).expect("activate");
        assert_eq!(s.current(), 1);
        assert_eq!(s.record(0).expect("0").result, "superseded");
        s.activate(0, true).expect("rollback");
        assert_eq!(s.current(), 0);
        assert_eq!(s.record(1).expect("1").result, "rolled-back");
        assert_eq!(s.record(0).expect("0").result, "active");
    }

    #[test]
    fn pruning_keeps_what_a_rollback_goes_back_to() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = store(dir.path());
        s.begin(&Record { id: 1, result: "applying".into(), previous: 0, ..Default::default() }, "x").expect("1");
        s.activate(1, false).expect("activate 1");
        s.begin(&Record { id: 2, result: "applying".into(), previous: 1, ..Default::default() }, "x").expect("2");
        s.activate(2, false).expect("activate 2");
        assert!(s.record(2).expect("2").was_active);
        assert_eq!(s.lineage().iter().map(|r| r.id).collect::<Vec<_>>(), [2, 1, 0]);
        for id in 3..(KEEP as u64 + 10) {
            s.begin(&Record { id, result: "rolled-back".into(), previous: 2, ..Default::default() }, "x").expect("n");
        }
        assert!(s.record(1).is_some(), "the generation before the current one is kept");
        assert!(s.record(2).is_some() && s.record(0).is_some());
        assert!(s.record(3).is_none(), "the oldest that failed goes first");
        assert!(!s.record(KEEP as u64 + 9).expect("newest").was_active);
    }

    #[test]
    fn old_records_are_pruned_but_never_zero_or_current() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = store(dir.path());
        for id in 1..=(KEEP as u64 + 5) {
            s.begin(&Record { id, result: "rolled-back".into(), ..Default::default() }, "x").expect("begin");
        }
        let ids: Vec<u64> = s.list().iter().map(|r| r.id).collect();
        assert_eq!(ids.len(), KEEP);
        assert_eq!(ids[0], 0);
        assert_eq!(*ids.last().expect("last"), KEEP as u64 + 5);
    }
}
