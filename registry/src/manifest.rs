//! The parts of an image index and manifest a pull reads (OCI and docker schema 2), the
//! platform an index is resolved to, and the size cap on what a registry sends as JSON.

use serde::Deserialize;

/// A manifest or index larger than this is refused (hoist-images reads no bigger JSON).
pub const MAX_JSON: usize = 16 << 20;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// What a pull accepts, in the Accept header.
pub const ACCEPTED: [&str; 4] = [OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST];

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default)]
    pub platform: Option<PlatformSpec>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PlatformSpec {
    pub architecture: String,
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
}

/// An index or a manifest: which one is told by `manifests` (an index) or `config`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Document {
    #[serde(default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    pub config: Option<Descriptor>,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

impl Document {
    pub fn parse(what: &str, data: &[u8]) -> Result<Document, String> {
        if data.len() > MAX_JSON {
            return Err(format!("{what}: {} bytes, more than the {MAX_JSON} a manifest may have", data.len()));
        }
        let doc: Document =
            serde_json::from_slice(data).map_err(|e| format!("{what}: not a manifest or index: {e}"))?;
        match (&doc.manifests, &doc.config) {
            (Some(_), None) | (None, Some(_)) => Ok(doc),
            _ => Err(format!("{what}: neither an image index nor an image manifest")),
        }
    }
}

/// `os/architecture[/variant]`: what an index is resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// The build host's: linux and its architecture in OCI's names.
    pub fn build_host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        Platform { os: "linux".into(), architecture: architecture.into(), variant: None }
    }

    /// Picks this platform's manifest from an index: the variant must match when both
    /// name one (arm64 images often say `v8`).
    pub fn pick<'a>(&self, manifests: &'a [Descriptor]) -> Option<&'a Descriptor> {
        manifests.iter().find(|d| {
            d.platform.as_ref().is_some_and(|p| {
                p.os == self.os
                    && p.architecture == self.architecture
                    && (self.variant.is_none() || p.variant.is_none() || p.variant == self.variant)
            })
        })
    }
}

impl std::str::FromStr for Platform {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let part_ok = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] if part_ok(os) && part_ok(arch) => {
                Ok(Platform { os: os.to_string(), architecture: arch.to_string(), variant: None })
            }
            [os, arch, variant] if part_ok(os) && part_ok(arch) && part_ok(variant) => {
                Ok(Platform { os: os.to_string(), architecture: arch.to_string(), variant: Some(variant.to_string()) })
            }
            _ => Err(format!("platform {s:?} is not OS/ARCH[/VARIANT], e.g. linux/amd64 or linux/arm64/v8")),
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// The platforms an index offers, for an error that lists them.
pub fn offered(manifests: &[Descriptor]) -> String {
    let list: Vec<String> = manifests
        .iter()
        .filter_map(|d| d.platform.as_ref())
        .map(|p| match &p.variant {
            Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
            None => format!("{}/{}", p.os, p.architecture),
        })
        .collect();
    if list.is_empty() { "none named".into() } else { list.join(", ") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> Vec<Descriptor> {
        let text = r#"{"manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:a", "size": 1,
             "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            {"digest": "sha256:b", "size": 2, "platform": {"os": "linux", "architecture": "amd64"}},
            {"digest": "sha256:c", "size": 3}
        ]}"#;
        Document::parse("index", text.as_bytes()).expect("index").manifests.expect("manifests")
    }

    #[test]
    fn an_index_resolves_to_the_platform_asked_for() {
        let m = index();
        let pick = |p: &str| p.parse::<Platform>().expect("platform").pick(&m).map(|d| d.digest.clone());
        assert_eq!(pick("linux/amd64").as_deref(), Some("sha256:b"));
        assert_eq!(pick("linux/arm64").as_deref(), Some("sha256:a"));
        assert_eq!(pick("linux/arm64/v8").as_deref(), Some("sha256:a"));
        assert_eq!(pick("linux/arm64/v7"), None);
        assert_eq!(pick("linux/s390x"), None);
        assert_eq!(offered(&m), "linux/arm64/v8, linux/amd64");
    }

    #[test]
    fn platforms_and_documents_are_checked() {
        for bad in ["linux", "linux/", "/amd64", "linux/amd64/v1/x", "linux/am d64"] {
            assert!(bad.parse::<Platform>().is_err(), "{bad}");
        }
        assert_eq!("linux/arm64/v8".parse::<Platform>().expect("ok").to_string(), "linux/arm64/v8");
        assert!(Document::parse("m", b"{}").expect_err("neither").contains("neither"));
        assert!(Document::parse("m", b"[").expect_err("json").contains("not a manifest"));
        let manifest =
            br#"{"config": {"digest": "sha256:c", "size": 2}, "layers": [{"digest": "sha256:l", "size": 9}]}"#;
        assert_eq!(Document::parse("m", manifest).expect("manifest").layers.len(), 1);
        assert_eq!(Platform::build_host().os, "linux");
    }
}
