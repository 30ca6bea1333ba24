//! The images this host holds: those `hoist build` unpacked into the initramfs, and those
//! sent with an apply ([`crate::content`]: blobs in containerd's content store, unpacked
//! through its overlayfs snapshotter). An image is known by its digest, the one the client
//! resolved: an OCI manifest's, or a docker archive's config digest.
//!
//! Importing trusts nothing the client says: the manifest and config are read back from the
//! content store (which checked their digests when they were written), the image digest
//! must be the manifest's or its config's, and every layer, once applied, must have the
//! uncompressed digest the config's `diff_ids` name. The unpacked layers are shown to
//! containers through a read-only view whose lower directories are the service's rootfs
//! (the writable layer stays hoist's tmpfs upper, as for built-in images).
//!
//! What was imported is recorded under /run/hoist/images, so a restarted supervisor finds
//! it; [`Library::collect`] removes what no kept generation uses.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use hoist_api::pb;
use hoist_config::manifest::{BuildManifest, ServiceImage};
use serde::{Deserialize, Serialize};

use crate::containerd::Containerd;

/// Where import records live.
pub const DIR: &str = hoist_guest::paths::IMPORTS_DIR;
/// Largest manifest or config read.
const MAX_JSON: u64 = 4 << 20;
/// Most layers an image may have.
const MAX_LAYERS: usize = 128;
/// Most blobs one MissingBlobs request may ask about.
const MAX_ASKED: usize = 4096;
/// Where containerd keeps content and snapshots.
use hoist_guest::paths::CONTAINERD_ROOT;
/// What must stay free there after a layer is unpacked (and beyond an upload's reservation).
pub const MIN_FREE: u64 = 64 << 20;

/// Bytes free where containerd keeps content and snapshots; `None` if it cannot be read.
pub fn containerd_free_bytes() -> Option<u64> {
    nix::sys::statvfs::statvfs(CONTAINERD_ROOT).ok().map(|s| s.blocks_available().saturating_mul(s.fragment_size()))
}

/// One imported image and everything of it in containerd.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Imported {
    pub image: ServiceImage,
    pub manifest: String,
    pub blobs: Vec<String>,
    /// Committed snapshot names, bottom layer first.
    pub chain: Vec<String>,
    pub view: String,
    /// Image records made for it.
    pub names: Vec<String>,
}

pub struct Library {
    built: BTreeMap<String, ServiceImage>,
    imported: Mutex<BTreeMap<String, Imported>>,
    /// Images the generations may still need, kept current by the driver.
    in_use: Mutex<BTreeSet<String>>,
    /// Images an apply has imported (or found held) and not yet handed to the core, with
    /// how many applies hold each.
    pinned: Mutex<BTreeMap<String, usize>>,
    /// One import (or collection) at a time.
    work: tokio::sync::Mutex<()>,
    dir: PathBuf,
    client: Arc<OnceLock<Containerd>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn valid_digest(d: &str) -> bool {
    d.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

impl Library {
    pub fn open(dir: &Path, manifest: &BuildManifest, client: Arc<OnceLock<Containerd>>) -> Self {
        let mut imported = BTreeMap::new();
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                let record = std::fs::read(e.path()).ok().and_then(|b| serde_json::from_slice::<Imported>(&b).ok());
                match record {
                    Some(r) => {
                        imported.insert(r.image.digest.clone(), r);
                    }
                    None => log::warn!("{}: unreadable image record, ignored", e.path().display()),
                }
            }
        }
        Library {
            built: crate::candidate::known_images(manifest),
            imported: Mutex::new(imported),
            in_use: Mutex::new(BTreeSet::new()),
            pinned: Mutex::new(BTreeMap::new()),
            work: tokio::sync::Mutex::new(()),
            dir: dir.to_path_buf(),
            client,
        }
    }

    /// Every image held, by digest.
    pub fn known(&self) -> BTreeMap<String, ServiceImage> {
        let mut all = self.built.clone();
        for (d, r) in lock(&self.imported).iter() {
            all.entry(d.clone()).or_insert_with(|| r.image.clone());
        }
        all
    }

