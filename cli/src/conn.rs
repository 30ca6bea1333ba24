//! Reaching a running host's control API, shared by `hoist ctl` and `hoist apply`:
//! `--target DIR` (a `hoist build` output that `hoist run` is booting) finds the address in
//! DIR/run.json and the client certificate in DIR/pki; `--api` and `--pki` name them
//! directly. The connection is mutual TLS.

use std::path::PathBuf;

use anyhow::Context;
use hoist_api::pb::control_client::ControlClient;
use tonic::transport::Channel;

/// Where `hoist run` records the API address it published.
pub const RUN_RECORD: &str = "run.json";

#[derive(clap::Args)]
pub struct Conn {
    /// A build directory being run by `hoist run` (reads DIR/run.json and DIR/pki)
    #[arg(long, short, value_name = "DIR", default_value = "out/demo", global = true)]
    pub target: PathBuf,
    /// API address HOST:PORT (default: from the target's run.json)
    #[arg(long, value_name = "ADDR", global = true)]
    pub api: Option<String>,
    /// Directory with ca.pem, client.pem, client.key (default: TARGET/pki)
    #[arg(long, value_name = "DIR", global = true)]
    pub pki: Option<PathBuf>,
}

impl Conn {
    /// `--api`, or the address the target's run.json records.
    pub fn address(&self) -> anyhow::Result<String> {
        if let Some(a) = &self.api {
            return Ok(a.clone());
        }
        let path = self.target.join(RUN_RECORD);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!("{}: is `hoist run {}` running? (or pass --api)", path.display(), self.target.display())
        })?;
        let v: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{}", path.display()))?;
        v["api"].as_str().map(String::from).with_context(|| format!("{}: no \"api\" address", path.display()))
    }

    pub fn pki_dir(&self) -> PathBuf {
        self.pki.clone().unwrap_or_else(|| self.target.join("pki"))
    }

    pub async fn connect(&self) -> anyhow::Result<ControlClient<Channel>> {
        Ok(hoist_api::client::tcp(&self.address()?, &self.pki_dir()).await?)
    }
}

/// A gRPC error as one line: its code, the server's message, then any transport causes.
pub fn status_err(e: tonic::Status) -> anyhow::Error {
    // A refused client certificate only shows up on the first call, as a transport error.
    let mut text = e.message().to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    anyhow::anyhow!("{:?}: {text}", e.code())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_comes_from_run_json() {
        let dir = std::env::temp_dir().join(format!("hoist-conn-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join(RUN_RECORD), r#"{"api":"127.0.0.1:4321","qemu_pid":1}"#).expect("write");
        let conn = Conn { target: dir.clone(), api: None, pki: None };
        assert_eq!(conn.address().expect("addr"), "127.0.0.1:4321");
        assert_eq!(conn.pki_dir(), dir.join("pki"));
        std::fs::remove_file(dir.join(RUN_RECORD)).expect("rm");
        let err = conn.address().expect_err("no record");
        assert!(err.to_string().contains("is `hoist run"), "{err}");
        let direct = Conn { target: dir.clone(), api: Some("10.0.0.1:7443".into()), pki: None };
        assert_eq!(direct.address().expect("--api"), "10.0.0.1:7443");
        let _ = std::fs::remove_dir_all(dir);
    }
}
