//! The built-in `network` target: reached once, when PID 1's network setup ends (up or
//! degraded); only the services that list it wait for it. Volume targets (`volume:NAME`)
//! work the same way, except that a failed volume is never ready.

use hoist_guest::network;

use super::*;

fn up(uptime_ms: Ms) -> Input {
    Input::Network(network::State::up(uptime_ms))
}

fn degraded(uptime_ms: Ms, why: &str) -> Input {
    Input::Network(network::State::degraded(uptime_ms, why))
}

#[test]
fn the_target_is_the_name_config_accepts() {
    assert_eq!(hoist_config::NETWORK_TARGET, network::TARGET);
}

#[test]
fn a_service_that_needs_the_network_waits_for_it_and_the_others_do_not() {
    let (mut h, fx) = H::boot(desired(vec![plan("web", &["network"]), plan("log", &[])]));
    assert_eq!(starts(&fx), ["log"]);
    assert_eq!(h.state("web"), State::Waiting { on: vec!["network".into()] });
    line(&fx, "service web waiting for network");
    let fx = h.started("log", 10);
    assert!(!has(&fx, &Effect::Settled), "the ready line waits for the network a service waits for");

    h.now = 2000;
    let fx = h.input(up(1500));
    assert_eq!(starts(&fx), ["web"]);
    assert!(lines(&fx).is_empty(), "an up network is PID 1's to announce: {fx:?}");
    let fx = h.started("web", 11);
    line(&fx, "ready uptime_ms=2000 services=2");
    line(&fx, "timeline containerd=1000 log=1000 network=1500 web=2000 ready=2000");
    assert!(h.core.problems(h.now).is_empty());
}

#[test]
fn a_degraded_network_is_said_once_and_its_dependents_start_anyway() {
    let (mut h, _) = H::boot(desired(vec![plan("web", &["network", "db"]), plan("db", &[])]));
    h.started("db", 10);
    assert_eq!(h.state("web"), State::Waiting { on: vec!["network".into()] });
    let fx = h.input(degraded(900, "no carrier on eth0 after 5s"));
    line(&fx, "network degraded: no carrier on eth0 after 5s; services that depend on it start anyway");
    assert_eq!(starts(&fx), ["web"]);
    assert_eq!(h.core.problems(h.now), ["network degraded: no carrier on eth0 after 5s"]);
    // Reached once per boot: a later state (a DHCP lease that came late) starts nothing and
    // says nothing, but status follows it.
    assert_eq!(h.core.network_summary().as_deref(), Some("degraded: no carrier on eth0 after 5s"));
    let leased = network::State { detail: Some("DHCP 10.0.2.15/24 on eth0".into()), ..network::State::up(950) };
    assert!(h.input(Input::Network(leased)).is_empty());
    assert_eq!(h.core.timeline().iter().filter(|(n, _)| n == "network").count(), 1);
    assert!(h.core.problems(h.now).is_empty(), "{:?}", h.core.problems(h.now));
    assert_eq!(h.core.network_summary().as_deref(), Some("up: DHCP 10.0.2.15/24 on eth0"));
    assert!(h.input(degraded(990, "the DHCP lease for 10.0.2.15 on eth0 ended; trying again")).is_empty());
    assert_eq!(h.core.problems(h.now), ["network degraded: the DHCP lease for 10.0.2.15 on eth0 ended; trying again"]);
    assert_eq!(h.core.timeline().iter().filter(|(n, _)| n == "network").count(), 1);
}

#[test]
fn a_service_waits_for_the_network_and_its_other_dependencies() {
    let d = desired(vec![with_ready(plan("db", &[]), Ready::Tcp { port: 5432 }), plan("api", &["db", "network"])]);
    let (mut h, _) = H::boot(d);
    let fx = h.input(up(1000));
    assert!(starts(&fx).is_empty());
    h.started("db", 10);
    assert_eq!(h.state("api"), State::Waiting { on: vec!["db".into()] });
    let fx = h.ready("db", 10);
    assert_eq!(starts(&fx), ["api"]);
}

