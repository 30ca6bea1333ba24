use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::*;

#[test]
fn pids_are_read_one_per_line_and_junk_is_skipped() {
    assert_eq!(parse_pids("12\n7\n"), vec![12, 7]);
    assert_eq!(parse_pids(" 3 \n\nx\n-4\n0\n99999999999\n5"), vec![3, 5]);
    assert!(parse_pids("").is_empty());
}

#[test]
fn only_the_unified_line_in_the_subtree_counts() {
    assert!(in_subtree("0::/hoist/web\n", "/hoist/web"));
    assert!(in_subtree("0::/hoist/web/inner/deeper\n", "/hoist/web"));
    assert!(in_subtree("0::/hoist/web\n", "/hoist/web/"));
    // A sibling whose name starts the same is not below it.
    assert!(!in_subtree("0::/hoist/webcache\n", "/hoist/web"));
    assert!(!in_subtree("0::/hoist\n", "/hoist/web"));
    // A v1 hierarchy's line with the same path does not count.
    assert!(!in_subtree("4:pids:/hoist/web\n0::/other\n", "/hoist/web"));
    assert!(!in_subtree("", "/hoist/web"));
}

/// A fake cgroup tree (a plain directory) whose `cgroup.procs` lists real processes: the
/// check against /proc/PID/cgroup uses this process's real cgroup as the service's.
struct Fake {
    _dir: tempfile::TempDir,
    cgroup: Cgroup,
}

fn own_cgroup() -> String {
    let text = std::fs::read_to_string("/proc/self/cgroup").expect("/proc/self/cgroup");
    text.lines().find_map(|l| l.strip_prefix("0::")).expect("a cgroup2 line").to_string()
}

fn fake(own: &str, pids: &[u32], child_pids: &[u32]) -> Fake {
    let dir = tempfile::tempdir().expect("tempdir");
    let cg = dir.path().join(own.trim_start_matches('/'));
    std::fs::create_dir_all(cg.join("inner")).expect("mkdir");
    let list = |p: &[u32]| p.iter().map(|p| format!("{p}\n")).collect::<String>();
    std::fs::write(cg.join("cgroup.procs"), list(pids)).expect("write");
    std::fs::write(cg.join("inner/cgroup.procs"), list(child_pids)).expect("write");
    Fake { cgroup: Cgroup { root: dir.path().to_path_buf(), path: own.to_string() }, _dir: dir }
}

fn sleeper() -> Child {
    Command::new("sleep").arg("60").spawn().expect("spawn sleep")
}

/// Waits for the child's exit within a deadline; `None` if it still runs.
fn exit_signal(child: &mut Child) -> Option<Option<i32>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status.signal());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

#[test]
fn every_process_of_the_subtree_gets_the_signal() {
    let own = own_cgroup();
    let (mut a, mut b) = (sleeper(), sleeper());
    let f = fake(&own, &[a.id()], &[b.id()]);
    let sent = signal(&f.cgroup, Path::new("/proc"), libc::SIGTERM).expect("signal");
    assert_eq!(sent, Some(2));
    assert_eq!(exit_signal(&mut a), Some(Some(libc::SIGTERM)));
    assert_eq!(exit_signal(&mut b), Some(Some(libc::SIGTERM)));
}

#[test]
fn a_process_outside_the_subtree_is_left_alone() {
    let mut outsider = sleeper();
    // The listed pid is real, but the service's cgroup is one it is not in.
    let f = fake("/hoist/not-this-one", &[outsider.id()], &[]);
    let sent = signal(&f.cgroup, Path::new("/proc"), libc::SIGTERM).expect("signal");
    assert_eq!(sent, Some(0));
    assert_eq!(outsider.try_wait().expect("try_wait"), None, "the outsider must still run");
    outsider.kill().expect("kill");
    let _ = outsider.wait();
}

#[test]
fn exited_pids_are_skipped_and_a_missing_cgroup_is_none() {
    let own = own_cgroup();
    let mut gone = sleeper();
    let pid = gone.id();
    gone.kill().expect("kill");
    gone.wait().expect("wait");
    let f = fake(&own, &[pid], &[]);
    // The pid may have been reused by now, but not by a process of ours; either way nothing
    // of ours is signalled and no error comes back.
    assert!(signal(&f.cgroup, Path::new("/proc"), libc::SIGTERM).expect("signal").is_some());
    let missing = Cgroup { root: f.cgroup.root.clone(), path: "/hoist/never-created".into() };
    assert_eq!(signal(&missing, Path::new("/proc"), libc::SIGTERM).expect("signal"), None);
}

#[test]
fn sigkill_uses_cgroup_kill_when_the_kernel_has_it() {
    let own = own_cgroup();
    let mut a = sleeper();
    let f = fake(&own, &[a.id()], &[]);
    // The fake tree has a cgroup.kill, so nothing is signalled by pid: the write is all.
    let kill = f.cgroup.dir().join("cgroup.kill");
    std::fs::write(&kill, b"").expect("write");
    assert_eq!(signal(&f.cgroup, Path::new("/proc"), libc::SIGKILL).expect("signal"), Some(1));
    assert_eq!(std::fs::read(&kill).expect("read"), b"1");
    assert_eq!(a.try_wait().expect("try_wait"), None);
    // Without one, SIGKILL goes by pid like any other signal.
    std::fs::remove_file(&kill).expect("rm");
    assert_eq!(signal(&f.cgroup, Path::new("/proc"), libc::SIGKILL).expect("signal"), Some(1));
    assert_eq!(exit_signal(&mut a), Some(Some(libc::SIGKILL)));
}
