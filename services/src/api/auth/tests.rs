use super::*;

fn cert(name: &str, role: Option<Role>, serial: &str) -> Peer {
    Peer::Cert(Some(CertSummary { name: name.into(), role, serial: serial.into(), not_after: 0 }))
}

fn path(call: &str) -> String {
    format!("/hoist.v1.Control/{call}")
}

fn none_revoked() -> Revoked {
    Ok(BTreeSet::new())
}

#[test]
fn every_call_of_the_proto_has_a_rule_and_no_rule_is_stale() {
    let proto = include_str!("../../../../api/proto/hoist.proto");
    let calls: BTreeSet<&str> = proto
        .lines()
        .filter_map(|l| l.trim().strip_prefix("rpc "))
        .filter_map(|l| l.split('(').next())
        .map(str::trim)
        .collect();
    let ruled: BTreeSet<&str> = RULES.iter().map(|r| r.call).collect();
    assert_eq!(calls, ruled);
    assert_eq!(ruled.len(), RULES.len(), "one rule per call");
}

#[test]
fn each_role_gets_exactly_its_calls() {
    let reader = ["Status", "Describe", "Logs", "Events", "Version", "Plan", "History"];
    let operator = ["Start", "Stop", "Restart"];
    let admin = ["Exec", "Shutdown", "Apply", "Confirm", "Rollback", "MissingBlobs", "UploadBlob"];
    for (role, may) in [
        (Role::Reader, reader.to_vec()),
        (Role::Operator, [&reader[..], &operator[..]].concat()),
        (Role::Admin, [&reader[..], &operator[..], &admin[..]].concat()),
    ] {
        for r in RULES {
            let got = decide(&path(r.call), &cert("alice", Some(role), "1"), &none_revoked());
            if may.contains(&r.call) {
                let caller = got.unwrap_or_else(|(s, _)| panic!("{role} {}: {s:?}", r.call));
                assert_eq!((caller.name.as_str(), caller.role, caller.rule), ("alice", role, *r));
            } else {
                let (status, line) = got.expect_err("denied");
                assert_eq!(status.code(), tonic::Code::PermissionDenied, "{role} {}", r.call);
                let want = format!("{} needs the {} role; this certificate (alice) has {role}", r.call, r.role);
                assert_eq!(status.message(), want);
                assert_eq!(line.is_some(), r.mutating, "a refused change is audited: {}", r.call);
            }
        }
    }
}

#[test]
fn a_certificate_without_a_role_is_a_reader() {
    let peer = cert("legacy", None, "2");
    assert_eq!(decide(&path("Status"), &peer, &none_revoked()).expect("status").role, Role::Reader);
    let (status, line) = decide(&path("Exec"), &peer, &none_revoked()).expect_err("exec");
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert!(status.message().contains("needs the admin role"), "{}", status.message());
    let line = line.expect("audited").to_string();
    assert_eq!(line, "hoist: audit denied call=exec target=- caller=legacy role=reader");
}

#[test]
fn unknown_calls_and_strangers_are_refused() {
    let admin = cert("root", Some(Role::Admin), "3");
    for p in ["/hoist.v1.Control/Debug", "/hoist.v1.Other/Status", "/grpc.health.v1.Health/Check", "/", "Status", ""] {
        let (status, _) = decide(p, &admin, &none_revoked()).expect_err(p);
        assert_eq!(status.code(), tonic::Code::PermissionDenied, "{p}");
    }
    for peer in [Peer::Unknown, Peer::Cert(None)] {
        let (status, _) = decide(&path("Status"), &peer, &none_revoked()).expect_err("stranger");
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
    }
    let local = decide(&path("Shutdown"), &Peer::Local, &none_revoked()).expect("local is root in the guest");
    assert_eq!((local.name.as_str(), local.role), ("local", Role::Admin));
}

#[test]
fn a_revoked_certificate_is_refused_whatever_its_role() {
    let revoked: Revoked = Ok(["ab12".to_string()].into_iter().collect());
    let peer = cert("mallory", Some(Role::Admin), "ab12");
    for call in ["Status", "Restart"] {
        let (status, line) = decide(&path(call), &peer, &revoked).expect_err("revoked");
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        assert_eq!(status.message(), "certificate ab12 (mallory) is revoked");
        assert_eq!(line.is_some(), call == "Restart");
    }
    assert!(decide(&path("Exec"), &cert("alice", Some(Role::Admin), "ab13"), &revoked).is_ok());
    let unreadable: Revoked = Err("/etc/hoist/tls/revoked.txt: permission denied".into());
    let (status, _) = decide(&path("Status"), &cert("alice", Some(Role::Admin), "1"), &unreadable).expect_err("closed");
    assert_eq!(status.code(), tonic::Code::Unavailable);
}

#[test]
fn a_hostile_name_is_escaped_in_what_the_client_is_told() {
    let peer = cert("eve\n\u{1b}[31m", Some(Role::Reader), "5");
    let (status, _) = decide(&path("Stop"), &peer, &none_revoked()).expect_err("denied");
    assert!(!status.message().contains('\n') && !status.message().contains('\u{1b}'), "{:?}", status.message());
}

/// Each handler of a call that changes something writes its audit line: a new mutating
/// call without one fails here, not in an incident review.
#[test]
fn every_mutating_handler_audits() {
    let source = include_str!("../server.rs");
    for r in RULES.iter().filter(|r| r.mutating) {
        let mut snake = String::new();
        for (i, c) in r.call.chars().enumerate() {
            if c.is_ascii_uppercase() && i > 0 {
                snake.push('_');
            }
            snake.push(c.to_ascii_lowercase());
        }
        let start = source.find(&format!("async fn {snake}(")).unwrap_or_else(|| panic!("no handler for {}", r.call));
        let body = &source[start + 1..];
        let body = &body[..body.find("async fn ").unwrap_or(body.len())];
        assert!(body.contains("audit(") || body.contains("audit_as("), "{} does not audit", r.call);
    }
}

#[test]
fn revocations_from_an_apply_add_up_and_outlive_a_supervisor_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (build, applied) = (dir.path().join("build.txt"), dir.path().join("applied.txt"));
    std::fs::write(&build, "ab12  # alice\n").expect("write");
    let list = Revocations::load(&build, &applied);
    assert_eq!(list.with(|l| l.clone()).expect("list").into_iter().collect::<Vec<_>>(), ["ab12"]);
    let bad = list.add(&["00ff".into(), "not-hex".into()]).expect_err("not hex");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(!applied.exists(), "a bad request adds nothing");
    assert_eq!(list.add(&["00FF".into(), "ab12".into()]).expect("add"), 2);
    let peer = cert("bob", Some(Role::Admin), "ff");
    let (status, _) = list.with(|l| decide(&path("Status"), &peer, l)).expect_err("refused at once");
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert_eq!(list.add(&["ff".into()]).expect("again"), 0);
    let restarted = Revocations::load(&build, &applied);
    assert_eq!(restarted.with(|l| l.clone()).expect("list").into_iter().collect::<Vec<_>>(), ["ab12", "ff"]);
    std::fs::create_dir(dir.path().join("unreadable")).expect("mkdir");
    let broken = Revocations::load(&dir.path().join("unreadable"), &applied);
    assert!(broken.with(|l| l.is_err()), "an unreadable list refuses every certificate");
}
