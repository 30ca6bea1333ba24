//! Finding the kernel: the configured path or the newest installed `/boot/vmlinuz-*`, and
//! its release string (which names its modules directory), read from the bzImage header
//! rather than guessed from the file name.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("no kernel found in {0} (install linux-image-cloud-amd64 or set [kernel] path)")]
    NotFound(PathBuf),
    #[error("{path}: {cause}")]
    Io { path: PathBuf, cause: std::io::Error },
    #[error("{0}: not a bzImage with a version string")]
    NoVersion(PathBuf),
}

/// Orders release strings like `sort -V` does for the common "6.1.0-56-cloud-amd64" form.
fn version_key(name: &str) -> Vec<u64> {
    name.split(|c: char| !c.is_ascii_digit()).filter_map(|p| p.parse().ok()).collect()
}

/// The newest `vmlinuz-*` in `boot`.
pub fn newest_kernel(boot: &Path) -> Result<PathBuf, KernelError> {
    let entries = std::fs::read_dir(boot).map_err(|cause| KernelError::Io { path: boot.to_path_buf(), cause })?;
    entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("vmlinuz-"))
        .max_by_key(|n| version_key(n))
        .map(|n| boot.join(n))
        .ok_or_else(|| KernelError::NotFound(boot.to_path_buf()))
}

/// The release from a bzImage: the real-mode header holds, at 0x20E, a pointer (minus
/// 0x200) to a string like "6.1.0-56-cloud-amd64 (debian-kernel@...) #1 SMP ...".
pub fn release_of(image: &[u8], path: &Path) -> Result<String, KernelError> {
    let bad = || KernelError::NoVersion(path.to_path_buf());
    if image.len() < 0x210 || &image[0x202..0x206] != b"HdrS" {
        return Err(bad());
    }
    let offset = u16::from_le_bytes([image[0x20E], image[0x20F]]) as usize + 0x200;
    let text = image.get(offset..offset.saturating_add(256).min(image.len())).ok_or_else(bad)?;
    let end = text.iter().position(|b| *b == b' ' || *b == 0).ok_or_else(bad)?;
    let release = std::str::from_utf8(&text[..end]).map_err(|_| bad())?;
    if release.is_empty() {
        return Err(bad());
    }
    Ok(release.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_kernel_sorts_by_numbers() {
        let dir = tempfile::tempdir().expect("tempdir");
        for n in ["vmlinuz-6.1.0-9-amd64", "vmlinuz-6.1.0-56-cloud-amd64", "config-6.1.0-99", "vmlinuz-5.10.0-1"] {
            std::fs::write(dir.path().join(n), b"").expect("write");
        }
        assert_eq!(newest_kernel(dir.path()).expect("kernel"), dir.path().join("vmlinuz-6.1.0-56-cloud-amd64"));
        let empty = tempfile::tempdir().expect("tempdir");
        assert!(newest_kernel(empty.path()).is_err());
    }

    #[test]
    fn release_is_read_from_the_header() {
        let mut img = vec![0u8; 0x1000];
        img[0x202..0x206].copy_from_slice(b"HdrS");
        img[0x20E..0x210].copy_from_slice(&(0x300u16).to_le_bytes());
        img[0x500..0x500 + 20].copy_from_slice(b"6.1.0-56-cloud-amd64");
        img[0x514] = b' ';
        assert_eq!(release_of(&img, Path::new("k")).expect("release"), "6.1.0-56-cloud-amd64");
        assert!(release_of(&[0u8; 100], Path::new("k")).is_err());
    }

    #[test]
    fn the_installed_kernel_names_its_modules_dir() {
        let Ok(kernel) = newest_kernel(Path::new("/boot")) else {
            panic!("no /boot/vmlinuz-*: install linux-image-cloud-amd64 (the .ci/run script does)");
        };
        let bytes = std::fs::read(&kernel).expect("read kernel");
        let release = release_of(&bytes, &kernel).expect("release");
        assert!(Path::new("/lib/modules").join(&release).is_dir(), "no modules dir for {release}");
    }
}
