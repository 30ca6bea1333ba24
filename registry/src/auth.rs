//! Registry credentials as docker, skopeo and podman keep them: a `config.json` with
//! `auths` (`{"registry.local:5000": {"auth": base64("user:password")}}`), per-registry
//! `credHelpers` and a default `credsStore` (`docker-credential-NAME get`, the server on
//! stdin, JSON out). The file is `$REGISTRY_AUTH_FILE`, else `$DOCKER_CONFIG/config.json`,
//! else `~/.docker/config.json`; none at all means anonymous pulls.
//!
//! Docker Hub's entry is keyed `https://index.docker.io/v1/` (or `index.docker.io`,
//! `docker.io`, `registry-1.docker.io`); other keys may carry a scheme and a path, which
//! are ignored. Identity tokens (a helper's `<token>` user) are not supported: the
//! registry client takes a user and a password.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde::Deserialize;

/// A credential file larger than this is not one.
const MAX_CONFIG: u64 = 4 << 20;
/// How long a credential helper may take.
const HELPER_TIMEOUT: Duration = Duration::from_secs(30);
const DOCKER_HUB_KEYS: [&str; 4] =
    ["https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Anonymous,
    Basic { user: String, password: String },
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default)]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default)]
    creds_store: Option<String>,
    #[serde(skip)]
    path: PathBuf,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

impl DockerConfig {
    /// The file the environment names, read; `None` when there is none.
    pub fn load() -> Result<Option<DockerConfig>, String> {
        let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        let explicit = env("REGISTRY_AUTH_FILE").or_else(|| env("DOCKER_CONFIG").map(|d| d.join("config.json")));
        let path = match explicit {
            Some(p) => p,
            None => match env("HOME") {
                Some(home) => home.join(".docker/config.json"),
                None => return Ok(None),
            },
        };
        match std::fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", path.display())),
            Ok(m) if m.len() > MAX_CONFIG => return Err(format!("{}: larger than 4 MiB", path.display())),
            Ok(_) => {}
        }
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        DockerConfig::parse(&path, &text).map(Some)
    }

    pub fn parse(path: &Path, text: &str) -> Result<DockerConfig, String> {
        let mut config: DockerConfig =
            serde_json::from_str(text).map_err(|e| format!("{}:{}:{}: {e}", path.display(), e.line(), e.column()))?;
        config.path = path.to_path_buf();
        Ok(config)
    }

    /// The credential for `registry` (`host[:port]`, `docker.io` for Docker Hub).
    pub fn credential(&self, registry: &str) -> Result<Credential, String> {
        let keys: Vec<&str> = if registry == "docker.io" { DOCKER_HUB_KEYS.to_vec() } else { vec![registry] };
        let helper = keys.iter().find_map(|k| self.cred_helpers.get(*k)).or(self.creds_store.as_ref());
        if let Some(helper) = helper {
            let server = if registry == "docker.io" { DOCKER_HUB_KEYS[0] } else { registry };
            if let Some(c) = run_helper(helper, server)? {
                return Ok(c);
            }
        }
        let entry = self.auths.iter().find(|(k, _)| keys.contains(&host_of(k))).map(|(_, v)| v);
        let Some(entry) = entry else { return Ok(Credential::Anonymous) };
        let what = format!("{}: auths entry for {registry}", self.path.display());
        if entry.identitytoken.as_deref().is_some_and(|t| !t.is_empty()) {
            return Err(format!("{what}: identity tokens are not supported; log in with a user and password"));
        }
        if let (Some(user), Some(password)) = (&entry.username, &entry.password) {
            return Ok(Credential::Basic { user: user.clone(), password: password.clone() });
        }
        let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) else { return Ok(Credential::Anonymous) };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|e| format!("{what}: \"auth\" is not base64: {e}"))?;
        let text = String::from_utf8(decoded).map_err(|_| format!("{what}: \"auth\" is not UTF-8"))?;
        let (user, password) = text.split_once(':').ok_or_else(|| format!("{what}: \"auth\" is not user:password"))?;
        Ok(Credential::Basic { user: user.to_string(), password: password.to_string() })
    }
}

