//! sha256 digests: parsing, checking blobs against descriptors, hashing streams and trees.

use std::io::{self, Read};

use sha2::{Digest as _, Sha256};

use super::OciError;
use crate::tree::{Node, Tree};

/// "sha256:<hex>" of `data`.
pub(super) fn sha256(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

/// The hex part of a "sha256:<64 lowercase hex>" digest. Anything else is rejected, which
/// also keeps a digest from naming a path outside `blobs/sha256/`.
pub(super) fn sha256_hex(digest: &str) -> Result<&str, OciError> {
    match digest.strip_prefix("sha256:") {
        Some(hex) if is_hex64(hex) => Ok(hex),
        _ => Err(OciError::InvalidDigest(digest.to_string())),
    }
}

pub(super) fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Checks `data` against an expected size and digest. `blob` names it in errors.
pub(super) fn verify(
    what: &'static str,
    blob: &str,
    data: &[u8],
    digest: &str,
    size: Option<u64>,
) -> Result<(), OciError> {
    if let Some(expected) = size
        && expected != data.len() as u64
    {
        return Err(OciError::SizeMismatch { what, blob: blob.to_string(), expected, actual: data.len() as u64 });
    }
    let actual = sha256(data);
    if actual != digest {
        return Err(OciError::DigestMismatch { what, blob: blob.to_string(), expected: digest.to_string(), actual });
    }
    Ok(())
}

/// Hashes and counts everything read through it.
pub(super) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    len: u64,
}

impl<R: Read> HashingReader<R> {
    pub(super) fn new(inner: R) -> Self {
        HashingReader { inner, hasher: Sha256::new(), len: 0 }
    }

    /// Reads the rest of the stream and returns "sha256:<hex>" of all of it.
    pub(super) fn finish(self) -> io::Result<String> {
        self.finish_counted().map(|(digest, _)| digest)
    }

    /// Reads the rest of the stream; returns "sha256:<hex>" of all of it and its length.
    pub(super) fn finish_counted(mut self) -> io::Result<(String, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((format!("sha256:{:x}", self.hasher.finalize()), self.len))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

/// A content address for a tree: sha256 over every entry in order, each field
/// length-prefixed so that no two different trees hash the same byte stream.
pub(super) fn tree_digest(tree: &Tree) -> String {
    let mut h = Sha256::new();
    let mut bytes = |b: &[u8]| {
        h.update((b.len() as u64).to_le_bytes());
        h.update(b);
    };
    for (path, entry) in tree.iter() {
        bytes(path);
        let (kind, mode): (&[u8], u32) = match &entry.node {
            Node::Dir { mode } => (b"dir", *mode),
            Node::File { mode, .. } => (b"file", *mode),
            Node::Symlink { .. } => (b"symlink", 0),
            Node::CharDev { mode, .. } => (b"chardev", *mode),
        };
        bytes(kind);
        bytes(&mode.to_le_bytes());
        bytes(&entry.uid.to_le_bytes());
        bytes(&entry.gid.to_le_bytes());
        match &entry.node {
            Node::Dir { .. } => bytes(&[]),
            Node::File { data, .. } => bytes(data),
            Node::Symlink { target } => bytes(target.as_bytes()),
            Node::CharDev { major, minor, .. } => {
                bytes(&major.to_le_bytes());
                bytes(&minor.to_le_bytes());
            }
        }
    }
    format!("sha256:{:x}", h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_validated() {
        let good = sha256(b"");
        assert_eq!(good, "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert!(sha256_hex(&good).is_ok());
        assert!(sha256_hex(&good.to_uppercase()).is_err());
        assert!(sha256_hex("sha256:../../etc/passwd").is_err());
        assert!(sha256_hex("sha512:00").is_err());
    }

    #[test]
    fn tree_digest_sees_modes_and_contents() {
        let mut a = Tree::new();
        a.insert_file("f", 0o644, b"x".to_vec());
        let mut b = Tree::new();
        b.insert_file("f", 0o755, b"x".to_vec());
        let mut c = Tree::new();
        c.insert_file("f", 0o644, b"y".to_vec());
        assert_ne!(tree_digest(&a), tree_digest(&b));
        assert_ne!(tree_digest(&a), tree_digest(&c));
        assert_eq!(tree_digest(&a), tree_digest(&a.clone()));
    }
}
