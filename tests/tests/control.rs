//! The control API over the real mutual-TLS path, against a booted host: status, restart,
//! stop/start, logs (tail and follow), events, exec, refusals (FAULTS row 25), shutdown.

use std::io::Write;
use std::time::Duration;

use hoist_api::{client, pb};
use hoist_guest::console::Line;
use hoist_tests::{BOOT_TIMEOUT, boot, build_host, count_lines, outcome, pki_dir, wait_line};
use tokio_stream::StreamExt;

const HOST: &str = r#"
version = 1
[service.web]
image = "@IMAGE@"
command = ["sh", "-c", "httpd -f -p 80 -h /www & trap 'kill $!; exit 0' TERM; wait"]
[service.talker]
image = "@IMAGE@"
command = ["sh", "-c", "echo talker started; i=0; trap 'exit 0' TERM; while true; do i=$((i+1)); echo talker line $i; sleep 1; done"]
[service.flaky]
image = "@IMAGE@"
command = ["sh", "-c", "trap 'exit 0' TERM; while [ ! -f /crash ]; do sleep 0.2; done; exit 7"]
restart = "on-failure"
"#;

fn is_ready(l: &Line) -> bool {
    matches!(l, Line::Ready { .. })
}

/// For waits on a host under memory pressure or without containerd.
const WAIT_LONG: Duration = Duration::from_secs(120);

async fn status(c: &mut pb::control_client::ControlClient<tonic::transport::Channel>) -> Vec<pb::ServiceStatus> {
    c.status(pb::StatusRequest {}).await.expect("status").into_inner().services
}

fn find<'a>(s: &'a [pb::ServiceStatus], name: &str) -> &'a pb::ServiceStatus {
    s.iter().find(|x| x.name == name).unwrap_or_else(|| panic!("no {name} in {s:?}"))
}

