use super::*;

fn sample() -> Boot {
    Boot {
        hostname: "edge-1".into(),
        sysctls: vec![
            ("net.ipv4.ip_forward".into(), "1".into()),
            ("net.ipv4.ip_local_port_range".into(), "32768 60999".into()),
            ("kernel.hostile".into(), "a\\b\nc\r".into()),
        ],
        modules: vec!["br_netfilter".into(), "wireguard".into()],
        log_max: 1 << 20,
        stop_budget: Duration::from_millis(25_500),
        network: Network {
            enabled: true,
            dhcp: false,
            interface: "eth0".into(),
            address: Some((Ipv4Addr::new(10, 0, 2, 15), 24)),
            gateway: Some(Ipv4Addr::new(10, 0, 2, 2)),
            dns: vec![Ipv4Addr::new(10, 0, 2, 3), Ipv4Addr::new(1, 1, 1, 1)],
        },
        volumes: vec![crate::volume::Spec {
            name: "data".into(),
            selector: crate::volume::Selector::Serial("data1".into()),
            label: Some("hoist-data".into()),
            required: true,
            wait: Duration::from_secs(10),
        }],
        state: Some("data".into()),
    }
}

#[test]
fn what_is_written_reads_back_the_same() {
    let boot = sample();
    let text = boot.format();
    assert_eq!(text.lines().count(), 16, "one line per fact, no value breaks a line:\n{text}");
    assert!(text.contains("sysctl kernel.hostile a\\\\b\\nc\\r\n"), "{text}");
    assert_eq!(Boot::parse(&text), Ok(boot));

    let off = Boot {
        network: Network {
            enabled: false,
            dhcp: false,
            interface: "eth0".into(),
            address: None,
            gateway: None,
            dns: vec![],
        },
        sysctls: vec![],
        modules: vec![],
        volumes: vec![],
        state: None,
        ..sample()
    };
    assert_eq!(Boot::parse(&off.format()), Ok(off));

    let dhcp = Boot { network: Network { dhcp: true, address: None, gateway: None, ..sample().network }, ..sample() };
    assert!(dhcp.format().contains("network dhcp\n"));
    assert_eq!(Boot::parse(&dhcp.format()), Ok(dhcp));
}

#[test]
fn bad_lines_name_the_line() {
    let good = sample().format();
    let cases = [
        (good.replace("hostname edge-1\n", ""), 15, "hostname is missing"),
        (format!("{good}hostname again\n"), 17, "hostname given twice"),
        (format!("{good}colour blue\n"), 17, "unknown key \"colour\""),
        (format!("{good}lonely\n"), 17, "has no value"),
        (good.replace("state data", "state logs"), 16, "state \"logs\" is not a volume"),
        (
            good.replace("serial:data1", "serial:"),
            15,
            "volume \"data serial: hoist-data required 10000\" does not parse",
        ),
        (good.replace("dns 1.1.1.1", "dns one"), 14, "dns \"one\" is not an IPv4 address"),
        (good.replace("10.0.2.15/24", "10.0.2.15/33"), 11, "is not A.B.C.D/N"),
        (good.replace("log_max 1048576", "log_max lots"), 7, "log_max \"lots\" is not a number"),
        (good.replace("network on", "network maybe"), 9, "is not on, off or dhcp"),
        (good.replace("network on", "network dhcp"), 9, "network dhcp with an address or gateway"),
        (good.replace("edge-1", "edge\\x"), 1, "bad escape \\x"),
        (good.replace("sysctl net.ipv4.ip_forward 1", "sysctl net.ipv4.ip_forward"), 2, "has no value"),
    ];
    for (text, line, message) in cases {
        let e = Boot::parse(&text).expect_err(message);
        assert_eq!(e.line, line, "{message}: {e}");
        assert!(e.message.contains(message), "{message}: {e}");
    }
}

#[test]
fn the_budget_sums_timeouts_with_a_margin_and_a_cap() {
    let secs = Duration::from_secs;
    assert_eq!(services_budget([]), secs(10));
    assert_eq!(services_budget([secs(10), secs(5), secs(30)]), secs(55));
    assert_eq!(services_budget([secs(100), secs(100)]), secs(180));
    // A sum past Duration::MAX saturates instead of panicking.
    assert_eq!(services_budget([Duration::MAX, secs(1), Duration::MAX]), secs(180));
}
