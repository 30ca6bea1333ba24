//! A booted host to drive through the real `hoist` CLI and the mutual-TLS API, for the
//! apply tests: configs written next to the build, commands run with the connection flags,
//! status and history read back, generation results polled with a deadline.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use hoist_api::{client, pb};
use hoist_guest::console::Line;

use crate::{BOOT_TIMEOUT, bin_dir, boot, build_host, busybox_image, pki_dir, wait_line};

pub struct Host {
    pub work: PathBuf,
    pub addr: String,
    pub rt: tokio::runtime::Runtime,
    pub vm: hoist_qemu::Vm,
}

impl Host {
    /// Builds `toml` (`@IMAGE@`: the busybox image) and boots it with the API published.
    pub fn boot(toml: &str) -> Host {
        Self::boot_with(toml, &[])
    }

    /// [`Host::boot`], with more ports published (host, guest).
    pub fn boot_with(toml: &str, publish: &[(u16, u16)]) -> Host {
        let work = tempfile::tempdir().expect("tempdir").keep();
        let out = build_host(&work, toml);
        let port = hoist_qemu::free_tcp_port().expect("port");
        let mut ports = vec![(port, hoist_api::PORT)];
        ports.extend_from_slice(publish);
        let vm = boot(&out, &ports);
        wait_line(&vm, "ready", BOOT_TIMEOUT, |l| matches!(l, Line::Ready { .. })).expect("ready");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        Host { work, addr: format!("127.0.0.1:{port}"), rt, vm }
    }

    /// Writes a config next to the build's, with the busybox image filled in for `@IMAGE@`.
    pub fn config(&self, name: &str, toml: &str) -> PathBuf {
        let path = self.work.join(name);
        let text = toml.replace("@IMAGE@", &format!("oci:{}:latest", busybox_image().display()));
        std::fs::write(&path, text).expect("write config");
        path
    }

    /// `hoist ARGS --api ADDR --pki PKI`, its output.
    pub fn hoist(&self, args: &[&str]) -> Output {
        self.hoist_cmd(args).output().expect("run hoist")
    }

    pub fn hoist_cmd(&self, args: &[&str]) -> Command {
        // The connection flags right after the subcommand, before any `--`.
        let mut cmd = Command::new(bin_dir().join("hoist"));
        cmd.arg(args[0]).args(["--api", &self.addr, "--pki"]).arg(pki_dir()).args(&args[1..]);
        cmd
    }

    pub fn apply(&self, config: &Path, extra: &[&str]) -> Output {
        let mut args = vec!["apply", config.to_str().expect("utf-8 path")];
        args.extend_from_slice(extra);
        self.hoist(&args)
    }

    pub fn status(&self) -> Vec<pb::ServiceStatus> {
        self.rt.block_on(async {
            let mut c = client::tcp(&self.addr, pki_dir()).await.expect("connect");
            c.status(pb::StatusRequest {}).await.expect("status").into_inner().services
        })
    }

    pub fn history(&self) -> pb::HistoryReply {
        self.rt.block_on(async {
            let mut c = client::tcp(&self.addr, pki_dir()).await.expect("connect");
            c.history(pb::HistoryRequest {}).await.expect("history").into_inner()
        })
    }

    /// Polls the history until generation `id` has `result` (deadline).
    pub fn wait_result(&self, id: u64, result: &str, within: Duration) -> pb::Generation {
        let deadline = Instant::now() + within;
        loop {
            let h = self.rt.block_on(async {
                let mut c = client::tcp(&self.addr, pki_dir()).await.ok()?;
                Some(c.history(pb::HistoryRequest {}).await.ok()?.into_inner())
            });
            let g = h.as_ref().and_then(|h| h.generations.iter().find(|g| g.id == id).cloned());
            if let Some(g) = g.as_ref().filter(|g| g.result == result) {
                return g.clone();
            }
            assert!(Instant::now() < deadline, "generation {id} not {result} within {within:?}: {h:?}");
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
