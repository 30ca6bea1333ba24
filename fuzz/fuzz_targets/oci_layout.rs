//! The OCI image layout reader, through its public functions: the input's chunks (see the
//! crate doc) become `index.json` (chunk 0) and `blobs/sha256/<digest>` (the others) in a
//! fresh directory, which is then imported (without a tag and as `latest`) and listed for
//! transfer. Errors are fine; a panic, a hang or unbounded memory is not.
#![no_main]

use hoist_config::ImageSource;
use hoist_fuzz::{check_transfer, chunks, debug, limits, scratch_dir, sha256};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let chunks = chunks(data);
    let dir = scratch_dir();
    let blobs = dir.path().join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("mkdir");
    std::fs::write(dir.path().join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).expect("write");
    std::fs::write(dir.path().join("index.json"), &chunks[0]).expect("write");
    for blob in &chunks[1..] {
        let digest = sha256(blob);
        std::fs::write(blobs.join(digest.trim_start_matches("sha256:")), blob).expect("write");
    }
    for tag in [None, Some("latest")] {
        let source = ImageSource::Oci { dir: dir.path().to_path_buf(), tag: tag.map(String::from) };
        let image = hoist_images::oci::import_with(&source, &limits());
        debug("import", &image.as_ref().map(|i| (&i.digest, &i.platform, i.rootfs.len())));
        if let Ok(image) = image {
            let _ = image.check_platform("fuzz", false);
        }
    }
    let transfer = hoist_images::oci::oci_layout_blobs(dir.path(), None);
    debug("transfer", &transfer.as_ref().map(|t| t.blobs.len()));
    if let Ok(transfer) = transfer {
        check_transfer(&transfer);
    }
});
