//! `hoist run --disk FILE[,serial=S][,size=N]`: a raw disk image for the VM, made sparse
//! when missing, attached as virtio-blk with a serial the guest finds it by.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Longest serial virtio-blk passes to the guest.
pub const MAX_SERIAL: usize = 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    pub file: PathBuf,
    pub serial: String,
    /// Bytes, for an image that does not exist yet.
    pub size: Option<u64>,
}

/// Parses one `--disk` value; `index` names the default serial (`disk0`, `disk1`, ...).
pub fn parse(spec: &str, index: usize) -> anyhow::Result<Disk> {
    let mut parts = spec.split(',');
    let file = parts.next().filter(|f| !f.is_empty());
    let Some(file) = file else {
        bail!("--disk {spec}: expected FILE[,serial=S][,size=N], e.g. data.img,serial=data1,size=2G")
    };
    let mut disk = Disk { file: PathBuf::from(file), serial: format!("disk{index}"), size: None };
    for part in parts {
        match part.split_once('=') {
            Some(("serial", s)) => {
                let ok = !s.is_empty()
                    && s.len() <= MAX_SERIAL
                    && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
                if !ok {
                    bail!("--disk {spec}: serial {s:?}: 1 to {MAX_SERIAL} of A-Z a-z 0-9 . _ -");
                }
                disk.serial = s.to_string();
            }
            Some(("size", n)) => {
                let bytes = hoist_config::parse_size(n).with_context(|| format!("--disk {spec}: size"))?;
                if bytes == 0 || bytes % 512 != 0 {
                    bail!("--disk {spec}: size {n}: a positive multiple of 512 bytes, e.g. 2G");
                }
                disk.size = Some(bytes);
            }
            _ => bail!("--disk {spec}: unknown option {part:?} (serial=S or size=N; FILE may not contain a comma)"),
        }
    }
    Ok(disk)
}

/// Checks a set of disks: no serial or file twice.
pub fn check_all(disks: &[Disk]) -> anyhow::Result<()> {
    for (i, a) in disks.iter().enumerate() {
        for b in &disks[i + 1..] {
            if a.serial == b.serial {
                bail!("--disk: serial {} is given to both {} and {}", a.serial, a.file.display(), b.file.display());
            }
            if a.file == b.file {
                bail!("--disk: {} is attached twice", a.file.display());
            }
        }
    }
    Ok(())
}

/// What [`prepare`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Prepared {
    Created(u64),
    Existing(u64),
}

/// Makes the image if it is missing (sparse, 0600, never through a symlink) and checks an
/// existing one is a regular file reached without a symlink. Returns its size.
pub fn prepare(disk: &Disk) -> anyhow::Result<Prepared> {
    let file = &disk.file;
    match std::fs::symlink_metadata(file) {
        Ok(meta) if meta.file_type().is_symlink() => {
            bail!("--disk {}: is a symlink; name the image itself", file.display())
        }
        Ok(meta) if !meta.is_file() => bail!("--disk {}: not a regular file", file.display()),
        Ok(meta) => Ok(Prepared::Existing(meta.len())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let Some(size) = disk.size else {
                bail!("--disk {}: no such file; add size=N (e.g. size=2G) to create it", file.display())
            };
            create(file, size)?;
            Ok(Prepared::Created(size))
        }
        Err(e) => Err(e).with_context(|| format!("--disk {}", file.display())),
    }
}

fn create(file: &Path, size: u64) -> anyhow::Result<()> {
    // create_new is O_CREAT|O_EXCL: it fails on any existing name, a symlink included.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
        .with_context(|| format!("--disk {}: create", file.display()))?;
    if let Err(e) = f.set_len(size) {
        drop(f);
        let _ = std::fs::remove_file(file);
        return Err(e).with_context(|| format!("--disk {}: size {size}", file.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_with_defaults_and_clear_errors() {
        let d = parse("data.img,serial=data1,size=2G", 0).expect("full");
        assert_eq!(d, Disk { file: "data.img".into(), serial: "data1".into(), size: Some(2 << 30) });
        assert_eq!(parse("/x/logs.img", 3).expect("bare").serial, "disk3");
        for (bad, want) in [
            ("", "expected FILE"),
            ("d.img,serial=", "serial \"\""),
            ("d.img,serial=a,b", "unknown option \"b\""),
            ("d.img,serial=way-too-long-serial-123", "1 to 20"),
            ("d.img,serial=a b", "1 to 20"),
            ("d.img,size=1x", "size"),
            ("d.img,size=100", "multiple of 512"),
            ("d.img,ro", "unknown option"),
        ] {
            let err = format!("{:#}", parse(bad, 0).expect_err(bad));
            assert!(err.contains(want), "{bad}: {err}");
        }
    }

    #[test]
    fn serials_and_files_are_unique() {
        let a = parse("a.img,serial=x", 0).expect("a");
        let b = parse("b.img,serial=x", 1).expect("b");
        assert!(check_all(&[a.clone(), b]).expect_err("same serial").to_string().contains("serial x"));
        let c = parse("a.img,serial=y", 1).expect("c");
        assert!(check_all(&[a.clone(), c]).expect_err("same file").to_string().contains("attached twice"));
        assert!(check_all(&[a, parse("b.img", 1).expect("b")]).is_ok());
    }

    #[test]
    fn a_missing_image_is_made_sparse_and_private_and_nothing_else_is_touched() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("data.img");
        let disk = Disk { file: file.clone(), serial: "d".into(), size: Some(64 << 20) };
        assert_eq!(prepare(&disk).expect("create"), Prepared::Created(64 << 20));
        let meta = std::fs::metadata(&file).expect("meta");
        assert_eq!(meta.len(), 64 << 20);
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert!(meta.blocks() * 512 < 1 << 20, "sparse: {} blocks", meta.blocks());
        std::fs::write(&file, b"keep").expect("write");
        assert_eq!(prepare(&disk).expect("existing"), Prepared::Existing(4));
        assert_eq!(std::fs::read(&file).expect("read"), b"keep", "an existing image is never resized");
        let link = dir.path().join("link.img");
        std::os::unix::fs::symlink(&file, &link).expect("symlink");
        let err = prepare(&Disk { file: link, ..disk.clone() }).expect_err("symlink");
        assert!(err.to_string().contains("symlink"), "{err}");
        let missing = Disk { file: dir.path().join("none.img"), size: None, ..disk.clone() };
        assert!(prepare(&missing).expect_err("no size").to_string().contains("add size=N"));
        let err = prepare(&Disk { file: dir.path().to_path_buf(), ..disk }).expect_err("dir");
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }
}
