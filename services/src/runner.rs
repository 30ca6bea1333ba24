//! The work the supervisor hands to spawned tasks: starting a service's container, waiting
//! for its exit (across containerd restarts), stopping it, and cleaning up after it. Each
//! reports back to the state owner over the channel; none of them touches its state.

use std::path::Path;
use std::time::Duration;

use containerd_client::types::Mount;
use hoist_config::manifest::ServiceImage;
use tokio::sync::mpsc::UnboundedSender;

use crate::containerd::Containerd;
use crate::supervisor::Msg;

/// Per-service writable layers (overlay upper + work dirs) live here, on tmpfs.
pub const RW_DIR: &str = "/run/hoist/rw";
/// containerd's shim starts this for each task with its stdout/stderr on fds 3 and 4.
pub const LOGGER_URI: &str = "binary:///usr/bin/hoist-logger";

/// Everything needed to (re)start one service, computed once from config + build manifest.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub name: String,
    pub spec: Vec<u8>,
    /// Why this service cannot start at all (no image in the build, bad spec).
    pub problem: Option<String>,
    pub rootfs: String,
    pub readonly: bool,
    pub stop_signal: i32,
    pub stop_timeout: Duration,
}

pub fn plan(name: &str, service: &hoist_config::Service, image: Option<&ServiceImage>) -> Plan {
    let mut plan = Plan {
        name: name.to_string(),
        readonly: service.readonly_rootfs,
        stop_signal: service.stop_signal.0,
        stop_timeout: service.stop_timeout,
        ..Default::default()
    };
    let Some(image) = image else {
        plan.problem = Some(format!("image {} is not in this build", service.image.describe()));
        return plan;
    };
    plan.rootfs = image.rootfs.clone();
    match crate::spec::build(name, service, image).map(|s| serde_json::to_vec(&s)) {
        Ok(Ok(json)) => plan.spec = json,
        Ok(Err(e)) => plan.problem = Some(format!("spec: {e}")),
        Err(e) => plan.problem = Some(e.to_string()),
    }
    plan
}

/// Rootfs mounts for the task: read-only bind of the unpacked tree, or an overlay with a
/// fresh tmpfs upper layer (a restarted service starts from its image again).
pub fn rootfs_mounts(plan: &Plan) -> std::io::Result<Vec<Mount>> {
    if plan.readonly {
        return Ok(vec![Mount {
            r#type: "bind".into(),
            source: plan.rootfs.clone(),
            options: vec!["rbind".into(), "ro".into()],
            ..Default::default()
        }]);
    }
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

/// Removes whatever an earlier run of the service left in containerd.
pub async fn cleanup(client: &Containerd, name: &str) {
    let _ = client.delete_task(name).await;
    let _ = client.delete_container(name).await;
}

async fn start(client: &Containerd, plan: &Plan) -> Result<u32, String> {
    if let Some(problem) = &plan.problem {
        return Err(problem.clone());
    }
    if !Path::new(&plan.rootfs).is_dir() {
        return Err(format!("image rootfs {} is missing", plan.rootfs));
    }
    let name = plan.name.as_str();
    cleanup(client, name).await;
    let mounts = rootfs_mounts(plan).map_err(|e| format!("{RW_DIR}/{name}: {e}"))?;
    client.create_container(name, plan.spec.clone()).await.map_err(|e| e.to_string())?;
    let started = async {
        client.create_task(name, mounts, LOGGER_URI).await?;
        client.start(name).await
    };
    match started.await {
        Ok(pid) => Ok(pid),
        Err(e) => {
            cleanup(client, name).await;
            Err(e.to_string())
        }
    }
}

pub fn spawn_start(client: Containerd, name: String, plan: Plan, tx: UnboundedSender<Msg>) {
    tokio::spawn(async move {
        let result = start(&client, &plan).await;
        let _ = tx.send(Msg::Started { name, result });
    });
}

/// Waits for the task to exit. A wait cut short because containerd went away is not an
/// exit: we retry until containerd answers again.
pub fn spawn_waiter(client: Containerd, name: String, tx: UnboundedSender<Msg>) {
    tokio::spawn(async move {
        let mut warned = false;
        loop {
            match client.wait(&name).await {
                Ok(status) => {
                    let _ = tx.send(Msg::Exited { name, status });
                    return;
                }
                Err(e) if e.is_disconnect() => {
                    if !warned {
                        log::warn!("lost containerd while waiting for {name}: {e}; retrying");
                        warned = true;
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => {
                    log::warn!("{e}");
                    let _ = tx.send(Msg::Exited { name, status: 255 });
                    return;
                }
            }
        }
    });
}

pub fn spawn_cleanup(client: Containerd, name: String) {
    tokio::spawn(async move { cleanup(&client, &name).await });
}

/// Stop signal to every process of the task, then SIGKILL after the stop timeout.
/// Returns the service name and what happened, for the console.
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
