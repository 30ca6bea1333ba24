//! Whole disks as sysfs shows them, and the names a volume's selector can match: the serial
//! (`/sys/block/X/serial` for virtio, `device/serial` for NVMe and others) and the
//! `/dev/disk/by-id/` names udev would make from it (no udev runs here). Label and UUID
//! need the disk's bytes and are matched by the caller.

use std::path::Path;

use hoist_guest::volume::Selector;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// The kernel's name (`vdb`); the node is /dev/NAME.
    pub name: String,
    /// `MAJOR:MINOR` from sysfs, to check the node against.
    pub dev: String,
    pub serial: Option<String>,
    /// The names udev gives it under /dev/disk/by-id/.
    pub by_id: Vec<String>,
    /// Bytes.
    pub size: u64,
}

/// The most of a sysfs attribute read; serials and models are a few dozen bytes.
const ATTR_MAX: u64 = 4096;

fn attr(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path).ok()?.take(ATTR_MAX).read_to_string(&mut text).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

/// udev's whitespace rule for by-id names: trimmed, inner runs of whitespace become '_',
/// and '/' (which cannot be in a file name) too.
fn udev_safe(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join("_").replace('/', "_")
}

/// Every whole disk under `sys` (/sys): loop, ram and zram devices are not disks.
pub fn disks(sys: &Path) -> Vec<Disk> {
    let Ok(entries) = std::fs::read_dir(sys.join("block")) else { return Vec::new() };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if ["loop", "ram", "zram"].iter().any(|p| name.starts_with(p)) || name.contains('/') {
            continue;
        }
        let dir = entry.path();
        let Some(dev) = attr(&dir.join("dev")) else { continue };
        let size = attr(&dir.join("size")).and_then(|s| s.parse::<u64>().ok()).map_or(0, |s| s.saturating_mul(512));
        let serial = attr(&dir.join("serial")).or_else(|| attr(&dir.join("device/serial")));
        let mut by_id = Vec::new();
        if let Some(serial) = &serial {
            if name.starts_with("vd") {
                by_id.push(format!("virtio-{}", udev_safe(serial)));
            } else if name.starts_with("nvme")
                && let Some(model) = attr(&dir.join("device/model"))
            {
                by_id.push(format!("nvme-{}_{}", udev_safe(&model), udev_safe(serial)));
            }
        }
        out.push(Disk { name, dev, serial, by_id, size });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Whether `disk` is the one `selector` names, by what sysfs shows. Label and UUID are
/// never matched here.
pub fn matches(disk: &Disk, selector: &Selector) -> bool {
    match selector {
        Selector::Serial(s) => disk.serial.as_deref() == Some(s.as_str()),
        Selector::ById(id) => disk.by_id.iter().any(|b| b == id),
        Selector::Label(_) | Selector::Uuid(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(sys: &Path, name: &str, files: &[(&str, &str)]) {
        let dir = sys.join("block").join(name);
        std::fs::create_dir_all(dir.join("device")).expect("mkdir");
        for (file, text) in files {
            std::fs::write(dir.join(file), text).expect("write");
        }
    }

    #[test]
    fn disks_and_their_names() {
        let tmp = tempfile::tempdir().expect("tmp");
        let sys = tmp.path();
        disk(sys, "vdb", &[("dev", "254:16\n"), ("size", "131072\n"), ("serial", "data1\n")]);
        disk(sys, "vda", &[("dev", "254:0\n"), ("size", "8\n"), ("serial", "")]);
        disk(sys, "loop0", &[("dev", "7:0\n"), ("size", "8\n")]);
        let nvme =
            [("dev", "259:0"), ("size", "2"), ("device/serial", "  SN 42  \n"), ("device/model", "QEMU NVMe Ctrl ")];
        disk(sys, "nvme0n1", &nvme);
        disk(sys, "nodev", &[("size", "8")]);
        let found = disks(sys);
        let names: Vec<&str> = found.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["nvme0n1", "vda", "vdb"]);
        let vdb = &found[2];
        assert_eq!((vdb.dev.as_str(), vdb.size, vdb.serial.as_deref()), ("254:16", 64 << 20, Some("data1")));
        assert_eq!(vdb.by_id, ["virtio-data1"]);
        assert_eq!(found[1].serial, None);
        assert_eq!(found[0].by_id, ["nvme-QEMU_NVMe_Ctrl_SN_42"]);
        assert!(matches(vdb, &Selector::Serial("data1".into())));
        assert!(matches(vdb, &Selector::ById("virtio-data1".into())));
        assert!(!matches(vdb, &Selector::Serial("data".into())));
        assert!(!matches(vdb, &Selector::Label("data1".into())));
        assert!(matches(&found[0], &Selector::Serial("SN 42".into())));
    }
}
