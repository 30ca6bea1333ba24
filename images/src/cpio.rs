//! A writer for "newc" (`070701`) cpio archives, the format the kernel unpacks into the
//! initramfs rootfs (`init/initramfs.c`).
//!
//! Output depends only on the tree: entries in tree order, inode numbers counted from 1,
//! mtime 0, owners from the entries. No checksums (`070702` is not needed), no compression
//! (see [`crate::compress`]).
//!
//! **Hard links.** Files of the tree that share their data (the same `Arc`, with the same
//! mode and owner: what a layer's hard link or a directory's linked files become) are
//! one inode: every entry of the group carries the same inode number and the group's
//! size as `nlink`, and only the last one in the archive carries the data, the others a
//! size of 0. That is how the kernel's own `usr/gen_init_cpio` writes them and what GNU
//! cpio expects; the kernel's unpacker (`init/initramfs.c`, `maybe_link`) links each later
//! entry to the first by (dev, ino, type) and writes a body wherever one comes, without
//! truncating a linked file.

use std::collections::HashMap;
use std::io::{self, Write};

use crate::tree::{Entry, InodeKey, Node, Tree};

const MAGIC: &[u8; 6] = b"070701";
const HEADER_LEN: usize = 110;
const TRAILER: &str = "TRAILER!!!";
/// The kernel rejects longer names (PATH_MAX, including the NUL).
const MAX_NAME: usize = 4096;

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

/// Why an entry cannot be written; returned inside an [`io::Error`] of kind `InvalidInput`.
#[derive(Debug, thiserror::Error)]
pub enum CpioError {
    #[error("{0}: name too long for cpio")]
    NameTooLong(String),
    #[error("{0}: name contains a NUL byte")]
    NulInName(String),
    #[error("{path}: {size} bytes is too large for newc (4 GiB limit)")]
    TooLarge { path: String, size: usize },
    #[error("too many entries for 32-bit inode numbers")]
    TooManyEntries,
}

impl From<CpioError> for io::Error {
    fn from(e: CpioError) -> Self {
        io::Error::new(io::ErrorKind::InvalidInput, e)
    }
}

/// Writes every entry of `tree` in order, then the trailer, hard-linked files as links.
/// Returns the bytes written.
pub fn write_tree<W: Write>(tree: &Tree, out: W) -> io::Result<u64> {
    // Pass 1: the link groups, with their size and last member (the one with the data).
    let mut groups: HashMap<InodeKey, Group<'_>> = HashMap::new();
    for (path, entry) in tree.iter() {
        if let Some(key) = entry.inode_key() {
            let group = groups.entry(key).or_insert(Group { nlink: 0, last: path, ino: None });
            group.nlink += 1;
            group.last = path;
        }
    }
    let mut w = CpioWriter::new(out);
    for (path, entry) in tree.iter() {
        match entry.inode_key().and_then(|key| groups.get_mut(&key)).filter(|g| g.nlink > 1) {
            Some(group) => {
                let ino = match group.ino {
                    Some(ino) => ino,
                    None => *group.ino.insert(w.take_ino()?),
                };
                let nlink = u32::try_from(group.nlink).map_err(|_| CpioError::TooManyEntries)?;
                w.append_inode(path, entry, ino, nlink, path == group.last)?;
            }
            None => w.append(path, entry)?,
        }
    }
    let (_, written) = w.finish()?;
    Ok(written)
}

struct Group<'a> {
    nlink: usize,
    last: &'a [u8],
    ino: Option<u32>,
}

/// Streams entries into a newc archive; [`CpioWriter::finish`] writes the trailer.
pub struct CpioWriter<W: Write> {
    out: W,
    next_ino: u32,
    written: u64,
}

/// The numeric fields of one header, in the order newc stores them (minus magic and name).
#[derive(Default)]
struct Header {
    ino: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u32,
    filesize: u32,
    rdev_major: u32,
    rdev_minor: u32,
}

impl<W: Write> CpioWriter<W> {
    pub fn new(out: W) -> Self {
        CpioWriter { out, next_ino: 1, written: 0 }
    }

