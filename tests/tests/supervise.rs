//! Supervision under faults (FAULTS.md), each group one real boot: restart policies,
//! backoff and the start limit, OOM, pids limit, stop timeouts; dependencies and every
//! readiness kind; onboot stages; crashes of the supervisor, containerd and a shim.

use std::time::Duration;

use hoist_guest::console::Line;
use hoist_qemu::Vm;
use hoist_tests::{BOOT_TIMEOUT, boot, build_host, count_lines, line_index, outcome, wait_count, wait_line};

const WAIT: Duration = Duration::from_secs(60);

/// Index of the first console line containing `needle`, for lines outside the console
/// contract (service output, onboot results); panics with the console if none.
fn text_index(vm: &Vm, needle: &str) -> usize {
    let lines = vm.console_lines();
    lines
        .iter()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?}:\n{}", lines.join("\n")))
}

/// How many console lines contain `needle` (for lines outside the console contract).
fn text_count(vm: &Vm, needle: &str) -> usize {
    vm.console_lines().iter().filter(|l| l.contains(needle)).count()
}

/// The service's exit, whatever the supervisor does about it.
fn exited(service: &str) -> impl Fn(&Line) -> bool {
    outcome(service, |what, _| what.starts_with("exited "))
}

fn running(name: &str) -> impl Fn(&Line) -> bool {
    move |l| matches!(l, Line::Running { service, .. } if service == name)
}

fn ready(name: &str) -> impl Fn(&Line) -> bool {
    move |l| matches!(l, Line::ServiceReady { service, .. } if service == name)
}

/// Stopped by the shutdown.
fn stopped(name: &str) -> impl Fn(&Line) -> bool {
    move |l| matches!(l, Line::Stopped { service, .. } if service == name)
}

fn is_ready(l: &Line) -> bool {
    matches!(l, Line::Ready { .. })
}

fn is_all_stopped(l: &Line) -> bool {
    matches!(l, Line::AllStopped { .. })
}

fn is_shutdown_started(l: &Line) -> bool {
    matches!(l, Line::ShutdownStarted(_))
}

/// How the shutdown stopped `name` (the HOW of [`Line::Stopped`]).
fn how_stopped(line: &Line) -> &str {
    match line {
        Line::Stopped { how, .. } => how,
        other => panic!("not a stopped line: {other:?}"),
    }
}

fn clean_shutdown(vm: &mut Vm) {
    let exit = vm.shutdown(Duration::from_secs(90)).expect("shutdown");
    assert!(exit.clean, "guest did not power off cleanly: {exit:?}");
}

