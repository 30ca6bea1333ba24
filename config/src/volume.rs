//! `[volume.NAME]`: a disk PID 1 finds by a stable identity, formats only when it is blank,
//! checks and mounts; and `[state]`, the volume hoist keeps its own state on.
//!
//! A device is chosen by `serial:S` (the disk's serial as the kernel reports it),
//! `label:L` or `uuid:U` (of a filesystem already on it) or `/dev/disk/by-id/NAME` (udev's
//! names, which PID 1 computes from sysfs). Kernel names like /dev/vda are refused: their
//! order follows probe order, which changes with the hypervisor's slot order.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The directory of the `[state]` volume that holds hoist's own state; no service may
/// bind it (nor the volume's root, which contains it). The guest's `STATE_SUBDIR`.
pub const STATE_SUBDIR: &str = "hoist-state";

/// The longest an ext4 label can be (`s_volume_name`).
pub const LABEL_MAX: usize = 16;

/// `[volume.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub device: Device,
    /// What is made on a blank disk. ext4 is the only one.
    pub filesystem: Filesystem,
    /// The label made, and expected on every later boot: a disk whose filesystem has
    /// another label is refused. Default: the volume's name; for a `label:` device, that
    /// label. None only for a `uuid:` device without one: any label is accepted.
    pub label: Option<String>,
    /// true (default): a disk that does not appear is a host problem, said on the console
    /// and in status. false: services that bind it simply wait, with the reason.
    pub required: bool,
    /// How long PID 1 waits for the device to appear. Default 10s, at most 10 minutes.
    pub wait: Duration,
}

impl Volume {
    pub const DEFAULT_WAIT: Duration = Duration::from_secs(10);
    pub const MAX_WAIT: Duration = Duration::from_secs(600);
}

/// How the disk is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Device {
    Serial(String),
    Label(String),
    /// Lower case, 8-4-4-4-12 hex digits.
    Uuid(String),
    /// The name under /dev/disk/by-id/.
    ById(String),
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Serial(s) => write!(f, "serial:{s}"),
            Device::Label(s) => write!(f, "label:{s}"),
            Device::Uuid(s) => write!(f, "uuid:{s}"),
            Device::ById(s) => write!(f, "{BY_ID}{s}"),
        }
    }
}

const BY_ID: &str = "/dev/disk/by-id/";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VolumeError {
    #[error(
        "invalid device {0:?}: kernel names follow probe order, which changes; use serial:S, label:L, uuid:U or \
         /dev/disk/by-id/NAME"
    )]
    KernelName(String),
    #[error("invalid device {0:?}: expected serial:S, label:L, uuid:U or /dev/disk/by-id/NAME")]
    Form(String),
    #[error("invalid device {0:?}: the value must be 1-64 printable ASCII characters without spaces or '/'")]
    Value(String),
    #[error("invalid device {0:?}: a UUID is 8-4-4-4-12 hex digits")]
    Uuid(String),
    #[error(
        "invalid device {0:?}: hoist names virtio (virtio-SERIAL) and NVMe (nvme-MODEL_SERIAL) disks by id, as udev \
         would; for another disk use serial:S"
    )]
    ByIdKind(String),
    #[error("invalid label {0:?}: expected 1-16 characters of letters, digits, '.', '_' and '-'")]
    Label(String),
    #[error("invalid filesystem {0:?}: expected ext4")]
    Filesystem(String),
}

impl FromStr for Device {
    type Err = VolumeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let value = |v: &str| {
            let ok = (1..=64).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_graphic() && b != b'/');
            if ok { Ok(v.to_string()) } else { Err(VolumeError::Value(s.to_string())) }
        };
        if let Some(v) = s.strip_prefix("serial:") {
            return value(v).map(Device::Serial);
        }
        if let Some(v) = s.strip_prefix("label:") {
            return label(v).map(Device::Label).map_err(|_| VolumeError::Label(v.to_string()));
        }
        if let Some(v) = s.strip_prefix("uuid:") {
            return uuid(v).map(Device::Uuid).ok_or_else(|| VolumeError::Uuid(s.to_string()));
        }
        if let Some(v) = s.strip_prefix(BY_ID) {
            if !v.starts_with("virtio-") && !v.starts_with("nvme-") {
                return Err(VolumeError::ByIdKind(s.to_string()));
            }
            return value(v).map(Device::ById);
        }
        if s.starts_with("/dev/") {
            return Err(VolumeError::KernelName(s.to_string()));
        }
        Err(VolumeError::Form(s.to_string()))
    }
}

