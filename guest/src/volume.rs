//! Volumes between the builder, PID 1 and the supervisor. The builder writes one
//! [`Spec`] per `[volume.NAME]` into the boot file ([`crate::boot`]); PID 1's volume helper
//! finds, checks and mounts each at [`mount_point`] and then writes its [`State`] to
//! [`state_path`] (replaced whole, once per boot); the supervisor starts a service that
//! binds a volume once that file says `mounted`, and names the reason while it does not.
//! A service's dependency on the volume is the target [`target`]`(NAME)`.

use std::path::PathBuf;
use std::time::Duration;

use crate::paths;

/// How a disk is found. Same meaning as hoist-config's `Device`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Serial(String),
    Label(String),
    Uuid(String),
    ById(String),
}

impl Selector {
    /// `serial:S`, `label:L`, `uuid:U`, `by-id:NAME`: one word (values have no spaces).
    pub fn format(&self) -> String {
        match self {
            Selector::Serial(v) => format!("serial:{v}"),
            Selector::Label(v) => format!("label:{v}"),
            Selector::Uuid(v) => format!("uuid:{v}"),
            Selector::ById(v) => format!("by-id:{v}"),
        }
    }

    pub fn parse(word: &str) -> Option<Selector> {
        let (kind, value) = word.split_once(':')?;
        if value.is_empty() || value.contains(char::is_whitespace) {
            return None;
        }
        let value = value.to_string();
        Some(match kind {
            "serial" => Selector::Serial(value),
            "label" => Selector::Label(value),
            "uuid" => Selector::Uuid(value),
            "by-id" if !value.contains('/') && value != "." && value != ".." => Selector::ById(value),
            _ => return None,
        })
    }
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Selector::ById(v) => write!(f, "/dev/disk/by-id/{v}"),
            other => f.write_str(&other.format()),
        }
    }
}

/// One volume as PID 1 gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub name: String,
    pub selector: Selector,
    /// The ext4 label made on a blank disk and expected on every later boot; None: any
    /// (a disk found by UUID). `*` in the boot file.
    pub label: Option<String>,
    pub required: bool,
    /// How long to wait for the device to appear.
    pub wait: Duration,
}

impl Spec {
    /// The boot file's value: `NAME SELECTOR LABEL required|optional WAIT_MS`.
    pub fn format(&self) -> String {
        let required = if self.required { "required" } else { "optional" };
        let label = self.label.as_deref().unwrap_or("*");
        format!("{} {} {label} {required} {}", self.name, self.selector.format(), self.wait.as_millis())
    }

    pub fn parse(value: &str) -> Option<Spec> {
        let words: Vec<&str> = value.split(' ').collect();
        let [name, selector, label, required, wait] = words[..] else { return None };
        let name_ok = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        let label_ok =
            label == "*" || (1..=16).contains(&label.len()) && label.bytes().all(|b| b.is_ascii_graphic() && b != b'*');
        if !name_ok || !label_ok {
            return None;
        }
        Some(Spec {
            name: name.to_string(),
            selector: Selector::parse(selector)?,
            label: (label != "*").then(|| label.to_string()),
            required: match required {
                "required" => true,
                "optional" => false,
                _ => return None,
            },
            wait: Duration::from_millis(wait.parse().ok()?),
        })
    }
}

/// Where volume `name` is mounted.
pub fn mount_point(name: &str) -> PathBuf {
    PathBuf::from(paths::VOLUMES_DIR).join(name)
}

/// Where PID 1's helper says how volume `name` ended up.
pub fn state_path(name: &str) -> PathBuf {
    PathBuf::from(paths::VOLUME_STATES).join(name)
}

/// The dependency a service that binds volume `name` has (not a valid service name).
pub fn target(name: &str) -> String {
    format!("volume:{name}")
}

/// The volume a dependency name is the target of, if it is one.
pub fn of_target(dep: &str) -> Option<&str> {
    dep.strip_prefix("volume:")
}

