//! An in-memory file tree: everything that goes into an initramfs, kept in a sorted map so
//! that writing it out is deterministic (a parent always sorts before its children).
//!
//! There are no inode numbers: files that share their data (one `Arc`) and have the same
//! mode and owner are hard links to one inode, as an image's hard links are imported and
//! as [`crate::cpio`] writes them.

use std::collections::BTreeMap;
use std::sync::Arc;

/// What a path holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir { mode: u32 },
    File { mode: u32, data: Arc<Vec<u8>> },
    Symlink { target: String },
    CharDev { mode: u32, major: u32, minor: u32 },
}

/// A node with its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub node: Node,
    pub uid: u32,
    pub gid: u32,
}

impl Entry {
    pub fn root(node: Node) -> Self {
        Entry { node, uid: 0, gid: 0 }
    }

    /// For a file, what makes it one inode with the other files that have the same key:
    /// the same data (one `Arc`), mode and owner. Files with equal keys are hard links.
    pub fn inode_key(&self) -> Option<InodeKey> {
        match &self.node {
            Node::File { mode, data } => {
                Some(InodeKey { data: Arc::as_ptr(data) as usize, mode: *mode, uid: self.uid, gid: self.gid })
            }
            _ => None,
        }
    }
}

/// See [`Entry::inode_key`]; only meaningful while the tree it came from is alive.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub struct InodeKey {
    data: usize,
    mode: u32,
    uid: u32,
    gid: u32,
}

/// Linux's MAXSYMLINKS.
const MAX_SYMLINKS: usize = 40;

/// Paths are relative, `/`-separated, without a leading or trailing `/` ("usr/bin/x").
/// They are bytes, as Linux file names are: a layer may name files in Latin-1 (umoci and
/// containerd accept that, and cpio carries bytes). Methods take anything that is bytes
/// (`&str`, `String`, `&[u8]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    entries: BTreeMap<Vec<u8>, Entry>,
}

/// Normalises "/a//b/" to "a/b"; returns None for paths that climb out ("..").
pub fn normalize(path: &str) -> Option<String> {
    normalize_bytes(path.as_bytes()).map(|p| String::from_utf8(p).expect("whole parts of a str are a str"))
}

/// [`normalize`] for a path that is bytes.
pub fn normalize_bytes(path: &[u8]) -> Option<Vec<u8>> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in path.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return None,
            p => parts.push(p),
        }
    }
    Some(parts.join(&b'/'))
}

impl Tree {
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts `entry` at `path`, creating missing parent directories (0755, root-owned).
    /// A later insert replaces an earlier one at the same path; replacing a directory with
    /// a non-directory drops everything below it.
    pub fn insert(&mut self, path: impl AsRef<[u8]>, entry: Entry) {
        let Some(path) = normalize_bytes(path.as_ref()) else { return };
        if path.is_empty() {
            return;
        }
        let mut parent = Vec::new();
        let parts: Vec<&[u8]> = path.split(|b| *b == b'/').collect();
        for part in &parts[..parts.len() - 1] {
            if !parent.is_empty() {
                parent.push(b'/');
            }
            parent.extend_from_slice(part);
            match self.entries.get(&parent) {
                Some(Entry { node: Node::Dir { .. }, .. }) => {}
                _ => {
                    self.remove(&parent);
                    self.entries.insert(parent.clone(), Entry::root(Node::Dir { mode: 0o755 }));
                }
            }
        }
        if !matches!(entry.node, Node::Dir { .. }) {
            self.remove(&path);
        }
        self.entries.insert(path, entry);
    }

    pub fn insert_dir(&mut self, path: impl AsRef<[u8]>, mode: u32) {
        self.insert(path, Entry::root(Node::Dir { mode }));
    }

    pub fn insert_file(&mut self, path: impl AsRef<[u8]>, mode: u32, data: impl Into<Arc<Vec<u8>>>) {
        self.insert(path, Entry::root(Node::File { mode, data: data.into() }));
    }

    pub fn insert_symlink(&mut self, path: impl AsRef<[u8]>, target: &str) {
        self.insert(path, Entry::root(Node::Symlink { target: target.to_string() }));
    }

    pub fn get(&self, path: impl AsRef<[u8]>) -> Option<&Entry> {
        self.entries.get(&normalize_bytes(path.as_ref())?)
    }