    /// Appends `entry` under `path` (relative, as in [`Tree`]); its parents must come first.
    pub fn append(&mut self, path: &[u8], entry: &Entry) -> io::Result<()> {
        let ino = self.take_ino()?;
        self.append_inode(path, entry, ino, 0, true)
    }

    /// A fresh inode number.
    fn take_ino(&mut self) -> io::Result<u32> {
        let ino = self.next_ino;
        self.next_ino = ino.checked_add(1).ok_or(CpioError::TooManyEntries)?;
        Ok(ino)
    }

    /// Appends `entry` as inode `ino`; `links` > 0 is the link count of a hard-linked
    /// file, whose data only goes with its last entry (`with_data`).
    fn append_inode(&mut self, path: &[u8], entry: &Entry, ino: u32, links: u32, with_data: bool) -> io::Result<()> {
        let (mode, nlink, data, rdev): (u32, u32, &[u8], (u32, u32)) = match &entry.node {
            Node::Dir { mode } => (S_IFDIR | (mode & 0o7777), 2, &[], (0, 0)),
            Node::File { mode, data } => (S_IFREG | (mode & 0o7777), 1, data.as_slice(), (0, 0)),
            Node::Symlink { target } => (S_IFLNK | 0o777, 1, target.as_bytes(), (0, 0)),
            Node::CharDev { mode, major, minor } => (S_IFCHR | (mode & 0o7777), 1, &[], (*major, *minor)),
        };
        let (nlink, data) = match (links, with_data) {
            (0, _) => (nlink, data),
            (n, true) => (n, data),
            (n, false) => (n, &[][..]),
        };
        let filesize = u32::try_from(data.len())
            .map_err(|_| CpioError::TooLarge { path: String::from_utf8_lossy(path).into_owned(), size: data.len() })?;
        let header = Header {
            ino,
            mode,
            uid: entry.uid,
            gid: entry.gid,
            nlink,
            filesize,
            rdev_major: rdev.0,
            rdev_minor: rdev.1,
        };
        self.write_record(&header, path, data)
    }

    /// Writes the trailer and returns the writer and the total bytes written.
    pub fn finish(mut self) -> io::Result<(W, u64)> {
        self.write_record(&Header { nlink: 1, ..Header::default() }, TRAILER.as_bytes(), &[])?;
        self.out.flush()?;
        Ok((self.out, self.written))
    }

    fn write_record(&mut self, h: &Header, name: &[u8], data: &[u8]) -> io::Result<()> {
        if name.contains(&0) {
            return Err(CpioError::NulInName(String::from_utf8_lossy(name).into_owned()).into());
        }
        let namesize = name.len() + 1;
        if namesize > MAX_NAME {
            return Err(CpioError::NameTooLong(String::from_utf8_lossy(name).into_owned()).into());
        }
        let mut head = Vec::with_capacity(HEADER_LEN + namesize + 3);
        head.extend_from_slice(MAGIC);
        // ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
        let fields =
            [h.ino, h.mode, h.uid, h.gid, h.nlink, 0, h.filesize, 0, 0, h.rdev_major, h.rdev_minor, namesize as u32, 0];
        for field in fields {
            head.extend_from_slice(format!("{field:08X}").as_bytes());
        }
        head.extend_from_slice(name);
        head.push(0);
        head.resize(head.len() + pad4(head.len()), 0);
        self.emit(&head)?;
        self.emit(data)?;
        self.emit(&[0; 3][..pad4(data.len())])
    }

    fn emit(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }
}

