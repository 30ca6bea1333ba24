//! Where a service's root filesystem comes from: `oci:DIR[:TAG]`,
//! `docker-archive:FILE.tar[:REPO:TAG]`, `dir:DIR`, or `docker://REFERENCE` (a registry, as
//! skopeo names it: pulled by the builder into its cache and pinned by digest in host.lock).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::Reference;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    #[error(
        "invalid image {0:?}: expected docker://REFERENCE, oci:DIR[:TAG], docker-archive:FILE.tar[:REPO:TAG] or dir:DIR"
    )]
    Prefix(String),
    #[error("invalid image {0:?}: the path is empty")]
    EmptyPath(String),
    #[error("invalid image {0:?}: the tag after the path is empty")]
    EmptyTag(String),
    #[error("invalid image {0:?}: a docker archive must be a .tar file")]
    NotTar(String),
    #[error("invalid image {0:?}: it contains a NUL byte")]
    Nul(String),
    #[error("invalid image {image:?}: {cause}")]
    Reference { image: String, cause: crate::ReferenceError },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// An OCI image layout directory; `tag` selects the manifest whose
    /// `org.opencontainers.image.ref.name` annotation matches.
    Oci { dir: PathBuf, tag: Option<String> },
    /// A `docker save` tarball; `reference` (REPO:TAG, normalized as docker does, or
    /// [REPO]@sha256:IMAGE-ID) selects one of its images.
    DockerArchive { file: PathBuf, reference: Option<String> },
    /// A plain root filesystem directory.
    Dir { dir: PathBuf },
    /// An image in a registry (`docker://nginx:1.27`), normalized as the docker CLI does.
    Registry { reference: Reference },
}

impl ImageSource {
    /// The user-facing string form, as written in host.toml.
    pub fn describe(&self) -> String {
        match self {
            ImageSource::Oci { dir, tag: None } => format!("oci:{}", dir.display()),
            ImageSource::Oci { dir, tag: Some(tag) } => format!("oci:{}:{tag}", dir.display()),
            ImageSource::DockerArchive { file, reference: None } => format!("docker-archive:{}", file.display()),
            ImageSource::DockerArchive { file, reference: Some(r) } => {
                format!("docker-archive:{}:{r}", file.display())
            }
            ImageSource::Dir { dir } => format!("dir:{}", dir.display()),
            ImageSource::Registry { reference } => format!("docker://{reference}"),
        }
    }

    /// The host path the image is read from; none for a registry's.
    pub fn path(&self) -> Option<&Path> {
        match self {
            ImageSource::Oci { dir, .. } | ImageSource::Dir { dir } => Some(dir),
            ImageSource::DockerArchive { file, .. } => Some(file),
            ImageSource::Registry { .. } => None,
        }
    }

    /// Makes a relative path relative to `base` (the directory of the config file).
    pub(crate) fn resolve_against(&mut self, base: &Path) {
        let path = match self {
            ImageSource::Oci { dir, .. } | ImageSource::Dir { dir } => dir,
            ImageSource::DockerArchive { file, .. } => file,
            ImageSource::Registry { .. } => return,
        };
        if path.is_relative() {
            *path = base.join(&*path);
        }
    }
}

impl FromStr for ImageSource {
    type Err = ImageError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |make: fn(String) -> ImageError| make(s.to_string());
        // No path or reference can hold one, and the builder would fail to open it.
        if s.contains('\0') {
            return Err(err(ImageError::Nul));
        }
        if let Some(reference) = s.strip_prefix("docker://") {
            return match Reference::parse_named(reference) {
                Ok(reference) => Ok(ImageSource::Registry { reference }),
                Err(cause) => Err(ImageError::Reference { image: s.to_string(), cause }),
            };
        }
        let (kind, rest) = s.split_once(':').ok_or_else(|| err(ImageError::Prefix))?;
        match kind {
            // Like skopeo's oci: transport, the directory ends at the first ':'.
            "oci" => {
                let (dir, tag) = match rest.split_once(':') {
                    Some((_, "")) => return Err(err(ImageError::EmptyTag)),
                    Some((dir, tag)) => (dir, Some(tag.to_string())),
                    None => (rest, None),
                };
                if dir.is_empty() {
                    return Err(err(ImageError::EmptyPath));
                }
                Ok(ImageSource::Oci { dir: dir.into(), tag })
            }
            // The file name may contain ':'; the reference starts after ".tar:".
            "docker-archive" => {
                let (file, reference) = match rest.find(".tar:") {
                    Some(i) => (&rest[..i + 4], Some(&rest[i + 5..])),
                    None => (rest, None),
                };
                if file.is_empty() {
                    return Err(err(ImageError::EmptyPath));
                }
                if !file.ends_with(".tar") || file == ".tar" {
                    return Err(err(ImageError::NotTar));
                }
                if reference == Some("") {
                    return Err(err(ImageError::EmptyTag));
                }
                if let Some(Err(source)) = reference.map(Reference::parse) {
                    return Err(ImageError::Reference { image: s.to_string(), cause: source });
                }
                Ok(ImageSource::DockerArchive { file: file.into(), reference: reference.map(str::to_string) })
            }
            "dir" if rest.is_empty() => Err(err(ImageError::EmptyPath)),
            "dir" => Ok(ImageSource::Dir { dir: rest.into() }),
            _ => Err(err(ImageError::Prefix)),
        }
    }
}

