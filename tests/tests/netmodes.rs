//! A service's `network`: `bridge` (its own namespace on hoist's bridge: an address, NAT
//! out, `publish` from the host's ports, the other bridge services by name) and `none`
//! (loopback only), on the real kernel's bridge, veth and nftables. The outside is a TCP
//! server in this process, which the guest reaches through QEMU's user network at 10.0.2.2.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use hoist_tests::host::{Host, text};
use hoist_tests::{BOOT_TIMEOUT, http_get};

/// A TCP server on the build host that answers every connection with `body`; its port.
fn outside(body: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 512];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(format!("HTTP/1.0 200 OK\r\n\r\n{body}\n").as_bytes());
        }
    });
    port
}

#[test]
fn a_bridge_service_is_published_not_otherwise_reachable_and_reaches_out_through_nat() {
    let far = outside("outside-says-hello");
    // api serves /www on 80 (published as 8080) and on 81 (not published).
    let toml = format!(
        r#"
version = 1
[service.api]
image = "@IMAGE@"
network = "bridge"
publish = ["8080:80"]
ready = {{ tcp = 80 }}
command = ["sh", "-c", "httpd -p 81 -h /www; httpd -p 80 -h /www; printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc 10.0.2.2 {far}; exec sleep 100000"]
"#
    );
    let published = hoist_qemu::free_tcp_port().expect("port");
    let unpublished = hoist_qemu::free_tcp_port().expect("port");
    let mut h = Host::boot_with(&toml, &[(published, 8080), (unpublished, 81)]);
    let page = http_get(published, "/", BOOT_TIMEOUT).expect("the published port answers");
    assert!(page.contains("Hello from hoist"), "{page}");
    // Port 81 listens only in the service's namespace: the host's 81 has nothing.
    let refused = http_get(unpublished, "/", Duration::from_secs(5));
    assert!(refused.as_ref().map_or(true, |r| !r.contains("Hello")), "port 81 reached: {refused:?}");
    h.vm.wait_for_line("[api] outside-says-hello", Duration::from_secs(30)).expect("NAT to the outside");
    let exit = h.vm.shutdown(Duration::from_secs(60)).expect("shutdown");
    assert!(exit.clean, "{exit:?}");
}

#[test]
fn bridge_services_find_each_other_by_name_and_a_none_service_has_no_way_out() {
    let far = outside("outside-says-hello");
    let toml = format!(
        r#"
version = 1
[service.db]
image = "@IMAGE@"
network = "bridge"
ready = {{ tcp = 5432 }}
command = ["sh", "-c", "mkdir -p /tmp/w && echo db-answers > /tmp/w/index.html && exec httpd -f -p 5432 -h /tmp/w"]
[service.api]
image = "@IMAGE@"
network = "bridge"
depends_on = ["db"]
command = ["sh", "-c", "wget -q -O - http://db:5432/ | sed 's/^/api got /'; exec sleep 100000"]
[service.sealed]
image = "@IMAGE@"
network = "none"
command = ["sh", "-c", "ip -o link | sed 's/^/sealed link /'; nc 10.0.2.2 {far} < /dev/null && echo sealed reached out || echo sealed has no way out; exec sleep 100000"]
[service.open]
image = "@IMAGE@"
command = ["sh", "-c", "nc 10.0.2.2 {far} < /dev/null | sed 's/^/open got /'; exec sleep 100000"]
"#
    );
    let mut h = Host::boot(&toml);
    h.vm.wait_for_line("[api] api got db-answers", Duration::from_secs(60)).expect("api reached db by name");
    h.vm.wait_for_line("[sealed] sealed has no way out", Duration::from_secs(60)).expect("sealed is sealed");
    // The same request from a host service does get out: the check above can fail.
    h.vm.wait_for_line("[open] open got outside-says-hello", Duration::from_secs(60)).expect("open reaches out");
    let links: Vec<String> = h.vm.console_lines().into_iter().filter(|l| l.contains("sealed link ")).collect();
    assert_eq!(links.len(), 1, "only loopback: {links:?}");
    assert!(links[0].contains(": lo:"), "{links:?}");
    // The hosts file names every bridge service, and not the others.
    let hosts = h.hoist(&["ctl", "exec", "api", "--", "cat", "/etc/hosts"]);
    let hosts = String::from_utf8_lossy(&hosts.stdout).to_string();
    assert!(hosts.contains("\tdb\n") && hosts.contains("\tapi\n"), "{hosts}");
    assert!(!hosts.contains("sealed") && !hosts.contains("\topen\n"), "{hosts}");
    let exit = h.vm.shutdown(Duration::from_secs(60)).expect("shutdown");
    assert!(exit.clean, "{exit:?}");
}

