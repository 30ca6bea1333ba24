//! What a disk holds, read from its first and last MiB: PID 1's volume setup formats only
//! a disk that is [`Found::Blank`] or that it was itself formatting when the power went
//! ([`Found::Formatting`]), and names anything else it finds in the refusal.
//!
//! Pure: the caller hands over the bytes ([`Window`]), so this is fuzzed and tested on
//! made-up images. The signatures are the well-known ones (the kernel's and blkid's
//! offsets): ext2/3/4, XFS, btrfs, vfat, NTFS, ISO 9660, squashfs, swap, LUKS, LVM, MD
//! RAID, GPT and MBR partition tables. "Blank" is stricter than "no signature": every byte
//! of both windows must be zero, so data hoist cannot name is never taken for free space.

/// How much of each end of the disk is read.
pub const WINDOW: u64 = 1 << 20;
/// The end of the disk hoist keeps for its format marker: the filesystem is made this
/// much smaller than the disk, so mke2fs never writes over the marker.
pub const RESERVED_TAIL: u64 = WINDOW;
/// The marker block's size; it is the disk's last block.
pub const MARKER_LEN: usize = 4096;
/// The marker's first bytes. Written before formatting starts and zeroed once the
/// filesystem is complete: found on a disk, the format was cut short and can start again.
pub const MARKER_MAGIC: &[u8; 16] = b"HOIST-FORMATTING";
/// The smallest disk hoist formats: the reserved tail plus room for ext4 and its journal.
pub const MIN_SIZE: u64 = 16 << 20;

/// The first and last [`WINDOW`] bytes of a disk of `size` bytes (overlapping, or equal,
/// on a disk smaller than two windows).
pub struct Window<'a> {
    pub size: u64,
    pub head: &'a [u8],
    pub tail: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// Zeros in both windows.
    Blank,
    /// hoist's marker: a format that did not finish. The volume's name it was for.
    Formatting { volume: String },
    /// An ext2, ext3 or ext4 filesystem.
    Ext { kind: &'static str, label: String, uuid: String },
    /// Something else, named ("vfat", "a GPT partition table", "unrecognised data").
    Other(&'static str),
}

impl Found {
    pub fn describe(&self) -> String {
        match self {
            Found::Blank => "nothing (blank)".into(),
            Found::Formatting { volume } => format!("an unfinished format for volume {volume}"),
            Found::Ext { kind, label, uuid } => format!("{kind} labelled {label:?} (UUID {uuid})"),
            Found::Other(what) => (*what).into(),
        }
    }
}

/// What the disk holds.
pub fn probe(w: &Window) -> Found {
    if let Some(volume) = marker(w) {
        return Found::Formatting { volume };
    }
    if let Some(ext) = ext(w.head) {
        return ext;
    }
    if let Some(what) = other(w) {
        return Found::Other(what);
    }
    if w.head.iter().chain(w.tail).all(|&b| b == 0) { Found::Blank } else { Found::Other("unrecognised data") }
}

/// Where an ext filesystem keeps backup superblocks (block groups 1, 3, 5, 7, 9, 25, 27
/// with sparse_super; 1, 2 and 4 KiB blocks), as byte offsets inside a disk of `size`
/// bytes. A disk whose first MiB was wiped is still an ext filesystem e2fsck can recover
/// from one of these: before formatting a "blank" disk, the caller looks there too.
pub fn backup_superblocks(size: u64) -> Vec<u64> {
    let mut out = Vec::new();
    for group in [1u64, 3, 5, 7, 9, 25, 27] {
        // (block size, blocks per group, first data block)
        for (block, per_group, first) in [(1024u64, 8192u64, 1u64), (2048, 16384, 0), (4096, 32768, 0)] {
            let at = (first + group * per_group) * block;
            if at + 1024 <= size {
                out.push(at);
            }
        }
    }
    out.sort_unstable();
    out
}

/// Whether `superblock` (at least 1 KiB from a superblock's start) has ext's magic.
pub fn is_ext_superblock(superblock: &[u8]) -> bool {
    le16(superblock, 0x38) == Some(EXT_MAGIC)
}

/// The marker block for `volume` (its name after the magic, NUL-padded).
pub fn marker_block(volume: &str) -> Vec<u8> {
    let mut block = vec![0; MARKER_LEN];
    block[..16].copy_from_slice(MARKER_MAGIC);
    let name = volume.as_bytes();
    let n = name.len().min(MARKER_LEN - 16);
    block[16..16 + n].copy_from_slice(&name[..n]);
    block
}

fn marker(w: &Window) -> Option<String> {
    let start = w.tail.len().checked_sub(MARKER_LEN)?;
    let block = &w.tail[start..];
    let rest = block.strip_prefix(MARKER_MAGIC.as_slice())?;
    let name = &rest[..rest.iter().position(|&b| b == 0).unwrap_or(rest.len())];
    Some(String::from_utf8_lossy(name).into_owned())
}

fn at(buf: &[u8], offset: usize, len: usize) -> Option<&[u8]> {
    buf.get(offset..offset.checked_add(len)?)
}

fn le16(buf: &[u8], offset: usize) -> Option<u16> {
    at(buf, offset, 2).map(|b| u16::from_le_bytes([b[0], b[1]]))
}

fn le32(buf: &[u8], offset: usize) -> Option<u32> {
    at(buf, offset, 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

const EXT_SUPER: usize = 1024;
const EXT_MAGIC: u16 = 0xEF53;
const EXT_COMPAT_JOURNAL: u32 = 0x4;
/// extents, 64bit, flex_bg: features only ext4 has.
const EXT4_INCOMPAT: u32 = 0x40 | 0x80 | 0x200;

fn ext(head: &[u8]) -> Option<Found> {
    if le16(head, EXT_SUPER + 0x38)? != EXT_MAGIC {
        return None;
    }
    let compat = le32(head, EXT_SUPER + 0x5C)?;
    let incompat = le32(head, EXT_SUPER + 0x60)?;
    let kind = if incompat & EXT4_INCOMPAT != 0 {
        "ext4"
    } else if compat & EXT_COMPAT_JOURNAL != 0 {
        "ext3"
    } else {
        "ext2"
    };
    let u = at(head, EXT_SUPER + 0x68, 16)?;
    let hex: String = u.iter().map(|b| format!("{b:02x}")).collect();
    let uuid = format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..]);
    let name = at(head, EXT_SUPER + 0x78, 16)?;
    let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(16)];
    Some(Found::Ext { kind, label: String::from_utf8_lossy(name).into_owned(), uuid })
}