/// Polls status until `pred` holds for service `name` (deadline), returning that status.
async fn wait_status(
    c: &mut pb::control_client::ControlClient<tonic::transport::Channel>,
    name: &str,
    what: &str,
    pred: impl Fn(&pb::ServiceStatus) -> bool,
) -> pb::ServiceStatus {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let all = status(c).await;
        let s = find(&all, name).clone();
        if pred(&s) {
            return s;
        }
        assert!(tokio::time::Instant::now() < deadline, "{name}: {what} not reached: {s:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn control_api_end_to_end() {
    let work = tempfile::tempdir().expect("tempdir");
    let out = build_host(work.path(), HOST);
    let port = hoist_qemu::free_tcp_port().expect("port");
    let mut vm = boot(&out, &[(port, hoist_api::PORT)]);
    wait_line(&vm, "ready", BOOT_TIMEOUT, is_ready).expect("ready");
    let addr = format!("127.0.0.1:{port}");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let mut c = client::tcp(&addr, pki_dir()).await.expect("connect with mTLS");

        // status: every service running
        let all = status(&mut c).await;
        for name in ["web", "talker", "flaky"] {
            let s = find(&all, name);
            assert_eq!(s.state, "running", "{s:?}");
            assert!(s.pid > 0 && s.ready, "{s:?}");
        }

        // restart changes the pid and the restart count
        let before = find(&all, "web").clone();
        c.restart(pb::ServiceRequest { name: "web".into() }).await.expect("restart");
        let after =
            wait_status(&mut c, "web", "running with a new pid", |s| s.state == "running" && s.pid != before.pid).await;
        assert_eq!(after.restarts, before.restarts + 1);

        // stop, then start
        c.stop(pb::ServiceRequest { name: "talker".into() }).await.expect("stop");
        wait_status(&mut c, "talker", "stopped", |s| s.state == "stopped").await;
        c.start(pb::ServiceRequest { name: "talker".into() }).await.expect("start");
        wait_status(&mut c, "talker", "running", |s| s.state == "running" && s.ready).await;
        let missing = c.stop(pb::ServiceRequest { name: "nope".into() }).await.expect_err("unknown service");
        assert_eq!(missing.code(), tonic::Code::NotFound);

        // logs: the tail has a known line; follow streams new ones
        let mut tail = c
            .logs(pb::LogsRequest { source: "talker".into(), tail: 1000, follow: false, boot: 0 })
            .await
            .expect("logs")
            .into_inner();
        let mut lines = Vec::new();
        while let Some(l) = tail.next().await {
            lines.push(l.expect("line").line);
        }
        assert!(lines.iter().any(|l| l.ends_with("stdout talker started")), "{lines:?}");
        let mut follow = c
            .logs(pb::LogsRequest { source: "talker".into(), tail: 0, follow: true, boot: 0 })
            .await
            .expect("follow")
            .into_inner();
        let next = tokio::time::timeout(Duration::from_secs(20), follow.next()).await.expect("a followed line in time");
        assert!(next.expect("stream item").expect("line").line.contains("talker line"));
        drop(follow);
        let kernel = c
            .logs(pb::LogsRequest { source: "kernel".into(), tail: 5, follow: false, boot: 0 })
            .await
            .expect("kernel log");
        assert!(kernel.into_inner().next().await.is_some(), "kernel log is empty");
        let mut sup = c
            .logs(pb::LogsRequest { source: "supervisor".into(), tail: 1000, follow: false, boot: 0 })
            .await
            .expect("supervisor log")
            .into_inner();
        let mut found = false;
        while let Some(l) = sup.next().await {
            // `SECS.MS BODY`: the supervisor logs the body of each console line it prints.
            let line = l.expect("line").line;
            found |= line
                .split_once(' ')
                .and_then(|(_, body)| Line::parse_body(body.trim_end()))
                .is_some_and(|l| is_ready(&l));
        }
        assert!(found, "the supervisor's log lacks its ready line");
        c.logs(pb::LogsRequest { source: "containerd".into(), tail: 10, follow: false, boot: 0 })
            .await
            .expect("containerd log exists");
        let traversal = c
            .logs(pb::LogsRequest { source: "../../etc/hoist/tls/server".into(), tail: 10, follow: false, boot: 0 })
            .await;
        assert_eq!(traversal.err().map(|e| e.code()), Some(tonic::Code::NotFound));

        // events report a crash, and exec returns output and exit code
        let mut events = c.events(pb::EventsRequest {}).await.expect("events").into_inner();
        let r = c
            .exec(pb::ExecRequest {
                service: "flaky".into(),
                command: vec!["sh".into(), "-c".into(), "echo out; echo err >&2; touch /crash; exit 3".into()],
                timeout_secs: 20,
            })
            .await
            .expect("exec")
            .into_inner();
        assert_eq!(r.exit_code, 3);
        // stdout and stderr arrive merged, in the order written: hoist's shim gives the
        // process the output file itself (appending), with no copier in between
        let lines = String::from_utf8_lossy(&r.stdout);
        let lines: Vec<&str> = lines.lines().collect();
        assert_eq!(lines, ["out", "err"], "{:?}", String::from_utf8_lossy(&r.stdout));
        assert!(!r.truncated);
        // output is capped at 1 MiB, and the reply says it was cut
        let flood = vec!["sh".into(), "-c".into(), "head -c 3000000 /dev/zero".into()];
        let r = c.exec(pb::ExecRequest { service: "web".into(), command: flood, timeout_secs: 30 }).await;
        let r = r.expect("exec with a big output").into_inner();
        assert_eq!((r.exit_code, r.stdout.len(), r.truncated), (0, 1 << 20, true));
        // an exec past its timeout is killed, not left running in the service
        let slow = vec!["sh".into(), "-c".into(), "exec sleep 4321".into()];
        let late = c.exec(pb::ExecRequest { service: "web".into(), command: slow, timeout_secs: 2 }).await;
        assert_eq!(late.expect_err("past its timeout").code(), tonic::Code::DeadlineExceeded);
        let check = vec!["sh".into(), "-c".into(), "ps -o args | grep -c '^sleep 432[1]'".into()];
        let left = c.exec(pb::ExecRequest { service: "web".into(), command: check, timeout_secs: 20 }).await;
        assert_eq!(
            String::from_utf8_lossy(&left.expect("ps").into_inner().stdout).trim(),
            "0",
            "the sleep was left running"
        );
        let crash = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(e) = events.next().await {
                let e = e.expect("event");
                if e.service == "flaky" && e.kind == "exited" {
                    return e;
                }
            }
            panic!("event stream ended");
        })
        .await
        .expect("crash event in time");
        assert!(crash.detail.contains("status=7"), "{crash:?}");

        // FAULTS 25: refused clients and junk do not hurt the server
        let other = tempfile::tempdir().expect("tempdir");
        hoist_images::pki::ensure(other.path()).expect("other CA");
        for f in ["client.pem", "client.key"] {
            std::fs::copy(other.path().join(f), work.path().join(f)).expect("copy");
        }
        std::fs::copy(pki_dir().join("ca.pem"), work.path().join("ca.pem")).expect("copy ca");
        let refused = match client::tcp(&addr, work.path()).await {
            Ok(mut bad) => bad.status(pb::StatusRequest {}).await.is_err(),
            Err(_) => true,
        };
        assert!(refused, "a client certificate from another CA was accepted");
        let no_cert = tonic::transport::Endpoint::from_shared(format!("https://{addr}"))
            .expect("uri")
            .tls_config(
                tonic::transport::ClientTlsConfig::new()
                    .ca_certificate(tonic::transport::Certificate::from_pem(
                        std::fs::read(pki_dir().join("ca.pem")).expect("ca"),
                    ))
                    .domain_name("hoist"),
            )
            .expect("tls");
        let refused = match no_cert.connect().await {
            Ok(ch) => pb::control_client::ControlClient::new(ch).status(pb::StatusRequest {}).await.is_err(),
            Err(_) => true,
        };
        assert!(refused, "a client without a certificate was accepted");
        for junk in [&b"GET / HTTP/1.1\r\n\r\n"[..], &[0u8; 4096][..], &[0x16, 3, 1, 0xff, 0xff, 1, 2, 3][..]] {
            let mut s = std::net::TcpStream::connect(&addr).expect("connect");
            let _ = s.write_all(junk);
        }
        let huge = "x".repeat(hoist_api::MAX_MESSAGE + 1024);
        let too_big = c.exec(pb::ExecRequest { service: "web".into(), command: vec![huge], timeout_secs: 5 }).await;
        assert!(too_big.is_err(), "an oversized message was accepted");
        let mut fresh = client::tcp(&addr, pki_dir()).await.expect("a good client after the junk");
        assert_eq!(status(&mut fresh).await.len(), 3);

        // shutdown through the API
        fresh.shutdown(pb::ShutdownRequest { reboot: false }).await.expect("shutdown");
    });
    let exit = vm.wait_exit(Duration::from_secs(90)).expect("powered off");
    assert!(exit.clean, "{exit:?}");
}

