//! The demo host boots under QEMU, runs its services in containerd, serves a page to the
//! host through a published port, and powers off cleanly on the ACPI power button.

use std::time::Duration;

use hoist_guest::console::Line;
use hoist_tests::{BOOT_TIMEOUT, boot, build_host, http_get, wait_line};

fn is_ready(l: &Line) -> bool {
    matches!(l, Line::Ready { .. })
}

const DEMO: &str = r#"
version = 1
[host]
hostname = "demo"
[service.web]
image = "@IMAGE@"
command = ["httpd", "-f", "-p", "80", "-h", "/www"]
stop_timeout = "5s"
# Served to the host: it waits for the network target (so the ready line does too, and
# the timeline has the network's time).
depends_on = ["network"]
[service.ticker]
image = "@IMAGE@"
command = ["sh", "-c", "trap 'echo ticker got SIGTERM; exit 0' TERM; echo ticker started; while true; do sleep 60 & wait $!; done"]
stop_timeout = "5s"
"#;

#[test]
fn demo_boots_serves_the_page_and_powers_off_cleanly() {
    let work = tempfile::tempdir().expect("tempdir");
    let out = build_host(work.path(), DEMO);
    let port = hoist_qemu::free_tcp_port().expect("port");
    let mut vm = boot(&out, &[(port, 80)]);

    let ready = wait_line(&vm, "ready", BOOT_TIMEOUT, is_ready).expect("ready line");
    assert_eq!(ready.field("services"), Some(2), "{ready:?}");
    assert!(ready.field("uptime_ms").is_some_and(|ms| ms > 0), "{ready:?}");
    let timeline =
        wait_line(&vm, "timeline", Duration::from_secs(5), |l| matches!(l, Line::Timeline(_))).expect("timeline");
    for phase in ["init", "modules", "network", "containerd", "web", "ticker", "ready"] {
        assert!(timeline.field(phase).is_some(), "timeline lacks {phase}: {timeline:?}");
    }
    // web depends on the network target: it ran only once PID 1 had the network up.
    assert!(timeline.field("network") <= timeline.field("web"), "{timeline:?}");
    assert!(!vm.console_lines().iter().any(|l| l.contains("network degraded")), "virtio-net comes up in time");
    vm.wait_for_line("[ticker] ticker started", Duration::from_secs(30)).expect("ticker output on the console");

    let page = http_get(port, "/index.html", Duration::from_secs(30)).expect("page from the host");
    assert!(page.starts_with("HTTP/1.") && page.contains(" 200 "), "{page}");
    assert!(page.contains("Hello from hoist"), "{page}");

    vm.powerdown().expect("system_powerdown");
    vm.wait_for_line("[ticker] ticker got SIGTERM", Duration::from_secs(30)).expect("service saw SIGTERM");
    let web_stopped = |l: &Line| matches!(l, Line::Stopped { service, .. } if service == "web");
    wait_line(&vm, "web stopped", Duration::from_secs(30), web_stopped).expect("web stopped");
    let swept =
        wait_line(&vm, "all processes stopped", Duration::from_secs(60), |l| matches!(l, Line::AllStopped { .. }))
            .expect("sweep");
    assert_eq!(swept.field("zombies"), Some(0), "{swept:?}");
    let exit = vm.wait_exit(Duration::from_secs(60)).expect("QEMU exits");
    assert!(exit.clean, "guest did not power off cleanly: {exit:?}");
}

#[test]
fn a_missing_binary_fails_that_service_only() {
    let work = tempfile::tempdir().expect("tempdir");
    // runc stays selectable (crun is the default): this host runs it. Its network names an
    // interface the VM does not have: the network target is reached degraded after PID 1's
    // deadline, and the service that depends on it starts anyway.
    let toml = r#"
version = 1
[host]
runtime = "runc"
[network]
interface = "eth9"
[service.good]
image = "@IMAGE@"
command = ["sh", "-c", "echo good is up; exec sleep 1000"]
depends_on = ["network"]
[service.broken]
image = "@IMAGE@"
command = ["/no/such/binary"]
"#;
    let out = build_host(work.path(), toml);
    let mut vm = boot(&out, &[]);
    let failed = vm.wait_for_line("hoist: service broken failed:", BOOT_TIMEOUT).expect("failure reported");
    assert!(failed.contains("/no/such/binary"), "message does not name the binary: {failed}");
    let ready = wait_line(&vm, "ready", BOOT_TIMEOUT, is_ready).expect("ready line");
    assert_eq!(ready.field("services"), Some(1), "{ready:?}");
    vm.wait_for_line("[good] good is up", Duration::from_secs(30)).expect("the other service runs");
    let degraded = vm.wait_for_line("network degraded:", Duration::from_secs(5)).expect("the network is degraded");
    assert!(degraded.contains("eth9"), "the reason names the interface: {degraded}");
    let exit = vm.shutdown(Duration::from_secs(60)).expect("shutdown");
    assert!(exit.clean, "{exit:?}");
}
