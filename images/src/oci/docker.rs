//! Importing from a `docker save` tarball: `manifest.json` lists, per image, its config
//! member, its RepoTags and its layer members in order. Old archives name layers
//! `<id>/layer.tar` (sometimes symlinks to an identical layer) and the config `<hex>.json`;
//! Docker 25+ stores both as `blobs/sha256/<hex>`.
//!
//! An image is chosen by reference, normalized on both sides as the docker CLI does
//! ([`Reference`]): `busybox:1.36` matches a RepoTag written `docker.io/library/busybox:1.36`
//! (skopeo) or `busybox:1.36` (docker). A digest (`NAME@sha256:...` or `@sha256:...`) is
//! matched against the image ID, the sha256 of the image config, which is what a docker
//! archive keeps; registry manifest digests are not in manifest.json.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use tar::EntryType;

use super::digest::{self, is_hex64, sha256_hex};
use super::layer;
use super::limits::{Budget, Limits};
use super::spec::{self, ConfigBlob, DockerManifest};
use super::{Image, OciError, open};
use crate::tree::{Tree, normalize};
use hoist_config::Reference;

/// Links followed when looking a member up.
const MAX_LINKS: usize = 16;
/// Members indexed at most (a real archive has a few per layer).
const MAX_MEMBERS: usize = 1 << 16;

/// Imports the image `reference` names (a RepoTag, "name:tag", a bare name meaning
/// ":latest", or an image ID digest; see the module doc) from the archive `file`; without
/// a reference, the archive must hold one image.
pub fn import_docker_archive(file: &Path, reference: Option<&str>) -> Result<Image, OciError> {
    import(file, reference, &Limits::default())
}

/// [`import_docker_archive`] within `limits`.
pub(super) fn import(file: &Path, reference: Option<&str>, limits: &Limits) -> Result<Image, OciError> {
    let Selected { archive, image, config: config_data } = select_image(file, reference)?;
    let config: ConfigBlob = spec::parse(&archive.label(&image.config), &config_data)?;
    let platform = config.platform();
    let diff_ids = config.rootfs.map(|r| r.diff_ids).unwrap_or_default();
    if diff_ids.len() != image.layers.len() {
        return Err(OciError::LayerCount {
            image: archive.label(&image.config),
            layers: image.layers.len(),
            diff_ids: diff_ids.len(),
        });
    }

    let mut rootfs = Tree::new();
    let budget = Budget::new(limits);
    for (member, diff_id) in image.layers.iter().zip(&diff_ids) {
        sha256_hex(diff_id)?;
        let (pos, size) = archive.locate(member)?;
        let label = archive.label(member);
        let expected = layer_digest_in_name(member);
        let blob = layer::Blob { name: &label, digest: expected.as_deref(), size: Some(size) };
        let raw = Range { file: &archive.file, pos, end: pos.saturating_add(size) };
        layer::apply(&mut rootfs, &label, raw, None, blob, Some(diff_id), &budget)?;
    }
    Ok(Image { rootfs, config: config.config.into(), digest: digest::sha256(&config_data), platform })
}

/// The archive, the manifest.json entry `reference` selects, and its config blob, checked
/// against the digest its member name promises.
pub(super) struct Selected {
    pub archive: Archive,
    pub image: DockerManifest,
    pub config: Vec<u8>,
}

pub(super) fn select_image(file: &Path, reference: Option<&str>) -> Result<Selected, OciError> {
    let reference = reference.map(Reference::parse).transpose()?;
    let archive = Archive::open(file)?;
    let manifests: Vec<DockerManifest> = spec::parse(&archive.label("manifest.json"), &archive.read("manifest.json")?)?;
    let image_id = |m: &DockerManifest| match digest_in_name(&m.config) {
        Some(hex) => Ok(format!("sha256:{hex}")),
        None => archive.read(&m.config).map(|data| digest::sha256(&data)),
    };
    let image = select(file, &manifests, reference.as_ref(), &image_id)?.clone();
    let config = archive.read(&image.config)?;
    if let Some(hex) = digest_in_name(&image.config) {
        let expected = format!("sha256:{hex}");
        digest::verify("config", &archive.label(&image.config), &config, &expected, None)?;
    }
    Ok(Selected { archive, image, config })
}