/// A service writing without pause: its log stays within the rotation cap, the console
/// is spared (rate-limited, with a note), the API still answers, and `logs -f` keeps up.
/// Prints the follow throughput and memory figures it measured. Also: PID 1 runs without
/// transparent huge pages, and containerd, its child, has them back.
#[test]
fn a_flooding_service_leaves_memory_and_console_bounded() {
    let work = tempfile::tempdir().expect("tempdir");
    let toml = r#"
version = 1
[logs]
max_size = "256K"
[service.flood]
image = "@IMAGE@"
command = ["sh", "-c", "while true; do echo flood flood flood flood flood flood flood flood flood flood; done"]
[service.inspector]
image = "@IMAGE@"
host_pid = true
binds = ["/var/log:/hostlog:ro"]
command = ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
"#;
    let out = build_host(work.path(), toml);
    let port = hoist_qemu::free_tcp_port().expect("port");
    let mut vm = boot(&out, &[(port, hoist_api::PORT)]);
    wait_line(&vm, "ready", BOOT_TIMEOUT, is_ready).expect("ready");
    vm.wait_for_line("lines not shown here: hoist ctl logs flood", Duration::from_secs(60))
        .expect("console rate limit note");
    let addr = format!("127.0.0.1:{port}");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let mut c = client::tcp(&addr, pki_dir()).await.expect("connect");
        let mut follow = c
            .logs(pb::LogsRequest { source: "flood".into(), tail: 0, follow: true, boot: 0 })
            .await
            .expect("follow")
            .into_inner();
        let started = tokio::time::Instant::now();
        let mut lines = 0u64;
        while started.elapsed() < Duration::from_secs(5) {
            match tokio::time::timeout(Duration::from_secs(5), follow.next()).await {
                Ok(Some(Ok(_))) => lines += 1,
                other => panic!("follow stream stopped: {other:?}"),
            }
        }
        drop(follow);
        eprintln!(
            "logs -f throughput for a flooding service: {:.0} lines/s",
            lines as f64 / started.elapsed().as_secs_f64()
        );
        assert!(lines > 100, "follow delivered only {lines} lines in 5 s");
        // Let the flood run long enough to rotate several times, then look at the files.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let script = "cat /hostlog/flood.log /hostlog/flood.log.1 2>/dev/null | wc -c; \
                      for p in $(pidof hoist-supervisor) 1; do grep VmRSS /proc/$p/status; done; \
                      grep THP_enabled /proc/1/status /proc/$(pidof containerd)/status";
        let r = c
            .exec(pb::ExecRequest {
                service: "inspector".into(),
                command: vec!["sh".into(), "-c".into(), script.into()],
                timeout_secs: 20,
            })
            .await
            .expect("exec")
            .into_inner();
        let text = String::from_utf8_lossy(&r.stdout).to_string();
        eprintln!("inspector: {text}");
        let bytes: u64 = text.lines().next().and_then(|l| l.trim().parse().ok()).expect("byte count");
        assert!(
            bytes <= 2 * (256 << 10) + 4096,
            "flood logs take {bytes} bytes, over two 256K files ([logs] max_size)"
        );
        assert!(bytes > 256 << 10, "the flood wrote only {bytes} bytes: is it running?");
        let rss: Vec<u64> =
            text.lines().filter_map(|l| l.strip_prefix("VmRSS:")?.split_whitespace().next()?.parse().ok()).collect();
        assert_eq!(rss.len(), 2, "{text}");
        assert!(rss[0] < 32 << 10, "supervisor RSS {} kB with a flooding service", rss[0]);
        // PID 1 runs without transparent huge pages; its children have the default back.
        let thp: Vec<(&str, &str)> =
            text.lines().filter_map(|l| l.split_once(":THP_enabled:")).map(|(f, v)| (f, v.trim())).collect();
        assert_eq!(thp.len(), 2, "{text}");
        assert!(thp.contains(&("/proc/1/status", "0")), "PID 1: {thp:?}");
        assert!(thp.iter().any(|&(f, v)| f != "/proc/1/status" && v == "1"), "containerd: {thp:?}");
        assert_eq!(status(&mut c).await.len(), 2, "the API still answers");
    });
    let exit = vm.shutdown(Duration::from_secs(90)).expect("shutdown");
    assert!(exit.clean, "{exit:?}");
}