fn label(s: &str) -> Result<String, VolumeError> {
    let ok = (1..=LABEL_MAX).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok { Ok(s.to_string()) } else { Err(VolumeError::Label(s.to_string())) }
}

/// The canonical (lower-case) form of a UUID, if `s` is one.
fn uuid(s: &str) -> Option<String> {
    let groups: Vec<&str> = s.split('-').collect();
    let shape = groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12]);
    (shape && groups.iter().all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()))).then(|| s.to_ascii_lowercase())
}

/// A `label` value.
pub(crate) struct Label(pub String);

impl FromStr for Label {
    type Err = VolumeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        label(s).map(Label)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Filesystem {
    #[default]
    Ext4,
}

impl Filesystem {
    pub fn name(self) -> &'static str {
        match self {
            Filesystem::Ext4 => "ext4",
        }
    }
}

impl FromStr for Filesystem {
    type Err = VolumeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ext4" => Ok(Filesystem::Ext4),
            _ => Err(VolumeError::Filesystem(s.to_string())),
        }
    }
}

/// `[state]`: where hoist keeps what must outlive a reboot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    /// A `[volume.NAME]`.
    pub volume: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_by_kind() {
        assert_eq!("serial:data1".parse(), Ok(Device::Serial("data1".into())));
        assert_eq!("label:hoist-data".parse(), Ok(Device::Label("hoist-data".into())));
        assert_eq!(
            "uuid:0F0E0D0C-1111-2222-3333-444455556666".parse(),
            Ok(Device::Uuid("0f0e0d0c-1111-2222-3333-444455556666".into()))
        );
        assert_eq!("/dev/disk/by-id/virtio-data1".parse(), Ok(Device::ById("virtio-data1".into())));
        let d: Device = "serial:a:b".parse().expect("colons are fine in a serial");
        assert_eq!(d.to_string(), "serial:a:b");
    }

    #[test]
    fn bad_devices_say_what_is_wrong() {
        type Make = fn(String) -> VolumeError;
        let cases: [(&str, Make); 10] = [
            ("/dev/disk/by-id/ata-QEMU_HARDDISK_QM00001", VolumeError::ByIdKind),
            ("/dev/vda", VolumeError::KernelName),
            ("/dev/sdb1", VolumeError::KernelName),
            ("vda", VolumeError::Form),
            ("serial:", VolumeError::Value),
            ("serial:a b", VolumeError::Value),
            ("/dev/disk/by-id/virtio-../vda", VolumeError::Value),
            ("uuid:1234", VolumeError::Uuid),
            ("uuid:0f0e0d0c-1111-2222-3333-44445555666g", VolumeError::Uuid),
            ("serial:é", VolumeError::Value),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<Device>(), Err(want(text.to_string())), "{text:?}");
        }
        assert_eq!("label:seventeen-chars-x".parse::<Device>(), Err(VolumeError::Label("seventeen-chars-x".into())));
    }

    #[test]
    fn labels_fit_ext4() {
        assert!("hoist-data".parse::<Label>().is_ok());
        assert!("sixteen-chars-ok".parse::<Label>().is_ok());
        for bad in ["", "seventeen-chars-x", "a b", "a/b", "é"] {
            assert_eq!(bad.parse::<Label>().err(), Some(VolumeError::Label(bad.into())), "{bad:?}");
        }
        assert_eq!("xfs".parse::<Filesystem>(), Err(VolumeError::Filesystem("xfs".into())));
    }
}