/// FAULTS 1, 2, 4, 9, 19, 20, 21: restart with backoff then start limit, unaffected by the
/// wall clock jumping years ahead and back; exit 0 under on-failure; OOM reported; fork
/// bomb contained; SIGTERM ignored -> killed after the stop timeout; every shim that
/// exits on the way is reaped (no zombie left under PID 1).
#[test]
fn restart_policies_limits_and_stop_timeouts() {
    let work = tempfile::tempdir().expect("tempdir");
    let toml = r#"
version = 1
[service.crasher]
image = "@IMAGE@"
command = ["sh", "-c", "echo crashing; exit 3"]
restart = "always"
start_limit = { burst = 4, interval = "60s" }
[service.done]
image = "@IMAGE@"
command = ["sh", "-c", "echo done; exit 0"]
restart = "on-failure"
[service.hog]
image = "@IMAGE@"
command = ["sh", "-c", "x=aaaaaaaa; while true; do x=$x$x; done"]
memory = "16M"
restart = "never"
[service.bomb]
image = "@IMAGE@"
command = ["sh", "-c", "f() { f | f & }; f; sleep 1000"]
pids = 40
restart = "never"
[service.stubborn]
image = "@IMAGE@"
command = ["sh", "-c", "trap 'echo stubborn ignores TERM' TERM; while true; do sleep 1; done"]
stop_timeout = "2s"
[service.steady]
image = "@IMAGE@"
command = ["sh", "-c", "echo steady up; exec sleep 100000"]
[service.clock]
image = "@IMAGE@"
capabilities = { add = ["CAP_SYS_TIME"] }
command = ["sh", "-c", "date -s '2040-01-01 00:00:00' >/dev/null && echo clock jumped ahead; sleep 1; date -s '2001-01-01 00:00:00' >/dev/null && echo clock jumped back; exec sleep 100000"]
"#;
    let out = build_host(work.path(), toml);
    let mut vm = boot(&out, &[]);
    let crasher_exit =
        |then: &'static str| outcome("crasher", move |what, t| what == "exited status=3" && t.starts_with(then));
    wait_line(&vm, "start limit", BOOT_TIMEOUT, crasher_exit("failed: start limit")).expect("start limit");
    vm.wait_for_line("[clock] clock jumped back", WAIT).expect("clock jumps");
    text_index(&vm, "[clock] clock jumped ahead");
    let delays: Vec<u64> = vm
        .console_lines()
        .iter()
        .filter_map(|l| match Line::parse(l)? {
            Line::Outcome { service, what, then, .. } if service == "crasher" && what == "exited status=3" => {
                then.strip_prefix("restart in ")?.strip_suffix(" ms")?.parse().ok()
            }
            _ => None,
        })
        .collect();
    assert_eq!(delays, [100, 200, 400], "backoff delays");
    let done = outcome("done", |what, then| what == "exited status=0" && then == "not restarted");
    wait_line(&vm, "done exited", WAIT, done).expect("on-failure, status 0");
    let oom = wait_line(&vm, "hog exited", WAIT, exited("hog")).expect("hog OOM");
    assert!(matches!(&oom, Line::Outcome { what, .. } if what == "exited status=137 (OOM killed)"), "{oom:?}");
    vm.wait_for_line("[steady] steady up", WAIT).expect("steady runs");
    // The fork bomb is held by its pids limit: the machine still starts and stops services.
    assert_eq!(count_lines(&vm, exited("steady")), 0);
    assert_eq!(count_lines(&vm, exited("stubborn")), 0);
    vm.powerdown().expect("powerdown");
    vm.wait_for_line("[stubborn] stubborn ignores TERM", WAIT).expect("stubborn got TERM");
    let stubborn = wait_line(&vm, "stubborn stopped", WAIT, stopped("stubborn")).expect("stubborn stopped");
    assert!(how_stopped(&stubborn).starts_with("killed after 2000 ms stop timeout"), "{stubborn:?}");
    let swept = wait_line(&vm, "all processes stopped", WAIT, is_all_stopped).expect("sweep");
    assert_eq!(swept.field("zombies"), Some(0), "{swept:?}");
    let exit = vm.wait_exit(Duration::from_secs(90)).expect("exit");
    assert!(exit.clean, "{exit:?}");
    assert_eq!(count_lines(&vm, is_shutdown_started), 1);
}