/// The API answers while an onboot stage runs (it used to hang until the stage ended):
/// status says what services wait for, commands are refused as unavailable with the
/// reason; a power-off during onboot kills the stage and the machine stops at once.
#[test]
fn control_api_answers_during_onboot_and_shutdown_cuts_the_stage() {
    let work = tempfile::tempdir().expect("tempdir");
    let toml = r#"
version = 1
[[onboot]]
name = "slow"
image = "@IMAGE@"
command = ["sh", "-c", "echo slow stage starts; sleep 300"]
timeout = "600s"
[service.web]
image = "@IMAGE@"
command = ["sh", "-c", "echo web should not start"]
"#;
    let out = build_host(work.path(), toml);
    let port = hoist_qemu::free_tcp_port().expect("port");
    let mut vm = boot(&out, &[(port, hoist_api::PORT)]);
    vm.wait_for_line("[slow] slow stage starts", BOOT_TIMEOUT).expect("stage runs");
    let addr = format!("127.0.0.1:{port}");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let mut c = client::tcp(&addr, pki_dir()).await.expect("connect with mTLS");
        let mut latencies = Vec::new();
        for _ in 0..5 {
            let t = std::time::Instant::now();
            let all = tokio::time::timeout(Duration::from_secs(10), status(&mut c)).await.expect("status in time");
            latencies.push(t.elapsed());
            let web = find(&all, "web");
            assert_eq!((web.state.as_str(), web.reason.as_str()), ("waiting", "waits for onboot stage slow"));
        }
        latencies.sort();
        eprintln!("status during onboot: median {:?} (of 5)", latencies[2]);
        let refused = c.start(pb::ServiceRequest { name: "web".into() }).await.expect_err("refused during onboot");
        assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
        assert!(refused.message().contains("onboot stage slow running"), "{refused:?}");
    });
    let asked = std::time::Instant::now();
    vm.powerdown().expect("powerdown");
    vm.wait_for_line("hoist: onboot slow stopped by the shutdown", Duration::from_secs(60)).expect("stage cut");
    let exit = vm.wait_exit(Duration::from_secs(60)).expect("exit");
    assert!(exit.clean, "{exit:?}");
    eprintln!("power-off during onboot took {:?}", asked.elapsed());
    assert!(!vm.console_lines().iter().any(|l| l.contains("web should not start")));
}

