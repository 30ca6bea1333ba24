//! `[network] mode = "dhcp"` against real DHCP servers: QEMU's user network (slirp), and
//! Debian's dnsmasq on a tap device the test makes (short T1/T2, so renewals happen within
//! the test). The guest's own client (PID 1's DHCP helper) configures eth0 over netlink;
//! what the services see is read from inside them.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hoist_guest::console::Line;
use hoist_tests::{BOOT_TIMEOUT, bin_dir, build_host, pki_dir, require_vm_tools, wait_line};

/// A tap device on the host with `cidr` on it, removed on drop. Needs root and /dev/net/tun,
/// which CI has; without them the test fails saying so.
struct Tap {
    name: String,
}

impl Tap {
    fn new(name: &str, cidr: &str) -> Tap {
        assert!(
            std::fs::read_to_string("/proc/self/status")
                .is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))),
            "the DHCP tests make tap devices: run them as root"
        );
        assert!(Path::new("/dev/net/tun").exists(), "the DHCP tests need /dev/net/tun for a tap device");
        let _ = Command::new("ip").args(["link", "del", name]).stderr(Stdio::null()).status();
        run(Command::new("ip").args(["tuntap", "add", "dev", name, "mode", "tap"]));
        run(Command::new("ip").args(["addr", "add", cidr, "dev", name]));
        run(Command::new("ip").args(["link", "set", name, "up"]));
        Tap { name: name.to_string() }
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.name]).status();
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// dnsmasq serving DHCP only (no DNS) on a tap, logging every exchange to a file.
struct Dnsmasq {
    child: Child,
    log: PathBuf,
}

