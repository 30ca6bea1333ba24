//! Ordered stop: reverse dependency order, stop timeouts, services caught starting,
//! repeated shutdowns, then the onshutdown stages and the exit.

use super::*;

fn chain() -> (H, Vec<Effect>) {
    let d = desired(vec![plan("a", &[]), plan("b", &["a"]), plan("c", &["b"]), plan("solo", &[])]);
    let (mut h, _) = H::boot(d);
    h.started("a", 1);
    h.started("b", 2);
    h.started("c", 3);
    h.started("solo", 4);
    let fx = h.input(Input::Shutdown);
    (h, fx)
}

#[test]
fn services_stop_in_reverse_dependency_order() {
    let (mut h, fx) = chain();
    line(&fx, "stopping services");
    assert_eq!(signals(&fx), [("c", libc::SIGTERM), ("solo", libc::SIGTERM)]);
    assert!(h.input(Input::Shutdown).is_empty(), "a second shutdown changes nothing");
    let fx = h.exited("c", 3, 0);
    line(&fx, "service c stopped (status=0)");
    assert_eq!(signals(&fx), [("b", libc::SIGTERM)]);
    h.exited("solo", 4, 143);
    assert_eq!(signals(&h.exited("b", 2, 0)), [("a", libc::SIGTERM)]);
    let fx = h.exited("a", 1, 0);
    assert_eq!(fx.last(), Some(&Effect::Exit));
}

#[test]
fn a_service_ignoring_its_stop_signal_is_killed_and_a_stuck_one_is_given_up() {
    let (mut h, _) = chain();
    h.exited("solo", 4, 0);
    let fx = h.advance(10_000);
    assert_eq!(signals(&fx), [("c", libc::SIGKILL)]);
    let fx = h.exited("c", 3, 137);
    line(&fx, "service c stopped (killed after 10000 ms stop timeout, status=137)");
    // b never goes away, even after SIGKILL: given up, so the shutdown goes on.
    h.advance(10_000);
    let fx = h.advance(KILL_GRACE_MS);
    line(&fx, "service b stopped (did not stop after SIGKILL)");
    assert_eq!(signals(&fx), [("a", libc::SIGTERM)]);
}

#[test]
fn a_service_starting_at_shutdown_is_stopped_once_started() {
    let (mut h, _) = H::boot(desired(vec![plan("a", &[])]));
    let fx = h.input(Input::Shutdown);
    assert!(!fx.contains(&Effect::Exit), "a is being started: wait for it");
    let fx = h.started("a", 5);
    assert_eq!(signals(&fx), [("a", libc::SIGTERM)]);
    let fx = h.exited("a", 5, 0);
    assert_eq!(fx.last(), Some(&Effect::Exit));
}

#[test]
fn a_start_that_fails_during_shutdown_does_not_hold_it() {
    let (mut h, _) = H::boot(desired(vec![plan("a", &[])]));
    h.input(Input::Shutdown);
    let err = StartError { reason: "containerd went away".into(), permanent: false };
    let fx = h.input(Input::Started { name: "a".into(), result: Err(err) });
    assert_eq!(fx.last(), Some(&Effect::Exit));
}

#[test]
fn services_in_backoff_or_waiting_are_not_started_by_a_shutdown() {
    let (mut h, _) = H::boot(desired(vec![plan("a", &[]), plan("b", &["a"])]));
    h.started("a", 1);
    h.started("b", 2);
    h.exited("b", 2, 1);
    h.input(Input::Shutdown);
    let fx = h.exited("a", 1, 0);
    assert!(starts(&h.log).iter().filter(|n| **n == "b").count() == 1);
    assert_eq!(fx.last(), Some(&Effect::Exit));
}

#[test]
fn shutdown_before_containerd_answers_stops_what_runs_once_it_does() {
    let d = || desired(vec![plan("a", &[]), plan("b", &["a"]), plan("down", &[])]);
    let mut core = Core::new(d(), Persisted::default(), Vec::new());
    let fx = core.handle(0, Input::Shutdown);
    assert!(!fx.contains(&Effect::Exit));
    assert_eq!(core.next_deadline(), Some(CONNECT_GRACE_MS));
    let running: BTreeMap<String, u32> = [("a".to_string(), 1), ("b".to_string(), 2)].into();
    let fx = core.handle(500, Input::Connected { running });
    assert!(starts(&fx).is_empty(), "nothing starts during a shutdown: {fx:?}");
    assert_eq!(signals(&fx), [("b", libc::SIGTERM)]);
    core.handle(600, Input::Exited { name: "b".into(), pid: 2, status: 0, oom: false });
    let fx = core.handle(700, Input::Exited { name: "a".into(), pid: 1, status: 0, oom: false });
    assert_eq!(fx.last(), Some(&Effect::Exit));
}

#[test]
fn shutdown_gives_up_on_a_containerd_that_never_answers() {
    let mut core = Core::new(desired(vec![plan("a", &[])]), Persisted::default(), Vec::new());
    core.handle(0, Input::Shutdown);
    assert!(core.handle(CONNECT_GRACE_MS - 1, Input::Timer).is_empty());
    let fx = core.handle(CONNECT_GRACE_MS, Input::Timer);
    assert_eq!(fx.last(), Some(&Effect::Exit));
}
