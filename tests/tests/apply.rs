//! `hoist apply` against booted hosts, through the real CLI and the mutual-TLS API: a plan
//! naming exactly what changed (and its exit codes), a one-service change that touches no
//! other task, services added and removed, automatic rollback of a version that never gets
//! ready (FAULTS row 24), host-level keys refused as reboot-required, try/confirm, one
//! apply at a time, a client killed mid-apply, and the supervisor SIGKILLed mid-apply.

use std::time::{Duration, Instant};

use hoist_api::pb;
use hoist_tests::host::{Host, text};

const IDLE: &str = r#"["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]"#;

/// web serves, echoer has FOO in its environment, keeper idles; chaos can kill the
/// supervisor (host pid namespace).
fn host(value: &str, extra: &str) -> String {
    format!(
        r#"
version = 1
[service.web]
image = "@IMAGE@"
command = ["sh", "-c", "httpd -f -p 80 -h /www & trap 'kill $!; exit 0' TERM; wait"]
ready = {{ tcp = 80 }}
[service.echoer]
image = "@IMAGE@"
env = {{ FOO = "{value}" }}
command = {IDLE}
start_timeout = "4s"
{extra}
"#
    )
}

const KEEPER: &str = "[service.keeper]\nimage = \"@IMAGE@\"\ncommand = IDLE\n";
const CHAOS: &str = "[service.chaos]\nimage = \"@IMAGE@\"\nhost_pid = true\ncommand = IDLE\n";

fn keeper() -> String {
    KEEPER.replace("IDLE", IDLE)
}

fn chaos() -> String {
    CHAOS.replace("IDLE", IDLE)
}

/// Reading echoer's `$FOO`.
trait EnvFoo {
    fn env_foo(&self) -> String;
    fn try_env_foo(&self) -> Result<String, String>;
}

impl EnvFoo for Host {
    /// `$FOO` in echoer.
    fn env_foo(&self) -> String {
        self.try_env_foo().unwrap_or_else(|e| panic!("exec: {e}"))
    }

    /// `$FOO` in echoer, or why it could not be read (echoer not running).
    fn try_env_foo(&self) -> Result<String, String> {
        let out = self.hoist(&["ctl", "exec", "echoer", "--", "sh", "-c", "echo $FOO"]);
        if !out.status.success() {
            return Err(text(&out));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

fn find<'a>(all: &'a [pb::ServiceStatus], name: &str) -> &'a pb::ServiceStatus {
    all.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("no {name} in {all:?}"))
}

/// (pid, restarts) of every service.
fn pids(all: &[pb::ServiceStatus]) -> Vec<(String, u32, u32)> {
    all.iter().map(|s| (s.name.clone(), s.pid, s.restarts)).collect()
}

#[test]
fn apply_plans_replaces_adds_removes_and_rolls_back() {
    let h = Host::boot(&host("1", &keeper()));
    let before = h.status();

    // One env change: the plan names exactly that service and key, exit 2.
    let v2 = h.config("v2.toml", &host("2", &keeper()));
    let plan = h.apply(&v2, &["--plan", "--json"]);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    let json: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("plan JSON");
    let changed: Vec<&serde_json::Value> =
        json["services"].as_array().expect("services").iter().filter(|s| s["action"] != "unchanged").collect();
    assert_eq!(changed.len(), 1, "{json}");
    assert_eq!(changed[0]["service"], "echoer");
    assert_eq!(changed[0]["action"], "replace");
    assert_eq!(changed[0]["keys"], serde_json::json!(["env.FOO"]));
    let human = h.apply(&v2, &["--plan"]);
    assert!(String::from_utf8_lossy(&human.stdout).contains("env.FOO"), "{}", text(&human));

    // Applied: only echoer changes; every other task keeps its pid and restart count.
    let started = Instant::now();
    let applied = h.apply(&v2, &["--settle", "2s"]);
    let latency = started.elapsed();
    assert!(applied.status.success(), "{}", text(&applied));
    eprintln!("apply latency (one env change, 2 s settle): {latency:?}");
    eprintln!("progress:\n{}", String::from_utf8_lossy(&applied.stdout));
    let after = h.status();
    let others = |all: &[pb::ServiceStatus]| pids(all).into_iter().filter(|(n, ..)| n != "echoer").collect::<Vec<_>>();
    assert_eq!(others(&after), others(&before));
    assert_ne!(find(&after, "echoer").pid, find(&before, "echoer").pid);
    assert_eq!(h.env_foo(), "2");
    let again = h.apply(&v2, &["--plan"]);
    assert_eq!(again.status.code(), Some(0), "nothing left to change: {}", text(&again));
    let history = h.history();
    assert_eq!(history.current, 1);
    assert_eq!(history.generations.iter().map(|g| g.result.as_str()).collect::<Vec<_>>(), ["superseded", "active"]);

    // A service added and another removed.
    let added = "[service.added]\nimage = \"@IMAGE@\"\ncommand = IDLE\n".replace("IDLE", IDLE);
    let v3 = h.config("v3.toml", &host("2", &added));
    let applied = h.apply(&v3, &["--settle", "1s"]);
    assert!(applied.status.success(), "{}", text(&applied));
    let all = h.status();
    assert!(all.iter().all(|s| s.name != "keeper"), "keeper removed: {all:?}");
    assert_eq!(find(&all, "added").state, "running");
    assert_eq!(find(&all, "web").pid, find(&before, "web").pid, "web untouched");

    // A version that never gets ready is rolled back by itself; the old one serves again.
    let broken = host("3", &added).replace("start_timeout = \"4s\"", "start_timeout = \"4s\"\nready = { tcp = 9999 }");
    let v4 = h.config("v4.toml", &broken);
    let started = Instant::now();
    let failed = h.apply(&v4, &["--settle", "1s"]);
    eprintln!("rollback latency (4 s start timeout): {:?}", started.elapsed());
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed));
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(err.contains("rolled back") && err.contains("echoer"), "{}", text(&failed));
    assert_eq!(h.env_foo(), "2", "the old version runs again");
    assert_eq!(find(&h.status(), "echoer").state, "running");
    let g = h.wait_result(3, "rolled-back", Duration::from_secs(5));
    assert!(g.detail.contains("echoer"), "{g:?}");
    assert_eq!(h.history().current, 2);

    // A host-level change is reboot-required: shown, refused, nothing applied.
    let module = h.config("v5.toml", &format!("{}\n[kernel]\nmodules = [\"dummy\"]\n", host("2", &added)));
    let plan = h.apply(&module, &["--plan", "--json"]);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    let json: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("plan JSON");
    assert_eq!(json["reboot_required"], serde_json::json!(["kernel.modules"]), "{json}");
    let refused = h.apply(&module, &[]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("kernel.modules"), "{}", text(&refused));
    assert_eq!(h.history().generations.len(), 4, "nothing recorded for a refused apply");

    // An invalid config changes nothing and says where.
    let bad = h.config("bad.toml", &host("2", &added).replace("start_timeout = \"4s\"", "start_timeout = \"4x\""));
    let out = h.apply(&bad, &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:") && err.contains("service.echoer.start_timeout"), "{}", text(&out));
}

