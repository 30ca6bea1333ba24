//! Exits, backoff, the start limit, start errors, containerd lost and back, and a
//! supervisor restart that adopts what runs and keeps down what must stay down.

use crate::state::{Held, Record};

use super::*;

#[test]
fn backoff_grows_then_the_start_limit_fails_the_service() {
    let (mut h, _) = H::boot(desired(vec![plan("crash", &[]), plan("steady", &[])]));
    h.started("steady", 2);
    let mut delays = Vec::new();
    for pid in 10..14 {
        h.started("crash", pid);
        let fx = h.exited("crash", pid, 3);
        let l = lines(&fx)[0].to_string();
        delays.push(l);
        let State::Backoff { until } = h.state("crash") else { panic!("{:?}", h.state("crash")) };
        assert!(starts(&h.advance(until - h.now - 1)).is_empty(), "no start before the backoff ends");
        assert_eq!(starts(&h.advance(1)), ["crash"]);
    }
    let ms: Vec<&str> =
        delays.iter().map(|l| l.split("restart in ").nth(1).unwrap_or("").split(' ').next().unwrap_or("")).collect();
    assert_eq!(ms, ["100", "200", "400", "800"]);
    h.started("crash", 20);
    let fx = h.exited("crash", 20, 3);
    line(&fx, "service crash exited status=3; failed: start limit: 5 exits within 60 s");
    assert!(matches!(h.state("crash"), State::Failed { .. }));
    assert!(has(&fx, &Effect::Cleanup { name: "crash".into() }));
    assert!(h.advance(120_000).is_empty(), "a failed service is not started again");
    assert_eq!(h.state("steady"), State::Running { pid: 2, ready: true, deadline: None });
}

#[test]
fn a_long_run_resets_the_backoff() {
    let (mut h, _) = H::boot(desired(vec![plan("a", &[])]));
    h.started("a", 1);
    h.exited("a", 1, 1);
    h.advance(100);
    h.started("a", 2);
    h.exited("a", 2, 1);
    h.advance(200);
    h.started("a", 3);
    h.advance(60_000);
    let fx = h.exited("a", 3, 1);
    line(&fx, "restart in 100 ms");
}

#[test]
fn a_slow_start_is_not_a_long_run() {
    let (mut h, _) = H::boot(desired(vec![plan("a", &[])]));
    h.started("a", 1);
    h.exited("a", 1, 1);
    h.advance(100);
    // containerd takes 30 s to start it under load; it then crashes at once.
    h.now += 30_000;
    h.started("a", 2);
    let fx = h.exited("a", 2, 1);
    line(&fx, "restart in 200 ms");
}

#[test]
fn exit_zero_under_on_failure_is_not_restarted() {
    let (mut h, _) = H::boot(desired(vec![with_restart(plan("once", &[]), RestartPolicy::OnFailure)]));
    h.started("once", 4);
    let fx = h.exited("once", 4, 0);
    line(&fx, "service once exited status=0; not restarted");
    assert_eq!(h.state("once"), State::Exited { status: 0 });
    assert_eq!(h.core.persisted().service["once"].held, Some(Held::Exited { status: 0 }));
}

#[test]
fn oom_kills_are_named_and_go_through_the_policy() {
    let (mut h, _) = H::boot(desired(vec![with_restart(plan("hog", &[]), RestartPolicy::OnFailure)]));
    h.started("hog", 4);
    let fx = h.input(Input::Exited { name: "hog".into(), pid: 4, status: 137, oom: true });
    line(&fx, "service hog exited status=137 (OOM killed); restart in 100 ms");
    assert!(fx.iter().any(|e| matches!(e, Effect::Event(ev) if ev.kind == "oom")));
}

#[test]
fn a_transient_start_error_goes_through_the_restart_policy() {
    let (mut h, _) = H::boot(desired(vec![plan("a", &[])]));
    let err = StartError { reason: "create task a: no space left on device".into(), permanent: false };
    let fx = h.input(Input::Started { name: "a".into(), result: Err(err) });
    line(&fx, "service a failed to start: create task a: no space left on device; restart in 100 ms");
    assert_eq!(starts(&h.advance(100)), ["a"]);
}

#[test]
fn a_permanent_start_error_fails_the_service() {
    let (mut h, _) = H::boot(desired(vec![plan("a", &[]), plan("b", &["a"])]));
    let err = StartError { reason: "image oci:x is not in this build".into(), permanent: true };
    let fx = h.input(Input::Started { name: "a".into(), result: Err(err) });
    assert!(matches!(h.state("a"), State::Failed { reason } if reason.contains("not in this build")));
    line(&fx, "service a failed: image oci:x is not in this build");
    line(&fx, "ready uptime_ms=1000 services=0");
    assert!(h.advance(60_000).is_empty());
}

