//! What PID 1 found wrong that the host must keep saying, not only log once: a configured
//! kernel module that did not load, containerd or the supervisor given up on after its
//! restart burst. Each goes to the console and into [`PROBLEMS`](hoist_guest::paths::PROBLEMS),
//! one per line, which the supervisor adds to `hoist ctl status`.

use std::path::Path;
use std::sync::Mutex;

/// At most this many problems are kept; a flood of them says no more than the first ones.
const MAX: usize = 64;

static LIST: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Says `problem` on the console and records it in the problems file.
pub fn report(problem: String) {
    log::error!("{problem}");
    let mut list = match LIST.lock() {
        Ok(l) => l,
        Err(poisoned) => poisoned.into_inner(),
    };
    if list.len() < MAX && !list.contains(&problem) {
        list.push(problem);
    }
    // Only the real PID 1 writes the guest's file (not a unit test on a build machine).
    if std::process::id() != 1 {
        return;
    }
    if let Err(e) = write(Path::new(hoist_guest::paths::PROBLEMS), &list) {
        log::warn!("{}: {e}", hoist_guest::paths::PROBLEMS);
    }
}

/// Writes the whole list at `path`, replaced whole, so a reader sees the old list or the
/// new one, never half of one.
pub fn write(path: &Path, problems: &[String]) -> std::io::Result<()> {
    let mut text = problems.join("\n");
    text.push('\n');
    hoist_guest::atomic::write(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_replaced_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("run/hoist/problems");
        write(&path, &["module kvm_intel: No such device".into()]).expect("write");
        write(&path, &["a".into(), "b".into()]).expect("write");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "a\nb\n");
        assert!(!path.with_file_name("problems.tmp").exists());
    }
}
