use super::*;

fn s(x: &str) -> String {
    x.to_string()
}

/// Every kind of line, as printed today, with what it parses to.
fn examples() -> Vec<(&'static str, Line)> {
    vec![
        ("hoist: phase init uptime_ms=1650", Line::Phase { name: s("init"), uptime_ms: 1650 }),
        (
            "hoist: service web running pid=312 uptime_ms=5120",
            Line::Running { service: s("web"), pid: 312, uptime_ms: 5120, waiting_for: None },
        ),
        (
            "hoist: service db running pid=10 uptime_ms=1000, waiting for readiness (tcp 5432)",
            Line::Running { service: s("db"), pid: 10, uptime_ms: 1000, waiting_for: Some(s("tcp 5432")) },
        ),
        ("hoist: service db ready uptime_ms=1000", Line::ServiceReady { service: s("db"), uptime_ms: 1000 }),
        (
            "hoist: service flaky exited status=1; restart in 100 ms uptime_ms=7000",
            Line::Outcome {
                service: s("flaky"),
                what: s("exited status=1"),
                then: s("restart in 100 ms"),
                uptime_ms: 7000,
            },
        ),
        (
            "hoist: service hog exited status=137 (OOM killed); failed: start limit uptime_ms=9",
            Line::Outcome {
                service: s("hog"),
                what: s("exited status=137 (OOM killed)"),
                then: s("failed: start limit"),
                uptime_ms: 9,
            },
        ),
        (
            "hoist: service x failed to start: no such file; not restarted uptime_ms=3",
            Line::Outcome {
                service: s("x"),
                what: s("failed to start: no such file"),
                then: s("not restarted"),
                uptime_ms: 3,
            },
        ),
        ("hoist: service c stopped (status=0)", Line::Stopped { service: s("c"), how: s("status=0") }),
        (
            "hoist: service c stopped (killed after 10000 ms stop timeout, status=137)",
            Line::Stopped { service: s("c"), how: s("killed after 10000 ms stop timeout, status=137") },
        ),
        (
            "hoist: service b stopped (did not stop after SIGKILL)",
            Line::Stopped { service: s("b"), how: s("did not stop after SIGKILL") },
        ),
        ("hoist: ready uptime_ms=5520 services=3", Line::Ready { uptime_ms: 5520, services: 3 }),
        (
            "hoist: timeline init=1650 containerd=2690 ready=5520",
            Line::Timeline(vec![(s("init"), 1650), (s("containerd"), 2690), (s("ready"), 5520)]),
        ),
        ("hoist: timeline ", Line::Timeline(vec![])),
        (
            "hoist: memory pid1_rss_kb=2900 supervisor_rss_kb=5200",
            Line::Memory(vec![(s("pid1_rss_kb"), 2900), (s("supervisor_rss_kb"), 5200)]),
        ),
        ("hoist: memory ", Line::Memory(vec![])),
        (
            "hoist: containerd back after 400 ms: 3 running tasks re-adopted",
            Line::ContainerdBack { after_ms: 400, tasks: 3 },
        ),
        ("hoist: shutdown started (power off)", Line::ShutdownStarted(Action::PowerOff)),
        ("hoist: shutdown started (reboot)", Line::ShutdownStarted(Action::Reboot)),
        ("hoist: all processes stopped, zombies=0 after 912 ms", Line::AllStopped { zombies: 0, after_ms: 912 }),
        (
            "hoist: audit allowed call=restart target=web caller=alice role=operator",
            Line::Audit {
                allowed: true,
                call: s("restart"),
                target: s("web"),
                caller: s("alice"),
                role: s("operator"),
            },
        ),
        (
            "hoist: audit denied call=shutdown target=- caller=ops%20team role=reader",
            Line::Audit {
                allowed: false,
                call: s("shutdown"),
                target: s(""),
                caller: s("ops team"),
                role: s("reader"),
            },
        ),
        ("hoist: rebooting", Line::Last(Action::Reboot)),
        ("hoist: power off", Line::Last(Action::PowerOff)),
    ]
}

#[test]
fn lines_print_as_before_and_read_back() {
    for (text, line) in examples() {
        assert_eq!(line.to_string(), text);
        assert_eq!(Line::parse(text).as_ref(), Some(&line), "{text}");
        assert_eq!(Line::parse_body(&line.body().to_string()).as_ref(), Some(&line), "{text}");
    }
}

#[test]
fn console_noise_around_a_line_is_ignored() {
    assert_eq!(Line::parse("hoist: rebooting\r"), Some(Line::Last(Action::Reboot)));
    assert_eq!(
        Line::parse("  hoist: ready uptime_ms=1 services=0\r\n"),
        Some(Line::Ready { uptime_ms: 1, services: 0 })
    );
}

#[test]
fn other_lines_are_not_read_as_contract_lines() {
    for text in [
        "rebooting",
        "hoist: rebooting soon",
        "hoist: power off now",
        "hoist-init: phase init uptime_ms=1",
        "hoist: phase init uptime_ms=x",
        "hoist: ready uptime_ms=1",
        "hoist: service a stopped status=0",
        "hoist: service a stopped by request",
        "hoist: service a waiting for b",
        "hoist: timeline a=1 b",
        "hoist: fatal: no /proc; powering off",
        "[web] hoist: ready uptime_ms=1 services=0",
        "hoist: audit maybe call=a target=b caller=c role=d",
        "hoist: audit allowed call=a target=b caller=c",
        "hoist: audit allowed call=a target=b caller=c role=d extra=e",
        "hoist: audit allowed call=a target=%zz caller=c role=d",
    ] {
        assert_eq!(Line::parse(text), None, "{text}");
    }
}

#[test]
fn fields_are_read_by_name() {
    let ready = Line::parse("hoist: ready uptime_ms=5520 services=3").expect("ready");
    assert_eq!((ready.field("uptime_ms"), ready.field("services"), ready.field("pid")), (Some(5520), Some(3), None));
    let swept = Line::parse("hoist: all processes stopped, zombies=2 after 9 ms").expect("swept");
    assert_eq!(swept.field("zombies"), Some(2));
    let memory = Line::parse("hoist: memory pid1_rss_kb=2900").expect("memory");
    assert_eq!((memory.field("pid1_rss_kb"), memory.field("containerd_rss_kb")), (Some(2900), None));
    let running = Line::parse("hoist: service web running pid=7 uptime_ms=8").expect("running");
    assert_eq!((running.service(), running.field("pid")), (Some("web"), Some(7)));
}

#[test]
fn a_hostile_caller_name_cannot_forge_an_audit_line() {
    let caller = "eve role=admin\n\x1b[2Jhoist: audit allowed call=exec target=- caller=root role=admin";
    let line = Line::Audit { allowed: false, call: s("exec"), target: s("web"), caller: s(caller), role: s("reader") };
    let text = line.to_string();
    assert!(!text.contains('\n') && !text.contains('\x1b') && text.matches('=').count() == 4, "{text}");
    assert_eq!(Line::parse(&text), Some(line));
    assert_eq!(unescape(&escape("100% sure ü")).as_deref(), Some("100% sure ü"));
}