#[test]
fn a_restarted_supervisor_gets_the_network_at_once_and_keeps_pid1s_timeline_in_order() {
    let persisted = Persisted { onboot_done: true, ..Default::default() };
    let pid1 = vec![("init".to_string(), 300), ("mounts".to_string(), 700), ("supervisor".to_string(), 5000)];
    let d = desired(vec![plan("db", &[]), plan("web", &["network", "db"])]);
    let mut h = H { core: Core::new(d, persisted, pid1), now: 6000, log: Vec::new(), generation: 1 };
    // The driver reads the file before anything else, while containerd is not answering.
    let fx = h.input(up(2500));
    assert!(fx.is_empty(), "{fx:?}");
    let fx = h.input(Input::Connected { running: [("db".to_string(), 5)].into() });
    line(&fx, "service db adopted pid=5");
    assert_eq!(starts(&fx), ["web"]);
    assert!(!lines(&fx).iter().any(|l| l.contains("waiting")), "{fx:?}");
    let names: Vec<&str> = h.core.timeline().iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["init", "mounts", "network", "supervisor", "containerd"]);
}

#[test]
fn a_shutdown_before_the_network_stops_its_waiters_and_nothing_starts_after() {
    let (mut h, _) = H::boot(desired(vec![plan("web", &["network"]), plan("log", &[])]));
    h.started("log", 10);
    let fx = h.input(Input::Shutdown);
    assert_eq!(h.state("web"), State::Stopped);
    assert_eq!(signals(&fx), [("log", libc::SIGTERM)]);
    assert!(starts(&h.input(up(1200))).is_empty());
    let fx = h.exited("log", 10, 143);
    assert!(has(&fx, &Effect::Exit));
}

#[test]
fn an_applied_service_that_needs_the_network_starts_once_it_is_reached() {
    let (mut h, _) = H::boot(desired(vec![plan("log", &[])]));
    h.started("log", 10);
    let fx = h.apply(desired(vec![plan("log", &[]), plan("web", &["network"])]));
    assert!(starts(&fx).is_empty());
    assert_eq!(h.state("web"), State::Waiting { on: vec!["network".into()] });
    let fx = h.input(up(1100));
    assert_eq!(starts(&fx), ["web"]);
    let fx = h.started("web", 11);
    assert!(progress(&fx).contains(&("".into(), "settling")), "{fx:?}");
}

fn volume(name: &str, state: hoist_guest::volume::State) -> Input {
    Input::Volume { name: name.into(), state }
}

fn mounted(uptime_ms: Ms) -> hoist_guest::volume::State {
    hoist_guest::volume::State::Mounted { uptime_ms, device: "/dev/vda".into(), uuid: "u".into() }
}

#[test]
fn a_service_that_binds_a_volume_starts_once_it_is_mounted() {
    let (mut h, fx) = H::boot(desired(vec![plan("db", &["volume:data"]), plan("log", &[])]));
    assert_eq!(starts(&fx), ["log"]);
    assert_eq!(h.core.volumes_bound().into_iter().collect::<Vec<_>>(), ["data"]);
    line(&fx, "service db waiting for volume:data");
    let fx = h.started("log", 10);
    assert!(!has(&fx, &Effect::Settled), "the ready line waits for the volume");
    let fx = h.input(volume("data", mounted(1500)));
    assert_eq!(starts(&fx), ["db"]);
    let fx = h.started("db", 11);
    assert!(has(&fx, &Effect::Settled));
    assert!(h.core.problems(h.now).is_empty());
}

#[test]
fn a_volume_that_failed_holds_back_only_its_services_and_says_why() {
    let (mut h, _) = H::boot(desired(vec![plan("db", &["volume:data"]), plan("log", &[])]));
    h.started("log", 10);
    let why = "no disk with serial:data1 appeared within 10.0s";
    let failed = hoist_guest::volume::State::Failed { uptime_ms: 9000, required: true, reason: why.into() };
    let fx = h.input(volume("data", failed));
    assert!(starts(&fx).is_empty());
    assert!(has(&fx, &Effect::Settled), "a failed volume is settled: the ready line comes");
    assert_eq!(h.state("db"), State::Waiting { on: vec!["volume:data".into()] });
    assert_eq!(h.core.problems(h.now), [format!("volume data not mounted: {why}")]);
    let view = h.core.status(h.now).into_iter().find(|v| v.name == "db").expect("db");
    assert_eq!(view.reason, format!("waits for volume:data (not mounted: {why})"));
    let (_, events) = h.core.describe(h.now, "db").expect("db");
    assert!(events.iter().any(|e| e.detail.contains(why)), "{events:?}");
    let optional = hoist_guest::volume::State::Failed { uptime_ms: 9000, required: false, reason: "gone".into() };
    h.input(volume("logs", optional));
    assert_eq!(h.core.problems(h.now).len(), 1, "an optional volume is not a host problem");
    // Once per boot: a later state changes nothing.
    assert!(starts(&h.input(volume("data", mounted(9500)))).is_empty());
}
