//! A second config as an input: the least that converges.

use super::*;

#[test]
fn a_new_config_changes_only_what_differs() {
    let (mut h, _) = H::boot(desired(vec![plan("same", &[]), plan("changed", &[]), plan("gone", &[])]));
    h.started("same", 1);
    h.started("changed", 2);
    h.started("gone", 3);
    let mut new = plan("changed", &[]);
    new.spec = b"spec of changed, v2".to_vec();
    let fx = h.apply(desired(vec![plan("same", &[]), new.clone(), plan("added", &[])]));
    assert_eq!(starts(&fx), ["added"]);
    assert_eq!(signals(&fx), [("gone", libc::SIGTERM), ("changed", libc::SIGTERM)]);
    assert!(!fx.iter().any(|e| format!("{e:?}").contains("\"same\"")), "no effect on an unchanged service: {fx:?}");

    let fx = h.exited("changed", 2, 143);
    line(&fx, "service changed exited status=143; replaced by its new version");
    assert_eq!(starts(&fx), ["changed"]);
    assert_eq!(h.core.plan("changed"), Some(&new));
    let fx = h.exited("gone", 3, 143);
    line(&fx, "service gone exited status=143; removed from the config");
    assert!(has(&fx, &Effect::Cleanup { name: "gone".into() }));
    assert!(h.core.state("gone").is_none());
    assert!(!h.core.persisted().service.contains_key("gone"));
}

#[test]
fn a_changed_service_that_had_failed_gets_a_fresh_start() {
    let (mut h, _) = H::boot(desired(vec![plan("a", &[])]));
    h.input(Input::Started { name: "a".into(), result: Err(StartError { reason: "bad".into(), permanent: true }) });
    let mut fixed = plan("a", &[]);
    fixed.rootfs = "/images/a-v2".into();
    let fx = h.apply(desired(vec![fixed]));
    assert_eq!(starts(&fx), ["a"]);
}

#[test]
fn an_added_service_waits_for_its_dependencies() {
    let (mut h, _) = H::boot(desired(vec![with_ready(plan("db", &[]), hoist_config::Ready::Tcp { port: 1 })]));
    h.started("db", 1);
    let d = desired(vec![with_ready(plan("db", &[]), hoist_config::Ready::Tcp { port: 1 }), plan("api", &["db"])]);
    let fx = h.apply(d);
    assert!(starts(&fx).is_empty());
    assert_eq!(starts(&h.ready("db", 1)), ["api"]);
}

#[test]
fn the_same_config_again_changes_nothing() {
    let d = desired(vec![plan("a", &[]), plan("b", &["a"])]);
    let (mut h, _) = H::boot(d.clone());
    h.started("a", 1);
    h.started("b", 2);
    let fx = h.apply(d);
    assert!(starts(&fx).is_empty() && signals(&fx).is_empty(), "{fx:?}");
}
