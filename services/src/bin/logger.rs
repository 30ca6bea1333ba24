//! `hoist-logger`: started by containerd's shim for each service task (binary:// log URI).

use std::fs::File;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;

fn main() {
    let name = std::env::var("CONTAINER_ID").unwrap_or_else(|_| "unknown".to_string());
    // SAFETY: the shim's binary-logging protocol starts us with the task's stdout pipe on
    // fd 3, stderr on fd 4 and the readiness pipe on fd 5; nothing else in this process
    // owns those descriptors, so each is wrapped exactly once.
    let (stdout, stderr, ready) =
        unsafe { (OwnedFd::from_raw_fd(3), OwnedFd::from_raw_fd(4), OwnedFd::from_raw_fd(5)) };
    // containerd passes the URI's query as arguments: `max_size BYTES`.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cap = args
        .chunks(2)
        .find(|kv| kv[0] == "max_size")
        .and_then(|kv| kv.get(1)?.parse().ok())
        .unwrap_or(hoist_config::Logs::DEFAULT_MAX_SIZE);
    let log_dir = Path::new(hoist_guest::paths::LOG_DIR);
    hoist_services::logger::run(&name, File::from(stdout), File::from(stderr), File::from(ready), log_dir, cap);
}
