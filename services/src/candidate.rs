//! A config sent by `hoist apply`, made into what the core can roll out: validated exactly
//! as `hoist check` does, each container's image found on this host by the digest the
//! client resolved, and turned into a [`Desired`]. Nothing is trusted: the text is parsed
//! here, and an image is used only when the host holds it under that digest (built into
//! the initramfs, or sent and imported: [`crate::images`]); the client's paths never reach
//! the host.

use std::collections::BTreeMap;

use hoist_config::manifest::{BuildManifest, ServiceImage};

use crate::plan::Desired;

#[derive(Debug, Clone)]
pub struct Candidate {
    pub text: String,
    pub table: toml::Table,
    pub digest: String,
    /// Image digest of every container, by name.
    pub images: BTreeMap<String, String>,
    pub desired: Desired,
}

/// The images this host holds, by digest. When one image serves several containers, the
/// entry whose `user` is resolved (numeric or empty) is kept: it fits every config.
pub fn known_images(manifest: &BuildManifest) -> BTreeMap<String, ServiceImage> {
    let mut known: BTreeMap<String, ServiceImage> = BTreeMap::new();
    for image in manifest.service.values() {
        let better = known.get(&image.digest).is_none_or(|k| !resolved(&k.user) && resolved(&image.user));
        if better {
            known.insert(image.digest.clone(), image.clone());
        }
    }
    known
}

fn resolved(user: &str) -> bool {
    user.is_empty() || user.split(':').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether an image the host does not hold is an error ([`Missing::Refuse`], to run it) or
/// stands in by its digest alone ([`Missing::Allow`], enough for a plan).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    Refuse,
    Allow,
}

/// The name a request's config goes by in errors: the client's file name, if it gave one.
pub fn file_name(file: &str) -> &str {
    if file.is_empty() { "host.toml" } else { file }
}

