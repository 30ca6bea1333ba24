//! Stop, start and restart by hand, and commands in phases where they cannot act.

use super::*;

#[test]
fn stop_by_hand_stays_stopped_and_start_by_hand_clears_a_failure() {
    let (mut h, _) = H::boot(desired(vec![plan("a", &[])]));
    h.started("a", 1);
    let (reply, fx) = h.cmd(Command::Stop("a".into()));
    assert_eq!(reply, Ok("stopping a".into()));
    assert_eq!(signals(&fx), [("a", libc::SIGTERM)]);
    assert!(matches!(h.cmd(Command::Stop("a".into())).0, Err(Refused::Conflict(m)) if m.contains("already stopping")));
    let fx = h.exited("a", 1, 143);
    line(&fx, "service a exited status=143; stopped by request");
    assert_eq!(h.state("a"), State::Stopped);
    assert!(h.advance(60_000).is_empty(), "stopped by hand is not restarted");
    let (reply, fx) = h.cmd(Command::Start("a".into()));
    assert_eq!(reply, Ok("starting a".into()));
    assert_eq!(starts(&fx), ["a"]);
    assert!(matches!(h.cmd(Command::Start("a".into())).0, Err(Refused::Conflict(m)) if m.contains("already starting")));
}

#[test]
fn a_stop_that_is_ignored_ends_in_sigkill_after_the_stop_timeout() {
    let (mut h, _) = H::boot(desired(vec![plan("stubborn", &[])]));
    h.started("stubborn", 1);
    assert_eq!(h.cmd(Command::Stop("stubborn".into())).0, Ok("stopping stubborn".into()));
    assert!(signals(&h.advance(9_999)).is_empty());
    assert_eq!(signals(&h.advance(1)), [("stubborn", libc::SIGKILL)]);
    let fx = h.exited("stubborn", 1, 137);
    line(&fx, "service stubborn exited status=137; stopped by request");
}

#[test]
fn restart_by_hand_counts_and_starts_at_once() {
    let (mut h, _) = H::boot(desired(vec![plan("a", &[])]));
    h.started("a", 1);
    assert_eq!(h.cmd(Command::Restart("a".into())).0, Ok("restarting a".into()));
    let fx = h.exited("a", 1, 143);
    line(&fx, "restarting by request");
    assert_eq!(starts(&fx), ["a"]);
    assert_eq!(h.core.persisted().service["a"].restarts, 1);
}

#[test]
fn stop_while_starting_stops_once_started() {
    let (mut h, fx) = H::boot(desired(vec![plan("a", &[])]));
    assert_eq!(starts(&fx), ["a"]);
    assert_eq!(h.cmd(Command::Stop("a".into())).0, Ok("stopping a".into()));
    let fx = h.started("a", 8);
    assert_eq!(signals(&fx), [("a", libc::SIGTERM)]);
    assert!(has(&fx, &Effect::Wait { name: "a".into(), pid: 8 }));
    h.exited("a", 8, 143);
    assert_eq!(h.state("a"), State::Stopped);
}

#[test]
fn stop_in_backoff_cancels_the_restart() {
    let (mut h, _) = H::boot(desired(vec![plan("a", &[])]));
    h.started("a", 1);
    h.exited("a", 1, 1);
    assert_eq!(h.cmd(Command::Stop("a".into())).0, Ok("stopped a".into()));
    assert!(h.advance(1000).is_empty());
}

#[test]
fn unknown_services_and_phases_that_cannot_act_are_refused_with_a_reason() {
    let mut core = Core::new(desired(vec![plan("a", &[])]), Persisted::default(), Vec::new());
    let (reply, _) = core.command(0, Command::Start("a".into()));
    assert_eq!(reply, Err(Refused::Unavailable("containerd is not answering yet".into())));
    let view = &core.status(0)[0];
    assert_eq!((view.state, view.reason.as_str()), ("waiting", "waits for containerd"));
    core.handle(10, Input::Connected { running: BTreeMap::new() });
    assert_eq!(core.command(10, Command::Stop("nope".into())).0, Err(Refused::NoService("nope".into())));
    core.handle(20, Input::Shutdown);
    assert_eq!(core.command(20, Command::Start("a".into())).0, Err(Refused::Unavailable("shutting down".into())));
}