#[test]
fn apply_try_confirm_one_at_a_time_and_crashes_mid_apply() {
    let h = Host::boot(&host("1", &chaos()));
    let v = |value: &str| h.config(&format!("foo{value}.toml"), &host(value, &chaos()));

    // --try without confirm: rolled back by the host at the deadline.
    let tried = h.apply(&v("2"), &["--try", "15s", "--settle", "1s"]);
    assert!(tried.status.success(), "{}", text(&tried));
    assert!(String::from_utf8_lossy(&tried.stdout).contains("confirm"), "{}", text(&tried));
    assert_eq!(h.env_foo(), "2");
    h.wait_result(1, "tentative", Duration::from_secs(5));
    h.wait_result(1, "rolled-back", Duration::from_secs(60));
    assert_eq!(h.env_foo(), "1");

    // --try then confirm: it stays.
    let tried = h.apply(&v("3"), &["--try", "15s", "--settle", "1s"]);
    assert!(tried.status.success(), "{}", text(&tried));
    let confirmed = h.hoist(&["ctl", "confirm"]);
    assert!(confirmed.status.success(), "{}", text(&confirmed));
    h.wait_result(2, "active", Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(16));
    assert_eq!(h.env_foo(), "3", "confirmed: still the new version after the try deadline");

    // A second apply while one runs is refused; the client of the first killed mid-apply
    // does not stop the rollout.
    let mut first = h.hoist_cmd(&["apply", v("4").to_str().expect("path"), "--settle", "20s"]).spawn().expect("apply");
    h.wait_result(3, "applying", Duration::from_secs(30));
    let second = h.apply(&v("5"), &[]);
    assert_eq!(second.status.code(), Some(1), "{}", text(&second));
    assert!(String::from_utf8_lossy(&second.stderr).contains("Aborted"), "{}", text(&second));
    first.kill().expect("kill the first client");
    let _ = first.wait();
    h.wait_result(3, "active", Duration::from_secs(90));
    assert_eq!(h.env_foo(), "4");

    // The supervisor SIGKILLed mid-apply: PID 1 restarts it, and the host is back on the
    // generation in force, consistently, and says so.
    let mut slow = h.hoist_cmd(&["apply", v("6").to_str().expect("path"), "--settle", "30s"]).spawn().expect("apply");
    h.wait_result(4, "applying", Duration::from_secs(30));
    // Wait until the new echoer runs, so the restarted supervisor finds a task of the
    // interrupted generation.
    let deadline = Instant::now() + Duration::from_secs(60);
    while h.try_env_foo().as_deref() != Ok("6") {
        assert!(Instant::now() < deadline, "echoer never ran FOO=6");
        std::thread::sleep(Duration::from_millis(500));
    }
    let _ = h.hoist(&["ctl", "exec", "chaos", "--", "killall", "-9", "hoist-supervisor"]);
    let _ = slow.wait();
    let g = h.wait_result(4, "interrupted", Duration::from_secs(60));
    assert!(g.detail.contains("back on generation 3"), "{g:?}");
    assert_eq!(h.history().current, 3);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let echoer = find(&h.status(), "echoer").clone();
        if echoer.state == "running" && h.try_env_foo().as_deref() == Ok("4") {
            break;
        }
        assert!(Instant::now() < deadline, "echoer not back on generation 3: {echoer:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(h.vm.console().contains("generation 4 was applying when the supervisor restarted"));
}