/// Validates `text` and finds every image; the error says what and where.
pub fn make(
    text: &str,
    file: &str,
    images: &BTreeMap<String, String>,
    known: &BTreeMap<String, ServiceImage>,
    kernel_release: &str,
    filters: &crate::plan::Filters,
    missing: Missing,
) -> Result<Candidate, String> {
    let file = file_name(file);
    let config = hoist_config::parse(text, file).map_err(|e| e.to_string())?;
    let table: toml::Table = text.parse().map_err(|e| format!("{file}: {e}"))?;
    // The filters compiled into this host's image serve any config with the same profiles.
    let mut manifest = BuildManifest {
        kernel_release: kernel_release.to_string(),
        seccomp_bpf: filters.clone(),
        ..Default::default()
    };
    let mut used = BTreeMap::new();
    for hoist_config::Container { kind: what, name, image: source, user } in config.containers() {
        let source = source.describe();
        let Some(digest) = images.get(name) else {
            return Err(format!("{what} {name}: the request gives no image digest for it ({source})"));
        };
        if !crate::images::valid_digest(digest) {
            return Err(format!("{what} {name}: invalid image digest {digest:?}: expected sha256:<64 lowercase hex>"));
        }
        let stand_in;
        let image = match known.get(digest) {
            Some(image) => image,
            None if missing == Missing::Allow => {
                stand_in = ServiceImage { digest: digest.clone(), ..Default::default() };
                &stand_in
            }
            None => {
                return Err(format!(
                    "{what} {name}: image {source} ({digest}) is not on this host and was not sent with the apply"
                ));
            }
        };
        if user.is_none() && !resolved(&image.user) {
            return Err(format!(
                "{what} {name}: image {source} runs as user {:?}, which this host has not resolved; set `user` in the config or rebuild",
                image.user
            ));
        }
        manifest.service.insert(name.to_string(), ServiceImage { source, ..image.clone() });
        used.insert(name.to_string(), digest.clone());
    }
    let desired = Desired::from_config(&config, &manifest);
    Ok(Candidate { text: text.to_string(), table, digest: crate::generations::digest(text), images: used, desired })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn known() -> BTreeMap<String, ServiceImage> {
        let mut m = BuildManifest::default();
        let img = |digest: &str, user: &str| ServiceImage {
            source: "oci:/build/machine/path".into(),
            digest: digest.into(),
            rootfs: format!("/var/lib/hoist/images/{}/rootfs", &digest[7..23]),
            cmd: vec!["httpd".into()],
            user: user.into(),
            ..Default::default()
        };
        m.service.insert("a".into(), img(D1, "nobody"));
        m.service.insert("b".into(), img(D1, "65534:65534"));
        m.service.insert("c".into(), img(D2, "www"));
        known_images(&m)
    }

    fn images(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn a_known_image_is_used_from_its_host_path_whatever_the_client_path() {
        let text = "version = 1\n[service.web]\nimage = \"oci:/client/side/img\"\n";
        let c = make(text, "host.toml", &images(&[("web", D1)]), &known(), "6.1", &Default::default(), Missing::Refuse)
            .expect("candidate");
        let plan = &c.desired.services["web"];
        assert!(plan.problem.is_none(), "{:?}", plan.problem);
        assert!(plan.rootfs.starts_with("/var/lib/hoist/images/"), "{}", plan.rootfs);
        assert_eq!(c.images["web"], D1);
        assert_eq!(c.digest, crate::generations::digest(text));
    }

    #[test]
    fn a_candidate_of_the_built_config_plans_what_booted_filters_included() {
        let text = "version = 1\n[service.web]\nimage = \"oci:/client/side/img\"\n";
        let config = hoist_config::parse(text, "host.toml").expect("config");
        let profile = crate::spec::seccomp_profile("web", &crate::spec::Settings::from(&config.service["web"]))
            .expect("profile")
            .expect("confined");
        let filters: crate::plan::Filters = [(crate::seccomp::key(&profile).expect("key"), "QUJD".to_string())].into();
        let known = known();
        let c = make(text, "host.toml", &images(&[("web", D1)]), &known, "6.1", &filters, Missing::Refuse)
            .expect("candidate");
        let mut booted = BuildManifest { seccomp_bpf: filters.clone(), ..Default::default() };
        booted
            .service
            .insert("web".into(), ServiceImage { source: "oci:/client/side/img".into(), ..known[D1].clone() });
        let at_boot = Desired::from_config(&config, &booted);
        assert_eq!(
            c.desired.services["web"].id(),
            at_boot.services["web"].id(),
            "an unchanged service must not restart"
        );
    }

    #[test]
    fn an_invalid_config_names_file_line_and_key() {
        let text = "version = 1\n[service.web]\nimage = \"oci:x\"\nstop_timeout = \"5x\"\n";
        let err =
            make(text, "edited.toml", &images(&[("web", D1)]), &known(), "6.1", &Default::default(), Missing::Refuse)
                .expect_err("invalid");
        assert!(err.starts_with("edited.toml:4:"), "{err}");
        assert!(err.contains("service.web.stop_timeout"), "{err}");
    }

    #[test]
    fn an_image_the_host_does_not_hold_or_a_missing_or_bad_digest_is_refused() {
        let text = "version = 1\n[service.web]\nimage = \"oci:x\"\n";
        let missing = "sha256:3333333333333333333333333333333333333333333333333333333333333333";
        let err =
            make(text, "h.toml", &images(&[("web", missing)]), &known(), "6.1", &Default::default(), Missing::Refuse)
                .expect_err("unknown");
        assert!(err.contains("service web: image oci:x (sha256:3333") && err.contains("not on this host"), "{err}");
        let plan_only =
            make(text, "h.toml", &images(&[("web", missing)]), &known(), "6.1", &Default::default(), Missing::Allow);
        assert_eq!(plan_only.expect("a plan needs only the digest").images["web"], missing);
        let err = make(text, "h.toml", &images(&[]), &known(), "6.1", &Default::default(), Missing::Refuse)
            .expect_err("none");
        assert!(err.contains("no image digest"), "{err}");
        let err = make(
            text,
            "h.toml",
            &images(&[("web", "sha256:../../x")]),
            &known(),
            "6.1",
            &Default::default(),
            Missing::Refuse,
        )
        .expect_err("bad");
        assert!(err.contains("invalid image digest"), "{err}");
    }

    #[test]
    fn an_image_user_the_build_left_unresolved_needs_a_user_in_the_config() {
        let text = "version = 1\n[service.web]\nimage = \"oci:x\"\n";
        let err = make(text, "h.toml", &images(&[("web", D2)]), &known(), "6.1", &Default::default(), Missing::Refuse)
            .expect_err("www unresolved");
        assert!(err.contains("user \"www\""), "{err}");
        let with_user = "version = 1\n[service.web]\nimage = \"oci:x\"\nuser = \"1000:1000\"\n";
        make(with_user, "h.toml", &images(&[("web", D2)]), &known(), "6.1", &Default::default(), Missing::Refuse)
            .expect("numeric user given");
        // D1 is held twice; the resolved entry wins.
        make(text, "h.toml", &images(&[("web", D1)]), &known(), "6.1", &Default::default(), Missing::Refuse)
            .expect("resolved entry");
    }
}
