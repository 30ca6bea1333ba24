//! The default confinement, seen from inside services on one booted host: no capability
//! in effect for a non-root user and none inheritable or ambient; `drop = ["ALL"]` starts;
//! the seccomp filter refuses namespace, keyring, bpf, perf and userfaultfd syscalls with
//! EPERM while a shell and a web server work, and `seccomp = "unconfined"` lifts it; a
//! fork bomb stops at the default pids limit while the other services, the API and exec
//! keep working; a service that fills its `disk` gets ENOSPC and nothing else notices;
//! each service is in its own cgroup namespace; /proc/interrupts and
//! powercap are masked; readiness probes and `hoist ctl exec` run as confined as the
//! service.

use std::time::Duration;

use hoist_guest::console::Line;
use hoist_tests::host::{Host, text};
use hoist_tests::{boot, build_host, http_get, wait_line};

const HOST: &str = r#"
version = 1
[service.web]
image = "@IMAGE@"
command = ["httpd", "-f", "-p", "80", "-h", "/www"]
ready = { tcp = 80 }

[service.probe]
image = "@IMAGE@"
command = ["sh", "-c", "sysprobe syscalls; unshare -U true 2>/dev/null; echo \"probe unshare -U exit=$?\"; exec sleep 1000000"]
# Ready only if the probe itself has the default capabilities, no more (one process: under
# a loaded TCG host each probe must finish within its 10 s).
start_timeout = "4m"
ready = { exec = ["grep", "-q", "^CapEff:.*00000000a80405fb", "/proc/self/status"] }

[service.user]
image = "@IMAGE@"
user = "1000:1000"
command = ["sh", "-c", "grep -E '^(Cap|Seccomp:|NoNewPrivs:)' /proc/self/status | sed 's/^/user /'; echo \"user cgroup=$(cat /proc/self/cgroup)\"; echo \"user interrupts=$(wc -c < /proc/interrupts)\"; if [ ! -e /sys/devices/virtual/powercap ]; then echo user powercap=absent; elif grep -q ' /sys/devices/virtual/powercap ' /proc/self/mountinfo; then echo user powercap=masked; else echo user powercap=exposed; fi; exec sleep 1000000"]
start_timeout = "4m"
ready = { exec = ["grep", "-q", "^Seccomp:.*2", "/proc/self/status"] }

[service.dropall]
image = "@IMAGE@"
capabilities = { drop = ["ALL"] }
command = ["sh", "-c", "echo \"dropall started $(grep ^CapBnd /proc/self/status)\"; exec sleep 1000000"]

[service.raw]
image = "@IMAGE@"
seccomp = "unconfined"
command = ["sh", "-c", "sysprobe syscalls | sed 's/^/raw /'; exec sleep 1000000"]

[service.fill]
image = "@IMAGE@"
disk = "16M"
command = ["sh", "-c", "mkdir -p /tmp; out=$(dd if=/dev/zero of=/tmp/big bs=1M count=64 2>&1); echo \"fill dd exit=$? $out\" | head -1; echo \"fill size=$(wc -c < /tmp/big)\"; exec sleep 1000000"]

# Once the others are up: forking a thousand processes under TCG takes a minute of CPU.
[service.bomb]
image = "@IMAGE@"
command = ["sysprobe", "forkbomb"]
depends_on = ["web", "probe", "user"]
"#;

const WAIT: Duration = Duration::from_secs(300);
/// Seven containers starting at once under TCG on a shared machine: the first exec probes
/// time out (10 s each) until the starts are done, which took 100 s of guest time here.
const READY: Duration = Duration::from_secs(600);

/// [`Host::boot_with`] with a longer wait for the ready line.
fn boot_host(publish: (u16, u16)) -> Host {
    let work = tempfile::tempdir().expect("tempdir").keep();
    let out = build_host(&work, HOST);
    let api = hoist_qemu::free_tcp_port().expect("port");
    let vm = boot(&out, &[(api, hoist_api::PORT), publish]);
    wait_line(&vm, "ready", READY, |l| matches!(l, Line::Ready { .. })).expect("ready");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    Host { work, addr: format!("127.0.0.1:{api}"), rt, vm }
}

