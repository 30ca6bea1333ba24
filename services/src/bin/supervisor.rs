//! `hoist-supervisor`: started and kept alive by PID 1; see the `hoist_services` crate doc.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use hoist_config::manifest::BuildManifest;
use hoist_services::containerd::Containerd;
use hoist_services::supervisor::Supervisor;

static LOGGER: hoist_services::PrefixLogger = hoist_services::PrefixLogger("hoist-supervisor");

const HOST_CONFIG: &str = "/etc/hoist/host.toml";
const BUILD_MANIFEST: &str = "/etc/hoist/build.toml";
const TIMELINE: &str = "/run/hoist/timeline";
const SOCKET: &str = "/run/containerd/containerd.sock";

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
    let config = hoist_config::load(Path::new(HOST_CONFIG)).map_err(|e| e.to_string())?;
    hoist_services::log_to_file(Path::new("/var/log/supervisor.log"), config.logs.max_size);
    let manifest_text = std::fs::read_to_string(BUILD_MANIFEST).map_err(|e| format!("{BUILD_MANIFEST}: {e}"))?;
    let manifest = BuildManifest::from_toml(&manifest_text).map_err(|e| format!("{BUILD_MANIFEST}: {e}"))?;
    let mut timeline: Vec<(String, u128)> = std::fs::read_to_string(TIMELINE)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(' ').and_then(|(n, ms)| Some((n.to_string(), ms.parse().ok()?))))
        .collect();
    let client = Containerd::connect(SOCKET, Duration::from_secs(60)).await.map_err(|e| e.to_string())?;
    let ms = hoist_services::uptime_ms();
    hoist_services::say(&format!("phase containerd uptime_ms={ms}"));
    timeline.push(("containerd".to_string(), ms));
    let supervisor = Supervisor::new(client.clone(), &config, &manifest, timeline);
    let (cmds, events) = supervisor.handles();
    hoist_services::api::server::spawn(hoist_services::api::server::ControlService::new(cmds, events, client));
    supervisor.run().await.map_err(|e| e.to_string())
}
