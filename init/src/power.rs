//! The ACPI power button (QEMU's `system_powerdown`): the kernel's `button` driver turns it
//! into a KEY_POWER press on an input device named "Power Button"; we read that device's
//! evdev events on a thread and forward a press to the main loop.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;

use crate::Event;

const EV_KEY: u16 = 1;
const KEY_POWER: u16 = 116;
/// struct input_event on 64-bit: timeval (16) + type (2) + code (2) + value (4).
const EVENT_SIZE: usize = 24;

/// /dev/input/eventN nodes whose device is named like a power button.
pub fn power_button_devices(sys: &Path, dev: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(sys.join("class/input")) else { return out };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.starts_with("event") {
            continue;
        }
        let label = std::fs::read_to_string(e.path().join("device/name")).unwrap_or_default();
        if label.trim() == "Power Button" {
            out.push(dev.join("input").join(&name));
        }
    }
    out.sort();
    out
}

/// Is this raw event a power-key press?
pub fn is_power_press(ev: &[u8; EVENT_SIZE]) -> bool {
    let kind = u16::from_ne_bytes([ev[16], ev[17]]);
    let code = u16::from_ne_bytes([ev[18], ev[19]]);
    let value = i32::from_ne_bytes([ev[20], ev[21], ev[22], ev[23]]);
    kind == EV_KEY && code == KEY_POWER && value == 1
}

/// Starts one reader thread per power button; returns how many were found.
pub fn watch(tx: Sender<Event>) -> usize {
    let devices = power_button_devices(Path::new("/sys"), Path::new("/dev"));
    for path in &devices {
        let tx = tx.clone();
        let path = path.clone();
        let spawned = std::thread::Builder::new().name("power-button".into()).spawn(move || {
            let mut file = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) => {
                    log::warn!("power button {}: {e}", path.display());
                    return;
                }
            };
            let mut ev = [0u8; EVENT_SIZE];
            while file.read_exact(&mut ev).is_ok() {
                if is_power_press(&ev) && tx.send(Event::PowerButton).is_err() {
                    return;
                }
            }
        });
        if let Err(e) = spawned {
            log::warn!("power button thread: {e}");
        }
    }
    devices.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: u16, code: u16, value: i32) -> [u8; EVENT_SIZE] {
        let mut ev = [0u8; EVENT_SIZE];
        ev[16..18].copy_from_slice(&kind.to_ne_bytes());
        ev[18..20].copy_from_slice(&code.to_ne_bytes());
        ev[20..24].copy_from_slice(&value.to_ne_bytes());
        ev
    }

    #[test]
    fn only_a_power_key_press_counts() {
        assert!(is_power_press(&event(EV_KEY, KEY_POWER, 1)));
        assert!(!is_power_press(&event(EV_KEY, KEY_POWER, 0)));
        assert!(!is_power_press(&event(0, 0, 0)));
        assert!(!is_power_press(&event(EV_KEY, 115, 1)));
    }

    #[test]
    fn power_buttons_are_found_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (ev, name) in [("event0", "Power Button\n"), ("event1", "AT Keyboard\n"), ("event2", "Power Button\n")] {
            let d = dir.path().join("class/input").join(ev).join("device");
            std::fs::create_dir_all(&d).expect("mkdir");
            std::fs::write(d.join("name"), name).expect("write");
        }
        let found = power_button_devices(dir.path(), Path::new("/dev"));
        assert_eq!(found, [PathBuf::from("/dev/input/event0"), PathBuf::from("/dev/input/event2")]);
    }
}
