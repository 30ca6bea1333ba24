//! The JSON documents of the OCI image spec and of `docker save`, as far as hoist reads or
//! writes them. Readers ignore unknown fields (images carry many); writers use struct field
//! order and sorted maps, so output is deterministic.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ImageConfig;

pub(super) const LAYOUT_VERSION: &str = "1.0.0";
pub(super) const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// containerd's `ctr export` puts the full reference here and only the tag in REF_NAME.
pub(super) const CONTAINERD_NAME: &str = "io.containerd.image.name";

pub(super) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(super) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(super) const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub(super) const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub(super) const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub(super) const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub(super) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub(super) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub(super) const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct OciLayout {
    #[serde(rename = "imageLayoutVersion")]
    pub version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    pub fn is_linux_amd64(&self) -> bool {
        self.platform.as_ref().is_some_and(|p| p.os == "linux" && p.architecture == "amd64")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Platform {
    pub architecture: String,
    pub os: String,
}

/// `index.json` and nested indexes.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// An image config blob; the same shape in OCI and Docker.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct ConfigBlob {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub config: Option<RunConfig>,
    #[serde(default)]
    pub rootfs: Option<RootFs>,
}

impl ConfigBlob {
    /// "os/architecture", as [`super::Image::platform`] holds it.
    pub fn platform(&self) -> String {
        format!("{}/{}", self.os, self.architecture)
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct RunConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

impl From<Option<RunConfig>> for ImageConfig {
    fn from(c: Option<RunConfig>) -> Self {
        let c = c.unwrap_or_default();
        ImageConfig {
            entrypoint: c.entrypoint.unwrap_or_default(),
            cmd: c.cmd.unwrap_or_default(),
            env: c.env.unwrap_or_default(),
            working_dir: c.working_dir.unwrap_or_default(),
            user: c.user.unwrap_or_default(),
        }
    }
}

impl From<&ImageConfig> for RunConfig {
    /// Empty fields are left out: absent and empty mean the same to every runtime.
    fn from(c: &ImageConfig) -> Self {
        fn vec(v: &[String]) -> Option<Vec<String>> {
            (!v.is_empty()).then(|| v.to_vec())
        }
        fn string(s: &str) -> Option<String> {
            (!s.is_empty()).then(|| s.to_string())
        }
        RunConfig {
            entrypoint: vec(&c.entrypoint),
            cmd: vec(&c.cmd),
            env: vec(&c.env),
            working_dir: string(&c.working_dir),
            user: string(&c.user),
        }
    }
}

/// One entry of a `docker save` manifest.json.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct DockerManifest {
    pub config: String,
    #[serde(default)]
    pub repo_tags: Option<Vec<String>>,
    pub layers: Vec<String>,
}

/// Parses JSON, naming `what` (a path or blob) on failure.
pub(super) fn parse<T: serde::de::DeserializeOwned>(
    what: &dyn std::fmt::Display,
    data: &[u8],
) -> Result<T, super::OciError> {
    serde_json::from_slice(data).map_err(|source| super::OciError::Json { what: what.to_string(), source })
}

/// Serializes one of the structs above. They hold only strings, numbers, vectors and
/// string-keyed maps, which serde_json always accepts.
pub(super) fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("plain structs with string keys always serialize")
}
