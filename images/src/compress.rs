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
/// lz4 HC level (`lz4 -9`): on a hoist image 34 MB instead of the fast mode's 42 MB;
/// levels above 9 save under 0.5% more at several times the build time.
const LZ4_HC_LEVEL: i32 = 9;

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
    let mut enc = Compressor::new(Vec::with_capacity(data.len() / 2 + 16), c, data.len() as u64)?;
    enc.write_all(data)?;
    enc.finish()
}

/// A streaming compressor: what is written to it goes out compressed to `W`, so an
/// archive never has to be held whole (a 1 GB image made `hoist build` hold the cpio and
/// its compressed copy in memory at once). The same writes always give the same bytes.
pub struct Compressor<W: Write> {
    inner: Inner<W>,
}

enum Inner<W: Write> {
    None(W),
    Gzip(flate2::write::GzEncoder<W>),
    Zstd(zstd::stream::Encoder<'static, W>),
    /// Legacy lz4 cuts its input into independent 8 MiB chunks: one is buffered here.
    Lz4 {
        out: W,
        chunk: Vec<u8>,
    },
}

impl<W: Write> Compressor<W> {
    /// `size` is the number of bytes that will be written (zstd records it in its header).
    pub fn new(mut out: W, c: Compression, size: u64) -> io::Result<Self> {
        let inner = match c {
            Compression::None => Inner::None(out),
            // GzBuilder writes mtime 0, no file name and a fixed OS byte unless told otherwise.
            Compression::Gzip => {
                Inner::Gzip(flate2::GzBuilder::new().mtime(0).write(out, flate2::Compression::new(GZIP_LEVEL)))
            }
            Compression::Zstd => {
                use zstd::zstd_safe::CParameter;
                let mut enc = zstd::stream::Encoder::new(out, ZSTD_LEVEL)?;
                enc.set_parameter(CParameter::WindowLog(ZSTD_WINDOW_LOG))?;
                enc.set_parameter(CParameter::EnableLongDistanceMatching(false))?;
                enc.set_pledged_src_size(Some(size))?;
                enc.include_contentsize(true)?;
                enc.include_checksum(true)?;
                Inner::Zstd(enc)
            }
            Compression::Lz4 => {
                out.write_all(&LZ4_LEGACY_MAGIC.to_le_bytes())?;
                Inner::Lz4 { out, chunk: Vec::with_capacity(LZ4_LEGACY_CHUNK) }
            }
        };
        Ok(Compressor { inner })
    }

    /// Writes what is buffered and the format's end; returns the output.
    pub fn finish(self) -> io::Result<W> {
        match self.inner {
            Inner::None(out) => Ok(out),
            Inner::Gzip(enc) => enc.finish(),
            Inner::Zstd(enc) => enc.finish(),
            Inner::Lz4 { mut out, chunk } => {
                if !chunk.is_empty() {
                    lz4_block(&mut out, &chunk)?;
                }
                Ok(out)
            }
        }
    }
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::None(out) => out.write(buf),
            Inner::Gzip(enc) => enc.write(buf),
            Inner::Zstd(enc) => enc.write(buf),
            Inner::Lz4 { out, chunk } => {
                let n = buf.len().min(LZ4_LEGACY_CHUNK - chunk.len());
                chunk.extend_from_slice(&buf[..n]);
                if chunk.len() == LZ4_LEGACY_CHUNK {
                    lz4_block(out, chunk)?;
                    chunk.clear();
                }
                Ok(n)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Inner::None(out) => out.flush(),
            Inner::Gzip(enc) => enc.flush(),
            Inner::Zstd(enc) => enc.flush(),
            // A chunk is only written whole: flushing one early would change the output.
            Inner::Lz4 { out, .. } => out.flush(),
        }
    }
}

/// Legacy lz4: after the magic, per 8 MiB of input a little-endian u32 block size and one
/// raw lz4 block. Independent blocks, so the kernel never needs more than one chunk. The
/// blocks are lz4's high-compression encoding ([`LZ4_HC_LEVEL`]): the same format and
/// decoder speed as the fast one, about 20% fewer bytes to load and decompress.
fn lz4_block<W: Write>(out: &mut W, chunk: &[u8]) -> io::Result<()> {
    let mode = lz4::block::CompressionMode::HIGHCOMPRESSION(LZ4_HC_LEVEL);
    let block = lz4::block::compress(chunk, Some(mode), false)?;
    let len = u32::try_from(block.len()).expect("an 8 MiB chunk compresses to far less than 4 GiB");
    out.write_all(&len.to_le_bytes())?;
    out.write_all(&block)
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
            let raw = lz4::block::decompress(block, Some(LZ4_LEGACY_CHUNK as i32)).expect("valid block");
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
    fn streaming_in_pieces_gives_the_same_bytes() {
        let data = sample((8 << 20) + 4321);
        for c in [Compression::None, Compression::Gzip, Compression::Zstd, Compression::Lz4] {
            let mut enc = Compressor::new(Vec::new(), c, data.len() as u64).expect("compressor");
            for piece in data.chunks(100_003) {
                enc.write_all(piece).expect("write");
            }
            assert_eq!(enc.finish().expect("finish"), compress(&data, c).expect("whole"), "{c}");
        }
    }

    #[test]
    fn empty_and_none() {
        assert_eq!(compress(b"abc", Compression::None).expect("none"), b"abc");
        assert!(filter("lz4", &["-d", "-c"], &compress(&[], Compression::Lz4).expect("lz4")).is_empty());
    }
}