#[test]
fn a_hundred_restarts_of_a_bridge_service_leak_no_address_no_veth_and_no_namespace() {
    // flappy exits at once and is restarted 100 ms later, over and over; peer stays up;
    // watch reads PID 1's mounts and the host's links (host pid and network).
    let toml = r#"
version = 1
[service.flappy]
image = "@IMAGE@"
network = "bridge"
publish = ["9000:9000"]
command = ["sh", "-c", "exit 3"]
restart = "always"
backoff = { initial = "100ms", factor = 1.0, max = "100ms" }
start_limit = { burst = 100000, interval = "1s" }
[service.peer]
image = "@IMAGE@"
network = "bridge"
command = ["sleep", "100000"]
[service.watch]
image = "@IMAGE@"
host_pid = true
capabilities = { add = ["CAP_SYS_PTRACE", "CAP_NET_ADMIN"] }
command = ["sleep", "100000"]
"#;
    let mut h = Host::boot(toml);
    let toml_without_flappy = toml.split("[service.peer]").nth(1).expect("peer");
    let deadline = Instant::now() + Duration::from_secs(600);
    let restarts = loop {
        let n = h.status().iter().find(|s| s.name == "flappy").map_or(0, |s| s.restarts);
        if n >= 100 || Instant::now() >= deadline {
            break n;
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    assert!(restarts >= 100, "flappy restarted only {restarts} times in 10 min");
    // Between two starts flappy may hold its namespace or not: count what the other two
    // hold plus at most one of flappy's.
    let (namespaces, veths, addresses, rules) = bridge_footprint(&h);
    assert!((1..=2).contains(&namespaces), "namespaces: {namespaces}");
    assert!((1..=2).contains(&veths), "veths: {veths}");
    assert_eq!(addresses, 2, "one address per bridge service");
    assert!(rules.contains("dport 9000"), "flappy's publish rule:\n{rules}");

    // An apply that removes flappy gives back its address, namespace, veth and rules.
    let v2 = h.config("v2.toml", &format!("version = 1\n[service.peer]{toml_without_flappy}"));
    let applied = h.apply(&v2, &["--settle", "1s"]);
    assert!(applied.status.success(), "{}", text(&applied));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = bridge_footprint(&h);
        if now.0 == 1 && now.1 == 1 && now.2 == 1 && !now.3.contains("9000") {
            break;
        }
        assert!(Instant::now() < deadline, "flappy's network outlived its removal: {now:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
    let exit = h.vm.shutdown(Duration::from_secs(60)).expect("shutdown");
    assert!(exit.clean, "{exit:?}");
}

/// What the bridge holds, read from inside the guest: namespace mounts in PID 1's mount
/// table, hoist's veths on the host side, the addresses every bridge service's hosts file
/// lists (as `peer` sees it), and hoist's nftables table.
fn bridge_footprint(h: &Host) -> (u32, u32, u32, String) {
    let count = "grep -c ' /run/hoist/netns/' /proc/1/mountinfo; grep -c ' hv[0-9]*:' /proc/1/net/dev";
    let out = h.hoist(&["ctl", "exec", "watch", "--", "sh", "-c", count]);
    let numbers: Vec<u32> =
        String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.trim().parse().ok()).collect();
    let hosts_args =
        ["ctl", "exec", "peer", "--", "grep", "-c", "-v", "-e", "localhost", "-e", "hoist-bridge", "/etc/hosts"];
    let hosts = h.hoist(&hosts_args);
    let addresses = String::from_utf8_lossy(&hosts.stdout).trim().parse::<u32>();
    // nft from the host's root, reached through PID 1's root link.
    let nft = h.hoist(&[
        "ctl",
        "exec",
        "watch",
        "--",
        "chroot",
        "/proc/1/root",
        "/usr/sbin/nft",
        "list",
        "table",
        "ip",
        "hoist",
    ]);
    assert!(nft.status.success(), "{}", text(&nft));
    match (numbers.as_slice(), addresses) {
        (&[namespaces, veths], Ok(addresses)) => {
            (namespaces, veths, addresses, String::from_utf8_lossy(&nft.stdout).into_owned())
        }
        _ => panic!("unreadable counts:\n{}\n{}", text(&out), text(&hosts)),
    }
}
