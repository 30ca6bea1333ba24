//! Replacing a small file so that a reader, or the next boot after a power cut, finds the
//! old content or the new, never a torn mix (DESIGN.md decision 10): write a temporary
//! file beside it, fsync it, rename it over the old one, fsync the directory.

use std::io::Write;
use std::path::Path;

/// Replaces `path` with `data` atomically; creates the parent directory if needed.
pub fn write(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp = dir.join(name);
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(data)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_replaced_whole_and_no_temporary_is_left() {
        let dir = std::env::temp_dir().join(format!("hoist-atomic-{}", std::process::id()));
        let path = dir.join("sub/state.toml");
        write(&path, b"old").expect("first write");
        write(&path, b"new content").expect("second write");
        assert_eq!(std::fs::read(&path).expect("read"), b"new content");
        let names: Vec<_> =
            std::fs::read_dir(dir.join("sub")).expect("list").flatten().map(|e| e.file_name()).collect();
        assert_eq!(names, ["state.toml"]);
        let _ = std::fs::remove_dir_all(dir);
    }
}
