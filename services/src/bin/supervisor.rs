//! `hoist-supervisor`: started and kept alive by PID 1; see the `hoist_services` crate doc.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hoist_config::manifest::BuildManifest;
use hoist_services::apply::Generations;
use hoist_services::containerd::Containerd;
use hoist_services::core::Core;
use hoist_services::driver::Driver;
use hoist_services::images::{self, Library};
use hoist_services::{api, generations, state};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{broadcast, mpsc};

static LOGGER: hoist_services::PrefixLogger = hoist_services::PrefixLogger("hoist-supervisor");

use hoist_guest::paths::{BUILD_MANIFEST, CONTAINERD_SOCKET, HOST_CONFIG, SUPERVISOR_LOG, TIMELINE};

fn main() -> ExitCode {
    let _ = log::set_logger(&LOGGER);
    let debug = std::env::var("RUST_LOG").is_ok_and(|v| v == "debug");
    log::set_max_level(if debug { log::LevelFilter::Debug } else { log::LevelFilter::Info });
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            log::error!("tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    // First, so a SIGTERM at any point of our life is an orderly shutdown.
    let mut sigterm = signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM handler: {e}"))?;
    let (stop_tx, stop_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while sigterm.recv().await.is_some() {
            if stop_tx.send(()).is_err() {
                return;
            }
        }
    });
    let config_text = std::fs::read_to_string(HOST_CONFIG).map_err(|e| format!("{HOST_CONFIG}: {e}"))?;
    let config = hoist_config::parse(&config_text, HOST_CONFIG).map_err(|e| e.to_string())?;
    hoist_services::log_to_file(Path::new(SUPERVISOR_LOG), config.logs.max_size);
    let manifest_text = std::fs::read_to_string(BUILD_MANIFEST).map_err(|e| format!("{BUILD_MANIFEST}: {e}"))?;
    let manifest = BuildManifest::from_toml(&manifest_text).map_err(|e| format!("{BUILD_MANIFEST}: {e}"))?;
    let timeline = hoist_guest::timeline::parse(&std::fs::read_to_string(TIMELINE).unwrap_or_default());
    let persisted = state::load(Path::new(state::PATH));
    let client = Arc::new(OnceLock::new());
    let library = Arc::new(Library::open(Path::new(images::DIR), &manifest, client.clone()));
    let generations = Generations::open(Path::new(generations::DIR), &config_text, &config, &manifest, library.clone());
    let core = Core::new(generations.desired(), persisted, timeline);
    let (cmds, cmd_rx) = mpsc::unbounded_channel();
    let events = broadcast::channel(256).0;
    api::server::spawn(api::server::ControlService::new(cmds, events.clone(), client.clone(), library));
    // The booted config's runtime is the one the image carries (an applied config that
    // names another one is reported as needing a reboot).
    let volumes: Vec<String> = config.volume.keys().cloned().collect();
    let oci_runtime = hoist_guest::paths::oci_runtime(config.host.runtime.name())
        .ok_or_else(|| format!("no guest path for runtime {}", config.host.runtime.name()))?;
    let connect = async move {
        loop {
            match Containerd::connect(CONTAINERD_SOCKET, Duration::from_secs(30)).await {
                Ok(c) => {
                    let c = c.with_oci_runtime(oci_runtime);
                    let _ = client.set(c.clone());
                    return c;
                }
                Err(e) => log::warn!("{e}; still trying"),
            }
        }
    };
    Driver::new(core, events, PathBuf::from(state::PATH), generations)
        .watch_volumes(volumes)
        .run(connect, cmd_rx, stop_rx)
        .await;
    // Done: exit at once, without dropping the runtime and what is still in flight (the
    // containerd cleanups of stopped services, API streams), which took 0.1 s under TCG
    // while PID 1's shutdown waits for this exit. Log writes are unbuffered and exit
    // flushes stdout.
    std::process::exit(0)
}