/// A three-level chain starts in order and stops in reverse; tcp, file and exec readiness;
/// FAULTS 3: a service that never gets ready is stopped after its start timeout and its
/// dependent never starts, saying what it waits for; onboot stages run first, in order.
#[test]
fn dependencies_readiness_and_onboot() {
    let work = tempfile::tempdir().expect("tempdir");
    let toml = r#"
version = 1
[[onboot]]
name = "first"
image = "@IMAGE@"
command = ["sh", "-c", "echo onboot first"]
[[onboot]]
name = "optional"
image = "@IMAGE@"
command = ["sh", "-c", "exit 7"]
[service.a]
image = "@IMAGE@"
command = ["sh", "-c", "sleep 1; httpd -f -p 8081 -h /www & trap 'kill $!; exit 0' TERM; wait"]
ready = { tcp = 8081 }
[service.b]
image = "@IMAGE@"
depends_on = ["a"]
command = ["sh", "-c", "sleep 1; touch /ready-b; trap 'exit 0' TERM; while true; do sleep 1; done"]
ready = { file = "/ready-b" }
[service.c]
image = "@IMAGE@"
depends_on = ["b"]
command = ["sh", "-c", "sleep 1; touch /ok; trap 'exit 0' TERM; while true; do sleep 1; done"]
ready = { exec = ["test", "-f", "/ok"] }
[service.never]
image = "@IMAGE@"
command = ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
ready = { tcp = 9999 }
start_timeout = "3s"
restart = "never"
[service.blocked]
image = "@IMAGE@"
depends_on = ["never"]
command = ["sh", "-c", "echo blocked should not run"]
[service.notified]
image = "@IMAGE@"
command = ["sh", "-c", "sleep 1; exec sd-notify READY=1 sleep 100000"]
ready = { notify = true }
[service.impostor]
image = "@IMAGE@"
command = ["sh", "-c", "sd-notify READY=1; trap 'exit 0' TERM; while true; do sleep 1; done"]
ready = { notify = true }
start_timeout = "3s"
restart = "never"
[service.props]
image = "@IMAGE@"
user = "1000:1000"
readonly_rootfs = true
binds = ["/etc/hostname:/host-hostname:ro"]
command = ["sh", "-c", "echo uid=$(id -u); touch /x 2>/dev/null || echo rootfs is read-only; echo host is $(cat /host-hostname); exec sleep 100000"]
[[onshutdown]]
name = "farewell"
image = "@IMAGE@"
command = ["sh", "-c", "echo farewell ran"]
"#;
    let out = build_host(work.path(), toml);
    let mut vm = boot(&out, &[]);
    let ready_line = wait_line(&vm, "ready", BOOT_TIMEOUT, is_ready).expect("ready line");
    // a, b, c, notified, props
    assert_eq!(ready_line.field("services"), Some(5), "{ready_line:?}");
    let onboot = text_index(&vm, "hoist: onboot first done");
    let optional = text_index(&vm, "hoist: onboot optional failed: exited status=7; not required");
    assert!(onboot < optional && optional < line_index(&vm, "a running", running("a")));
    assert!(line_index(&vm, "a ready", ready("a")) < line_index(&vm, "b running", running("b")));
    assert!(line_index(&vm, "b ready", ready("b")) < line_index(&vm, "c running", running("c")));
    line_index(&vm, "c ready", ready("c"));
    text_index(&vm, "hoist: service never not ready after 3000 ms");
    text_index(&vm, "hoist: service blocked waiting for never");
    assert_eq!(text_count(&vm, "blocked should not run"), 0);
    assert_eq!(count_lines(&vm, running("blocked")), 0);
    // sd_notify: READY=1 counts from the main process only.
    line_index(&vm, "notified ready", ready("notified"));
    text_index(&vm, "hoist: service impostor not ready after 3000 ms");
    assert_eq!(count_lines(&vm, ready("impostor")), 0);
    // user, read-only rootfs, bind mount
    text_index(&vm, "[props] uid=1000");
    text_index(&vm, "[props] rootfs is read-only");
    text_index(&vm, "[props] host is hoist");
    vm.powerdown().expect("powerdown");
    wait_line(&vm, "a stopped", WAIT, stopped("a")).expect("a stopped");
    let stopped_at = |name: &str| line_index(&vm, &format!("{name} stopped"), stopped(name));
    assert!(stopped_at("c") < stopped_at("b"));
    assert!(stopped_at("b") < stopped_at("a"));
    vm.wait_for_line("[farewell] farewell ran", WAIT).expect("onshutdown stage ran");
    assert!(stopped_at("a") < text_index(&vm, "[farewell] farewell ran"));
    let exit = vm.wait_exit(Duration::from_secs(90)).expect("exit");
    assert!(exit.clean, "{exit:?}");
}

