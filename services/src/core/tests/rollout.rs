//! Rollouts: readiness-gated replacement in dependency order, the settle window, automatic
//! rollback, try and confirm, one at a time, and a supervisor restarted mid-apply.

use super::*;
use hoist_config::Ready;

fn v2(mut p: Plan) -> Plan {
    p.spec.extend_from_slice(b", v2");
    p
}

fn tcp(p: Plan) -> Plan {
    with_ready(p, Ready::Tcp { port: 80 })
}

/// web and db (tcp-ready), api on db; all up.
fn up() -> H {
    let (mut h, _) = H::boot(desired(vec![tcp(plan("db", &[])), plan("api", &["db"]), plan("web", &[])]));
    h.started("db", 1);
    h.ready("db", 1);
    h.started("api", 2);
    h.started("web", 3);
    h
}

#[test]
fn one_changed_service_is_replaced_alone_and_the_apply_is_done_after_the_settle_window() {
    let mut h = up();
    let fx = h.apply(desired(vec![tcp(plan("db", &[])), plan("api", &["db"]), v2(plan("web", &[]))]));
    assert_eq!(signals(&fx), [("web", libc::SIGTERM)]);
    assert_eq!(progress(&fx), [("web".into(), "replacing")]);
    let fx = h.exited("web", 3, 143);
    assert_eq!(starts(&fx), ["web"]);
    let fx = h.started("web", 4);
    assert_eq!(progress(&fx), [("web".into(), "ready"), ("".into(), "settling")]);
    assert_eq!(outcome(&h.advance(9_999)), None);
    assert_eq!(outcome(&h.advance(1)), Some(("done", String::new())));
    assert_eq!(h.core.rollout_generation(), None);
    assert!(matches!(h.state("db"), State::Running { pid: 1, .. }));
    assert!(matches!(h.state("api"), State::Running { pid: 2, .. }));
    assert_eq!(h.core.persisted().service["api"].restarts, 0);
}

#[test]
fn a_dependent_is_replaced_only_once_its_changed_dependency_is_ready_again() {
    let mut h = up();
    let fx = h.apply(desired(vec![v2(tcp(plan("db", &[]))), v2(plan("api", &["db"])), plan("web", &[])]));
    assert_eq!(signals(&fx), [("db", libc::SIGTERM)], "api waits for db");
    assert!(progress(&fx).contains(&("api".into(), "held")));
    h.exited("db", 1, 143);
    let fx = h.started("db", 11);
    assert!(signals(&fx).is_empty(), "db is not ready yet: {fx:?}");
    let fx = h.ready("db", 11);
    assert_eq!(signals(&fx), [("api", libc::SIGTERM)]);
    h.exited("api", 2, 143);
    let fx = h.started("api", 12);
    assert!(progress(&fx).contains(&("".into(), "settling")), "{fx:?}");
    assert_eq!(outcome(&h.advance(10_000)).map(|o| o.0), Some("done"));
}

#[test]
fn a_new_version_that_never_gets_ready_is_rolled_back_to_the_old_one() {
    let mut h = up();
    let old = tcp(plan("db", &[]));
    let mut new = v2(old.clone());
    new.start_timeout = Duration::from_secs(5);
    h.apply(desired(vec![new, plan("api", &["db"]), plan("web", &[])]));
    h.exited("db", 1, 143);
    h.started("db", 11);
    let fx = h.advance(5_000);
    assert_eq!(signals(&fx), [("db", libc::SIGTERM)], "stopped at its start timeout");
    let failed = progress(&fx);
    assert!(failed.contains(&("db".into(), "failed")), "{failed:?}");
    assert!(failed.contains(&("".into(), "rolling-back")), "{failed:?}");
    let fx = h.exited("db", 11, 143);
    assert_eq!(starts(&fx), ["db"]);
    assert_eq!(h.core.plan("db"), Some(&old), "the old version comes back");
    let fx = h.started("db", 21);
    assert_eq!(outcome(&fx), None, "rolled back once the old version is ready");
    let fx = h.ready("db", 21);
    let (kind, detail) = outcome(&fx).expect("final");
    assert_eq!(kind, "rolled-back");
    assert!(detail.contains("service db was not ready within its start timeout (5000 ms)"), "{detail}");
    assert!(matches!(h.state("api"), State::Running { pid: 2, .. }), "api untouched");
}