/// FAULTS 22, 10 and 8 on one host, in that order:
/// - a module in `[kernel] modules` that cannot load here (kvm_intel: TCG has no VMX):
///   boot goes on, the console and `status` say what is missing;
/// - a service with no memory limit eats the machine: the kernel's OOM killer picks it,
///   never PID 1, containerd or the supervisor, and its exit is named as an OOM kill;
/// - containerd cannot start any more (its root replaced by a file, as after a lost
///   disk): PID 1 gives up after its burst, no reboot loop, and the API stays up and
///   says so; running services keep running and the host still powers off cleanly.
#[test]
fn host_faults_missing_module_global_oom_and_a_containerd_that_cannot_start() {
    let work = tempfile::tempdir().expect("tempdir");
    let toml = r#"
version = 1
[kernel]
modules = ["kvm_intel"]
[service.steady]
image = "@IMAGE@"
command = ["sh", "-c", "echo steady up; trap 'exit 0' TERM; while true; do sleep 1; done"]
stop_timeout = "2s"
[service.hog]
image = "@IMAGE@"
command = ["sh", "-c", "sleep 2; echo hog grows; x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done"]
restart = "never"
[service.chaos]
image = "@IMAGE@"
host_pid = true
binds = ["/var/lib:/hostlib"]
stop_timeout = "2s"
command = ["sh", "-c", "while [ ! -f /go ]; do sleep 0.5; done; echo chaos: containerd root lost; rm -rf /hostlib/containerd; touch /hostlib/containerd; killall -9 containerd; exec sleep 100000"]
"#;
    let out = build_host(work.path(), toml);
    let port = hoist_qemu::free_tcp_port().expect("port");
    let mut vm = boot(&out, &[(port, hoist_api::PORT)]);
    let missing = vm.wait_for_line("module kvm_intel (from [kernel] modules) did not load", BOOT_TIMEOUT);
    missing.expect("the missing module is said on the console");
    wait_line(&vm, "ready", BOOT_TIMEOUT, is_ready).expect("boot goes on");
    let hog = outcome("hog", |what, _| what.starts_with("exited "));
    let oom = wait_line(&vm, "hog exited", Duration::from_secs(180), hog).expect("hog killed");
    assert!(matches!(&oom, Line::Outcome { what, .. } if what == "exited status=137 (OOM killed)"), "{oom:?}");
    let lines = vm.console_lines();
    for keeper in ["containerd (pid", "supervisor (pid"] {
        assert!(
            !lines.iter().any(|l| l.contains(keeper)),
            "{keeper} died under memory pressure:\n{}",
            lines.join("\n")
        );
    }
    let addr = format!("127.0.0.1:{port}");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let mut c = client::tcp(&addr, pki_dir()).await.expect("connect with mTLS");
        let reply = c.status(pb::StatusRequest {}).await.expect("status").into_inner();
        assert!(reply.problems.iter().any(|p| p.contains("module kvm_intel")), "{:?}", reply.problems);
        assert_eq!(find(&reply.services, "steady").state, "running");
        let go =
            pb::ExecRequest { service: "chaos".into(), command: vec!["touch".into(), "/go".into()], timeout_secs: 30 };
        assert_eq!(c.exec(go).await.expect("exec").into_inner().exit_code, 0);
    });
    vm.wait_for_line("[chaos] chaos: containerd root lost", WAIT_LONG).expect("chaos");
    let failed = vm.wait_for_line("marked failed, not restarting", WAIT_LONG).expect("PID 1 gives containerd up");
    assert!(failed.contains("containerd exited"), "{failed}");
    rt.block_on(async {
        let mut c = client::tcp(&addr, pki_dir()).await.expect("the API is still up");
        let reply = c.status(pb::StatusRequest {}).await.expect("status").into_inner();
        let says = |what: &str| reply.problems.iter().any(|p| p.contains(what));
        assert!(says("containerd exited") && says("containerd is not answering"), "{:?}", reply.problems);
        assert_eq!(find(&reply.services, "steady").state, "running", "its shim keeps it running");
        let refused = c.restart(pb::ServiceRequest { name: "steady".into() }).await.expect_err("no containerd");
        assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    });
    let init_phase = |l: &Line| matches!(l, Line::Phase { name, .. } if name == "init");
    assert_eq!(count_lines(&vm, init_phase), 1, "no reboot");
    let exit = vm.shutdown(Duration::from_secs(120)).expect("shutdown");
    assert!(exit.clean, "{exit:?}");
}