/// A failed required onboot stage stops the boot in a reported state; the host stays up
/// and still shuts down cleanly.
#[test]
fn a_required_onboot_failure_stops_the_boot() {
    let work = tempfile::tempdir().expect("tempdir");
    let toml = r#"
version = 1
[[onboot]]
name = "format"
image = "@IMAGE@"
command = ["sh", "-c", "echo cannot format; exit 2"]
required = true
[service.web]
image = "@IMAGE@"
command = ["sh", "-c", "echo web should not start"]
"#;
    let out = build_host(work.path(), toml);
    let mut vm = boot(&out, &[]);
    let failed = vm.wait_for_line("hoist: boot failed:", BOOT_TIMEOUT).expect("boot failed line");
    assert!(failed.contains("required onboot format failed: exited status=2"), "{failed}");
    vm.wait_for_line("[format] cannot format", WAIT).expect("its output");
    assert_eq!(text_count(&vm, "web should not start"), 0);
    clean_shutdown(&mut vm);
}

/// FAULTS 5, 7, 17, 23: the supervisor SIGKILLed (PID 1 restarts it, it re-adopts, no
/// service restarted); containerd SIGKILLed (restarted, containers keep running, waits
/// resume, a later exit is seen); one service's shim SIGKILLed (only that service
/// restarts); a SIGTERM/SIGINT storm to PID 1 gives one shutdown.
#[test]
fn crashes_of_supervisor_containerd_and_a_shim() {
    let work = tempfile::tempdir().expect("tempdir");
    let toml = r#"
version = 1
[service.steady]
image = "@IMAGE@"
command = ["sh", "-c", "echo steady up; trap 'exit 0' TERM; while true; do sleep 1; done"]
[service.victim]
image = "@IMAGE@"
command = ["sh", "-c", "echo victim up; trap 'exit 0' TERM; while true; do sleep 1; done"]
[service.late]
image = "@IMAGE@"
command = ["sh", "-c", "sleep 12; echo late exits; exit 4"]
restart = "never"
[service.once]
image = "@IMAGE@"
command = ["sh", "-c", "echo once ran"]
restart = "never"
[service.chaos]
image = "@IMAGE@"
host_pid = true
command = ["sh", "-c", """
sleep 3; echo chaos: supervisor; killall -9 hoist-supervisor
sleep 4; echo chaos: containerd; killall -9 containerd
sleep 10; echo chaos: shim
for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null | grep -q 'i[d] victim' && kill -9 ${p#/proc/}; done
sleep 6; echo chaos: storm; kill -TERM 1; kill -INT 1; kill -TERM 1; sleep 1000
"""]
"#;
    let out = build_host(work.path(), toml);
    let mut vm = boot(&out, &[]);
    wait_line(&vm, "ready", BOOT_TIMEOUT, is_ready).expect("ready");
    vm.wait_for_line("[chaos] chaos: supervisor", WAIT).expect("chaos 1");
    let adopted = vm.wait_for_line("hoist: service steady adopted", WAIT).expect("re-adopted after supervisor crash");
    assert!(adopted.contains("restarts=0"), "{adopted}");
    assert_eq!(count_lines(&vm, is_ready), 1, "the ready line is printed once per boot");
    let once = line_index(&vm, "once exited", outcome("once", |what, _| what == "exited status=0"));
    assert!(once < text_index(&vm, "[chaos] chaos: supervisor"));
    vm.wait_for_line("[chaos] chaos: containerd", WAIT).expect("chaos 2");
    let late = outcome("late", |what, then| what == "exited status=4" && then == "not restarted");
    wait_line(&vm, "late exited", WAIT, late).expect("exit seen after containerd restart");
    vm.wait_for_line("[chaos] chaos: shim", WAIT).expect("chaos 3");
    wait_line(&vm, "victim exited", WAIT, exited("victim")).expect("victim's exit seen");
    wait_count(&vm, "[victim] victim up", 2, WAIT).expect("victim restarted");
    assert_eq!(text_count(&vm, "[steady] steady up"), 1, "steady never restarted");
    assert_eq!(count_lines(&vm, exited("steady")), 0);
    let storm = Duration::from_secs(90);
    wait_line(&vm, "all processes stopped", storm, is_all_stopped).expect("storm shut the machine down");
    assert_eq!(text_count(&vm, "[victim] victim up"), 2, "victim restarted exactly once");
    assert_eq!(text_count(&vm, "[once] once ran"), 1, "an exit under restart=never survives a supervisor restart");
    let exit = vm.wait_exit(Duration::from_secs(60)).expect("exit");
    assert!(exit.clean, "{exit:?}");
    assert_eq!(count_lines(&vm, is_shutdown_started), 1, "one shutdown for three signals");
}

