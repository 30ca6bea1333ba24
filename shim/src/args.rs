//! The command line containerd starts a shim with: Go-style flags (`-id web`,
//! `-namespace=hoist`, `-debug`), then the action, `start` or `delete`. Without an action
//! the binary serves (that is how `start` re-runs itself as the daemon).

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Args {
    pub namespace: String,
    pub id: String,
    /// containerd's gRPC socket (`-address`).
    pub address: String,
    pub publish_binary: String,
    pub bundle: String,
    pub debug: bool,
    pub action: Action,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    #[default]
    Serve,
    Start,
    Delete,
    Version,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArgsError {
    #[error("flag -{0} needs a value")]
    NoValue(String),
    #[error("unknown action {0:?} (start, delete)")]
    Action(String),
}

/// Flags this shim does not use are accepted and ignored, as a newer containerd may pass
/// more than we know.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Args, ArgsError> {
    let mut out = Args::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let Some(flag) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            out.action = match arg.as_str() {
                "start" => Action::Start,
                "delete" => Action::Delete,
                _ => return Err(ArgsError::Action(arg)),
            };
            continue;
        };
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (flag.to_string(), None),
        };
        match name.as_str() {
            "debug" => out.debug = inline.is_none_or(|v| v != "false"),
            "v" | "version" => out.action = Action::Version,
            _ => {
                let value = match inline {
                    Some(v) => v,
                    None => args.next().ok_or_else(|| ArgsError::NoValue(name.clone()))?,
                };
                match name.as_str() {
                    "namespace" => out.namespace = value,
                    "id" => out.id = value,
                    "address" => out.address = value,
                    "publish-binary" => out.publish_binary = value,
                    "bundle" => out.bundle = value,
                    _ => {}
                }
            }
        }
    }
    Ok(out)
}

/// containerd's identifiers (container and exec ids, namespaces): letters, digits and
/// `_.-`, starting with a letter or digit, at most 76 bytes. Anything else would be a
/// path or an argument we did not mean.
pub fn valid_id(id: &str) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= 76
        && b[0].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Result<Args, ArgsError> {
        parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn containerds_start_line_parses() {
        let a = args("-namespace hoist -address /run/containerd/containerd.sock -publish-binary /usr/bin/containerd -id web -debug start").expect("args");
        assert_eq!((a.namespace.as_str(), a.id.as_str(), a.debug, a.action), ("hoist", "web", true, Action::Start));
        assert_eq!(a.address, "/run/containerd/containerd.sock");
        let d = args("--namespace=hoist -id=web -bundle /b -future-flag x delete").expect("args");
        assert_eq!((d.bundle.as_str(), d.action, d.debug), ("/b", Action::Delete, false));
        assert_eq!(args("").map(|a| a.action), Ok(Action::Serve));
    }

    #[test]
    fn missing_values_and_unknown_actions_are_errors() {
        assert_eq!(args("-id"), Err(ArgsError::NoValue("id".into())));
        assert_eq!(args("-id web stop"), Err(ArgsError::Action("stop".into())));
    }

    #[test]
    fn ids_cannot_be_paths_or_flags() {
        assert!(valid_id("web") && valid_id("web.1_a-b") && valid_id("0"));
        for bad in ["", "../x", "a/b", "-rf", ".x", "a b", &"x".repeat(77)] {
            assert!(!valid_id(bad), "{bad:?}");
        }
    }
}
