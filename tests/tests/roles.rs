//! Roles from the client certificate, against a booted host over the real mutual-TLS
//! path: a reader reads but cannot exec or restart, an operator restarts but cannot exec,
//! the build's admin can; a certificate revoked before the build, or after it and sent
//! with `hoist apply`, is refused; every change, allowed or denied, leaves an audit line
//! on the console and in the supervisor's log.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hoist_api::{client, pb};
use hoist_guest::console::Line;
use hoist_guest::pki::Role;
use hoist_tests::host::{Host, text};
use hoist_tests::{bin_dir, pki_dir, wait_line};

const HOST: &str = r#"
version = 1
[service.web]
image = "@IMAGE@"
command = ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
"#;

/// A client directory (ca.pem, client.pem, client.key) for `name` with `role`.
fn client_dir(work: &Path, name: &str, role: Role) -> (PathBuf, String) {
    let issued = hoist_images::pki::issue(pki_dir(), name, role, 1).expect("issue");
    let dir = work.join(name);
    hoist_images::pki::write_client(pki_dir(), &dir, &issued).expect("write client");
    (dir, issued.serial)
}

fn audit(allowed: bool, call: &str, target: &str, caller: &str, role: &str) -> Line {
    Line::Audit { allowed, call: call.into(), target: target.into(), caller: caller.into(), role: role.into() }
}

fn exec_true() -> pb::ExecRequest {
    pb::ExecRequest { service: "web".into(), command: vec!["true".into()], timeout_secs: 20 }
}

#[test]
fn roles_from_the_client_certificate_are_enforced_and_audited() {
    let work = tempfile::tempdir().expect("tempdir");
    let (reader, _) = client_dir(work.path(), "rita", Role::Reader);
    let (operator, _) = client_dir(work.path(), "otto", Role::Operator);
    let (gone, gone_serial) = client_dir(work.path(), "gone", Role::Admin);
    hoist_images::pki::revoke(pki_dir(), "gone").expect("revoke before the build");
    let host = Host::boot(HOST);
    let vm = &host.vm;
    host.rt.block_on(async {
        let mut r = client::tcp(&host.addr, &reader).await.expect("reader connects");
        let all = r.status(pb::StatusRequest {}).await.expect("a reader reads the status").into_inner();
        assert!(all.services.iter().any(|s| s.name == "web"), "{all:?}");
        let denied = r.exec(exec_true()).await.expect_err("a reader cannot exec");
        assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
        assert!(denied.message().contains("Exec needs the admin role"), "{}", denied.message());
        let denied = r.restart(pb::ServiceRequest { name: "web".into() }).await.expect_err("nor restart");
        assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");

        let mut o = client::tcp(&host.addr, &operator).await.expect("operator connects");
        let before = o.status(pb::StatusRequest {}).await.expect("status").into_inner().services;
        let pid = before.iter().find(|s| s.name == "web").expect("web").pid;
        o.restart(pb::ServiceRequest { name: "web".into() }).await.expect("an operator restarts");
        let denied = o.exec(exec_true()).await.expect_err("an operator cannot exec");
        assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let now = o.status(pb::StatusRequest {}).await.expect("status").into_inner().services;
            let web = now.iter().find(|s| s.name == "web").expect("web").clone();
            if web.state == "running" && web.pid != pid && web.pid != 0 {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "web not restarted: {web:?}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }

        let refused = match client::tcp(&host.addr, &gone).await {
            Ok(mut g) => g.status(pb::StatusRequest {}).await.expect_err("a revoked certificate is refused"),
            Err(e) => panic!("the TLS handshake itself passes (same CA): {e}"),
        };
        assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
        assert!(refused.message().contains(&format!("certificate {gone_serial} (gone) is revoked")), "{refused:?}");

        let mut a = client::tcp(&host.addr, pki_dir()).await.expect("admin connects");
        let ran = a.exec(exec_true()).await.expect("the build's admin execs").into_inner();
        assert_eq!(ran.exit_code, 0);
    });
    // The CLI says what role is needed.
    let out = std::process::Command::new(bin_dir().join("hoist"))
        .args(["ctl", "--api", &host.addr, "--pki"])
        .arg(&reader)
        .args(["exec", "web", "--", "true"])
        .output()
        .expect("hoist ctl");
    let said = text(&out);
    assert!(!out.status.success() && said.contains("PermissionDenied") && said.contains("admin role"), "{said}");

    let admin = hoist_images::pki::BUILD_CLIENT_NAME;
    let expected = [
        audit(false, "exec", "", "rita", "reader"),
        audit(false, "restart", "", "rita", "reader"),
        audit(true, "restart", "web", "otto", "operator"),
        audit(false, "exec", "", "otto", "operator"),
        audit(true, "exec", "web", admin, "admin"),
    ];
    for line in &expected {
        wait_line(vm, &line.to_string(), Duration::from_secs(10), |l| l == line).expect("audit line on the console");
    }
    // The same lines in the supervisor's log, read back through the API.
    let log = host.rt.block_on(async {
        let mut a = client::tcp(&host.addr, pki_dir()).await.expect("admin connects");
        let req = pb::LogsRequest { source: "supervisor".into(), tail: 500, follow: false, boot: 0 };
        let mut lines = a.logs(req).await.expect("supervisor log").into_inner();
        let mut all = Vec::new();
        while let Some(l) = tokio_stream::StreamExt::next(&mut lines).await {
            all.push(l.expect("log line").line);
        }
        all
    });
    for line in &expected {
        let body = line.body().to_string();
        assert!(log.iter().any(|l| l.ends_with(&body)), "{body:?} not in the supervisor log:\n{}", log.join("\n"));
    }

    // A certificate revoked after the build is refused once `hoist apply` carries the list.
    let (late, _) = client_dir(work.path(), "late", Role::Admin);
    let works =
        host.rt.block_on(async { client::tcp(&host.addr, &late).await.ok()?.status(pb::StatusRequest {}).await.ok() });
    assert!(works.is_some(), "late works before its revocation");
    hoist_images::pki::revoke(pki_dir(), "late").expect("revoke after the build");
    let applied = host.apply(&host.config("same.toml", HOST), &[]);
    assert!(applied.status.success(), "{}", text(&applied));
    let refused = host.rt.block_on(async {
        let mut c = client::tcp(&host.addr, &late).await.expect("the handshake passes");
        c.status(pb::StatusRequest {}).await.expect_err("revoked by the apply")
    });
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    assert!(host.status().iter().any(|s| s.name == "web"), "the admin still gets in");
}
