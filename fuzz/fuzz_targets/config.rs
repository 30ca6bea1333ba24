//! The host config parser and validator: any text gives a Config or an error whose message
//! can be printed; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match hoist_config::parse(text, "fuzz.toml") {
        Ok(config) => {
            for c in config.containers() {
                let _ = c.image.describe();
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
