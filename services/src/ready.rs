//! Readiness probes: how the supervisor learns a running service is ready, per the
//! service's `ready` setting. Each probe runs as its own task and polls until it succeeds
//! or the service's main process is gone; the start timeout is the core's, not here.
//! sd_notify readiness arrives through [`crate::notify`] instead.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hoist_config::Ready;

use crate::containerd::Containerd;

const POLL: Duration = Duration::from_millis(100);
const EXEC_POLL: Duration = Duration::from_millis(500);
/// One readiness command may run this long; then it is killed and counts as not ready.
const EXEC_TIMEOUT: Duration = Duration::from_secs(10);

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// A path inside the container as its main process sees it (its mount namespace), so a
/// file on the container's own tmpfs counts too.
pub fn in_container(pid: u32, path: &str) -> PathBuf {
    Path::new(&format!("/proc/{pid}/root")).join(path.trim_start_matches('/'))
}

/// Does something accept on 127.0.0.1:`port` in the network namespace of process `pid`?
/// A service in the host's namespace is reached from here; one in a namespace of its own
/// (`network = "none"` or `"bridge"`) from a thread that entered it for one connect.
async fn tcp_ready(pid: u32, port: u16) -> bool {
    let ns = format!("/proc/{pid}/ns/net");
    let own = std::fs::read_link("/proc/self/ns/net").ok();
    if own.is_some() && std::fs::read_link(&ns).ok() == own {
        return tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok();
    }
    let connect = move || -> bool {
        let Ok(file) = std::fs::File::open(&ns) else { return false };
        std::thread::spawn(move || {
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).is_ok()
                && std::net::TcpStream::connect_timeout(&(std::net::Ipv4Addr::LOCALHOST, port).into(), POLL * 10)
                    .is_ok()
        })
        .join()
        .unwrap_or(false)
    };
    tokio::task::spawn_blocking(connect).await.unwrap_or(false)
}

/// Polls until the service is ready per `ready` (true), or its main process is gone
/// (false). `Running` and `Notify` have nothing to poll: true and false at once.
pub async fn probe(client: &Containerd, name: &str, pid: u32, ready: &Ready, process: &[u8]) -> bool {
    let mut attempt = 0u32;
    loop {
        if !alive(pid) {
            return false;
        }
        let ok = match ready {
            Ready::Running => return true,
            Ready::Notify => return false,
            Ready::Tcp { port } => tcp_ready(pid, *port).await,
            Ready::File { path } => in_container(pid, path).exists(),
            Ready::Exec { command } => {
                attempt += 1;
                let exec_id = format!("ready-{attempt}");
                match crate::exec::process_with_args(process, command) {
                    Ok(spec) => {
                        let run = client.exec(name, &exec_id, spec, "", "", EXEC_TIMEOUT);
                        matches!(run.await, Ok(0))
                    }
                    Err(e) => {
                        log::warn!("service {name}: ready exec: {e}");
                        false
                    }
                }
            }
        };
        if ok {
            return true;
        }
        let pause = if matches!(ready, Ready::Exec { .. }) { EXEC_POLL } else { POLL };
        tokio::time::sleep(pause).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_paths_go_through_proc_root() {
        assert_eq!(in_container(42, "/run/ready"), PathBuf::from("/proc/42/root/run/ready"));
        assert_eq!(in_container(42, "run/ready"), PathBuf::from("/proc/42/root/run/ready"));
    }
}
