//! A registry's own CA certificates, found as skopeo and docker find them: every `*.crt`
//! in `certs.d/HOST[:PORT]/` under `$XDG_CONFIG_HOME/containers` (or
//! `~/.config/containers`), `/etc/containers` and `/etc/docker`. The port is part of the
//! name (`registry.local:5000`). They are trusted besides the system's roots, which
//! (`SSL_CERT_FILE` and `SSL_CERT_DIR` included) always are.

use std::path::{Path, PathBuf};

/// A certificate file larger than this is not one.
const MAX_CERT: u64 = 1 << 20;

/// The `certs.d` directories, most specific first.
pub fn dirs() -> Vec<PathBuf> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let user = env("XDG_CONFIG_HOME").or_else(|| env("HOME").map(|h| h.join(".config")));
    let mut dirs: Vec<PathBuf> = user.into_iter().map(|c| c.join("containers/certs.d")).collect();
    dirs.push("/etc/containers/certs.d".into());
    dirs.push("/etc/docker/certs.d".into());
    dirs
}

/// The PEM files for `registry` in `dirs`, with their paths, sorted per directory.
pub fn for_registry(registry: &str, dirs: &[PathBuf]) -> Result<Vec<(PathBuf, Vec<u8>)>, String> {
    // The name becomes a path component: nothing that could climb out.
    if registry.is_empty() || registry.contains('/') || registry.starts_with('.') {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    for dir in dirs {
        let dir = dir.join(registry);
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        let mut files: Vec<PathBuf> =
            entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "crt")).collect();
        files.sort();
        for path in files {
            found.push((path.clone(), read_pem(&path)?));
        }
    }
    Ok(found)
}

fn read_pem(path: &Path) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() || meta.len() > MAX_CERT {
        return Err(format!("{}: not a certificate file (a regular file of at most 1 MiB)", path.display()));
    }
    let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !data.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &[u8] = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    #[test]
    fn certificates_are_found_by_host_and_port() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        for (dir, name) in [(&a, "127.0.0.1:5000/ca.crt"), (&b, "127.0.0.1:5000/z.crt"), (&b, "127.0.0.1/other.crt")] {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, PEM).expect("write");
        }
        std::fs::write(b.join("127.0.0.1:5000/client.key"), b"key").expect("write");
        let found = for_registry("127.0.0.1:5000", &[a.clone(), b.clone()]).expect("found");
        let names: Vec<&Path> = found.iter().map(|(p, _)| p.as_path()).collect();
        assert_eq!(names, [a.join("127.0.0.1:5000/ca.crt"), b.join("127.0.0.1:5000/z.crt")]);
        assert!(for_registry("registry.local", std::slice::from_ref(&a)).expect("none").is_empty());
        assert!(for_registry("..", std::slice::from_ref(&a)).expect("refused").is_empty());
        std::fs::write(a.join("127.0.0.1:5000/bad.crt"), b"junk").expect("write");
        let err = for_registry("127.0.0.1:5000", &[a]).expect_err("junk");
        assert!(err.contains("bad.crt: no PEM certificate"), "{err}");
    }
}