/// The first console line of service `name` that contains `needle`, waited for.
fn service_line(host: &Host, name: &str, needle: &str) -> String {
    let prefix = format!("[{name}] ");
    host.vm
        .wait_for(needle, WAIT, |l| l.starts_with(&prefix) && l.contains(needle))
        .unwrap_or_else(|e| panic!("{e}\n{}", host.vm.console_lines().join("\n")))
}

#[test]
fn services_are_confined_by_default() {
    let port = hoist_qemu::free_tcp_port().expect("port");
    let host = boot_host((port, 80));

    // Seccomp: every escape hatch fails with EPERM, for root with the default capabilities.
    for call in ["unshare", "keyctl", "add_key", "bpf", "perf_event_open", "userfaultfd"] {
        let line = service_line(&host, "probe", &format!("sysprobe {call}="));
        assert!(line.ends_with(&format!("sysprobe {call}=EPERM")), "{line}");
    }
    let line = service_line(&host, "probe", "probe unshare -U exit=");
    assert!(!line.ends_with("exit=0"), "{line}");
    // ... and the opt-out is one: unconfined, the same root process may unshare.
    let line = service_line(&host, "raw", "raw sysprobe unshare=");
    assert!(line.ends_with("unshare=ok"), "{line}");

    // Capabilities: nothing in effect, inheritable or ambient for uid 1000.
    for set in ["CapInh", "CapEff", "CapAmb"] {
        let line = service_line(&host, "user", &format!("user {set}:"));
        assert!(line.ends_with("0000000000000000"), "{line}");
    }
    for (key, want) in [("Seccomp:", "2"), ("NoNewPrivs:", "1")] {
        let line = service_line(&host, "user", &format!("user {key}"));
        assert!(line.ends_with(want), "{line}");
    }
    let line = service_line(&host, "dropall", "dropall started");
    assert!(line.ends_with("CapBnd:\t0000000000000000"), "{line}");

    // Cgroup namespace and masked paths.
    let line = service_line(&host, "user", "user cgroup=");
    assert!(line.ends_with("user cgroup=0::/"), "{line}");
    let line = service_line(&host, "user", "user interrupts=");
    assert!(line.ends_with("user interrupts=0"), "{line}");
    let line = service_line(&host, "user", "user powercap=");
    assert!(!line.ends_with("exposed"), "{line}");

    // A full writable layer is ENOSPC for its service only (checked below: the rest works).
    let line = service_line(&host, "fill", "fill dd exit=");
    assert!(!line.contains("exit=0") && line.contains("No space left on device"), "{line}");
    let line = service_line(&host, "fill", "fill size=");
    let size: u64 = line.rsplit_once('=').and_then(|(_, n)| n.trim().parse().ok()).unwrap_or_else(|| panic!("{line}"));
    assert!(size <= 16 << 20, "{line}");

    // The fork bomb stops at the pids limit; the rest of the host keeps working.
    let line = service_line(&host, "bomb", "sysprobe forkbomb stopped at");
    let count: u32 = line
        .rsplit_once(" at ")
        .and_then(|(_, rest)| rest.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(count < hoist_config::Service::DEFAULT_PIDS && line.ends_with("EAGAIN"), "{line}");
    let page = http_get(port, "/", WAIT).expect("web serves while the bomb holds its pids");
    assert!(page.contains("Hello from hoist"), "{page}");
    let status = host.hoist(&["ctl", "status"]);
    assert!(status.status.success(), "{}", text(&status));
    for s in host.status() {
        assert!(s.state == "running" && s.ready, "{s:?}");
    }

    // `hoist ctl exec` runs as confined as the service it enters.
    let out = host.hoist(&["ctl", "exec", "user", "--", "cat", "/proc/self/status"]);
    assert!(out.status.success(), "{}", text(&out));
    let status = String::from_utf8_lossy(&out.stdout);
    for want in [
        "Uid:\t1000\t1000\t1000\t1000",
        "CapInh:\t0000000000000000",
        "CapEff:\t0000000000000000",
        "CapAmb:\t0000000000000000",
        "NoNewPrivs:\t1",
        "Seccomp:\t2",
    ] {
        assert!(status.lines().any(|l| l == want), "exec lacks {want:?}:\n{status}");
    }
    let out = host.hoist(&["ctl", "exec", "probe", "--", "sysprobe", "syscalls"]);
    let probed = String::from_utf8_lossy(&out.stdout);
    assert!(probed.contains("sysprobe unshare=EPERM") && probed.contains("sysprobe keyctl=EPERM"), "{}", text(&out));
}
