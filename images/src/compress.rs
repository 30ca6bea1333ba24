//! Initramfs compression in the formats the kernel unpacks, with deterministic output.
//!
//! Gzip has no mtime or name in its header; zstd is single-threaded with a bounded window
//! (the kernel's streaming decoder allocates the whole window) and no long-distance
//! matching; lz4 is the *legacy* frame format, the one `lib/decompress_unlz4.c` reads
//! (the modern lz4 frame format is not accepted for an initramfs).

use std::fmt;
use std::io::{self, Write};
use std::str::FromStr;

/// Gzip level: the zlib default, close to level 9 in size at a fraction of the time.
const GZIP_LEVEL: u32 = 6;
/// Zstd level and window: 2^23 = 8 MiB of window is what the kernel decoder must allocate.
const ZSTD_LEVEL: i32 = 6;
const ZSTD_WINDOW_LOG: u32 = 23;
/// Legacy lz4 frame magic, little-endian on disk.
const LZ4_LEGACY_MAGIC: u32 = 0x184C_2102;
/// The kernel decompresses each legacy chunk into a buffer of this size.
const LZ4_LEGACY_CHUNK: usize = 8 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
    Lz4,
}

#[derive(Debug, thiserror::Error)]
pub enum CompressError {
    #[error("unknown compression {0:?} (expected none, gzip, zstd or lz4)")]
    Unknown(String),
}

impl FromStr for Compression {
    type Err = CompressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(Compression::None),
            "gzip" => Ok(Compression::Gzip),
            "zstd" => Ok(Compression::Zstd),
            "lz4" => Ok(Compression::Lz4),
            other => Err(CompressError::Unknown(other.to_string())),
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Lz4 => "lz4",
        })
    }
}

/// Compresses a whole archive; the same input always gives the same bytes.
pub fn compress(data: &[u8], c: Compression) -> io::Result<Vec<u8>> {
    match c {
        Compression::None => Ok(data.to_vec()),
        Compression::Gzip => gzip(data),
        Compression::Zstd => zstd(data),
        Compression::Lz4 => Ok(lz4_legacy(data)),
    }
}

fn gzip(data: &[u8]) -> io::Result<Vec<u8>> {
    // GzBuilder writes mtime 0, no file name and a fixed OS byte unless told otherwise.
    let mut enc = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::with_capacity(data.len() / 3), flate2::Compression::new(GZIP_LEVEL));
    enc.write_all(data)?;
    enc.finish()
}

fn zstd(data: &[u8]) -> io::Result<Vec<u8>> {
    use zstd::zstd_safe::CParameter;
    let mut enc = zstd::stream::Encoder::new(Vec::with_capacity(data.len() / 3), ZSTD_LEVEL)?;
    enc.set_parameter(CParameter::WindowLog(ZSTD_WINDOW_LOG))?;
    enc.set_parameter(CParameter::EnableLongDistanceMatching(false))?;
    enc.set_pledged_src_size(Some(data.len() as u64))?;
    enc.include_contentsize(true)?;
    enc.include_checksum(true)?;
    enc.write_all(data)?;
    enc.finish()
}