#[test]
fn a_duplicate_exit_is_ignored() {
    let (mut h, _) = H::boot(desired(vec![plan("a", &[])]));
    h.started("a", 1);
    h.exited("a", 1, 1);
    assert!(h.exited("a", 1, 1).is_empty());
}

#[test]
fn containerd_lost_and_back_is_said_once_and_restarts_nothing() {
    let (mut h, _) = H::boot(desired(vec![plan("a", &[])]));
    h.started("a", 1);
    let fx = h.input(Input::Lost);
    line(&fx, "lost containerd; services keep running");
    assert!(has(&fx, &Effect::Reconnect));
    assert!(h.input(Input::Lost).is_empty(), "said once");
    h.now += 100;
    assert_eq!(h.core.problems(h.now), ["containerd is not answering (for 100 ms); running services keep running"]);
    assert!(matches!(h.cmd(Command::Restart("a".into())).0, Err(Refused::Unavailable(_))));
    h.now += 300;
    let fx = h.input(Input::Connected { running: [("a".to_string(), 1)].into() });
    assert_eq!(lines(&fx), ["containerd back after 400 ms: 1 running tasks re-adopted"]);
    assert!(h.core.problems(h.now).is_empty());
    assert!(starts(&fx).is_empty());
    assert_eq!(h.state("a"), State::Running { pid: 1, ready: true, deadline: None });
}

#[test]
fn a_supervisor_restart_adopts_running_tasks_and_keeps_what_must_stay_down() {
    let d = || {
        desired(vec![
            plan("run", &[]),
            plan("manual", &[]),
            with_restart(plan("never", &[]), RestartPolicy::Never),
            plan("backoff", &[]),
            plan("broken", &[]),
            plan("fresh", &["run"]),
        ])
    };
    let (mut h, _) = H::boot(d());
    for (name, pid) in [("run", 1), ("manual", 2), ("never", 3), ("backoff", 4), ("fresh", 6)] {
        h.started(name, pid);
    }
    assert_eq!(h.cmd(Command::Stop("manual".into())).0, Ok("stopping manual".into()));
    h.exited("manual", 2, 143);
    h.exited("never", 3, 9);
    h.now = 50_000;
    h.exited("backoff", 4, 1);
    h.input(Input::Started {
        name: "broken".into(),
        result: Err(StartError { reason: "bad".into(), permanent: true }),
    });
    h.exited("fresh", 6, 1);
    let persisted = h.core.persisted().clone();

    // The supervisor dies 40 ms later; a new one finds `run` still running.
    let running: BTreeMap<String, u32> = [("run".to_string(), 1)].into();
    let mut h2 = H { core: Core::new(d(), persisted, Vec::new()), now: 50_040, log: Vec::new(), generation: 1 };
    let fx = h2.input(Input::Connected { running });
    line(&fx, "service run adopted pid=1 restarts=0");
    assert!(has(&fx, &Effect::Wait { name: "run".into(), pid: 1 }));
    assert_eq!(starts(&fx), Vec::<&str>::new(), "fresh is in backoff; nothing else may start");
    assert_eq!(h2.state("manual"), State::Stopped);
    assert_eq!(h2.state("never"), State::Exited { status: 9 });
    assert_eq!(h2.state("backoff"), State::Backoff { until: 50_100 });
    assert!(matches!(h2.state("broken"), State::Failed { .. }));
    // The rest of the backoff, not a new one, and not at once.
    assert!(starts(&h2.advance(59)).is_empty());
    assert_eq!(starts(&h2.advance(1)), ["backoff", "fresh"]);
    // The adopted run keeps its start time: its uptime counts from its real start.
    let view = h2.core.status(h2.now).into_iter().find(|v| v.name == "run").expect("run");
    assert_eq!(view.uptime_ms, 50_100 - 1000);
}

#[test]
fn an_adopted_service_with_no_recorded_start_counts_from_adoption() {
    let mut persisted = Persisted { onboot_done: true, ..Default::default() };
    persisted.service.insert("a".into(), Record { backoff_ms: 800, ..Default::default() });
    let (mut h, _) = H::resume(desired(vec![plan("a", &[])]), persisted, [("a".to_string(), 9)].into());
    h.advance(20_000);
    let fx = h.exited("a", 9, 1);
    line(&fx, "restart in 100 ms");
    assert_eq!(h.core.persisted().service["a"].backoff_ms, 200, "a 20 s run resets the backoff to its start");
}
