//! Helpers the image tests share: digests, gzip, and blobs written into a layout.
#![allow(dead_code)] // each test binary uses its own part

use std::fs;
use std::io::Write;
use std::path::Path;

use flate2::{Compression, write::GzEncoder};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::best());
    gz.write_all(data).expect("gzip");
    gz.finish().expect("gzip")
}

/// Writes `data` as a blob of the layout at `dir` and returns its descriptor.
pub fn blob(dir: &Path, media_type: &str, data: &[u8]) -> Value {
    let digest = sha256(data);
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).expect("blobs dir");
    fs::write(blobs.join(&digest[7..]), data).expect("write blob");
    json!({ "mediaType": media_type, "digest": digest, "size": data.len() })
}