#[test]
fn an_exit_during_the_settle_window_rolls_back() {
    let mut h = up();
    h.apply(desired(vec![tcp(plan("db", &[])), plan("api", &["db"]), v2(plan("web", &[]))]));
    h.exited("web", 3, 143);
    h.started("web", 4);
    h.advance(3_000);
    let fx = h.exited("web", 4, 1);
    let p = progress(&fx);
    assert!(p.contains(&("web".into(), "failed")) && p.contains(&("".into(), "rolling-back")), "{p:?}");
    // In backoff: the old version is started at once instead.
    assert_eq!(starts(&fx), ["web"]);
    assert_eq!(h.core.plan("web"), Some(&plan("web", &[])));
    let (kind, detail) = outcome(&h.started("web", 5)).expect("final");
    assert_eq!(kind, "rolled-back");
    assert!(detail.contains("web exited status=1"), "{detail}");
}

#[test]
fn an_added_service_starts_a_removed_one_stops_and_a_rollback_brings_it_back() {
    let mut h = up();
    let mut bad = plan("new", &[]);
    bad.start_timeout = Duration::from_secs(1);
    let bad = tcp(bad);
    let fx = h.apply(desired(vec![tcp(plan("db", &[])), plan("api", &["db"]), bad]));
    assert_eq!(starts(&fx), ["new"]);
    assert_eq!(signals(&fx), [("web", libc::SIGTERM)]);
    h.exited("web", 3, 143);
    assert!(h.core.state("web").is_none(), "removed");
    h.started("new", 9);
    let fx = h.advance(1_000);
    assert!(progress(&fx).contains(&("new".into(), "failed")), "{fx:?}");
    assert_eq!(starts(&fx), ["web"], "the removed service comes back");
    let fx = h.exited("new", 9, 143);
    assert!(h.core.state("new").is_none(), "the added one is gone again: {fx:?}");
    let (kind, _) = outcome(&h.started("web", 10)).expect("final");
    assert_eq!(kind, "rolled-back");
}

#[test]
fn a_tentative_generation_rolls_back_unless_confirmed() {
    let mut h = up();
    h.apply_with(desired(vec![tcp(plan("db", &[])), plan("api", &["db"]), v2(plan("web", &[]))]), 1_000, Some(20_000))
        .expect("taken");
    h.exited("web", 3, 143);
    h.started("web", 4);
    assert_eq!(outcome(&h.advance(1_000)).map(|o| o.0), Some("tentative"));
    let (refused, _) =
        h.cmd(Command::Apply(Box::new(Apply { generation: 9, desired: desired(vec![]), settle_ms: 0, try_ms: None })));
    assert!(matches!(refused, Err(Refused::Busy(ref m)) if m.contains("generation 1 is tentative")), "{refused:?}");
    let fx = h.advance(20_000);
    assert_eq!(signals(&fx), [("web", libc::SIGTERM)], "not confirmed: the old web comes back");
    h.exited("web", 4, 143);
    let (kind, detail) = outcome(&h.started("web", 5)).expect("final");
    assert_eq!((kind, detail.as_str()), ("rolled-back", "not confirmed in time"));

    h.apply_with(desired(vec![tcp(plan("db", &[])), plan("api", &["db"]), v2(plan("web", &[]))]), 1_000, Some(20_000))
        .expect("taken");
    h.exited("web", 5, 143);
    h.started("web", 6);
    h.advance(1_000);
    let (reply, fx) = h.cmd(Command::Confirm);
    assert_eq!(reply, Ok("generation 2 confirmed".into()));
    assert_eq!(outcome(&fx).map(|o| o.0), Some("confirmed"));
    assert!(signals(&h.advance(60_000)).is_empty(), "confirmed: nothing rolls back");
    assert_eq!(h.cmd(Command::Confirm).0, Err(Refused::Conflict("no generation is tentative".into())));
}

#[test]
fn one_apply_at_a_time() {
    let mut h = up();
    h.apply(desired(vec![tcp(plan("db", &[])), plan("api", &["db"]), v2(plan("web", &[]))]));
    let second = h.apply_with(desired(vec![]), 0, None);
    assert!(matches!(second, Err(Refused::Busy(ref m)) if m.contains("generation 1 is being applied")), "{second:?}");
}

#[test]
fn a_supervisor_restarted_mid_apply_replaces_what_runs_from_another_plan() {
    let mut h = up();
    h.apply(desired(vec![tcp(plan("db", &[])), plan("api", &["db"]), v2(plan("web", &[]))]));
    h.exited("web", 3, 143);
    h.started("web", 4);
    // The supervisor dies here; the generation in force is still the old one.
    let persisted = h.core.persisted().clone();
    let running = BTreeMap::from([("db".to_string(), 1), ("api".to_string(), 2), ("web".to_string(), 4)]);
    let old = desired(vec![tcp(plan("db", &[])), plan("api", &["db"]), plan("web", &[])]);
    let (_, fx) = H::resume(old, persisted, running);
    assert_eq!(signals(&fx), [("web", libc::SIGTERM)], "only web runs a plan of the interrupted generation");
    line(&fx, "service web runs another version than the generation in force");
}

