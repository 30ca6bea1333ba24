//! Loading kernel modules at boot: the ones the config names, then whatever the devices
//! ask for (their `modalias` matched against modules.alias), repeated until no device asks
//! for anything new (loading virtio_pci makes the virtio devices appear, which then want
//! virtio_net, ...). Dependencies come from modules.dep; loading uses finit_module(2).

use std::collections::BTreeSet;
use std::ffi::CString;
use std::path::{Path, PathBuf};

use hoist_guest::modules::{ModuleError, ModuleIndex};

/// What a boot-time load did: names loaded, and failures as (module, reason).
#[derive(Debug, Default)]
pub struct LoadReport {
    pub loaded: Vec<String>,
    pub failed: Vec<(String, String)>,
}

/// Every `modalias` of every device on every bus under `sys` (normally /sys).
pub fn device_modaliases(sys: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let Ok(buses) = std::fs::read_dir(sys.join("bus")) else { return out };
    for bus in buses.flatten() {
        let Ok(devices) = std::fs::read_dir(bus.path().join("devices")) else { continue };
        for dev in devices.flatten() {
            if let Ok(alias) = std::fs::read_to_string(dev.path().join("modalias")) {
                let alias = alias.trim();
                if !alias.is_empty() {
                    out.insert(alias.to_string());
                }
            }
        }
    }
    out
}

pub struct Loader {
    dir: PathBuf,
    index: ModuleIndex,
    done: BTreeSet<String>,
    pub report: LoadReport,
}

impl Loader {
    pub fn new(dir: &Path) -> Result<Self, ModuleError> {
        Ok(Loader {
            dir: dir.to_path_buf(),
            index: ModuleIndex::load(dir)?,
            done: BTreeSet::new(),
            report: LoadReport::default(),
        })
    }

    /// Loads `names` and their dependencies; failures are recorded, the rest still load.
    pub fn load(&mut self, names: &[String]) {
        for name in names {
            let refs = [name.as_str()];
            let paths = match self.index.resolve(&refs) {
                Ok(p) => p,
                Err(e) => {
                    self.report.failed.push((name.clone(), e.to_string()));
                    continue;
                }
            };
            for rel in paths {
                let module = ModuleIndex::normalize(&rel);
                if !self.done.insert(module.clone()) {
                    continue;
                }
                match finit(&self.dir.join(&rel)) {
                    Ok(()) => self.report.loaded.push(module),
                    Err(e) => self.report.failed.push((module, e)),
                }
            }
        }
    }

    /// Loads those of `names` this kernel has as modules; the others are skipped quietly
    /// (built in, or not needed on this machine).
    pub fn load_present(&mut self, names: &[&str]) {
        let present: Vec<String> =
            names.iter().filter(|n| self.index.resolve(&[n]).is_ok()).map(|n| n.to_string()).collect();
        self.load(&present);
    }

    /// Loads what the devices under `sys` ask for, until nothing new is asked (at most 8
    /// rounds, a guard against a driver that keeps creating devices).
    pub fn load_for_devices(&mut self, sys: &Path) {
        self.load_for_devices_among(sys, |_| true)
    }

    /// [`Self::load_for_devices`], only the modules `wanted` accepts (the volume helper
    /// loads the disks' drivers first, without waiting for every other device's).
    pub fn load_for_devices_among(&mut self, sys: &Path, wanted: impl Fn(&str) -> bool) {
        for _ in 0..8 {
            let wanted: BTreeSet<String> = device_modaliases(sys)
                .iter()
                .flat_map(|alias| self.index.modules_for_alias(alias))
                .filter(|m| !self.done.contains(m) && wanted(m))
                .collect();
            if wanted.is_empty() {
                return;
            }
            self.load(&wanted.into_iter().collect::<Vec<_>>());
        }
    }
}

fn finit(path: &Path) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let params = CString::default();
    match nix::kmod::finit_module(&file, &params, nix::kmod::ModuleInitFlags::empty()) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => Ok(()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modaliases_are_collected_from_every_bus() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (bus, dev, alias) in [
            ("pci", "0000:00:03.0", "pci:v00001AF4d00001000\n"),
            ("virtio", "virtio0", "virtio:d00000001v00001AF4\n"),
            ("virtio", "virtio1", ""),
        ] {
            let d = dir.path().join("bus").join(bus).join("devices").join(dev);
            std::fs::create_dir_all(&d).expect("mkdir");
            std::fs::write(d.join("modalias"), alias).expect("write");
        }
        let aliases: Vec<String> = device_modaliases(dir.path()).into_iter().collect();
        assert_eq!(aliases, ["pci:v00001AF4d00001000", "virtio:d00000001v00001AF4"]);
    }
}
