//! The work the supervisor hands to spawned tasks: starting a container, waiting for its
//! exit (across containerd restarts), terminating or stopping it, running one-shot stages,
//! and cleaning up. Each reports back to the state owner over the channel; none of them
//! touches its state.

use std::path::Path;
use std::time::Duration;

use containerd_client::types::Mount;
use hoist_config::Ready;
use hoist_config::manifest::ServiceImage;
use tokio::sync::mpsc::UnboundedSender;

use crate::containerd::Containerd;
use crate::spec::Settings;
use crate::supervisor::Msg;

/// Per-container writable layers (overlay upper + work dirs) live here, on tmpfs.
pub const RW_DIR: &str = "/run/hoist/rw";
/// containerd's shim starts hoist-logger for each task with its stdout/stderr on fds 3
/// and 4; the query becomes its arguments (`max_size BYTES`).
pub fn logger_uri(max_size: u64) -> String {
    format!("binary:///usr/bin/hoist-logger?max_size={max_size}")
}

/// Everything needed to (re)start one container, computed once from config + manifest.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub name: String,
    pub spec: Vec<u8>,
    /// The spec's process alone (for readiness commands exec'd into the container).
    pub process: Vec<u8>,
    /// Why this container cannot start at all (no image in the build, bad spec).
    pub problem: Option<String>,
    pub rootfs: String,
    pub stop_signal: i32,
    pub stop_timeout: Duration,
    pub ready: Ready,
    pub start_timeout: Duration,
    pub depends_on: Vec<String>,
    /// Restart settings (services only; one-shot stages are never restarted).
    pub policy: Option<crate::policy::Policy>,
    /// Log file rotation size (`[logs] max_size`).
    pub log_max: u64,
}

/// A plan from container settings; service-only fields are filled in by [`plan_service`].
pub fn plan(name: &str, settings: &Settings, image: Option<&ServiceImage>, source: &str) -> Plan {
    let mut plan = Plan {
        name: name.to_string(),
        stop_signal: libc::SIGTERM,
        stop_timeout: Duration::from_secs(10),
        log_max: hoist_config::Logs::DEFAULT_MAX_SIZE,
        ..Default::default()
    };
    let Some(image) = image else {
        plan.problem = Some(format!("image {source} is not in this build"));
        return plan;
    };
    plan.rootfs = image.rootfs.clone();
    match crate::spec::build(name, settings, image) {
        Ok(spec) => {
            plan.process = spec.process().as_ref().and_then(|p| serde_json::to_vec(p).ok()).unwrap_or_default();
            match serde_json::to_vec(&spec) {
                Ok(json) => plan.spec = json,
                Err(e) => plan.problem = Some(format!("spec: {e}")),
            }
        }
        Err(e) => plan.problem = Some(e.to_string()),
    }
    plan
}

pub fn plan_service(name: &str, s: &hoist_config::Service, image: Option<&ServiceImage>) -> Plan {
    Plan {
        stop_signal: s.stop_signal.0,
        stop_timeout: s.stop_timeout,
        ready: s.ready.clone(),
        start_timeout: s.start_timeout,
        depends_on: s.depends_on.clone(),
        policy: Some(crate::policy::Policy { restart: s.restart, backoff: s.backoff, limit: s.start_limit }),
        ..plan(name, &Settings::from(s), image, &s.image.describe())
    }
}

/// Rootfs mounts for the task: an overlay of the unpacked tree with a fresh tmpfs upper
/// layer (a restarted container starts from its image again). Read-only roots use the
/// same overlay: runc must create mount points (/proc, bind targets) the image may lack,
/// and then remounts the root read-only itself (`root.readonly` in the spec).
pub fn rootfs_mounts(plan: &Plan) -> std::io::Result<Vec<Mount>> {
    let rw = Path::new(RW_DIR).join(&plan.name);
    if rw.exists() {
        std::fs::remove_dir_all(&rw)?;
    }
    let (upper, work) = (rw.join("upper"), rw.join("work"));
    std::fs::create_dir_all(&upper)?;
    std::fs::create_dir_all(&work)?;
    Ok(vec![Mount {
        r#type: "overlay".into(),
        source: "overlay".into(),
        options: vec![
            format!("lowerdir={}", plan.rootfs),
            format!("upperdir={}", upper.display()),
            format!("workdir={}", work.display()),
        ],
        ..Default::default()
    }])
}

/// One lock per container name: a cleanup spawned after an exit and a start asked for
/// right after it (by hand, or by a restart) must not interleave their containerd calls.
async fn lock(name: &str) -> tokio::sync::OwnedMutexGuard<()> {
    use std::collections::HashMap;
    use std::sync::{Arc, LazyLock, Mutex};
    static LOCKS: LazyLock<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> = LazyLock::new(Default::default);
    let m = match LOCKS.lock() {
        Ok(mut map) => map.entry(name.to_string()).or_default().clone(),
        Err(poisoned) => poisoned.into_inner().entry(name.to_string()).or_default().clone(),
    };
    m.lock_owned().await
}

async fn cleanup_unlocked(client: &Containerd, name: &str) {
    let _ = client.delete_task(name).await;
    let _ = client.delete_container(name).await;
}

/// Removes whatever an earlier run of the container left in containerd.
pub async fn cleanup(client: &Containerd, name: &str) {
    let _guard = lock(name).await;
    cleanup_unlocked(client, name).await;
}