#[test]
fn a_shutdown_ends_a_rollout() {
    let mut h = up();
    h.apply(desired(vec![tcp(plan("db", &[])), plan("api", &["db"]), v2(plan("web", &[]))]));
    let fx = h.input(Input::Shutdown);
    assert_eq!(outcome(&fx).map(|o| o.0), Some("rolled-back"));
}

#[test]
fn a_held_service_whose_dependency_is_stopped_by_hand_rolls_back_instead_of_hanging() {
    let mut h = up();
    h.apply(desired(vec![v2(tcp(plan("db", &[]))), v2(plan("api", &["db"])), plan("web", &[])]));
    h.exited("db", 1, 143);
    h.started("db", 11);
    let (reply, _) = h.cmd(Command::Stop("db".into()));
    reply.expect("stop db by hand");
    let fx = h.exited("db", 11, 143);
    let p = progress(&fx);
    assert!(p.contains(&("api".into(), "failed")) && p.contains(&("".into(), "rolling-back")), "{p:?}");
}

#[test]
fn a_rollout_under_way_can_be_rolled_back_by_hand() {
    let mut h = up();
    let mut slow = v2(tcp(plan("db", &[])));
    slow.start_timeout = Duration::from_secs(600);
    h.apply(desired(vec![slow, plan("api", &["db"]), plan("web", &[])]));
    h.exited("db", 1, 143);
    h.started("db", 11);
    let (reply, fx) = h.cmd(Command::Reject);
    assert_eq!(reply, Ok("rolling generation 1 back".into()));
    assert_eq!(signals(&fx), [("db", libc::SIGTERM)]);
    h.exited("db", 11, 143);
    h.started("db", 21);
    let (kind, detail) = outcome(&h.ready("db", 21)).expect("final");
    assert_eq!((kind, detail.as_str()), ("rolled-back", "rolled back by request"));
    assert_eq!(h.cmd(Command::Reject).0, Err(Refused::Conflict("no generation is being applied or tentative".into())));
}

#[test]
fn a_removal_still_starting_when_rolled_back_keeps_the_service() {
    let mut h = up();
    // web is restarting (in backoff, then starting) when an apply removes it.
    h.exited("web", 3, 1);
    h.advance(100);
    assert!(matches!(h.state("web"), State::Starting { .. }));
    let mut bad = tcp(plan("new", &[]));
    bad.start_timeout = Duration::from_secs(1);
    h.apply(desired(vec![tcp(plan("db", &[])), plan("api", &["db"]), bad]));
    // "new" never gets ready: rolled back while web's start is still under way.
    h.started("new", 30);
    let fx = h.advance(1_000);
    assert!(progress(&fx).contains(&("new".into(), "failed")), "{fx:?}");
    h.started("web", 31);
    assert!(h.core.state("web").is_some(), "web is in the generation rolled back to: not forgotten");
    assert!(matches!(h.state("web"), State::Running { pid: 31, .. }), "{:?}", h.state("web"));
}

#[test]
fn a_rollback_ends_only_once_what_it_removes_is_gone() {
    let mut h = up();
    let mut bad = tcp(plan("new", &[]));
    bad.start_timeout = Duration::from_secs(1);
    h.apply(desired(vec![tcp(plan("db", &[])), plan("api", &["db"]), plan("web", &[]), bad, plan("extra", &[])]));
    h.started("new", 30);
    h.started("extra", 40);
    let fx = h.advance(1_000);
    assert!(progress(&fx).contains(&("".into(), "rolling-back")), "{fx:?}");
    assert_eq!(outcome(&h.exited("new", 30, 143)), None, "extra still stops");
    let (kind, _) = outcome(&h.exited("extra", 40, 143)).expect("final once both are gone");
    assert_eq!(kind, "rolled-back");
}

#[test]
fn a_task_of_a_service_the_generation_in_force_lacks_is_stopped_after_a_restart() {
    let old = desired(vec![tcp(plan("db", &[])), plan("api", &["db"]), plan("web", &[])]);
    let running = BTreeMap::from([
        ("db".to_string(), 1),
        ("api".to_string(), 2),
        ("web".to_string(), 3),
        ("added".to_string(), 4),
    ]);
    let (mut h, fx) = H::resume(old, crate::state::Persisted { onboot_done: true, ..Default::default() }, running);
    assert_eq!(signals(&fx), [("added", libc::SIGTERM)]);
    line(&fx, "service added runs but is not in the generation in force");
    h.exited("added", 4, 143);
    assert!(h.core.state("added").is_none(), "forgotten once gone");
}