impl Dnsmasq {
    fn start(tap: &Tap, work: &Path, range: &str, extra: &[&str]) -> Dnsmasq {
        let log = work.join("dnsmasq.log");
        let _ = std::fs::remove_file(&log);
        let child = Command::new("dnsmasq")
            .args(["--no-daemon", "--conf-file=/dev/null", "--port=0", "--bind-interfaces", "--log-dhcp"])
            .arg(format!("--interface={}", tap.name))
            .arg(format!("--dhcp-range={range}"))
            .arg(format!("--dhcp-leasefile={}", work.join("leases").display()))
            .arg(format!("--pid-file={}", work.join("dnsmasq.pid").display()))
            .arg(format!("--log-facility={}", log.display()))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("dnsmasq (Debian's dnsmasq-base) is needed: {e}"));
        let d = Dnsmasq { child, log };
        d.wait_log("DHCP, sockets bound exclusively", 1, Duration::from_secs(10));
        d
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `needle` is in the log `n` times; returns the log.
    fn wait_log(&self, needle: &str, n: usize, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let log = self.log();
            if log.matches(needle).count() >= n {
                return log;
            }
            assert!(Instant::now() < deadline, "dnsmasq logged {needle:?} fewer than {n} times in {within:?}:\n{log}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn boot_on(out: &Path, configure: impl FnOnce(hoist_qemu::VmBuilder) -> hoist_qemu::VmBuilder) -> hoist_qemu::Vm {
    require_vm_tools();
    let b = hoist_qemu::VmBuilder::from_build_dir(out).expect("build dir").work_dir(out.join("run"));
    configure(b).spawn().expect("spawn QEMU")
}

fn ready(vm: &hoist_qemu::Vm) {
    wait_line(vm, "ready", BOOT_TIMEOUT, |l| matches!(l, Line::Ready { .. })).expect("ready");
}

/// The address in the helper's `network: DHCP A.B.C.D/N on ...` console line.
fn leased(vm: &hoist_qemu::Vm, within: Duration) -> Ipv4Addr {
    let line = vm.wait_for_line("network: DHCP ", within).expect("a DHCP lease on the console");
    let rest = line.split("network: DHCP ").nth(1).expect("text after the prefix");
    rest.split('/').next().and_then(|a| a.parse().ok()).unwrap_or_else(|| panic!("no address in {line:?}"))
}

/// The uptimes in the helper's `dhcp: lease for ADDR on eth0 good until uptime N s` lines.
fn renewals(vm: &hoist_qemu::Vm, addr: Ipv4Addr) -> Vec<u64> {
    let needle = format!("dhcp: lease for {addr} on eth0 good until uptime ");
    vm.console_lines().iter().filter_map(|l| l.split(&needle).nth(1)?.split(' ').next()?.parse().ok()).collect()
}

/// GET / from `addr:port`, polled until `within`.
fn http_get_at(addr: SocketAddr, within: Duration) -> Result<String, String> {
    let deadline = Instant::now() + within;
    loop {
        let attempt = (|| {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
            s.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
            s.write_all(b"GET / HTTP/1.0\r\n\r\n").map_err(|e| e.to_string())?;
            let mut body = String::new();
            s.read_to_string(&mut body).map_err(|e| e.to_string())?;
            Ok(body)
        })();
        match attempt {
            Ok(body) => return Ok(body),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(300)),
        }
    }
}

#[test]
fn a_lease_from_qemus_user_network_sets_the_address_route_and_name_server() {
    let work = tempfile::tempdir().expect("tempdir");
    // No [network]: DHCP is the default. slirp on another subnet than its default, so
    // nothing here can come from the static defaults (10.0.2.15, .2, .3).
    let toml = r#"
version = 1
[service.probe]
image = "@IMAGE@"
depends_on = ["network"]
command = ["sh", "-c", "ip -4 addr show dev eth0; ip -4 route; cat /etc/resolv.conf; exec sleep 100000"]
"#;
    let out = build_host(work.path(), toml);
    let api = hoist_qemu::free_tcp_port().expect("port");
    let mut vm = boot_on(&out, |b| b.user_net_options("net=10.9.0.0/24").publish(api, hoist_api::PORT));
    assert_eq!(leased(&vm, BOOT_TIMEOUT), Ipv4Addr::new(10, 9, 0, 15));
    ready(&vm);
    // What the service sees, in the host's network namespace.
    for seen in ["inet 10.9.0.15/24", "[probe] default via 10.9.0.2 dev eth0", "[probe] nameserver 10.9.0.3"] {
        vm.wait_for_line(seen, Duration::from_secs(30)).unwrap_or_else(|e| panic!("{seen}: {e}"));
    }
    let status = Command::new(bin_dir().join("hoist"))
        .args(["ctl", "--api", &format!("127.0.0.1:{api}"), "--pki"])
        .arg(pki_dir())
        .arg("status")
        .output()
        .expect("hoist ctl status");
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains(
            "network: up: DHCP 10.9.0.15/24 on eth0 via 10.9.0.2, dns 10.9.0.3, from 10.9.0.2, lease 86400 s"
        ),
        "status:\n{text}{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let exit = vm.shutdown(Duration::from_secs(60)).expect("shutdown");
    assert!(exit.clean, "{exit:?}");
}

#[test]
fn a_short_lease_is_renewed_the_address_stays_and_shutdown_releases_it() {
    let work = tempfile::tempdir().expect("tempdir");
    let tap = Tap::new("hoistdhcp1", "192.168.201.1/24");
    // dnsmasq's shortest lease is 2 min; T1 6 s and T2 10 s bring renewals into the test.
    let server = Dnsmasq::start(
        &tap,
        work.path(),
        "192.168.201.50,192.168.201.60,2m",
        &["--dhcp-option=option:T1,6", "--dhcp-option=option:T2,10", "--dhcp-option=option:dns-server,192.168.201.53"],
    );
    let toml = r#"
version = 1
[service.web]
image = "@IMAGE@"
depends_on = ["network"]
command = ["sh", "-c", "httpd -f -p 8080 -h /www & trap 'kill $!; exit 0' TERM; wait"]
"#;
    let out = build_host(work.path(), toml);
    let mut vm = boot_on(&out, |b| b.tap(&tap.name));
    let addr = leased(&vm, BOOT_TIMEOUT);
    assert_eq!(addr.octets()[..3], [192, 168, 201], "{addr}");
    ready(&vm);
    // Two renewals: REQUESTs acked by the server, each pushing the end further.
    server.wait_log(&format!("DHCPACK(hoistdhcp1) {addr}"), 3, Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(30);
    let seen = loop {
        let seen = renewals(&vm, addr);
        if seen.len() >= 2 || Instant::now() >= deadline {
            break seen;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(seen.len() >= 2 && seen.windows(2).all(|w| w[0] < w[1]), "renewals on the console: {seen:?}");
    // Each renewal says how long the server took (REQUEST to ACK), for the numbers.
    let lines = vm.console_lines();
    let took: Vec<&str> = lines.iter().filter_map(|l| l.split("(renewed in ").nth(1)?.split(')').next()).collect();
    eprintln!("renewal round trips: {took:?}");
    assert!(took.len() >= 2, "renewals without their round trip: {took:?}");
    // Still the same address, and it works: the host reaches the service on it.
    let page = http_get_at(SocketAddr::from((addr, 8080)), Duration::from_secs(30)).expect("GET from the guest");
    assert!(page.contains("Hello from hoist"), "{page}");
    assert_eq!(vm.console().matches("network: DHCP ").count(), 1, "one lease, renewed, never lost");
    let exit = vm.shutdown(Duration::from_secs(60)).expect("shutdown");
    assert!(exit.clean, "{exit:?}");
    server.wait_log(&format!("DHCPRELEASE(hoistdhcp1) {addr}"), 1, Duration::from_secs(5));
}

#[test]
fn without_a_dhcp_server_the_boot_goes_on_and_a_late_lease_reaches_running_services() {
    let work = tempfile::tempdir().expect("tempdir");
    let tap = Tap::new("hoistdhcp2", "192.168.202.1/24");
    // `early` does not wait for the network and watches its resolv.conf (a bind mount of
    // the host's); `late` waits for the network target, which is reached degraded.
    let toml = r#"
version = 1
[service.early]
image = "@IMAGE@"
command = ["sh", "-c", "until grep -q nameserver /etc/resolv.conf; do sleep 1; done; echo early sees the lease; cat /etc/resolv.conf; exec sleep 100000"]
[service.late]
image = "@IMAGE@"
depends_on = ["network"]
command = ["sh", "-c", "echo late started; exec sleep 100000"]
"#;
    let out = build_host(work.path(), toml);
    let mut vm = boot_on(&out, |b| b.tap(&tap.name));
    ready(&vm);
    let missing = vm.wait_for_line("network: no DHCP lease on eth0", BOOT_TIMEOUT).expect("the missing lease is said");
    assert!(missing.contains("still trying"), "{missing}");
    vm.wait_for_line("network degraded: no DHCP lease on eth0", Duration::from_secs(30)).expect("supervisor says it");
    vm.wait_for_line("[late] late started", Duration::from_secs(30)).expect("dependents start anyway");
    assert!(!vm.console().contains("early sees the lease"));
    // The server comes up late: the client, still trying with backoff (at most 32 s apart),
    // gets a lease, and the running service sees the name server in its resolv.conf.
    let server = Dnsmasq::start(
        &tap,
        work.path(),
        "192.168.202.50,192.168.202.60,2m",
        &["--dhcp-option=option:dns-server,192.168.202.53"],
    );
    let addr = leased(&vm, Duration::from_secs(90));
    assert_eq!(addr.octets()[..3], [192, 168, 202], "{addr}");
    server.wait_log(&format!("DHCPACK(hoistdhcp2) {addr}"), 1, Duration::from_secs(10));
    vm.wait_for_line("[early] nameserver 192.168.202.53", Duration::from_secs(30)).expect("the update reached early");
    let exit = vm.shutdown(Duration::from_secs(60)).expect("shutdown");
    assert!(exit.clean, "{exit:?}");
}