/// `https://host:port/v1/` -> `host:port`.
fn host_of(key: &str) -> &str {
    let rest = key.split_once("://").map_or(key, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest)
}

#[derive(Deserialize)]
struct HelperReply {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

/// `docker-credential-NAME get` for `server`; `None` when it has no credentials for it.
fn run_helper(name: &str, server: &str) -> Result<Option<Credential>, String> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
        return Err(format!("credential helper {name:?}: not a helper name"));
    }
    let program = format!("docker-credential-{name}");
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{program}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(server.as_bytes());
    }
    let deadline = Instant::now() + HELPER_TIMEOUT;
    let status = loop {
        match child.try_wait().map_err(|e| format!("{program}: {e}"))? {
            Some(status) => break status,
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{program} get: no answer within {} s", HELPER_TIMEOUT.as_secs()));
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let mut out = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        let _ = stdout.take(MAX_CONFIG).read_to_end(&mut out);
    }
    let text = String::from_utf8_lossy(&out);
    if !status.success() {
        if text.contains("credentials not found") {
            return Ok(None);
        }
        return Err(format!("{program} get for {server}: {status}: {}", text.trim()));
    }
    let reply: HelperReply = serde_json::from_str(&text).map_err(|e| format!("{program} get: {e}"))?;
    if reply.username == "<token>" {
        return Err(format!("{program}: identity tokens are not supported; log in with a user and password"));
    }
    Ok(Some(Credential::Basic { user: reply.username, password: reply.secret }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> DockerConfig {
        DockerConfig::parse(Path::new("config.json"), text).expect("parse")
    }

    #[test]
    fn auths_are_found_by_host_and_decoded() {
        let c = config(
            r#"{"auths": {
                "https://index.docker.io/v1/": {"auth": "aHViOnNlY3JldA=="},
                "registry.local:5000": {"auth": "YWxpY2U6czNjcjp0"},
                "https://quay.io/v2/": {"username": "bob", "password": "pw"},
                "empty.io": {}
            }}"#,
        );
        let basic = |u: &str, p: &str| Credential::Basic { user: u.into(), password: p.into() };
        assert_eq!(c.credential("docker.io"), Ok(basic("hub", "secret")));
        // The password may hold ':' (split at the first).
        assert_eq!(c.credential("registry.local:5000"), Ok(basic("alice", "s3cr:t")));
        assert_eq!(c.credential("quay.io"), Ok(basic("bob", "pw")));
        assert_eq!(c.credential("registry.local"), Ok(Credential::Anonymous), "the port is part of the key");
        assert_eq!(c.credential("empty.io"), Ok(Credential::Anonymous));
        assert_eq!(c.credential("other.io"), Ok(Credential::Anonymous));
    }

    #[test]
    fn bad_entries_say_what_is_wrong() {
        let c = config(
            r#"{"auths": {"a.io": {"auth": "!!"}, "b.io": {"auth": "bm9jb2xvbg=="}, "c.io": {"identitytoken": "t"}}}"#,
        );
        assert!(
            c.credential("a.io")
                .expect_err("base64")
                .contains("config.json: auths entry for a.io: \"auth\" is not base64")
        );
        assert!(c.credential("b.io").expect_err("colon").contains("not user:password"));
        assert!(c.credential("c.io").expect_err("token").contains("identity tokens"));
        let err = DockerConfig::parse(Path::new("/h/.docker/config.json"), "{\n  \"auths\": 3\n}").expect_err("type");
        assert!(err.starts_with("/h/.docker/config.json:2:"), "{err}");
    }

    #[test]
    fn a_missing_helper_is_an_error_that_names_it() {
        let c = config(r#"{"credHelpers": {"ghcr.io": "hoist-test-none"}}"#);
        let err = c.credential("ghcr.io").expect_err("missing helper");
        assert!(err.contains("docker-credential-hoist-test-none"), "{err}");
        // Another registry does not ask that helper.
        assert_eq!(c.credential("quay.io"), Ok(Credential::Anonymous));
        let bad = config(r#"{"credsStore": "../../bin/sh"}"#);
        assert!(bad.credential("quay.io").expect_err("name").contains("not a helper name"));
    }
}