/// How a volume's setup ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Checked and mounted at [`mount_point`].
    Mounted { uptime_ms: u64, device: String, uuid: String },
    /// Not mounted, and why (one line): missing, refused, or a check that failed. A
    /// required volume's failure is a host problem; an optional one's only holds back the
    /// services that bind it.
    Failed { uptime_ms: u64, required: bool, reason: String },
}

impl State {
    /// `mounted MS DEVICE UUID` or `failed MS required|optional REASON`, one line.
    pub fn format(&self) -> String {
        match self {
            State::Mounted { uptime_ms, device, uuid } => format!("mounted {uptime_ms} {device} {uuid}\n"),
            State::Failed { uptime_ms, required, reason } => {
                let kind = if *required { "required" } else { "optional" };
                format!("failed {uptime_ms} {kind} {}\n", reason.replace(['\n', '\r'], " "))
            }
        }
    }

    pub fn parse(text: &str) -> Option<State> {
        let line = text.lines().next()?;
        let (kind, rest) = line.split_once(' ')?;
        let (ms, rest) = rest.split_once(' ').unwrap_or((rest, ""));
        let uptime_ms = ms.parse().ok()?;
        match kind {
            "mounted" => {
                let (device, uuid) = rest.split_once(' ')?;
                Some(State::Mounted { uptime_ms, device: device.into(), uuid: uuid.into() })
            }
            "failed" => {
                let (kind, reason) = rest.split_once(' ').unwrap_or((rest, ""));
                let required = match kind {
                    "required" => true,
                    "optional" => false,
                    _ => return None,
                };
                Some(State::Failed { uptime_ms, required, reason: reason.to_string() })
            }
            _ => None,
        }
    }

    pub fn uptime_ms(&self) -> u64 {
        match self {
            State::Mounted { uptime_ms, .. } | State::Failed { uptime_ms, .. } => *uptime_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_read_back() {
        for selector in [
            Selector::Serial("data1".into()),
            Selector::Label("hoist-data".into()),
            Selector::Uuid("0f0e0d0c-1111-2222-3333-444455556666".into()),
            Selector::ById("virtio-data1".into()),
        ] {
            let spec = Spec {
                name: "data".into(),
                selector,
                label: Some("hoist-data".into()),
                required: false,
                wait: Duration::from_millis(10_000),
            };
            assert_eq!(Spec::parse(&spec.format()), Some(spec.clone()), "{}", spec.format());
            let any = Spec { label: None, ..spec };
            assert_eq!(Spec::parse(&any.format()), Some(any.clone()), "{}", any.format());
        }
        for bad in [
            "",
            "data serial:x l required",
            "data serial:x l maybe 10",
            "data nope:x l required 1",
            "../x serial:x l required 1",
            "d by-id:.. l required 1",
        ] {
            assert_eq!(Spec::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn states_read_back() {
        let mounted = State::Mounted { uptime_ms: 3100, device: "/dev/vdb".into(), uuid: "u-u".into() };
        assert_eq!(State::parse(&mounted.format()), Some(mounted));
        let failed = State::Failed { uptime_ms: 9, required: true, reason: "no disk with serial:x\nafter 10s".into() };
        assert_eq!(failed.format(), "failed 9 required no disk with serial:x after 10s\n");
        let optional = State::Failed { uptime_ms: 9, required: false, reason: "gone".into() };
        assert_eq!(State::parse(&optional.format()), Some(optional));
        assert_eq!(State::parse(&failed.format()).map(|s| s.uptime_ms()), Some(9));
        for bad in ["", "mounted", "mounted 1", "mounted x /dev/vdb u", "gone 1 x"] {
            assert_eq!(State::parse(bad), None, "{bad:?}");
        }
        assert_eq!(of_target(&target("data")), Some("data"));
        assert_eq!(of_target("network"), None);
    }
}