    pub fn holds(&self, digest: &str) -> bool {
        self.built.contains_key(digest) || lock(&self.imported).contains_key(digest)
    }

    fn client(&self) -> Result<&Containerd, String> {
        self.client.get().ok_or_else(|| "containerd is not answering yet".to_string())
    }

    /// The blobs to send (none of an image held, else those the content store lacks), and
    /// the images held.
    pub async fn missing(&self, images: &[pb::ImageBlobs]) -> Result<pb::MissingBlobsReply, String> {
        let asked: usize = images.iter().map(|i| i.blobs.len()).sum();
        if asked > MAX_ASKED {
            return Err(format!("{asked} blobs asked about; at most {MAX_ASKED}"));
        }
        let client = self.client()?;
        let mut asked = BTreeSet::new();
        for image in images.iter().filter(|i| !self.holds(&i.image)) {
            for blob in &image.blobs {
                if !valid_digest(blob) {
                    return Err(format!("invalid blob digest {blob:?}: expected sha256:<64 lowercase hex>"));
                }
                asked.insert(blob.clone());
            }
        }
        let mut missing = BTreeSet::new();
        for blob in asked {
            if client.blob_size(&blob).await.map_err(|e| e.to_string())?.is_none() {
                missing.insert(blob);
            }
        }
        let held = images.iter().filter(|i| self.holds(&i.image)).map(|i| i.image.clone()).collect();
        Ok(pb::MissingBlobsReply { missing: missing.into_iter().collect(), held })
    }

    /// Imports every image `manifests` names that is not held yet, from blobs already
    /// uploaded. `names`: image digest -> the image source as the config writes it.
    pub async fn ensure(
        &self,
        manifests: &BTreeMap<String, String>,
        names: &BTreeMap<String, String>,
    ) -> Result<(), String> {
        for (image, manifest) in manifests {
            if self.holds(image) {
                continue;
            }
            if !valid_digest(image) || !valid_digest(manifest) {
                return Err(format!("image {image:?}: invalid digest (manifest {manifest:?})"));
            }
            let name = names.get(image).cloned().unwrap_or_else(|| format!("hoist/{}", &hex(image)[..12]));
            self.import(image, manifest, &name).await.map_err(|e| format!("image {name} ({image}): {e}"))?;
        }
        Ok(())
    }

