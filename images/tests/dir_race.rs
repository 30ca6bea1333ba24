//! A `dir:` image source changed while it is imported: the importer must never follow a
//! symlink that the tree did not hold as a symlink when it was listed.

use std::fs;
use std::os::unix::fs::symlink;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use hoist_images::oci::import_dir;
use hoist_images::tree::Node;

const SECRET: &[u8] = b"root:$6$not-for-the-image:19000:0:99999:7:::\n";

/// Stops the swapper however the test ends.
struct Stop(Arc<AtomicBool>);

impl Drop for Stop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Busy-waits: a sleep would give the importer whole scheduler ticks in one state.
fn hold(time: Duration) {
    let until = Instant::now() + time;
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

#[test]
fn a_subdirectory_swapped_for_a_symlink_is_never_followed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let outside = tmp.path().join("etc");
    fs::create_dir(&outside).expect("outside dir");
    fs::write(outside.join("shadow"), SECRET).expect("secret");
    let root = tmp.path().join("rootfs");
    let sub = root.join("sub");
    let held = tmp.path().join("held");
    fs::create_dir_all(&sub).expect("sub");
    for i in 0..8 {
        fs::write(sub.join(format!("f{i}")), b"harmless").expect("file");
    }

    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicU64::new(0));
    let guard = Stop(stop.clone());
    let swapper = {
        let (stop, swaps, sub, outside) = (stop.clone(), swaps.clone(), sub.clone(), outside.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                if fs::rename(&sub, &held).and_then(|_| symlink(&outside, &sub)).is_err() {
                    break; // the test ended and removed the tree
                }
                hold(Duration::from_micros(100));
                if fs::remove_file(&sub).and_then(|_| fs::rename(&held, &sub)).is_err() {
                    break;
                }
                hold(Duration::from_micros(100));
                swaps.fetch_add(1, Ordering::SeqCst);
            }
        })
    };

    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut imports, mut refused) = (0u32, 0u32);
    // Until the deadline: the old by-path walk leaked within a few seconds here.
    while Instant::now() < deadline {
        imports += 1;
        match import_dir(&root) {
            Ok(image) => {
                for (path, entry) in image.rootfs.iter() {
                    let path = String::from_utf8_lossy(path);
                    assert!(!path.ends_with("shadow"), "import {imports}: {path} came from outside the tree");
                    if let Node::File { data, .. } = &entry.node {
                        assert_ne!(data.as_slice(), SECRET, "import {imports}: {path} holds the secret");
                    }
                }
            }
            Err(err) => {
                refused += 1;
                let text = format!("{err}");
                assert!(text.contains("changed while being read"), "import {imports}: {text}");
            }
        }
    }
    drop(guard);
    swapper.join().expect("swapper");
    let swaps = swaps.load(Ordering::SeqCst);
    eprintln!("{imports} imports ({refused} refused as changed) against {swaps} swaps");
    assert!(swaps > 100, "the swapper barely ran ({swaps} swaps): the race was not exercised");
}
