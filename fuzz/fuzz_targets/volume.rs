//! What PID 1's volume helper reads from hostile places: a disk's first and last bytes
//! (the probe that decides whether a disk may be formatted) and the volume lines of the
//! boot file and the state files. The probe never panics, calls a disk blank only when
//! every byte it was shown is zero, and sees hoist's marker only in the last block; what
//! the line formats print they read back unchanged.
#![no_main]

use hoist_guest::disk::{self, Found, Window};
use hoist_guest::volume::{Spec, State};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(0, |&b| usize::from(b) * data.len() / 256);
    let (head, tail) = data.split_at(split.min(data.len()));
    let found = disk::probe(&Window { size: data.len() as u64, head, tail });
    match &found {
        Found::Blank => assert!(head.iter().chain(tail).all(|&b| b == 0), "blank with data"),
        Found::Formatting { .. } => {
            assert!(tail.len() >= disk::MARKER_LEN);
            assert!(tail[tail.len() - disk::MARKER_LEN..].starts_with(disk::MARKER_MAGIC));
        }
        Found::Ext { uuid, .. } => assert_eq!(uuid.len(), 36),
        Found::Other(_) => {}
    }
    let _ = found.describe();

    let text = String::from_utf8_lossy(data);
    if let Some(spec) = Spec::parse(&text) {
        assert_eq!(Spec::parse(&spec.format()), Some(spec.clone()), "spec round trip");
    }
    if let Some(state) = State::parse(&text) {
        let again = State::parse(&state.format()).expect("a printed state parses");
        assert_eq!(again.uptime_ms(), state.uptime_ms());
    }
});