    async fn import(&self, image: &str, manifest_digest: &str, name: &str) -> Result<(), String> {
        let _one = self.work.lock().await;
        if self.holds(image) {
            return Ok(());
        }
        let client = self.client()?;
        let manifest_bytes = client.read_blob(manifest_digest, MAX_JSON).await?;
        let manifest = parse_manifest(&manifest_bytes)?;
        if image != manifest_digest && image != manifest.config.digest {
            return Err(format!("is neither manifest {manifest_digest} nor its config {}", manifest.config.digest));
        }
        let config = parse_config(&client.read_blob(&manifest.config.digest, MAX_JSON).await?)?;
        if config.diff_ids.len() != manifest.layers.len() {
            return Err(format!("{} layers but {} diff_ids", manifest.layers.len(), config.diff_ids.len()));
        }
        let chain = chain_ids(&config.diff_ids);
        let mut parent = String::new();
        for ((layer, diff_id), name) in manifest.layers.iter().zip(&config.diff_ids).zip(&chain) {
            if client.snapshot_exists(name).await.map_err(|e| e.to_string())? {
                parent = name.clone();
                continue;
            }
            match client.blob_size(&layer.digest).await.map_err(|e| e.to_string())? {
                Some(n) if n == layer.size => {}
                Some(n) => return Err(format!("layer {}: {n} bytes held, manifest says {}", layer.digest, layer.size)),
                None => return Err(format!("layer {} was not sent", layer.digest)),
            }
            let desc = containerd_client::types::Descriptor {
                media_type: layer.media_type.clone(),
                digest: layer.digest.clone(),
                size: layer.size as i64,
                annotations: Default::default(),
            };
            let applied = client.apply_layer(desc, &parent, name).await.map_err(|e| e.to_string())?;
            if applied != *diff_id {
                let _ = client.remove_snapshot(name).await;
                return Err(format!(
                    "layer {}: uncompressed content is {applied}, the config's diff_id says {diff_id}",
                    layer.digest
                ));
            }
            // A small compressed layer may unpack into a great deal (RAM, without a disk).
            if let Some(free) = containerd_free_bytes()
                && free < MIN_FREE
            {
                let _ = client.remove_snapshot(name).await;
                return Err(format!("layer {}: unpacked, it leaves {free} bytes free; refused", layer.digest));
            }
            parent = name.clone();
        }
        let view = format!("hoist-image-{}", hex(image));
        let mounts = client.view(&view, &parent).await.map_err(|e| e.to_string())?;
        let rootfs = lower_dirs(&mounts)?;
        let target = containerd_client::types::Descriptor {
            media_type: manifest.media_type.clone(),
            digest: manifest_digest.to_string(),
            size: manifest_bytes.len() as i64,
            annotations: Default::default(),
        };
        client.tag_image(name, target).await.map_err(|e| e.to_string())?;
        let mut blobs = vec![manifest_digest.to_string(), manifest.config.digest.clone()];
        blobs.extend(manifest.layers.iter().map(|l| l.digest.clone()));
        let record = Imported {
            image: ServiceImage {
                source: name.to_string(),
                digest: image.to_string(),
                rootfs,
                entrypoint: config.entrypoint,
                cmd: config.cmd,
                env: config.env,
                working_dir: absolute(&config.working_dir),
                user: config.user,
            },
            manifest: manifest_digest.to_string(),
            blobs,
            chain,
            view,
            names: vec![name.to_string()],
        };
        let json = serde_json::to_vec_pretty(&record).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        hoist_guest::atomic::write(&self.dir.join(format!("{}.json", hex(image))), &json)
            .map_err(|e| format!("{}: {e}", self.dir.display()))?;
        crate::say(&format!("image {name} imported: {} layers, {image}", record.chain.len()));
        lock(&self.imported).insert(image.to_string(), record);
        Ok(())
    }

    /// What the generations may still need (the driver says so whenever that changes).
    pub fn set_in_use(&self, images: BTreeSet<String>) {
        *lock(&self.in_use) = images;
    }

    /// Holds `images` against collection until [`Library::unpin`]: an apply between its
    /// import and the core taking it.
    pub fn pin(&self, images: &BTreeSet<String>) {
        let mut pinned = lock(&self.pinned);
        for i in images {
            *pinned.entry(i.clone()).or_default() += 1;
        }
    }

    pub fn unpin(&self, images: &BTreeSet<String>) {
        let mut pinned = lock(&self.pinned);
        for i in images {
            if let Some(n) = pinned.get_mut(i) {
                *n -= 1;
                if *n == 0 {
                    pinned.remove(i);
                }
            }
        }
    }

    /// Removes, in the background, every imported image that is neither in use nor pinned.
    pub fn spawn_collect(self: &Arc<Self>) {
        let me = self.clone();
        tokio::spawn(async move { me.collect().await });
    }