/// The digest a layer member's name promises (`blobs/sha256/<hex>`), if any.
pub(super) fn layer_digest_in_name(member: &str) -> Option<String> {
    member.strip_prefix("blobs/sha256/").filter(|h| is_hex64(h)).map(|hex| format!("sha256:{hex}"))
}

fn select<'a>(
    file: &Path,
    manifests: &'a [DockerManifest],
    reference: Option<&Reference>,
    image_id: &dyn Fn(&DockerManifest) -> Result<String, OciError>,
) -> Result<&'a DockerManifest, OciError> {
    let mut available: Vec<String> = manifests.iter().flat_map(|m| m.repo_tags.iter().flatten().cloned()).collect();
    available.sort();
    available.dedup();
    let reference = match (manifests, reference) {
        ([], _) => return Err(OciError::NoImages { path: file.to_path_buf() }),
        ([only], None) => return Ok(only),
        (_, None) => return Err(OciError::NoTagGiven { available }),
        (_, Some(reference)) => reference,
    };
    // RepoTags that do not parse are left out: they cannot name what the user asked for.
    let tags = |m: &DockerManifest| -> Vec<Reference> {
        m.repo_tags.iter().flatten().filter_map(|t| Reference::parse(t).ok()).collect()
    };
    let mut matches = Vec::new();
    for m in manifests {
        let found = match (&reference.digest, &reference.name) {
            (None, _) => tags(m).iter().any(|t| t.same_name_and_tag(reference)),
            (Some(digest), name) => {
                *digest == image_id(m)?
                    && name.as_ref().is_none_or(|n| tags(m).iter().any(|t| t.name.as_ref() == Some(n)))
            }
        };
        if found {
            matches.push(m);
        }
    }
    match (matches.as_slice(), &reference.digest) {
        ([m], _) => Ok(m),
        ([], None) => Err(OciError::NoSuchTag { tag: reference.to_string(), available }),
        ([], Some(digest)) => {
            let mut ids = manifests.iter().map(image_id).collect::<Result<Vec<_>, _>>()?;
            if ids.contains(digest) {
                // The ID is there, under other names.
                return Err(OciError::NoSuchTag { tag: reference.to_string(), available });
            }
            ids.sort();
            ids.dedup();
            Err(OciError::NoSuchImageId { digest: digest.clone(), available: ids })
        }
        (_, _) => Err(OciError::AmbiguousTag { tag: reference.to_string() }),
    }
}

/// The digest a member's name promises: `<hex>.json` or `blobs/sha256/<hex>`.
fn digest_in_name(member: &str) -> Option<&str> {
    member
        .strip_suffix(".json")
        .filter(|h| !h.contains('/'))
        .or_else(|| member.strip_prefix("blobs/sha256/"))
        .filter(|h| is_hex64(h))
}

enum Member {
    File {
        pos: u64,
        size: u64,
    },
    /// A symlink or hard link, with its target as a member name.
    Link(String),
}

/// An index of the archive's members, read on demand by seeking.
pub(super) struct Archive {
    path: PathBuf,
    file: File,
    members: HashMap<String, Member>,
}

