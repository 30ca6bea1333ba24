//! `[[onboot]]` and `[[onshutdown]]`: in order, timeouts, a required failure, a shutdown
//! during onboot, and commands answered meanwhile.

use super::*;

fn with_stages(onboot: Vec<Stage>, onshutdown: Vec<Stage>) -> Desired {
    Desired { onboot, onshutdown, ..desired(vec![plan("svc", &[])]) }
}

fn done(h: &mut H, name: &str, result: Result<u32, String>) -> Vec<Effect> {
    h.input(Input::StageDone { name: name.into(), result })
}

#[test]
fn onboot_stages_run_in_order_before_any_service() {
    let (mut h, fx) = H::boot(with_stages(vec![stage("first", 5000, true), stage("optional", 5000, false)], vec![]));
    assert_eq!(fx.iter().filter(|e| matches!(e, Effect::RunStage { .. })).count(), 1);
    assert!(has(&fx, &Effect::RunStage { name: "first".into() }));
    assert!(starts(&fx).is_empty());
    let (reply, _) = h.cmd(Command::Start("svc".into()));
    assert_eq!(reply, Err(Refused::Unavailable("onboot stage first running".into())));
    assert_eq!(h.core.status(h.now)[0].reason, "waits for onboot stage first");
    h.now += 250;
    let fx = done(&mut h, "first", Ok(0));
    line(&fx, "onboot first done in 250 ms");
    assert!(has(&fx, &Effect::RunStage { name: "optional".into() }));
    let fx = done(&mut h, "optional", Ok(7));
    line(&fx, "onboot optional failed: exited status=7; not required, boot goes on");
    assert_eq!(starts(&fx), ["svc"]);
    assert!(h.core.persisted().onboot_done);
}

#[test]
fn a_required_stage_that_fails_stops_the_boot_and_commands_say_why() {
    let (mut h, _) = H::boot(with_stages(vec![stage("format", 5000, true)], vec![]));
    let fx = done(&mut h, "format", Ok(1));
    line(&fx, "boot failed: required onboot format failed: exited status=1");
    assert!(starts(&fx).is_empty());
    let (reply, _) = h.cmd(Command::Start("svc".into()));
    assert!(matches!(reply, Err(Refused::Unavailable(r)) if r.starts_with("boot failed: required onboot format")));
    // A restarted supervisor stays in the failed boot.
    let (_, fx) =
        H::resume(with_stages(vec![stage("format", 5000, true)], vec![]), h.core.persisted().clone(), BTreeMap::new());
    line(&fx, "boot failed:");
    assert!(starts(&fx).is_empty());
}

#[test]
fn a_stage_past_its_timeout_is_killed() {
    let (mut h, _) = H::boot(with_stages(vec![stage("slow", 2000, false)], vec![]));
    assert_eq!(signals(&h.advance(2000)), [("slow", libc::SIGKILL)]);
    let fx = done(&mut h, "slow", Ok(137));
    line(&fx, "onboot slow failed: did not finish within 2000 ms: killed; not required");
    assert_eq!(starts(&fx), ["svc"]);
}

#[test]
fn a_stage_that_never_reports_back_is_given_up() {
    let (mut h, _) = H::boot(with_stages(vec![stage("stuck", 1000, false)], vec![]));
    h.advance(1000);
    let fx = h.advance(KILL_GRACE_MS);
    line(&fx, "onboot stuck failed: did not finish within 1000 ms: killed");
    assert_eq!(starts(&fx), ["svc"]);
    assert!(done(&mut h, "stuck", Ok(137)).is_empty(), "a late report is ignored");
}

#[test]
fn shutdown_during_onboot_kills_the_stage_then_runs_onshutdown() {
    let (mut h, _) = H::boot(with_stages(vec![stage("migrate", 60_000, true)], vec![stage("flush", 5000, false)]));
    let fx = h.input(Input::Shutdown);
    assert_eq!(signals(&fx), [("migrate", libc::SIGKILL)]);
    let fx = done(&mut h, "migrate", Ok(137));
    line(&fx, "onboot migrate stopped by the shutdown");
    assert!(has(&fx, &Effect::RunStage { name: "flush".into() }));
    assert!(starts(&h.log).is_empty(), "no service starts during a shutdown");
    let fx = done(&mut h, "flush", Ok(0));
    line(&fx, "onshutdown flush exited status=0");
    assert_eq!(fx.last(), Some(&Effect::Exit));
}

#[test]
fn onshutdown_stages_run_after_every_service_stopped() {
    let (mut h, _) = H::boot(with_stages(vec![], vec![stage("flush", 5000, false), stage("sync", 5000, false)]));
    h.started("svc", 3);
    let fx = h.input(Input::Shutdown);
    assert!(!fx.iter().any(|e| matches!(e, Effect::RunStage { .. })));
    let fx = h.exited("svc", 3, 0);
    assert!(has(&fx, &Effect::RunStage { name: "flush".into() }));
    assert_eq!(h.core.stage_plan("flush").map(|s| s.plan.name.as_str()), Some("flush"));
    let fx = done(&mut h, "flush", Err("create task flush: boom".into()));
    line(&fx, "onshutdown flush failed: create task flush: boom");
    assert!(has(&fx, &Effect::RunStage { name: "sync".into() }));
    assert_eq!(done(&mut h, "sync", Ok(0)).last(), Some(&Effect::Exit));
}
