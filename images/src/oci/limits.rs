//! Caps on what importing an image may cost, and a budget that counts against them.
//!
//! An image is hostile input: a 2 MB gzip layer can inflate to gigabytes, a 10 KiB tar can
//! hold a sparse file of terabytes, a tar of empty files can name millions of them. Every
//! importer takes its bytes and entries from a [`Budget`] as it reads, so it stops with an
//! error naming the cap before the memory is spent, never after.
//!
//! What counts: every byte of every layer's uncompressed tar stream (headers, data and
//! anything after the end), plus the full logical size of sparse files (their holes are
//! filled in memory); for a directory, every file's bytes. Entries count one each.

use std::cell::Cell;
use std::io::{self, Read};

use super::OciError;

/// The default cap on what one image unpacks to.
pub const IMAGE_BYTES: u64 = 4 << 30;
/// The default cap on the entries (files, directories, links, whiteouts) of one image.
pub const IMAGE_ENTRIES: u64 = 1 << 20;
/// The default cap on what all the images of one build unpack to together.
pub const TOTAL_BYTES: u64 = 8 << 30;

/// How much one import may unpack; `scope` says whose cap it is, for the error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub bytes: u64,
    pub entries: u64,
    /// "per image", "for the whole build", ...
    pub scope: &'static str,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { bytes: IMAGE_BYTES, entries: IMAGE_ENTRIES, scope: "per image" }
    }
}

/// What is used of a [`Limits`] during one import. Shared by reference (the counts are
/// cells), so a reader deep in a decompression chain and the code reading tar entries
/// from it take from the same budget.
#[derive(Debug)]
pub(crate) struct Budget {
    limits: Limits,
    bytes: Cell<u64>,
    entries: Cell<u64>,
    /// Set when a take failed, so an I/O error from a capped reader can be told apart.
    over: Cell<Option<bool>>,
}

impl Budget {
    pub(crate) fn new(limits: &Limits) -> Self {
        Budget { limits: *limits, bytes: Cell::new(0), entries: Cell::new(0), over: Cell::new(None) }
    }

    /// Takes `n` bytes, or fails if that would pass the cap.
    pub(crate) fn bytes(&self, n: u64) -> Result<(), OciError> {
        match self.bytes.get().checked_add(n) {
            Some(total) if total <= self.limits.bytes => {
                self.bytes.set(total);
                Ok(())
            }
            _ => {
                self.over.set(Some(true));
                Err(self.too_big())
            }
        }
    }

    /// Fails if `n` bytes would pass the cap, taking nothing: for a size claimed by a
    /// header, whose bytes are taken as they are read.
    pub(crate) fn check(&self, n: u64) -> Result<(), OciError> {
        match self.bytes.get().checked_add(n) {
            Some(total) if total <= self.limits.bytes => Ok(()),
            _ => {
                self.over.set(Some(true));
                Err(self.too_big())
            }
        }
    }

    /// Takes one entry, or fails if that would pass the cap.
    pub(crate) fn entry(&self) -> Result<(), OciError> {
        if self.entries.get() >= self.limits.entries {
            self.over.set(Some(false));
            return Err(OciError::TooManyEntries { limit: self.limits.entries, scope: self.limits.scope });
        }
        self.entries.set(self.entries.get() + 1);
        Ok(())
    }

    /// The cap error, if a take has failed: what an I/O error from a capped reader means.
    pub(crate) fn exceeded(&self) -> Option<OciError> {
        match self.over.get()? {
            true => Some(self.too_big()),
            false => Some(OciError::TooManyEntries { limit: self.limits.entries, scope: self.limits.scope }),
        }
    }

    fn too_big(&self) -> OciError {
        OciError::TooBig { limit: self.limits.bytes, scope: self.limits.scope }
    }
}

/// Takes every byte read through it from a [`Budget`]; past the cap, reads fail.
pub(crate) struct Capped<'b, R> {
    pub(crate) inner: R,
    pub(crate) budget: &'b Budget,
}

impl<R: Read> Read for Capped<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.budget.bytes(n as u64).map_err(io::Error::other)?;
        Ok(n)
    }
}

/// Human units for the cap in an error ("4 GiB", "1500 bytes").
pub(super) fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b => format!("{b} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_stops_at_the_cap_and_says_which() {
        let b = Budget::new(&Limits { bytes: 10, entries: 1, scope: "per image" });
        b.bytes(10).expect("up to the cap");
        let err = b.bytes(1).expect_err("past the cap");
        assert_eq!(err.to_string(), "unpacks to more than 10 bytes (the cap per image)");
        assert!(b.bytes(u64::MAX).is_err(), "no overflow");
        assert!(matches!(b.exceeded(), Some(OciError::TooBig { limit: 10, .. })));
        b.entry().expect("one entry");
        assert!(b.entry().is_err());
        assert_eq!(size(4 << 30), "4 GiB");
    }
}