/// FAULTS 6: containerd frozen for longer than a shim retries its exit event (~15 s) while
/// a service exits: the exit is not lost. It is seen through the main process's pidfd at
/// once, or, when the shim reaped the process first, found when containerd answers again.
/// Then the supervisor is killed and PID 1 asked to power off during the supervisor's
/// restart backoff: PID 1 starts it once more, and services still stop in order. With
/// the network off (no resolv.conf used to mean no service could start).
#[test]
fn an_exit_while_containerd_is_frozen_is_not_lost() {
    let work = tempfile::tempdir().expect("tempdir");
    let toml = r#"
version = 1
[network]
enabled = false
[service.brief]
image = "@IMAGE@"
command = ["sh", "-c", "sleep 6; echo brief exits; exit 5"]
restart = "never"
[service.steady]
image = "@IMAGE@"
command = ["sh", "-c", "echo steady up; trap 'exit 0' TERM; while true; do sleep 1; done"]
[service.chaos]
image = "@IMAGE@"
host_pid = true
command = ["sh", "-c", "sleep 2; echo chaos: freeze; killall -STOP containerd; sleep 20; echo chaos: thaw; killall -CONT containerd; sleep 10; echo chaos: shutdown; killall -9 hoist-supervisor; kill -TERM 1; exec sleep 100000"]
"#;
    let out = build_host(work.path(), toml);
    let mut vm = boot(&out, &[]);
    wait_line(&vm, "ready", BOOT_TIMEOUT, is_ready).expect("ready");
    vm.wait_for_line("[chaos] chaos: freeze", WAIT).expect("freeze");
    vm.wait_for_line("[brief] brief exits", WAIT).expect("brief's output still reaches the console");
    // Seen through the pidfd during the freeze, or, when the shim reaped it first, from
    // containerd once it answers again: either way with its status.
    let brief = outcome("brief", |what, then| what == "exited status=5" && then == "not restarted");
    wait_line(&vm, "brief exited", WAIT, brief).expect("exit found");
    vm.wait_for_line("[chaos] chaos: thaw", WAIT).expect("thaw");
    assert_eq!(text_count(&vm, "[steady] steady up"), 1);
    assert_eq!(count_lines(&vm, exited("steady")), 0);
    vm.wait_for_line("[chaos] chaos: shutdown", WAIT).expect("supervisor killed, then a power-off");
    let steady = wait_line(&vm, "steady stopped", WAIT, stopped("steady")).expect("steady stopped in order");
    assert_eq!(how_stopped(&steady), "status=0", "{steady:?}");
    let exit = vm.wait_exit(Duration::from_secs(90)).expect("exit");
    assert!(exit.clean, "{exit:?}");
    assert_eq!(text_count(&vm, "[steady] steady up"), 1, "nothing started during the shutdown");
    // containerd's answer, late after the thaw, did not report the exit a second time.
    assert_eq!(count_lines(&vm, exited("brief")), 1, "one exit, reported once");
}