/// Zero bytes needed after `len` bytes to reach a multiple of 4.
fn pad4(len: usize) -> usize {
    (4 - len % 4) % 4
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;
    use std::process::{Command, Stdio};
    use std::sync::Arc;

    use super::*;

    fn sample() -> Tree {
        let mut t = Tree::new();
        t.insert_dir("etc", 0o755);
        t.insert_dir("tmp", 0o1777);
        t.insert_file("etc/hostname", 0o644, b"hoist\n".to_vec());
        t.insert_file("etc/empty", 0o600, Vec::new());
        t.insert_file("usr/bin/tool", 0o755, (0..1001u32).map(|i| (i * 7) as u8).collect::<Vec<u8>>());
        t.insert_symlink("bin", "usr/bin");
        t.insert("dev/console", Entry::root(Node::CharDev { mode: 0o600, major: 5, minor: 1 }));
        t.insert(
            "home/user/notes",
            Entry { node: Node::File { mode: 0o640, data: b"x".to_vec().into() }, uid: 1000, gid: 100 },
        );
        t
    }

    fn archive(tree: &Tree) -> Vec<u8> {
        let mut out = Vec::new();
        let n = write_tree(tree, &mut out).expect("write to a Vec");
        assert_eq!(n, out.len() as u64);
        out
    }

    /// Runs the host's GNU cpio with `args` in `dir`, feeding it `input`; returns stdout.
    fn cpio(args: &[&str], dir: &Path, input: &[u8]) -> String {
        let mut child = Command::new("cpio")
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run cpio (apt-get install cpio)");
        child.stdin.take().expect("piped stdin").write_all(input).expect("feed cpio");
        let out = child.wait_with_output().expect("wait for cpio");
        assert!(out.status.success(), "cpio {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("cpio prints UTF-8")
    }

    #[test]
    fn listing_shows_types_modes_owners_and_devices() {
        let dir = tempfile::tempdir().expect("tempdir");
        let listing = cpio(&["-t", "-v", "--numeric-uid-gid"], dir.path(), &archive(&sample()));
        // ls -l style: mode links uid gid size-or-dev date name.
        let rows: Vec<(String, String, String, String)> = listing
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let name = f.last().expect("name").to_string();
                let name = if f.len() >= 2 && f[f.len() - 2] == "->" { f[f.len() - 3].to_string() } else { name };
                (f[0].to_string(), f[2].to_string(), f[3].to_string(), name)
            })
            .collect();
        let find = |name: &str| rows.iter().find(|r| r.3 == name).unwrap_or_else(|| panic!("{name} in {listing}"));
        assert_eq!(rows.len(), sample().len(), "{listing}");
        assert_eq!(find("tmp").0, "drwxrwxrwt");
        assert_eq!(find("etc/hostname").0, "-rw-r--r--");
        assert_eq!(find("bin").0, "lrwxrwxrwx");
        assert!(listing.contains("bin -> usr/bin"), "{listing}");
        assert_eq!(find("dev/console").0, "crw-------");
        let console = listing.lines().find(|l| l.ends_with("dev/console")).expect("console row");
        assert!(console.contains("5,") && console.split_whitespace().any(|w| w == "1"), "{console}");
        let notes = find("home/user/notes");
        assert_eq!((notes.0.as_str(), notes.1.as_str(), notes.2.as_str()), ("-rw-r-----", "1000", "100"));
    }

    #[test]
    fn extraction_gives_back_contents_modes_and_links() {
        let tree = sample();
        let dir = tempfile::tempdir().expect("tempdir");
        // Device nodes need CAP_MKNOD, which a container may lack: the listing test covers them.
        cpio(
            &["-i", "-d", "--no-absolute-filenames", "--no-preserve-owner", "-f", "dev/*"],
            dir.path(),
            &archive(&tree),
        );
        for (path, entry) in tree.iter() {
            let path = std::str::from_utf8(path).expect("UTF-8 sample");
            let host = dir.path().join(path);
            if path.starts_with("dev/") {
                assert!(!host.exists());
                continue;
            }
            let meta = std::fs::symlink_metadata(&host).unwrap_or_else(|e| panic!("{path}: {e}"));
            match &entry.node {
                Node::Dir { mode } => {
                    assert!(meta.is_dir(), "{path}");
                    assert_eq!(meta.permissions().mode() & 0o7777, *mode, "{path}");
                }
                Node::File { mode, data } => {
                    assert_eq!(meta.permissions().mode() & 0o7777, *mode, "{path}");
                    assert_eq!(std::fs::read(&host).expect("read"), **data, "{path}");
                }
                Node::Symlink { target } => {
                    assert_eq!(std::fs::read_link(&host).expect("readlink"), Path::new(target));
                }
                Node::CharDev { .. } => unreachable!("only under dev/"),
            }
        }
    }

    #[test]
    fn hard_links_are_one_inode_with_the_data_once() {
        let data: Arc<Vec<u8>> = Arc::new(b"linked-data-".repeat(100));
        let mut t = Tree::new();
        for path in ["usr/bin/a", "usr/bin/b", "z/c"] {
            t.insert(path, Entry::root(Node::File { mode: 0o755, data: data.clone() }));
        }
        // Same bytes, another mode: another inode, data of its own.
        t.insert("other", Entry::root(Node::File { mode: 0o644, data: data.clone() }));
        let a = archive(&t);
        let copies = a.windows(data.len()).filter(|w| *w == data.as_slice()).count();
        assert_eq!(copies, 2, "the linked group's data once, the other file's once");

        let dir = tempfile::tempdir().expect("tempdir");
        cpio(&["-i", "-d", "--no-absolute-filenames", "--no-preserve-owner"], dir.path(), &a);
        use std::os::unix::fs::MetadataExt;
        let meta = |p: &str| std::fs::metadata(dir.path().join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
        for p in ["usr/bin/a", "usr/bin/b", "z/c"] {
            assert_eq!(std::fs::read(dir.path().join(p)).expect("read"), *data, "{p}");
            assert_eq!(meta(p).ino(), meta("usr/bin/a").ino(), "{p} is a link");
            assert_eq!(meta(p).nlink(), 3, "{p}");
        }
        assert_ne!(meta("other").ino(), meta("usr/bin/a").ino());
        assert_eq!(std::fs::read(dir.path().join("other")).expect("read"), *data);
    }

    #[test]
    fn names_are_bytes() {
        let mut t = Tree::new();
        t.insert_file(&b"caf\xe9"[..], 0o644, b"latin-1".to_vec());
        let dir = tempfile::tempdir().expect("tempdir");
        cpio(&["-i", "--no-absolute-filenames", "--no-preserve-owner"], dir.path(), &archive(&t));
        use std::os::unix::ffi::OsStrExt;
        let host = dir.path().join(std::ffi::OsStr::from_bytes(b"caf\xe9"));
        assert_eq!(std::fs::read(host).expect("the file under its byte name"), b"latin-1");
    }

    #[test]
    fn output_is_deterministic_and_aligned() {
        let a = archive(&sample());
        assert_eq!(a, archive(&sample()));
        assert_eq!(a.len() % 4, 0);
        assert!(a.windows(TRAILER.len()).any(|w| w == TRAILER.as_bytes()));
    }

    #[test]
    fn header_fields_are_exact() {
        let mut t = Tree::new();
        t.insert_file("ab", 0o644, b"hello".to_vec());
        let a = archive(&t);
        let header = std::str::from_utf8(&a[..HEADER_LEN]).expect("ascii header");
        let fields: Vec<&str> = (0..13).map(|i| &header[6 + i * 8..14 + i * 8]).collect();
        assert_eq!(&header[..6], "070701");
        // ino 1, regular 0644, root, nlink 1, mtime 0, size 5, namesize 3.
        assert_eq!(fields[..7], ["00000001", "000081A4", "00000000", "00000000", "00000001", "00000000", "00000005"]);
        assert_eq!(fields[11], "00000003");
        // 110 + 3 = 113 -> name padded to 116; data 5 -> padded to 8; the trailer follows.
        assert_eq!(&a[HEADER_LEN..116], b"ab\0\0\0\0");
        assert_eq!(&a[116..124], b"hello\0\0\0");
        assert_eq!(&a[124..130], MAGIC);
    }

    #[test]
    fn bad_names_are_rejected_with_the_name() {
        let mut w = CpioWriter::new(Vec::new());
        let file = Entry::root(Node::File { mode: 0o644, data: Vec::new().into() });
        let long = "a/".repeat(2100);
        let err = w.append(long.as_bytes(), &file).expect_err("too long");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("name too long"), "{err}");
        let err = w.append(b"a\0b", &file).expect_err("NUL");
        assert!(err.to_string().contains("NUL"), "{err}");
    }
}
