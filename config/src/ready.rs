//! `ready`: when a started service counts as up, so that its dependents may start and a
//! rollout may go on. Without it a service is ready as soon as its task runs.

use std::fmt;

use toml::Spanned;

use crate::error::{ConfigError, Source};
use crate::raw::{RawReady, Table};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Ready {
    /// No `ready` key: ready as soon as the task runs.
    #[default]
    Running,
    /// `ready = { tcp = 8080 }`: a TCP connect to 127.0.0.1:port succeeds (services share
    /// the host's network namespace).
    Tcp { port: u16 },
    /// `ready = { exec = ["pg_isready"] }`: the command, run inside the container, exits 0.
    Exec { command: Vec<String> },
    /// `ready = { file = "/run/ready" }`: the path exists inside the container's root.
    File { path: String },
    /// `ready = { notify = true }`: the service sends READY=1 on $NOTIFY_SOCKET.
    Notify,
}

/// In the config's own words, for console and log lines: `tcp 8080`,
/// `exec ["pg_isready", "-q"]`, `file /run/ready`, `notify`, `running`.
impl fmt::Display for Ready {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ready::Running => f.write_str("running"),
            Ready::Tcp { port } => write!(f, "tcp {port}"),
            // Debug quotes and escapes each argument, so spaces and quotes stay readable.
            Ready::Exec { command } => write!(f, "exec {command:?}"),
            Ready::File { path } => write!(f, "file {path}"),
            Ready::Notify => f.write_str("notify"),
        }
    }
}

const KINDS: &str = "tcp, exec, file or notify";

pub(crate) fn build(raw: Spanned<Table<RawReady>>, src: &Source, key: &str) -> Result<Ready, ConfigError> {
    let table_span = raw.span();
    let RawReady { tcp, exec, file, notify } = raw.into_inner().0;
    let mut given: Vec<(&str, std::ops::Range<usize>)> = [
        ("tcp", tcp.as_ref().map(Spanned::span)),
        ("exec", exec.as_ref().map(Spanned::span)),
        ("file", file.as_ref().map(Spanned::span)),
        ("notify", notify.as_ref().map(Spanned::span)),
    ]
    .into_iter()
    .filter_map(|(kind, span)| span.map(|s| (kind, s)))
    .collect();
    // Point at the second kind in the file, whatever order the struct has them in.
    given.sort_by_key(|(_, span)| span.start);
    match given.as_slice() {
        [] => {
            let message = format!("expected one of {KINDS}");
            return Err(src.invalid(Some(table_span), key.to_string(), message));
        }
        [_] => {}
        [_, (second, span), ..] => {
            let names = given.iter().map(|(kind, _)| *kind).collect::<Vec<_>>().join(" and ");
            let message = format!("expected exactly one of {KINDS}, got {names}");
            return Err(src.invalid(Some(span.clone()), format!("{key}.{second}"), message));
        }
    }
    if let Some(tcp) = tcp {
        return match u16::try_from(tcp.get_ref().0) {
            Ok(port) if port != 0 => Ok(Ready::Tcp { port }),
            _ => {
                let message = format!("expected a port from 1 to 65535, got {}", tcp.get_ref().0);
                Err(src.invalid(Some(tcp.span()), format!("{key}.tcp"), message))
            }
        };
    }
    if let Some(exec) = exec {
        if exec.get_ref().first().is_none_or(|first| first.0.0.is_empty()) {
            let message = "expected a command to run, like [\"pg_isready\"]";
            return Err(src.invalid(Some(exec.span()), format!("{key}.exec"), message));
        }
        return Ok(Ready::Exec { command: crate::validate::strings(exec.into_inner()) });
    }
    if let Some(file) = file {
        if !file.get_ref().starts_with('/') || file.get_ref().contains('\0') {
            let message = format!("invalid path {:?}: expected an absolute path inside the container", file.get_ref());
            return Err(src.invalid(Some(file.span()), format!("{key}.file"), message));
        }
        return Ok(Ready::File { path: file.into_inner() });
    }
    match notify {
        Some(notify) if !*notify.get_ref() => {
            let message = "notify = false is not a readiness check: omit ready instead";
            Err(src.invalid(Some(notify.span()), format!("{key}.notify"), message))
        }
        _ => Ok(Ready::Notify),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_uses_the_config_words() {
        let exec = Ready::Exec { command: vec!["check".into(), "-x".into(), "a b\"c".into()] };
        let cases = [
            (Ready::Running, "running"),
            (Ready::Tcp { port: 80 }, "tcp 80"),
            (exec, r#"exec ["check", "-x", "a b\"c"]"#),
            (Ready::File { path: "/run/ready".into() }, "file /run/ready"),
            (Ready::Notify, "notify"),
        ];
        for (ready, text) in cases {
            assert_eq!(ready.to_string(), text, "{ready:?}");
        }
    }
}
