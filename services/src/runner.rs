//! The driver's [`Runtime`] over containerd: starting a container from its plan (rootfs
//! overlay, log stdio), waiting for its exit, signalling it, probing readiness, running
//! one-shot stages, and cleaning up. Each call is one task's work and touches no state.

use std::collections::BTreeMap;
use std::path::Path;

use containerd_client::types::Mount;

use crate::containerd::Containerd;
use crate::core::StartError;
use crate::driver::{Runtime, WaitError};
use crate::plan::Plan;

/// Per-container writable layers (overlay upper + work dirs) live here, each on a tmpfs
/// of its own (`disk` bytes), so a service that fills its root fills only that.
pub use hoist_guest::paths::RW_DIR;
/// Every task's stdout and stderr: hoist's shim reads them itself and writes the
/// console and the service's size-capped log file.
pub use hoist_guest::servicelog::uri as log_uri;

/// Rootfs mounts for the task: an overlay of the unpacked tree with a fresh upper layer on
/// a tmpfs of `plan.disk` bytes (a restarted container starts from its image again).
/// Read-only roots use the same overlay: runc must create mount points (/proc, bind
/// targets) the image may lack, and then remounts the root read-only itself
/// (`root.readonly` in the spec).
pub fn rootfs_mounts(plan: &Plan) -> std::io::Result<Vec<Mount>> {
    use nix::mount::{MsFlags, mount};
    let rw = Path::new(RW_DIR).join(&plan.name);
    remove_rw(&rw)?;
    std::fs::create_dir_all(&rw)?;
    let options = format!("size={},mode=0755", plan.disk);
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    mount(Some("tmpfs"), &rw, Some("tmpfs"), flags, Some(options.as_str())).map_err(std::io::Error::from)?;
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

/// How long a cleanup waits for the shim to report an exit the supervisor saw first.
const SHIM_EXIT_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

async fn cleanup_unlocked(client: &Containerd, name: &str) {
    if let Err(e) = client.delete_task(name).await
        && !e.is_not_found()
    {
        // The exit may have been seen through the pidfd before the shim reaped the process
        // and told containerd, which refuses to delete a task it thinks runs: wait for that,
        // boundedly, and try once more.
        let _ = tokio::time::timeout(SHIM_EXIT_GRACE, client.wait(name)).await;
        let _ = client.delete_task(name).await;
    }
    let _ = client.delete_container(name).await;
}

/// Removes whatever an earlier run of the container left in containerd, and its
/// writable layer (the tmpfs gives its memory back).
pub async fn cleanup(client: &Containerd, name: &str) {
    let _guard = lock(name).await;
    cleanup_unlocked(client, name).await;
    let rw = Path::new(RW_DIR).join(name);
    if let Err(e) = remove_rw(&rw) {
        log::warn!("{}: {e}", rw.display());
    }
}

/// Unmounts a container's writable layer (its tmpfs; lazily, in case something still
/// holds it) and removes it, if there is one.
fn remove_rw(rw: &Path) -> std::io::Result<()> {
    if !rw.exists() {
        return Ok(());
    }
    let _ = nix::mount::umount2(rw, nix::mount::MntFlags::MNT_DETACH);
    std::fs::remove_dir_all(rw)
}

/// Creates and starts the container; returns the pid of its main process. A plan that
/// cannot work (no image, bad spec, missing tree) is a permanent error; the rest (containerd
/// gone, disk full) may pass.
pub async fn start(client: &Containerd, plan: &Plan) -> Result<u32, StartError> {
    let permanent = |reason: String| StartError { reason, permanent: true };
    let transient = |reason: String| StartError { reason, permanent: false };
    if let Some(problem) = &plan.problem {
        return Err(permanent(problem.clone()));
    }
    // A built-in image is one tree; an imported one the layers of its snapshot view.
    if let Some(dir) = plan.rootfs.split(':').find(|d| !Path::new(d).is_dir()) {
        return Err(permanent(format!("image rootfs {dir} is missing")));
    }
    let name = plan.name.as_str();
    let mut steps = Steps::new();
    let _guard = lock(name).await;
    cleanup_unlocked(client, name).await;
    steps.done("cleanup");
    for dir in &plan.volume_dirs {
        let root = hoist_guest::volume::mount_point(&dir.volume);
        if !crate::volume_dirs::is_mount_point(&root) {
            return Err(transient(format!("volume {} is not mounted at {}", dir.volume, root.display())));
        }
        let opened = crate::volume_dirs::prepare(&root, dir).map_err(transient)?;
        crate::volume_dirs::stage(&opened, Path::new(&dir.staging)).map_err(transient)?;
    }
    if let Some((subnet, publish)) = plan.bridge.clone() {
        let service = name.to_string();
        let attached = tokio::task::spawn_blocking(move || crate::bridge::attach(&service, subnet, &publish))
            .await
            .map_err(|e| transient(format!("bridge: {e}")))?;
        let ip = attached.map_err(|e| transient(format!("bridge network: {e}")))?;
        steps.done("bridge");
        log::debug!("{name}: {ip} on the bridge");
    }
    let mounts = rootfs_mounts(plan).map_err(|e| transient(format!("{RW_DIR}/{name}: {e}")))?;
    steps.done("rootfs");
    client.create_container(name, plan.spec.clone()).await.map_err(|e| transient(e.to_string()))?;
    steps.done("container");
    let started = async {
        client.create_task(name, mounts, &log_uri(plan.log_max)).await?;
        steps.done("task");
        let pid = client.start(name).await;
        steps.done("start");
        pid
    };
    match started.await {
        Ok(pid) => {
            log::debug!("{name}: started in {}", steps.report());
            Ok(pid)
        }
        Err(e) => {
            cleanup_unlocked(client, name).await;
            Err(StartError { permanent: !e.is_disconnect() && !may_pass(&e.to_string()), reason: e.to_string() })
        }
    }
}

/// How long each step of a start took, for the debug log (`hoist.debug`).
struct Steps {
    at: std::time::Instant,
    done: Vec<(&'static str, u128)>,
}

impl Steps {
    fn new() -> Steps {
        Steps { at: std::time::Instant::now(), done: Vec::new() }
    }

    fn done(&mut self, step: &'static str) {
        let now = std::time::Instant::now();
        self.done.push((step, now.duration_since(self.at).as_millis()));
        self.at = now;
    }

    /// `N ms: step N, step N, ...`
    fn report(&self) -> String {
        let total: u128 = self.done.iter().map(|(_, ms)| ms).sum();
        let steps: Vec<String> = self.done.iter().map(|(s, ms)| format!("{s} {ms}")).collect();
        format!("{total} ms: {}", steps.join(", "))
    }
}

/// Start errors that may pass: the machine is short of something (disk, memory, pids), or
/// the service's previous task is still going away (a task that did not die within the
/// grace after SIGKILL, such as a fork bomb's thousand processes under load, is still
/// there when the restart creates the next one). Anything else runc says about a
/// container is about its immutable image and spec, and says the same the next time.
fn may_pass(message: &str) -> bool {
    const SIGNS: [&str; 6] = [
        "no space left on device",
        "cannot allocate memory",
        "resource temporarily unavailable",
        "too many open files",
        "disk quota exceeded",
        "already exists",
    ];
    let message = message.to_ascii_lowercase();
    SIGNS.iter().any(|s| message.contains(s))
}

/// Did the kernel OOM-kill something in this container's cgroup (memory.events)?
pub fn oom_killed(name: &str) -> bool {
    let path = format!("/sys/fs/cgroup{}/memory.events", crate::spec::cgroup_path(name));
    std::fs::read_to_string(path)
        .map(|t| t.lines().any(|l| l.strip_prefix("oom_kill ").is_some_and(|n| n.trim() != "0")))
        .unwrap_or(false)
}

impl Runtime for Containerd {
    async fn running(&self) -> Result<BTreeMap<String, u32>, String> {
        let tasks = self.list_tasks().await.map_err(|e| e.to_string())?;
        let running = containerd_client::types::v1::Status::Running as i32;
        // containerd 1.6 names the task in `id` and leaves `container_id` empty.
        Ok(tasks
            .into_iter()
            .filter(|t| t.status == running)
            .map(|t| (if t.container_id.is_empty() { t.id } else { t.container_id }, t.pid))
            .collect())
    }

    async fn start(&self, plan: Plan) -> Result<u32, StartError> {
        start(self, &plan).await
    }

    /// Whichever answers first: the kernel, through a pidfd on the main process
    /// ([`crate::exit_watch`]), or containerd. The pidfd's answer needs the zombie still
    /// there; when the shim reaped it first, containerd's counts.
    async fn wait(&self, name: String, pid: u32) -> Result<(u32, bool), WaitError> {
        let proc = Path::new("/proc");
        let direct = async {
            match crate::exit_watch::pin(pid, &crate::cgroup_signal::Cgroup::of_service(&name), proc) {
                Some(pinned) => pinned.exited().await,
                None => None,
            }
        };
        tokio::select! {
            Some(status) = direct => {
                log::debug!("{name}: exit of pid {pid} seen through its pidfd");
                Ok((status, oom_killed(&name)))
            }
            answer = Containerd::wait(self, &name) => match answer {
                Ok(status) => Ok((status, oom_killed(&name))),
                Err(e) if e.is_disconnect() => Err(WaitError::Lost(e.to_string())),
                Err(e) => Err(WaitError::Other(e.to_string())),
            },
        }
    }

    /// Straight through the service's cgroup ([`crate::cgroup_signal`]); through containerd
    /// (the shim and `kill --all` of the OCI runtime) only when that cgroup is not there,
    /// or cannot be read, or no process in it could be signalled.
    async fn signal(&self, name: String, signal: i32) -> Result<(), String> {
        let cgroup = crate::cgroup_signal::Cgroup::of_service(&name);
        match crate::cgroup_signal::signal(&cgroup, Path::new("/proc"), signal) {
            Ok(Some(n)) => {
                log::debug!("{name}: signal {signal} sent to {n} processes through {}", cgroup.path);
                return Ok(());
            }
            Ok(None) => log::debug!("{name}: no cgroup {}; signalling through containerd", cgroup.path),
            Err(e) => log::warn!("{name}: signalling through cgroup {}: {e}; through containerd instead", cgroup.path),
        }
        self.kill(&name, signal, true).await.map_err(|e| e.to_string())
    }

    async fn cleanup(&self, name: String) {
        cleanup(self, &name).await
    }

    async fn probe(&self, plan: Plan, pid: u32) -> bool {
        crate::ready::probe(self, &plan.name, pid, &plan.ready, &plan.process).await
    }

    async fn run_stage(&self, plan: Plan) -> Result<u32, String> {
        start(self, &plan).await.map_err(|e| e.reason)?;
        let result = loop {
            match Containerd::wait(self, &plan.name).await {
                Err(e) if e.is_disconnect() => tokio::time::sleep(std::time::Duration::from_millis(250)).await,
                other => break other.map_err(|e| e.to_string()),
            }
        };
        cleanup(self, &plan.name).await;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_report_names_each_step_and_the_sum() {
        let steps = Steps { at: std::time::Instant::now(), done: vec![("cleanup", 12), ("task", 900), ("start", 88)] };
        assert_eq!(steps.report(), "1000 ms: cleanup 12, task 900, start 88");
    }

    #[test]
    fn only_shortages_and_leftovers_are_worth_retrying() {
        assert!(may_pass("create task a: mkdir /run/x: No space left on device"));
        assert!(may_pass("runc create failed: fork/exec: resource temporarily unavailable"));
        assert!(may_pass("create task probe: task probe: already exists"));
        assert!(!may_pass("runc create failed: exec: \"/no/such/binary\": stat: no such file or directory"));
    }
}