/// Signatures in the head window: (offset, bytes, name). Order matters where one format
/// carries another's bytes: GPT disks have a protective MBR, FAT has the MBR's 55AA.
const HEAD_SIGNATURES: &[(usize, &[u8], &str)] = &[
    (0, b"XFSB", "xfs"),
    (0x10040, b"_BHRfS_M", "btrfs"),
    (0, b"LUKS\xba\xbe", "LUKS"),
    (0, b"hsqs", "squashfs"),
    (0x8001, b"CD001", "iso9660"),
    (4086, b"SWAPSPACE2", "swap"),
    (4086, b"SWAP-SPACE", "swap"),
    (0x200, b"LABELONE", "an LVM physical volume"),
    (0x218, b"LVM2 001", "an LVM physical volume"),
    (0, b"\xfc\x4e\x2b\xa9", "an MD RAID member"),
    (0x1000, b"\xfc\x4e\x2b\xa9", "an MD RAID member"),
    (3, b"NTFS    ", "ntfs"),
    (0x36, b"FAT1", "vfat"),
    (0x52, b"FAT32", "vfat"),
    (0x200, b"EFI PART", "a GPT partition table"),
    (0x1FE, b"\x55\xaa", "an MBR partition table"),
];

fn other(w: &Window) -> Option<&'static str> {
    if let Some((_, _, name)) = HEAD_SIGNATURES.iter().find(|(off, sig, _)| at(w.head, *off, sig.len()) == Some(sig)) {
        return Some(name);
    }
    // The GPT's backup header is the last sector; MD 0.90 and 1.0 keep theirs near the end.
    let tail = w.tail;
    if tail.len() >= 512 && tail[tail.len() - 512..].starts_with(b"EFI PART") {
        return Some("a GPT partition table");
    }
    let md = |from_end: usize| {
        let off = tail.len().checked_sub(from_end)?;
        (at(tail, off & !4095, 4) == Some(b"\xfc\x4e\x2b\xa9")).then_some("an MD RAID member")
    };
    md(8 << 10).or_else(|| md(64 << 10))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(size: usize, edit: impl FnOnce(&mut Vec<u8>)) -> Found {
        let mut d = vec![0u8; size];
        edit(&mut d);
        let w = WINDOW as usize;
        probe(&Window { size: size as u64, head: &d[..w.min(size)], tail: &d[size.saturating_sub(w)..] })
    }

    const MIB: usize = 1 << 20;

    fn ext_super(d: &mut [u8], incompat: u32, compat: u32, label: &[u8]) {
        d[0x438..0x43A].copy_from_slice(&EXT_MAGIC.to_le_bytes());
        d[0x45C..0x460].copy_from_slice(&compat.to_le_bytes());
        d[0x460..0x464].copy_from_slice(&incompat.to_le_bytes());
        for (i, b) in d[0x468..0x478].iter_mut().enumerate() {
            *b = i as u8 * 17;
        }
        d[0x478..0x478 + label.len()].copy_from_slice(label);
    }

    #[test]
    fn zeros_are_blank_and_anything_else_is_not() {
        assert_eq!(disk(4 * MIB, |_| {}), Found::Blank);
        assert_eq!(disk(4 * MIB, |d| d[100] = 1), Found::Other("unrecognised data"));
        let last = 4 * MIB - 1;
        assert_eq!(disk(4 * MIB, |d| d[last] = 1), Found::Other("unrecognised data"));
        // Between the windows is not looked at.
        assert_eq!(disk(4 * MIB, |d| d[2 * MIB] = 1), Found::Blank);
        assert_eq!(disk(4096, |_| {}), Found::Blank);
    }

    #[test]
    fn ext_kinds_labels_and_uuids() {
        let found = disk(4 * MIB, |d| ext_super(d, 0x2C2, 0x3C, b"hoist-data"));
        let uuid = "00112233-4455-6677-8899-aabbccddeeff";
        assert_eq!(found, Found::Ext { kind: "ext4", label: "hoist-data".into(), uuid: uuid.into() });
        assert_eq!(found.describe(), format!("ext4 labelled \"hoist-data\" (UUID {uuid})"));
        let ext2 = disk(4 * MIB, |d| ext_super(d, 0x2, 0, b"sixteen-chars-ok"));
        assert!(matches!(ext2, Found::Ext { kind: "ext2", ref label, .. } if label == "sixteen-chars-ok"));
        assert!(matches!(disk(4 * MIB, |d| ext_super(d, 0x2, 0x4, b"")), Found::Ext { kind: "ext3", .. }));
    }

    #[test]
    fn the_marker_wins_over_what_the_format_left() {
        let found = disk(4 * MIB, |d| {
            ext_super(d, 0x2C2, 0x3C, b"hoist-data");
            let at = d.len() - MARKER_LEN;
            d[at..].copy_from_slice(&marker_block("data"));
        });
        assert_eq!(found, Found::Formatting { volume: "data".into() });
        // A marker not in the very last block is just data.
        let moved = disk(4 * MIB, |d| {
            let at = d.len() - 2 * MARKER_LEN;
            d[at..at + MARKER_LEN].copy_from_slice(&marker_block("data"));
        });
        assert_eq!(moved, Found::Other("unrecognised data"));
    }

    #[test]
    fn foreign_formats_are_named() {
        let fat = |d: &mut Vec<u8>| {
            d[0x52..0x57].copy_from_slice(b"FAT32");
            d[0x1FE..0x200].copy_from_slice(b"\x55\xaa");
        };
        assert_eq!(disk(4 * MIB, fat), Found::Other("vfat"));
        let gpt = |d: &mut Vec<u8>| {
            d[0x1FE..0x200].copy_from_slice(b"\x55\xaa");
            d[0x200..0x208].copy_from_slice(b"EFI PART");
        };
        assert_eq!(disk(4 * MIB, gpt), Found::Other("a GPT partition table"));
        let backup_gpt = |d: &mut Vec<u8>| {
            let at = d.len() - 512;
            d[at..at + 8].copy_from_slice(b"EFI PART");
        };
        assert_eq!(disk(4 * MIB, backup_gpt), Found::Other("a GPT partition table"));
        assert_eq!(
            disk(4 * MIB, |d| d[0x1FE..0x200].copy_from_slice(b"\x55\xaa")),
            Found::Other("an MBR partition table")
        );
        assert_eq!(disk(4 * MIB, |d| d[0x10040..0x10048].copy_from_slice(b"_BHRfS_M")), Found::Other("btrfs"));
        assert_eq!(disk(4 * MIB, |d| d[..4].copy_from_slice(b"XFSB")), Found::Other("xfs"));
        let md_end = |d: &mut Vec<u8>| {
            let at = (d.len() - (8 << 10)) & !4095;
            d[at..at + 4].copy_from_slice(b"\xfc\x4e\x2b\xa9");
        };
        assert_eq!(disk(4 * MIB, md_end), Found::Other("an MD RAID member"));
    }

    #[test]
    fn backup_superblocks_are_where_ext_puts_them() {
        let at = backup_superblocks(1 << 30);
        assert!(at.contains(&(128 << 20)), "4K blocks, group 1");
        assert!(at.contains(&(8193 * 1024)), "1K blocks, group 1");
        assert!(at.contains(&(3 * (32 << 20))), "2K blocks, group 3");
        assert!(at.iter().all(|&a| a + 1024 <= 1 << 30));
        assert!(backup_superblocks(4 << 20).is_empty());
        let mut sb = vec![0u8; 1024];
        assert!(!is_ext_superblock(&sb));
        sb[0x38..0x3A].copy_from_slice(&EXT_MAGIC.to_le_bytes());
        assert!(is_ext_superblock(&sb));
        assert!(!is_ext_superblock(&sb[..0x38]));
    }

    #[test]
    fn short_windows_do_not_panic() {
        for len in [0, 1, 511, 512, 1100, 4095] {
            let bytes = vec![0xEF; len];
            let _ = probe(&Window { size: len as u64, head: &bytes, tail: &bytes });
        }
    }
}