    /// Removes every imported image that is neither in use nor pinned, with what of it no
    /// kept image shares. What to keep is read under the same lock imports take, when the
    /// collection runs, not when it was asked for.
    pub async fn collect(&self) {
        let _one = self.work.lock().await;
        let Ok(client) = self.client() else { return };
        let mut keep = lock(&self.in_use).clone();
        keep.extend(lock(&self.pinned).keys().cloned());
        let (gone, kept): (Vec<Imported>, Vec<Imported>) = {
            let all = lock(&self.imported);
            all.values().cloned().partition(|r| !keep.contains(&r.image.digest))
        };
        self.sweep(client, &kept).await;
        if gone.is_empty() {
            return;
        }
        let kept_blobs: BTreeSet<&String> = kept.iter().flat_map(|r| &r.blobs).collect();
        let kept_chain: BTreeSet<&String> = kept.iter().flat_map(|r| &r.chain).collect();
        let kept_names: BTreeSet<&String> = kept.iter().flat_map(|r| &r.names).collect();
        for r in &gone {
            let _ = client.remove_snapshot(&r.view).await;
        }
        // Children before parents: the deepest layers first, across every removed image.
        let mut chains: Vec<(usize, &String)> = Vec::new();
        for r in &gone {
            for (depth, c) in r.chain.iter().enumerate() {
                if !kept_chain.contains(c) && !chains.iter().any(|(_, x)| *x == c) {
                    chains.push((depth, c));
                }
            }
        }
        chains.sort_by_key(|c| std::cmp::Reverse(c.0));
        for (_, c) in chains {
            if let Err(e) = client.remove_snapshot(c).await {
                log::warn!("{e}");
            }
        }
        for r in &gone {
            for b in r.blobs.iter().filter(|b| !kept_blobs.contains(b)) {
                client.delete_blob(b).await;
            }
        }
        // The records last, the last one with containerd's collection run before it
        // answers: deleted blobs and snapshots leave the disk now, not at containerd's next
        // collection, whenever that comes.
        let names: BTreeSet<&String> = gone.iter().flat_map(|r| &r.names).filter(|n| !kept_names.contains(n)).collect();
        let last = names.len();
        for (i, name) in names.into_iter().enumerate() {
            client.untag_image(name, i + 1 == last).await;
        }
        for r in &gone {
            let _ = std::fs::remove_file(self.dir.join(format!("{}.json", hex(&r.image.digest))));
            lock(&self.imported).remove(&r.image.digest);
            crate::say(&format!("image {} removed: no kept generation uses it", r.image.source));
        }
    }
}

impl Library {
    /// Blobs sent for an apply that never came (the client went away between upload and
    /// apply), once they are [`SWEEP_AFTER_SECS`] old: nothing else would ever free them.
    async fn sweep(&self, client: &Containerd, kept: &[Imported]) {
        let Ok(own) = client.own_blobs().await else { return };
        let mut used: BTreeSet<String> = kept.iter().flat_map(|r| r.blobs.iter().cloned()).collect();
        let all: Vec<String> = lock(&self.imported).values().flat_map(|r| r.blobs.iter().cloned()).collect();
        used.extend(all);
        let now = crate::generations::now_unix();
        for digest in stale_blobs(&own, &used, now) {
            client.delete_blob(&digest).await;
            log::info!("blob {digest}: sent {SWEEP_AFTER_SECS} s ago or more for an apply that never came; removed");
        }
    }
}

/// How long a sent blob may wait for the apply that uses it.
pub const SWEEP_AFTER_SECS: i64 = 600;

/// The blobs of `own` that no image uses and that were written long enough ago.
fn stale_blobs(own: &[(String, i64)], used: &BTreeSet<String>, now: i64) -> Vec<String> {
    own.iter()
        .filter(|(d, written)| !used.contains(d) && now.saturating_sub(*written) >= SWEEP_AFTER_SECS)
        .map(|(d, _)| d.clone())
        .collect()
}

#[derive(Debug, Deserialize)]
struct Desc {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    size: u64,
}

