//! The build manifest: what `hoist build` resolved for each service (where its unpacked
//! rootfs lives in the guest, the image digest, the image's own run settings), written
//! into the initramfs and read by the supervisor. Build time and boot time share this type,
//! so the two cannot drift apart.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildManifest {
    /// Kernel release the initramfs modules belong to.
    pub kernel_release: String,
    pub service: BTreeMap<String, ServiceImage>,
    /// Seccomp filters compiled at build time by the libseccomp the image's crun uses:
    /// base64 of the BPF program, by the hex sha256 of the profile's JSON. crun loads one
    /// as given (`run.oci.seccomp_bpf_data`) instead of compiling the profile again for
    /// every container. Empty when the runtime is runc.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub seccomp_bpf: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceImage {
    /// The image as the config names it (for messages).
    pub source: String,
    /// "sha256:..." of the image manifest (or of the tree, for a plain directory).
    pub digest: String,
    /// Guest path of the unpacked rootfs tree.
    pub rootfs: String,
    /// The image's own entrypoint/cmd/env/workdir/user. `working_dir` is absolute or
    /// empty; `user` is numeric `UID:GID` or empty, resolved by the builder against the
    /// image's /etc/passwd and /etc/group, except when the config's `user` replaces it
    /// (then it is the image's text, unused).
    #[serde(default)]
    pub entrypoint: Vec<String>,
    #[serde(default)]
    pub cmd: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub working_dir: String,
    #[serde(default)]
    pub user: String,
}

impl BuildManifest {
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a manifest of strings and lists always serializes")
    }

    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_round_trips_through_toml() {
        let mut m = BuildManifest { kernel_release: "6.1.0-56-cloud-amd64".into(), ..Default::default() };
        m.service.insert(
            "web".into(),
            ServiceImage {
                source: "oci:images/busybox".into(),
                digest: "sha256:00".into(),
                rootfs: "/var/lib/hoist/images/00/rootfs".into(),
                cmd: vec!["sh".into()],
                env: vec!["PATH=/bin".into()],
                ..Default::default()
            },
        );
        let back = BuildManifest::from_toml(&m.to_toml()).expect("parse");
        assert_eq!(back, m);
        m.seccomp_bpf.insert("ab".repeat(32), "IAAAAAQAAAA=".into());
        let back = BuildManifest::from_toml(&m.to_toml()).expect("parse with filters");
        assert_eq!(back, m);
    }
}