/// Legacy lz4: the magic, then per 8 MiB of input a little-endian u32 block size and one
/// raw lz4 block. Independent blocks, so the kernel never needs more than one chunk.
fn lz4_legacy(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 2 + 16);
    out.extend_from_slice(&LZ4_LEGACY_MAGIC.to_le_bytes());
    for chunk in data.chunks(LZ4_LEGACY_CHUNK) {
        let block = lz4_flex::block::compress(chunk);
        let len = u32::try_from(block.len()).expect("an 8 MiB chunk compresses to far less than 4 GiB");
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&block);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::process::{Command, Stdio};

    use super::*;

    /// Compressible but not trivial: words from a small vocabulary picked by an LCG.
    fn sample(len: usize) -> Vec<u8> {
        const WORDS: [&[u8]; 8] =
            [b"init ", b"hoist ", b"containerd ", b"\x00\x00\x00\x00", b"runc ", b"ELF", b"\n", b"0123"];
        let mut state: u64 = 0x2545_F491_4F6C_DD1D;
        let mut out = Vec::with_capacity(len + 16);
        while out.len() < len {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let word = WORDS[(state >> 61) as usize];
            out.extend_from_slice(word);
        }
        out.truncate(len);
        out
    }

    /// Pipes `input` through a host tool and returns its output.
    fn filter(tool: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
        let mut child = Command::new(tool)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{tool}: {e} (apt-get install {tool})"));
        let mut stdin = child.stdin.take().expect("piped stdin");
        let input = input.to_vec();
        let feeder = std::thread::spawn(move || stdin.write_all(&input));
        let out = child.wait_with_output().expect("wait");
        feeder.join().expect("feeder thread").expect("feed");
        assert!(out.status.success(), "{tool} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    }

    #[test]
    fn names_round_trip() {
        for c in [Compression::None, Compression::Gzip, Compression::Zstd, Compression::Lz4] {
            assert_eq!(c.to_string().parse::<Compression>().expect("parse"), c);
        }
        let err = "xz".parse::<Compression>().expect_err("unknown");
        assert!(err.to_string().contains("\"xz\""), "{err}");
    }

    #[test]
    fn lz4_legacy_has_chunks_and_host_lz4_reads_it() {
        let data = sample((8 << 20) * 2 + 12345);
        let packed = compress(&data, Compression::Lz4).expect("lz4");
        assert_eq!(packed[..4], [0x02, 0x21, 0x4C, 0x18]);
        // Walk the chunks: three of them (8 MiB, 8 MiB, the rest), then the end.
        let mut at = 4;
        let mut chunks = 0;
        while at < packed.len() {
            let len = u32::from_le_bytes(packed[at..at + 4].try_into().expect("4 bytes")) as usize;
            let block = &packed[at + 4..at + 4 + len];
            let raw = lz4_flex::block::decompress(block, LZ4_LEGACY_CHUNK).expect("valid block");
            assert_eq!(raw, data[chunks * LZ4_LEGACY_CHUNK..][..raw.len()]);
            at += 4 + len;
            chunks += 1;
        }
        assert_eq!(chunks, 3);
        assert!(packed.len() < data.len() / 2, "compressible input compresses");
        assert_eq!(filter("lz4", &["-d", "-c"], &packed), data);
        assert_eq!(packed, compress(&data, Compression::Lz4).expect("lz4"), "deterministic");
    }

    #[test]
    fn gzip_round_trips_without_timestamp() {
        let data = sample(3 << 20);
        let packed = compress(&data, Compression::Gzip).expect("gzip");
        assert_eq!(packed[..2], [0x1f, 0x8b]);
        assert_eq!(packed[4..8], [0, 0, 0, 0], "mtime 0");
        assert_eq!(packed[3] & 0x08, 0, "no file name");
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&packed[..]).read_to_end(&mut back).expect("gunzip");
        assert_eq!(back, data);
        assert_eq!(packed, compress(&data, Compression::Gzip).expect("gzip"), "deterministic");
    }

    #[test]
    fn zstd_round_trips_with_a_bounded_window() {
        let data = sample(20 << 20);
        let packed = compress(&data, Compression::Zstd).expect("zstd");
        let header = zstd::zstd_safe::get_frame_content_size(&packed).expect("frame header");
        assert_eq!(header, Some(data.len() as u64));
        assert_eq!(zstd::stream::decode_all(&packed[..]).expect("unzstd"), data);
        // A decoder limited to an 8 MiB window must accept it.
        let mut dec = zstd::stream::read::Decoder::new(&packed[..]).expect("decoder");
        dec.window_log_max(ZSTD_WINDOW_LOG).expect("window limit");
        let mut back = Vec::new();
        dec.read_to_end(&mut back).expect("decodes within the window limit");
        assert_eq!(back, data);
        assert_eq!(packed, compress(&data, Compression::Zstd).expect("zstd"), "deterministic");
    }

    #[test]
    fn empty_and_none() {
        assert_eq!(compress(b"abc", Compression::None).expect("none"), b"abc");
        assert!(filter("lz4", &["-d", "-c"], &compress(&[], Compression::Lz4).expect("lz4")).is_empty());
    }
}
