//! The `docker save` archive reader, through its public functions. An input whose first
//! byte is odd is the archive file itself (the tar reader); otherwise its chunks (see the
//! crate doc) become the members `manifest.json` (chunk 0) and `1`, `2`, ... in a tar made
//! here. The archive is imported (without a reference and as `app:latest`) and listed
//! for transfer. Errors are fine; a panic, a hang or unbounded memory is not.
#![no_main]

use hoist_config::ImageSource;
use hoist_fuzz::{check_transfer, chunks, debug, limits, scratch_dir};
use libfuzzer_sys::fuzz_target;

fn archive(data: &[u8]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (i, member) in chunks(data).iter().enumerate() {
        let name = if i == 0 { "manifest.json".to_string() } else { i.to_string() };
        let mut header = tar::Header::new_ustar();
        header.set_path(&name).expect("member name");
        header.set_mode(0o644);
        header.set_size(member.len() as u64);
        header.set_cksum();
        tar.append(&header, member.as_slice()).expect("append");
    }
    tar.into_inner().expect("tar")
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else { return };
    let bytes = if mode % 2 == 1 { body.to_vec() } else { archive(body) };
    let dir = scratch_dir();
    let file = dir.path().join("image.tar");
    std::fs::write(&file, bytes).expect("write");
    for reference in [None, Some("app:latest")] {
        let source = ImageSource::DockerArchive { file: file.clone(), reference: reference.map(String::from) };
        let image = hoist_images::oci::import_with(&source, &limits());
        debug("import", &image.as_ref().map(|i| (&i.digest, &i.platform, i.rootfs.len())));
        if let Ok(image) = image {
            let _ = image.check_platform("fuzz", false);
        }
    }
    let transfer = hoist_images::oci::docker_archive_blobs(&file, None);
    debug("transfer", &transfer.as_ref().map(|t| t.blobs.len()));
    if let Ok(transfer) = transfer {
        check_transfer(&transfer);
    }
});