/// Creates and starts the container; returns the pid of its main process.
pub async fn start(client: &Containerd, plan: &Plan) -> Result<u32, String> {
    if let Some(problem) = &plan.problem {
        return Err(problem.clone());
    }
    if !Path::new(&plan.rootfs).is_dir() {
        return Err(format!("image rootfs {} is missing", plan.rootfs));
    }
    let name = plan.name.as_str();
    let _guard = lock(name).await;
    cleanup_unlocked(client, name).await;
    let mounts = rootfs_mounts(plan).map_err(|e| format!("{RW_DIR}/{name}: {e}"))?;
    client.create_container(name, plan.spec.clone()).await.map_err(|e| e.to_string())?;
    let started = async {
        client.create_task(name, mounts, &logger_uri(plan.log_max)).await?;
        client.start(name).await
    };
    match started.await {
        Ok(pid) => Ok(pid),
        Err(e) => {
            cleanup_unlocked(client, name).await;
            Err(e.to_string())
        }
    }
}

pub fn spawn_start(client: Containerd, plan: Plan, tx: UnboundedSender<Msg>) {
    tokio::spawn(async move {
        let result = start(&client, &plan).await;
        let _ = tx.send(Msg::Started { name: plan.name, result });
    });
}

/// Did the kernel OOM-kill something in this container's cgroup (memory.events)?
pub fn oom_killed(name: &str) -> bool {
    let path = format!("/sys/fs/cgroup{}/memory.events", crate::spec::cgroup_path(name));
    std::fs::read_to_string(path)
        .map(|t| t.lines().any(|l| l.strip_prefix("oom_kill ").is_some_and(|n| n.trim() != "0")))
        .unwrap_or(false)
}

/// Waits for the task to exit. A wait cut short because containerd went away is not an
/// exit: we retry until containerd answers again (then Wait reports an exit that happened
/// meanwhile, or the task is gone, which counts as an exit with status 255).
pub fn spawn_waiter(client: Containerd, name: String, pid: u32, tx: UnboundedSender<Msg>) {
    tokio::spawn(async move {
        let mut warned = false;
        loop {
            match client.wait(&name).await {
                Ok(status) => {
                    let oom = oom_killed(&name);
                    let _ = tx.send(Msg::Exited { name, pid, status, oom });
                    return;
                }
                Err(e) if e.is_disconnect() => {
                    if !warned {
                        log::debug!("lost containerd while waiting for {name}: {e}; retrying");
                        let _ = tx.send(Msg::Lost);
                        warned = true;
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => {
                    log::warn!("{e}");
                    let _ = tx.send(Msg::Exited { name, pid, status: 255, oom: false });
                    return;
                }
            }
        }
    });
}

/// Polls containerd until it answers again, then reports how many tasks run.
pub fn spawn_reconnect(client: Containerd, tx: UnboundedSender<Msg>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if let Ok(tasks) = client.list_tasks().await {
                let running =
                    tasks.iter().filter(|t| t.status == containerd_client::types::v1::Status::Running as i32).count();
                let _ = tx.send(Msg::Reconnected { running });
                return;
            }
        }
    });
}

pub fn spawn_cleanup(client: Containerd, name: String) {
    tokio::spawn(async move { cleanup(&client, &name).await });
}

/// Stop signal to every process of the task, SIGKILL if it is still there after the stop
/// timeout; the waiter reports the exit. Used for a start timeout.
pub fn spawn_terminate(client: Containerd, name: String, signal: i32, timeout: Duration) {
    tokio::spawn(async move {
        if client.kill(&name, signal, true).await.is_err() {
            return;
        }
        if tokio::time::timeout(timeout, client.wait(&name)).await.is_err() {
            let _ = client.kill(&name, libc::SIGKILL, true).await;
        }
    });
}

/// Stop signal to every process of the task, then SIGKILL after the stop timeout.
/// Returns the name and what happened, for the console.
pub async fn stop(client: Containerd, name: String, signal: i32, timeout: Duration) -> (String, String) {
    if let Err(e) = client.kill(&name, signal, true).await {
        cleanup(&client, &name).await;
        return (name, format!("not running: {e}"));
    }
    let outcome = match tokio::time::timeout(timeout, client.wait(&name)).await {
        Ok(Ok(status)) => format!("status={status}"),
        Ok(Err(e)) => e.to_string(),
        Err(_) => {
            let _ = client.kill(&name, libc::SIGKILL, true).await;
            match tokio::time::timeout(Duration::from_secs(5), client.wait(&name)).await {
                Ok(Ok(status)) => format!("killed after {} ms stop timeout, status={status}", timeout.as_millis()),
                _ => "did not stop after SIGKILL".to_string(),
            }
        }
    };
    cleanup(&client, &name).await;
    (name, outcome)
}

/// Runs a one-shot container to completion within `timeout` (killed past it) and removes
/// it. Ok(status) when it ran; Err when it could not start or timed out.
pub async fn run_oneshot(client: &Containerd, plan: &Plan, timeout: Duration) -> Result<u32, String> {
    start(client, plan).await?;
    let result = match tokio::time::timeout(timeout, client.wait(&plan.name)).await {
        Ok(Ok(status)) => Ok(status),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => {
            let _ = client.kill(&plan.name, libc::SIGKILL, true).await;
            let _ = tokio::time::timeout(Duration::from_secs(5), client.wait(&plan.name)).await;
            Err(format!("did not finish within {} ms: killed", timeout.as_millis()))
        }
    };
    cleanup(client, &plan.name).await;
    result
}