#[derive(Debug)]
struct Manifest {
    media_type: String,
    config: Desc,
    layers: Vec<Desc>,
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const LAYER_TYPES: &[&str] = &[
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar",
];

fn parse_manifest(bytes: &[u8]) -> Result<Manifest, String> {
    #[derive(Deserialize)]
    struct Raw {
        #[serde(rename = "mediaType", default)]
        media_type: String,
        config: Option<Desc>,
        #[serde(default)]
        layers: Vec<Desc>,
        manifests: Option<serde_json::Value>,
    }
    let raw: Raw = serde_json::from_slice(bytes).map_err(|e| format!("manifest: invalid JSON: {e}"))?;
    if raw.manifests.is_some() {
        return Err("an index, not an image manifest: send the linux/amd64 manifest".into());
    }
    let media_type = if raw.media_type.is_empty() { OCI_MANIFEST.to_string() } else { raw.media_type };
    if media_type != OCI_MANIFEST && media_type != "application/vnd.docker.distribution.manifest.v2+json" {
        return Err(format!("manifest: unsupported media type {media_type:?}"));
    }
    let config = raw.config.ok_or("manifest: no config")?;
    if raw.layers.is_empty() || raw.layers.len() > MAX_LAYERS {
        return Err(format!("manifest: {} layers (1 to {MAX_LAYERS} supported)", raw.layers.len()));
    }
    for d in std::iter::once(&config).chain(&raw.layers) {
        if !valid_digest(&d.digest) {
            return Err(format!("manifest: invalid digest {:?}", d.digest));
        }
    }
    if let Some(l) = raw.layers.iter().find(|l| !LAYER_TYPES.contains(&l.media_type.as_str())) {
        return Err(format!("layer {}: unsupported media type {:?}", l.digest, l.media_type));
    }
    Ok(Manifest { media_type, config, layers: raw.layers })
}

#[derive(Debug, Default, PartialEq)]
struct Config {
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    env: Vec<String>,
    working_dir: String,
    user: String,
    diff_ids: Vec<String>,
}

fn parse_config(bytes: &[u8]) -> Result<Config, String> {
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "PascalCase")]
    struct Run {
        #[serde(default)]
        entrypoint: Option<Vec<String>>,
        #[serde(default)]
        cmd: Option<Vec<String>>,
        #[serde(default)]
        env: Option<Vec<String>>,
        #[serde(default)]
        working_dir: String,
        #[serde(default)]
        user: String,
    }
    #[derive(Deserialize)]
    struct RootFs {
        diff_ids: Vec<String>,
    }
    #[derive(Deserialize)]
    struct Raw {
        #[serde(default)]
        architecture: String,
        #[serde(default)]
        os: String,
        #[serde(default)]
        config: Option<Run>,
        rootfs: RootFs,
    }
    let raw: Raw = serde_json::from_slice(bytes).map_err(|e| format!("image config: invalid JSON: {e}"))?;
    if (!raw.os.is_empty() && raw.os != "linux") || (!raw.architecture.is_empty() && raw.architecture != "amd64") {
        return Err(format!("image is for {}/{}, this host runs linux/amd64", raw.os, raw.architecture));
    }
    if let Some(d) = raw.rootfs.diff_ids.iter().find(|d| !valid_digest(d)) {
        return Err(format!("image config: invalid diff_id {d:?}"));
    }
    let run = raw.config.unwrap_or_default();
    Ok(Config {
        entrypoint: run.entrypoint.unwrap_or_default(),
        cmd: run.cmd.unwrap_or_default(),
        env: run.env.unwrap_or_default(),
        working_dir: run.working_dir,
        user: run.user,
        diff_ids: raw.rootfs.diff_ids,
    })
}

/// The OCI chain IDs of a layer stack: the first layer's diff_id, then
/// sha256(parent chain ID + " " + diff_id).
fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    use sha2::{Digest, Sha256};
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(parent) => {
                let h = Sha256::digest(format!("{parent} {d}").as_bytes());
                format!("sha256:{}", h.iter().map(|b| format!("{b:02x}")).collect::<String>())
            }
        };
        out.push(next);
    }
    out
}

/// The lower directories a view's mounts show, top first, as overlay's `lowerdir` takes them.
fn lower_dirs(mounts: &[containerd_client::types::Mount]) -> Result<String, String> {
    match mounts {
        [m] if m.r#type == "bind" => Ok(m.source.clone()),
        [m] if m.r#type == "overlay" => m
            .options
            .iter()
            .find_map(|o| o.strip_prefix("lowerdir="))
            .map(str::to_string)
            .ok_or_else(|| "snapshot view: overlay without lowerdir".to_string()),
        other => Err(format!("snapshot view: unexpected mounts {other:?}")),
    }
}