impl Archive {
    fn open(path: &Path) -> Result<Self, OciError> {
        let read_err = |source| OciError::Read { path: path.to_path_buf(), source };
        let (file, _) = open::file(path)?;
        let mut members = HashMap::new();
        let mut tar = tar::Archive::new(&file);
        for entry in tar.entries_with_seek().map_err(read_err)? {
            let entry = entry.map_err(read_err)?;
            if members.len() >= MAX_MEMBERS {
                return Err(OciError::BadPath {
                    path: path.to_path_buf(),
                    reason: "too many members for a docker archive",
                });
            }
            let Some(name) = std::str::from_utf8(&entry.path_bytes()).ok().and_then(normalize) else {
                continue;
            };
            let link = || entry.link_name_bytes().and_then(|l| String::from_utf8(l.into_owned()).ok());
            let member = match entry.header().entry_type() {
                EntryType::Regular | EntryType::Continuous => {
                    Member::File { pos: entry.raw_file_position(), size: entry.size() }
                }
                EntryType::Symlink => {
                    let dir = name.rsplit_once('/').map_or("", |(dir, _)| dir);
                    match link().and_then(|target| join_relative(dir, &target)) {
                        Some(target) => Member::Link(target),
                        None => continue,
                    }
                }
                EntryType::Link => match link().as_deref().and_then(normalize) {
                    Some(target) => Member::Link(target),
                    None => continue,
                },
                _ => continue,
            };
            members.insert(name, member);
        }
        Ok(Archive { path: path.to_path_buf(), file, members })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// "archive.tar:member", for errors.
    pub(super) fn label(&self, member: &str) -> String {
        format!("{}:{member}", self.path.display())
    }

    /// Reads a JSON member (manifest.json, a config); one larger than [`open::MAX_JSON`]
    /// is not read.
    pub(super) fn read(&self, member: &str) -> Result<Vec<u8>, OciError> {
        let (pos, size) = self.locate(member)?;
        if size > open::MAX_JSON {
            return Err(OciError::TooLargeJson { what: self.label(member), size, limit: open::MAX_JSON });
        }
        self.read_at(pos, size)
    }

    /// Where a member's bytes are in the archive file: (offset, length), links followed.
    pub(super) fn locate(&self, member: &str) -> Result<(u64, u64), OciError> {
        let missing = || OciError::MissingMember { archive: self.path.clone(), member: member.to_string() };
        let mut name = normalize(member).ok_or_else(missing)?;
        for _ in 0..=MAX_LINKS {
            match self.members.get(&name) {
                Some(Member::Link(target)) => name = target.clone(),
                Some(Member::File { pos, size }) => return Ok((*pos, *size)),
                None => break,
            }
        }
        Err(missing())
    }

    fn read_at(&self, pos: u64, size: u64) -> Result<Vec<u8>, OciError> {
        let read_err = |source| OciError::Read { path: self.path.clone(), source };
        let mut data = Vec::new();
        Range { file: &self.file, pos, end: pos.saturating_add(size) }.read_to_end(&mut data).map_err(read_err)?;
        if data.len() as u64 != size {
            return Err(read_err(io::ErrorKind::UnexpectedEof.into()));
        }
        Ok(data)
    }
}

/// The bytes of `file` from `pos` to `end`, read with `pread`: no shared file offset.
struct Range<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for Range<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf.len().min(usize::try_from(self.end - self.pos).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// `target` seen from directory `dir`, as a member name; None if it climbs out.
fn join_relative(dir: &str, target: &str) -> Option<String> {
    let mut parts: Vec<&str> =
        if target.starts_with('/') { Vec::new() } else { dir.split('/').filter(|p| !p.is_empty()).collect() };
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_links_resolve_inside_the_archive() {
        assert_eq!(join_relative("a", "../b/layer.tar").as_deref(), Some("b/layer.tar"));
        assert_eq!(join_relative("", "../x"), None);
        assert_eq!(join_relative("a/b", "/c").as_deref(), Some("c"));
    }

    #[test]
    fn config_names_promise_digests() {
        let hex = "a".repeat(64);
        assert_eq!(digest_in_name(&format!("{hex}.json")), Some(hex.as_str()));
        assert_eq!(digest_in_name(&format!("blobs/sha256/{hex}")), Some(hex.as_str()));
        assert_eq!(digest_in_name(&format!("x/{hex}.json")), None);
        assert_eq!(digest_in_name("config.json"), None);
    }
}
