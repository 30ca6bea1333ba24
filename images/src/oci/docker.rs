//! Importing from a `docker save` tarball: `manifest.json` lists, per image, its config
//! member, its RepoTags and its layer members in order. Old archives name layers
//! `<id>/layer.tar` (sometimes symlinks to an identical layer) and the config `<hex>.json`;
//! Docker 25+ stores both as `blobs/sha256/<hex>`.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use tar::EntryType;

use super::digest::{self, is_hex64, sha256_hex};
use super::layer::{self, Compression};
use super::spec::{self, ConfigBlob, DockerManifest};
use super::{Image, OciError};
use crate::tree::{Tree, normalize};

/// Links followed when looking a member up.
const MAX_LINKS: usize = 16;

/// Imports the image whose RepoTags contain `reference` ("name:tag"; a bare name means
/// ":latest") from the archive `file`; without a reference, the archive must hold one image.
pub fn import_docker_archive(file: &Path, reference: Option<&str>) -> Result<Image, OciError> {
    let archive = Archive::open(file)?;
    let manifests: Vec<DockerManifest> = spec::parse(&archive.label("manifest.json"), &archive.read("manifest.json")?)?;
    let image = select(file, &manifests, reference)?;

    let config_data = archive.read(&image.config)?;
    if let Some(hex) = digest_in_name(&image.config) {
        let expected = format!("sha256:{hex}");
        digest::verify("config", &archive.label(&image.config), &config_data, &expected, None)?;
    }
    let config: ConfigBlob = spec::parse(&archive.label(&image.config), &config_data)?;
    let diff_ids = config.rootfs.map(|r| r.diff_ids).unwrap_or_default();
    if diff_ids.len() != image.layers.len() {
        return Err(OciError::LayerCount {
            image: archive.label(&image.config),
            layers: image.layers.len(),
            diff_ids: diff_ids.len(),
        });
    }

    let mut rootfs = Tree::new();
    for (member, diff_id) in image.layers.iter().zip(&diff_ids) {
        sha256_hex(diff_id)?;
        let data = archive.read(member)?;
        let label = archive.label(member);
        if let Some(hex) = member.strip_prefix("blobs/sha256/").filter(|h| is_hex64(h)) {
            digest::verify("layer", &label, &data, &format!("sha256:{hex}"), None)?;
        }
        layer::apply(&mut rootfs, &label, &data, Compression::sniff(&data), Some(diff_id))?;
    }
    if (config.os.as_str(), config.architecture.as_str()) != ("linux", "amd64") {
        log::warn!("{} is for {}/{}, not linux/amd64", file.display(), config.os, config.architecture);
    }
    Ok(Image { rootfs, config: config.config.into(), digest: digest::sha256(&config_data) })
}

fn select<'a>(
    file: &Path,
    manifests: &'a [DockerManifest],
    reference: Option<&str>,
) -> Result<&'a DockerManifest, OciError> {
    let mut available: Vec<String> = manifests.iter().flat_map(|m| m.repo_tags.iter().flatten().cloned()).collect();
    available.sort();
    available.dedup();
    match (manifests, reference) {
        ([], _) => Err(OciError::NoImages { path: file.to_path_buf() }),
        ([only], None) => Ok(only),
        (_, None) => Err(OciError::NoTagGiven { available }),
        (_, Some(reference)) => {
            let has_tag = reference.rsplit('/').next().is_some_and(|last| last.contains(':'));
            let wanted = if has_tag { reference.to_string() } else { format!("{reference}:latest") };
            let tagged = |m: &&DockerManifest| m.repo_tags.iter().flatten().any(|t| *t == wanted);
            let mut matches = manifests.iter().filter(tagged);
            match (matches.next(), matches.next()) {
                (Some(m), None) => Ok(m),
                (Some(_), Some(_)) => Err(OciError::AmbiguousTag { tag: wanted }),
                (None, _) => Err(OciError::NoSuchTag { tag: reference.to_string(), available }),
            }
        }
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
struct Archive {
    path: PathBuf,
    file: File,
    members: HashMap<String, Member>,
}

impl Archive {
    fn open(path: &Path) -> Result<Self, OciError> {
        let read_err = |source| OciError::Read { path: path.to_path_buf(), source };
        let file = File::open(path).map_err(read_err)?;
        let mut members = HashMap::new();
        let mut tar = tar::Archive::new(&file);
        for entry in tar.entries_with_seek().map_err(read_err)? {
            let entry = entry.map_err(read_err)?;
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

    /// "archive.tar:member", for errors.
    fn label(&self, member: &str) -> String {
        format!("{}:{member}", self.path.display())
    }

    fn read(&self, member: &str) -> Result<Vec<u8>, OciError> {
        let missing = || OciError::MissingMember { archive: self.path.clone(), member: member.to_string() };
        let mut name = normalize(member).ok_or_else(missing)?;
        for _ in 0..=MAX_LINKS {
            match self.members.get(&name) {
                Some(Member::Link(target)) => name = target.clone(),
                Some(Member::File { pos, size }) => return self.read_at(*pos, *size),
                None => break,
            }
        }
        Err(missing())
    }

    fn read_at(&self, pos: u64, size: u64) -> Result<Vec<u8>, OciError> {
        let read_err = |source| OciError::Read { path: self.path.clone(), source };
        let mut file = &self.file;
        file.seek(SeekFrom::Start(pos)).map_err(read_err)?;
        let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        file.take(size).read_to_end(&mut data).map_err(read_err)?;
        if data.len() as u64 != size {
            return Err(read_err(io::ErrorKind::UnexpectedEof.into()));
        }
        Ok(data)
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