fn absolute(dir: &str) -> String {
    if dir.starts_with('/') { dir.to_string() } else { format!("/{dir}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn only_old_blobs_no_image_uses_are_swept() {
        let own = vec![(A.to_string(), 1_000), (B.to_string(), 1_000), ("sha256:c".to_string(), 1_500)];
        let used = BTreeSet::from([A.to_string()]);
        assert_eq!(stale_blobs(&own, &used, 1_000 + SWEEP_AFTER_SECS), [B]);
        assert!(stale_blobs(&own, &used, 1_000 + SWEEP_AFTER_SECS - 1).is_empty(), "too young");
    }

    #[test]
    fn chain_ids_follow_the_oci_rule() {
        let ids = chain_ids(&[A.to_string(), B.to_string()]);
        assert_eq!(ids[0], A);
        use sha2::{Digest, Sha256};
        let h = Sha256::digest(format!("{A} {B}").as_bytes());
        assert_eq!(ids[1], format!("sha256:{}", h.iter().map(|b| format!("{b:02x}")).collect::<String>()));
    }

    #[test]
    fn manifests_are_checked_before_use() {
        let ok = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{A}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{B}","size":9}}]}}"#
        );
        let m = parse_manifest(ok.as_bytes()).expect("valid");
        assert_eq!((m.media_type.as_str(), m.layers.len(), m.layers[0].size), (OCI_MANIFEST, 1, 9));
        assert!(parse_manifest(br#"{"manifests":[]}"#).expect_err("index").contains("index"));
        let foreign = ok.replace("tar+gzip", "tar+foreign");
        assert!(parse_manifest(foreign.as_bytes()).expect_err("foreign").contains("unsupported media type"));
        let bad = ok.replace(B, "sha256:../../etc");
        assert!(parse_manifest(bad.as_bytes()).expect_err("digest").contains("invalid digest"));
        let none = ok.replace(
            &format!(r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{B}","size":9}}"#),
            "",
        );
        assert!(parse_manifest(none.as_bytes()).is_err());
    }

    #[test]
    fn an_image_config_gives_its_run_settings_and_refuses_other_platforms() {
        let text = format!(
            r#"{{"architecture":"amd64","os":"linux","config":{{"Cmd":["httpd"],"Env":["A=1"],"WorkingDir":"srv","User":"1:2"}},"rootfs":{{"type":"layers","diff_ids":["{A}"]}}}}"#
        );
        let c = parse_config(text.as_bytes()).expect("config");
        assert_eq!(c.cmd, ["httpd"]);
        assert_eq!((c.working_dir.as_str(), c.user.as_str(), c.diff_ids.len()), ("srv", "1:2", 1));
        assert_eq!(absolute(&c.working_dir), "/srv");
        let arm = text.replace("amd64", "arm64");
        assert!(parse_config(arm.as_bytes()).expect_err("arm").contains("linux/arm64"));
    }

    #[test]
    fn a_view_shows_its_lower_directories() {
        use containerd_client::types::Mount;
        let bind = Mount {
            r#type: "bind".into(),
            source: "/s/1/fs".into(),
            options: vec!["ro".into(), "rbind".into()],
            ..Default::default()
        };
        assert_eq!(lower_dirs(&[bind]).expect("bind"), "/s/1/fs");
        let overlay = Mount {
            r#type: "overlay".into(),
            source: "overlay".into(),
            options: vec!["lowerdir=/s/2/fs:/s/1/fs".into()],
            ..Default::default()
        };
        assert_eq!(lower_dirs(&[overlay]).expect("overlay"), "/s/2/fs:/s/1/fs");
        assert!(lower_dirs(&[]).is_err());
    }
}
