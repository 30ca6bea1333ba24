//! The cpio writer, round-tripped: the input describes a tree (records of kind, mode,
//! name and data), the writer archives it, and an independent newc reader
//! (tests/src/newc.rs) must read back exactly the tree's entries, in order, with their
//! types, modes, owners, device numbers and contents, and distinct inode numbers (no file
//! here shares its data, so none is a hard link). Names are bytes, UTF-8 or not. The
//! writer may refuse a tree (a name too long for the kernel), never panic.
#![no_main]

use std::collections::HashSet;

use hoist_fuzz::newc;
use hoist_images::tree::{Entry, Node, Tree};
use libfuzzer_sys::fuzz_target;

/// Takes `n` bytes off the front of `data`, or what is left.
fn take<'a>(data: &mut &'a [u8], n: usize) -> &'a [u8] {
    let (head, rest) = data.split_at(n.min(data.len()));
    *data = rest;
    head
}

fn tree(mut data: &[u8]) -> Tree {
    let mut tree = Tree::new();
    while data.len() >= 4 {
        let head = take(&mut data, 4);
        let (kind, mode, name_len, data_len) = (head[0], u32::from(head[1]) << 4 | 0o7, head[2], head[3]);
        let name = take(&mut data, name_len as usize).to_vec();
        let body = take(&mut data, data_len as usize).to_vec();
        let node = match kind % 4 {
            0 => Node::Dir { mode: mode & 0o7777 },
            1 => Node::File { mode: mode & 0o7777, data: body.into() },
            2 => Node::Symlink { target: String::from_utf8_lossy(&body).into_owned() },
            _ => Node::CharDev { mode: mode & 0o7777, major: u32::from(head[1]), minor: data_len.into() },
        };
        let owner = u32::from(kind >> 2);
        tree.insert(&name, Entry { node, uid: owner, gid: owner * 3 });
    }
    tree
}

fuzz_target!(|data: &[u8]| {
    let tree = tree(data);
    let mut archive = Vec::new();
    let Ok(written) = hoist_images::cpio::write_tree(&tree, &mut archive) else { return };
    assert_eq!(written, archive.len() as u64, "bytes written");
    let records = newc::read(&archive).expect("the writer's archive reads back");
    let entries: Vec<(&[u8], &Entry)> = tree.iter().collect();
    assert_eq!(records.len(), entries.len(), "entry count");
    let mut inodes = HashSet::new();
    for (record, (name, entry)) in records.iter().zip(&entries) {
        let path = String::from_utf8_lossy(name);
        assert_eq!(record.name, *name, "name");
        assert_eq!((record.uid, record.gid), (entry.uid, entry.gid), "{path}: owner");
        assert!(inodes.insert(record.ino), "{path}: inode {} reused", record.ino);
        let (kind, perms, body, rdev): (u32, u32, &[u8], (u32, u32)) = match &entry.node {
            Node::Dir { mode } => (0o040000, *mode, &[], (0, 0)),
            Node::File { mode, data } => (0o100000, *mode, data.as_slice(), (0, 0)),
            Node::Symlink { target } => (0o120000, 0o777, target.as_bytes(), (0, 0)),
            Node::CharDev { mode, major, minor } => (0o020000, *mode, &[], (*major, *minor)),
        };
        assert_eq!(record.mode, kind | (perms & 0o7777), "{path}: mode");
        assert_eq!(record.data, body, "{path}: content");
        assert_eq!(record.rdev, rdev, "{path}: device");
    }
});