    /// `path` with every symlink in it followed as if the tree were the root directory:
    /// `..` stops at the root and absolute targets start from it, so the result never
    /// leaves the tree (as containerd's applier and a chroot see it). None past Linux's
    /// limit of 40 links.
    pub fn resolve(&self, path: impl AsRef<[u8]>) -> Option<Vec<u8>> {
        let split = |p: &[u8]| -> Vec<Vec<u8>> { p.split(|b| *b == b'/').rev().map(<[u8]>::to_vec).collect() };
        let mut out: Vec<Vec<u8>> = Vec::new();
        let mut todo = split(path.as_ref());
        let mut hops = 0;
        while let Some(part) = todo.pop() {
            match part.as_slice() {
                b"" | b"." => continue,
                b".." => {
                    out.pop();
                    continue;
                }
                _ => out.push(part),
            }
            if let Some(Entry { node: Node::Symlink { target }, .. }) = self.get(out.join(&b'/')) {
                hops += 1;
                if hops > MAX_SYMLINKS {
                    return None;
                }
                out.pop();
                if target.starts_with('/') {
                    out.clear();
                }
                todo.extend(split(target.as_bytes()));
            }
        }
        Some(out.join(&b'/'))
    }

    /// Removes `path` and everything below it.
    pub fn remove(&mut self, path: impl AsRef<[u8]>) {
        let Some(path) = normalize_bytes(path.as_ref()) else { return };
        self.entries.remove(&path);
        self.remove_below(&path);
    }

    /// Removes everything below `path`, keeping `path` itself. Returns how many entries
    /// it looked at, which is how many it removed: the children of a directory are one
    /// range of the sorted map, so an opaque whiteout costs what it removes, not the size
    /// of the tree (a layer of opaque whiteouts was quadratic).
    pub fn clear_below(&mut self, path: impl AsRef<[u8]>) -> usize {
        let Some(path) = normalize_bytes(path.as_ref()) else { return 0 };
        self.remove_below(&path)
    }

    fn remove_below(&mut self, path: &[u8]) -> usize {
        if path.is_empty() {
            let n = self.entries.len();
            self.entries.clear();
            return n;
        }
        let prefix = [path, b"/"].concat();
        let below: Vec<Vec<u8>> = self
            .entries
            .range(prefix.clone()..)
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with(&prefix))
            .cloned()
            .collect();
        for k in &below {
            self.entries.remove(k);
        }
        below.len()
    }

    /// Copies every entry of `other` under `prefix` ("" for the root).
    pub fn graft(&mut self, prefix: &str, other: &Tree) {
        for (path, entry) in &other.entries {
            let full = if prefix.is_empty() { path.clone() } else { [prefix.as_bytes(), b"/", path].concat() };
            self.insert(&full, entry.clone());
        }
    }

    /// Entries in sorted order, parents before children.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &Entry)> {
        self.entries.iter().map(|(k, v)| (k.as_slice(), v))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Total bytes of file contents.
    pub fn content_bytes(&self) -> u64 {
        self.entries
            .values()
            .map(|e| match &e.node {
                Node::File { data, .. } => data.len() as u64,
                _ => 0,
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_are_created_and_sorted_first() {
        let mut t = Tree::new();
        t.insert_file("/a/b/c", 0o644, vec![1]);
        t.insert_file("a-b", 0o644, vec![2]);
        let paths: Vec<&[u8]> = t.iter().map(|(p, _)| p).collect();
        assert_eq!(paths, [&b"a"[..], b"a-b", b"a/b", b"a/b/c"]);
        assert!(matches!(t.get("a/b").map(|e| &e.node), Some(Node::Dir { mode: 0o755 })));
    }

    #[test]
    fn replacing_a_dir_with_a_file_drops_its_children() {
        let mut t = Tree::new();
        t.insert_file("x/y", 0o644, vec![]);
        t.insert_symlink("x", "z");
        assert_eq!(t.len(), 1);
        assert_eq!(normalize("../etc"), None);
    }

    #[test]
    fn clear_below_looks_only_at_what_it_removes() {
        let mut t = Tree::new();
        for i in 0..1000 {
            t.insert_file(format!("a/{i}"), 0o644, vec![]);
            t.insert_file(format!("z/{i}"), 0o644, vec![]);
        }
        t.insert_file("d/x/y", 0o644, vec![]);
        t.insert_file("d-sibling", 0o644, vec![]);
        t.insert_file("d0", 0o644, vec![]);
        assert_eq!(t.clear_below("d"), 2);
        assert!(
            t.get("d").is_some() && t.get("d/x").is_none() && t.get("d-sibling").is_some() && t.get("d0").is_some()
        );
        assert_eq!(t.clear_below("d"), 0);
        let all = t.len();
        assert_eq!(t.clear_below(""), all);
        assert!(t.is_empty());
    }

    #[test]
    fn remove_takes_the_subtree_only() {
        let mut t = Tree::new();
        t.insert_file("d/f", 0o644, vec![]);
        t.insert_file("d-x", 0o644, vec![]);
        t.remove("d");
        let paths: Vec<&[u8]> = t.iter().map(|(p, _)| p).collect();
        assert_eq!(paths, [b"d-x"]);
    }
}