impl fmt::Display for ImageSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(s: &str) -> ImageSource {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn oci_with_and_without_tag() {
        assert_eq!(image("oci:../images/busybox"), ImageSource::Oci { dir: "../images/busybox".into(), tag: None });
        assert_eq!(
            image("oci:/srv/img:registry.example/busybox:1.36"),
            ImageSource::Oci { dir: "/srv/img".into(), tag: Some("registry.example/busybox:1.36".into()) }
        );
    }

    #[test]
    fn docker_archive_splits_after_dot_tar() {
        assert_eq!(image("docker-archive:a.tar"), ImageSource::DockerArchive { file: "a.tar".into(), reference: None });
        assert_eq!(
            image("docker-archive:out/x:y.tar:busybox:latest"),
            ImageSource::DockerArchive { file: "out/x:y.tar".into(), reference: Some("busybox:latest".into()) }
        );
    }

    #[test]
    fn docker_archive_references_are_checked() {
        for good in ["a.tar:busybox", "a.tar:localhost:5000/app:1", &format!("a.tar:@sha256:{}", "a".repeat(64))] {
            image(&format!("docker-archive:{good}"));
        }
        let err = "docker-archive:a.tar:Busybox".parse::<ImageSource>().expect_err("upper case");
        assert!(matches!(err, ImageError::Reference { .. }), "{err:?}");
        assert!(err.to_string().starts_with("invalid image \"docker-archive:a.tar:Busybox\": invalid image reference \"Busybox\": a repository is lowercase"), "{err}");
    }

    #[test]
    fn registry_references_normalize_like_the_docker_cli() {
        let hex = "ab".repeat(32);
        for (written, described) in [
            ("docker://nginx:1.27", "docker://docker.io/library/nginx:1.27".to_string()),
            ("docker://nginx", "docker://docker.io/library/nginx:latest".to_string()),
            ("docker://registry.local:5000/acme/api:2", "docker://registry.local:5000/acme/api:2".to_string()),
            (&format!("docker://ghcr.io/acme/api@sha256:{hex}"), format!("docker://ghcr.io/acme/api@sha256:{hex}")),
        ] {
            let source = image(written);
            assert!(matches!(source, ImageSource::Registry { .. }), "{source:?}");
            assert_eq!(source.describe(), described);
            assert_eq!(source.path(), None);
            // The described form reads back as the same image.
            assert_eq!(image(&source.describe()), source);
        }
        for bad in
            ["docker://", &format!("docker://@sha256:{hex}"), "docker://Nginx", "docker://nginx:", "docker://a//b"]
        {
            let err = bad.parse::<ImageSource>().expect_err(bad);
            assert!(matches!(err, ImageError::Reference { .. }), "{bad}: {err:?}");
        }
    }

    #[test]
    fn dir() {
        assert_eq!(image("dir:/srv/rootfs"), ImageSource::Dir { dir: "/srv/rootfs".into() });
    }

    #[test]
    fn rejections() {
        type Make = fn(String) -> ImageError;
        let cases: [(&str, Make); 13] = [
            ("busybox", ImageError::Prefix),
            ("docker:busybox", ImageError::Prefix),
            ("OCI:x", ImageError::Prefix),
            ("oci:", ImageError::EmptyPath),
            ("oci::latest", ImageError::EmptyPath),
            ("oci:x:", ImageError::EmptyTag),
            ("dir:", ImageError::EmptyPath),
            ("docker-archive:", ImageError::EmptyPath),
            ("docker-archive:a.tgz", ImageError::NotTar),
            ("docker-archive:.tar", ImageError::NotTar),
            ("docker-archive:a.tar:", ImageError::EmptyTag),
            ("dir:/srv\0x", ImageError::Nul),
            ("oci:/srv:a\0", ImageError::Nul),
        ];
        for (text, expected) in cases {
            assert_eq!(text.parse::<ImageSource>(), Err(expected(text.to_string())), "{text:?}");
        }
    }

    #[test]
    fn describe_gives_back_the_written_form() {
        for text in
            ["oci:../images/busybox:latest", "oci:/a", "docker-archive:x.tar:r:t", "docker-archive:x.tar", "dir:/r"]
        {
            assert_eq!(image(text).describe(), text);
            assert_eq!(image(text).to_string(), text);
        }
    }

    #[test]
    fn only_relative_paths_are_resolved() {
        let mut relative = image("oci:../images/busybox:latest");
        relative.resolve_against(Path::new("/etc/hoist"));
        assert_eq!(
            relative,
            ImageSource::Oci { dir: "/etc/hoist/../images/busybox".into(), tag: Some("latest".into()) }
        );
        let mut absolute = image("docker-archive:/srv/a.tar");
        absolute.resolve_against(Path::new("/etc/hoist"));
        assert_eq!(absolute.path(), Some(Path::new("/srv/a.tar")));
    }
}
