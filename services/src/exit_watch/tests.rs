use std::process::{Child, Command};
use std::time::Duration;

use super::*;

#[test]
fn the_fields_are_counted_from_the_last_parenthesis() {
    // A real line of a zombie, its command name made hostile: spaces and parentheses.
    let mut fields: Vec<String> = (3..=52).map(|n| n.to_string()).collect();
    fields[0] = "Z".into();
    fields[22 - 3] = "4242".into();
    fields[52 - 3] = "768".into();
    let text = format!("123 (a) b (c) {}\n", fields.join(" "));
    assert_eq!(parse_stat(&text), Some(Stat { state: 'Z', start_time: 4242, exit_code: 768 }));
    // An old kernel's shorter line, or junk, is None rather than a guess.
    assert_eq!(parse_stat("123 (a) S 1 2 3"), None);
    assert_eq!(parse_stat("no parenthesis"), None);
}

#[test]
fn statuses_read_like_containerd_reports_them() {
    assert_eq!(exit_status(0), 0);
    assert_eq!(exit_status(3 << 8), 3);
    assert_eq!(exit_status(255 << 8), 255);
    assert_eq!(exit_status(libc::SIGTERM), 143);
    // Killed with a core dump: the 0x80 bit is not part of the signal.
    assert_eq!(exit_status(libc::SIGSEGV | 0x80), 128 + libc::SIGSEGV as u32);
}

fn own_cgroup() -> Cgroup {
    let text = std::fs::read_to_string("/proc/self/cgroup").expect("/proc/self/cgroup");
    let path = text.lines().find_map(|l| l.strip_prefix("0::")).expect("a cgroup2 line").to_string();
    Cgroup { root: PathBuf::from("/sys/fs/cgroup"), path }
}

fn spawn(script: &str) -> Child {
    Command::new("sh").arg("-c").arg(script).spawn().expect("spawn sh")
}

async fn within_deadline(pinned: Pinned) -> Option<u32> {
    tokio::time::timeout(Duration::from_secs(10), pinned.exited()).await.expect("the exit is seen within 10 s")
}

#[tokio::test]
async fn an_exit_code_is_read_from_the_zombie() {
    // Our child stays a zombie until we reap it, like a container's init until its shim does.
    let mut child = spawn("sleep 0.2; exit 3");
    let pinned = pin(child.id(), &own_cgroup(), Path::new("/proc")).expect("pinned");
    assert_eq!(within_deadline(pinned).await, Some(3));
    child.wait().expect("reap");
}

#[tokio::test]
async fn a_signal_death_reads_as_128_plus_the_signal() {
    let mut child = spawn("exec sleep 60");
    let pinned = pin(child.id(), &own_cgroup(), Path::new("/proc")).expect("pinned");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM)
        .expect("kill");
    assert_eq!(within_deadline(pinned).await, Some(143));
    child.wait().expect("reap");
}

#[tokio::test]
async fn a_reaped_process_gives_none_so_containerd_answers() {
    let mut child = spawn("exit 7");
    let pinned = pin(child.id(), &own_cgroup(), Path::new("/proc")).expect("pinned");
    child.wait().expect("reap");
    assert_eq!(within_deadline(pinned).await, None);
}

#[test]
fn a_process_outside_the_cgroup_is_not_pinned() {
    let mut child = spawn("exec sleep 60");
    let elsewhere = Cgroup { root: PathBuf::from("/sys/fs/cgroup"), path: "/hoist/not-this-one".into() };
    assert!(pin(child.id(), &elsewhere, Path::new("/proc")).is_none());
    assert!(pin(0, &own_cgroup(), Path::new("/proc")).is_none());
    assert!(pin(u32::MAX, &own_cgroup(), Path::new("/proc")).is_none());
    child.kill().expect("kill");
    child.wait().expect("reap");
}
