//! Start order by dependencies, readiness gating, start timeouts, the ready line.

use hoist_config::Ready;

use super::*;

#[test]
fn independent_services_start_at_once_and_dependents_wait_for_readiness() {
    let d = desired(vec![
        with_ready(plan("db", &[]), Ready::Tcp { port: 5432 }),
        plan("api", &["db"]),
        plan("web", &["api"]),
        plan("log", &[]),
    ]);
    let (mut h, fx) = H::boot(d);
    assert_eq!(starts(&fx), ["db", "log"]);
    assert_eq!(h.state("api"), State::Waiting { on: vec!["db".into()] });
    line(&fx, "service api waiting for db");

    let fx = h.started("db", 10);
    assert!(has(&fx, &Effect::Wait { name: "db".into(), pid: 10 }));
    assert!(has(&fx, &Effect::Probe { name: "db".into(), pid: 10 }));
    line(&fx, "service db running pid=10 uptime_ms=1000, waiting for readiness (tcp 5432)");
    assert!(starts(&fx).is_empty(), "api waits for db's readiness, not its start");

    let fx = h.ready("db", 10);
    line(&fx, "service db ready uptime_ms=1000");
    assert_eq!(starts(&fx), ["api"]);
    let fx = h.started("api", 11);
    assert_eq!(starts(&fx), ["web"], "api has no probe: ready when running");
    h.started("log", 12);
    let fx = h.started("web", 13);
    line(&fx, "ready uptime_ms=1000 services=4");
    assert!(has(&fx, &Effect::Settled));
    assert!(h.core.persisted().ready_done);
}

#[test]
fn a_service_never_ready_is_stopped_at_its_start_timeout_and_blocks_its_dependents() {
    let mut never = with_ready(plan("never", &[]), Ready::Tcp { port: 9999 });
    never.start_timeout = std::time::Duration::from_secs(3);
    let never = with_restart(never, RestartPolicy::Never);
    let (mut h, _) = H::boot(desired(vec![never, plan("blocked", &["never"])]));
    h.started("never", 20);
    assert!(h.advance(2999).is_empty());
    let fx = h.advance(1);
    line(&fx, "service never not ready after 3000 ms: stopping it");
    assert_eq!(signals(&fx), [("never", libc::SIGTERM)]);
    // A probe that passes after the timeout changes nothing.
    assert!(lines(&h.ready("never", 20)).is_empty());
    let fx = h.exited("never", 20, 143);
    line(&fx, "service never exited status=143; not restarted");
    assert_eq!(h.state("never"), State::Exited { status: 143 });
    assert_eq!(h.state("blocked"), State::Waiting { on: vec!["never".into()] });
    line(&fx, "ready uptime_ms=4000 services=0");
    assert!(!h.log.iter().any(|e| matches!(e, Effect::Start { name } if name == "blocked")));
}

#[test]
fn a_start_timeout_counts_as_a_failure_under_on_failure() {
    let mut p =
        with_restart(with_ready(plan("slow", &[]), Ready::File { path: "/ready".into() }), RestartPolicy::OnFailure);
    p.start_timeout = std::time::Duration::from_secs(1);
    let (mut h, _) = H::boot(desired(vec![p]));
    h.started("slow", 5);
    h.advance(1000);
    // It exits 0 when asked to stop: still a failure, because it was never ready.
    let fx = h.exited("slow", 5, 0);
    line(&fx, "service slow exited status=0; restart in 100 ms");
}

#[test]
fn sd_notify_ready_before_the_start_reply_is_kept() {
    let (mut h, _) = H::boot(desired(vec![with_ready(plan("n", &[]), Ready::Notify), plan("after", &["n"])]));
    h.input(Input::Notify { name: "n".into(), pid: 42 });
    let fx = h.started("n", 42);
    assert!(!fx.iter().any(|e| matches!(e, Effect::Probe { .. })), "notify has no probe");
    line(&fx, "service n ready");
    assert_eq!(starts(&fx), ["after"]);
}

#[test]
fn sd_notify_from_another_pid_is_ignored() {
    let (mut h, _) = H::boot(desired(vec![with_ready(plan("n", &[]), Ready::Notify)]));
    h.input(Input::Notify { name: "n".into(), pid: 7 });
    h.started("n", 42);
    let fx = h.input(Input::Notify { name: "n".into(), pid: 43 });
    assert!(fx.iter().any(|e| matches!(e, Effect::Warn(w) if w.contains("notify from pid 43 ignored"))));
    assert_eq!(h.state("n"), State::Running { pid: 42, ready: false, deadline: Some(31_000) });
}

#[test]
fn the_ready_line_is_printed_once_per_boot() {
    let (mut h, fx) = H::boot(desired(vec![plan("a", &[])]));
    assert_eq!(starts(&fx), ["a"]);
    let fx = h.started("a", 3);
    line(&fx, "ready uptime_ms=");
    line(&fx, "timeline containerd=1000 a=1000 ready=1000");
    let fx = h.exited("a", 3, 1);
    assert!(!lines(&fx).iter().any(|l| l.starts_with("ready")));
    // A restarted supervisor does not print it again either.
    let (_, fx) = H::resume(desired(vec![plan("a", &[])]), h.core.persisted().clone(), BTreeMap::new());
    assert!(!lines(&fx).iter().any(|l| l.starts_with("ready")));
}

#[test]
fn long_dependency_chains_settle_in_linear_time() {
    let first = with_ready(plan("s0", &[]), Ready::Tcp { port: 1 });
    let mut plans = vec![with_restart(first, RestartPolicy::Never)];
    let names: Vec<String> = (0..5000).map(|i| format!("s{i}")).collect();
    for i in 1..names.len() {
        plans.push(plan(&names[i], &[names[i - 1].as_str()]));
    }
    let (mut h, _) = H::boot(desired(plans));
    h.started("s0", 1);
    let fx = h.exited("s0", 1, 1);
    line(&fx, "ready uptime_ms=1000 services=0");
}

#[test]
fn lines_others_read_are_in_the_contract_grammar() {
    use hoist_guest::console::Line;
    let (mut h, _) = H::boot(desired(vec![with_ready(plan("db", &[]), Ready::Tcp { port: 5432 })]));
    let mut said: Vec<String> = lines(&h.started("db", 10)).iter().map(|l| l.to_string()).collect();
    said.extend(lines(&h.ready("db", 10)).iter().map(|l| l.to_string()));
    let parsed: Vec<Line> = said.iter().filter_map(|l| Line::parse_body(l)).collect();
    let running =
        Line::Running { service: "db".into(), pid: 10, uptime_ms: 1000, waiting_for: Some("tcp 5432".into()) };
    assert!(parsed.contains(&running), "{said:#?}");
    assert!(parsed.contains(&Line::ServiceReady { service: "db".into(), uptime_ms: 1000 }), "{said:#?}");
    assert!(parsed.contains(&Line::Ready { uptime_ms: 1000, services: 1 }), "{said:#?}");
    assert!(parsed.iter().any(|l| matches!(l, Line::Timeline(p) if p.last() == Some(&("ready".into(), 1000)))));
}
