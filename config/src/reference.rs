//! Image references (`busybox:1.36`, `acme/app:1`, `localhost:5000/app`,
//! `busybox@sha256:...`) normalized the way the docker CLI does, so that what users write
//! matches what `docker save` and skopeo write into an archive's RepoTags
//! (`docker.io/library/busybox:1.36`, or the short form, depending on the tool). Parsed
//! here so that `hoist check` refuses a malformed one; the builder matches with it.
//!
//! - The first path component is a registry only if there is more than one component and
//!   it contains `.` or `:`, is `localhost`, or has upper-case letters. Otherwise the
//!   registry is `docker.io`; `index.docker.io` is another spelling of it.
//! - On docker.io, a one-component name is an official image under `library/`.
//! - The tag follows the last `:` after the last `/` (so `localhost:5000/app` has no tag),
//!   and is `latest` when neither a tag nor a digest is given.
//! - A digest follows `@`; only `sha256:` with 64 lowercase hex digits. `@sha256:...`
//!   alone, without a name, is accepted too.

use std::fmt;

const DEFAULT_REGISTRY: &str = "docker.io";
const LEGACY_DEFAULT_REGISTRY: &str = "index.docker.io";
const OFFICIAL_PREFIX: &str = "library/";
const DEFAULT_TAG: &str = "latest";
/// The docker CLI's limit on tags.
const MAX_TAG: usize = 128;
/// The docker CLI's limit on a whole name, registry included.
const MAX_NAME: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {reference:?}: {reason}")]
pub struct ReferenceError {
    pub reference: String,
    pub reason: &'static str,
}

/// A normalized reference. At least one of `name` and `digest` is set; `tag` is set
/// whenever `digest` is not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Registry and repository: `docker.io/library/busybox`, `localhost:5000/app`.
    pub name: Option<String>,
    pub tag: Option<String>,
    /// `sha256:<hex>`.
    pub digest: Option<String>,
}

impl Reference {
    pub fn parse(text: &str) -> Result<Self, ReferenceError> {
        let err = |reason| ReferenceError { reference: text.to_string(), reason };
        let (named, digest) = match text.split_once('@') {
            Some((named, digest)) => (named, Some(parse_digest(digest).map_err(err)?)),
            None => (text, None),
        };
        if named.is_empty() {
            return match digest {
                Some(digest) => Ok(Reference { name: None, tag: None, digest: Some(digest) }),
                None => Err(err("the reference is empty")),
            };
        }
        let last_slash = named.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match named[last_slash..].rfind(':') {
            Some(i) => (&named[..last_slash + i], Some(&named[last_slash + i + 1..])),
            None => (named, None),
        };
        if let Some(tag) = tag {
            check_tag(tag).map_err(err)?;
        }
        let name = normalize_name(name).map_err(err)?;
        let tag = match (tag, &digest) {
            (Some(tag), _) => Some(tag.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_TAG.to_string()),
        };
        Ok(Reference { name: Some(name), tag, digest })
    }

    /// [`Reference::parse`] for a pull from a registry: the name is required (`@sha256:...`
    /// alone names no repository), and docker's stricter rules apply: the registry is a
    /// host name or address with an optional port, a repository component joins lowercase
    /// letters and digits with one `.`, one or two `_` or any number of `-`, the whole name
    /// is at most 255 characters, and a repository is not 64 hex digits (an image ID).
    pub fn parse_named(text: &str) -> Result<Self, ReferenceError> {
        let reference = Self::parse(text)?;
        let err = |reason| ReferenceError { reference: text.to_string(), reason };
        let (Some(registry), Some(repository)) = (reference.registry(), reference.repository()) else {
            return Err(err("a registry image needs a repository name, e.g. nginx:1.27 or nginx@sha256:..."));
        };
        if reference.name.as_ref().is_some_and(|n| n.len() > MAX_NAME) {
            return Err(err("a name is at most 255 characters"));
        }
        if !is_domain(registry) {
            return Err(err("the registry is a host name or address with an optional :port"));
        }
        if !repository.split('/').all(is_docker_component) {
            return Err(err("a repository component joins lowercase letters and digits with '.', '_', '__' or dashes"));
        }
        let short = repository.strip_prefix(OFFICIAL_PREFIX).unwrap_or(repository);
        if short.len() == 64 && short.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err("64 hex digits are an image ID, not a repository"));
        }
        Ok(reference)
    }

    /// The registry part of the name: `docker.io`, `localhost:5000`.
    pub fn registry(&self) -> Option<&str> {
        Some(self.name.as_deref()?.split_once('/')?.0)
    }

    /// The repository within the registry: `library/nginx`, `acme/api`.
    pub fn repository(&self) -> Option<&str> {
        Some(self.name.as_deref()?.split_once('/')?.1)
    }

    /// The same image by name and tag (a digest, if any, is compared separately).
    pub fn same_name_and_tag(&self, other: &Reference) -> bool {
        self.name.is_some() && self.name == other.name && self.tag == other.tag
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = &self.name {
            f.write_str(name)?;
        }
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

fn parse_digest(digest: &str) -> Result<String, &'static str> {
    match digest.split_once(':') {
        Some(("sha256", hex)) if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) => {
            Ok(digest.to_string())
        }
        Some(("sha256", _)) => Err("a sha256 digest is 64 lowercase hex digits"),
        Some(_) => Err("only sha256 digests are supported"),
        None => Err("expected a digest like @sha256:<64 hex digits>"),
    }
}

fn check_tag(tag: &str) -> Result<(), &'static str> {
    let mut bytes = tag.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    if first_ok && tag.len() <= MAX_TAG && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')) {
        Ok(())
    } else {
        Err("a tag is 1-128 letters, digits, '_', '.' and '-', not starting with '.' or '-'")
    }
}

/// `registry/path` with the docker.io defaults filled in.
fn normalize_name(name: &str) -> Result<String, &'static str> {
    let (registry, path) = match name.split_once('/') {
        Some((first, rest)) if is_registry(first) => (first, rest),
        _ => (DEFAULT_REGISTRY, name),
    };
    if registry.is_empty() {
        return Err("the registry is empty");
    }
    if !path.split('/').all(is_path_component) {
        return Err("a repository is lowercase letters and digits, separated by '/', '.', '_' or '-'");
    }
    let registry = if registry == LEGACY_DEFAULT_REGISTRY { DEFAULT_REGISTRY } else { registry };
    if registry == DEFAULT_REGISTRY && !path.contains('/') {
        return Ok(format!("{registry}/{OFFICIAL_PREFIX}{path}"));
    }
    Ok(format!("{registry}/{path}"))
}

fn is_registry(component: &str) -> bool {
    component.contains(['.', ':']) || component == "localhost" || component.bytes().any(|b| b.is_ascii_uppercase())
}

/// docker's domain: dot-separated labels of letters, digits and inner dashes, or an IPv6
/// address in brackets; then an optional port.
fn is_domain(domain: &str) -> bool {
    let (host, port) = match domain.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(':') && (!host.starts_with('[') || host.ends_with(']')) => {
            (host, Some(port))
        }
        _ => (domain, None),
    };
    if port.is_some_and(|p| p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit())) {
        return false;
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse::<std::net::Ipv6Addr>().is_ok();
    }
    let label = |l: &str| {
        let b = l.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-')
    };
    host.split('.').all(label)
}

/// docker's path component: `[a-z0-9]+` runs joined by `.`, `_`, `__` or dashes.
fn is_docker_component(part: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut rest = part.as_bytes();
    loop {
        let run = rest.iter().take_while(|&&b| alnum(b)).count();
        if run == 0 {
            return false;
        }
        rest = &rest[run..];
        let sep = rest.iter().take_while(|&&b| !alnum(b)).count();
        if sep == 0 {
            return rest.is_empty();
        }
        let ok = matches!(&rest[..sep], b"." | b"_" | b"__") || rest[..sep].iter().all(|&b| b == b'-');
        if !ok {
            return false;
        }
        rest = &rest[sep..];
    }
}

fn is_path_component(part: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = part.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(&first), Some(&last)) => {
            alnum(first) && alnum(last) && bytes.iter().all(|&b| alnum(b) || matches!(b, b'.' | b'_' | b'-'))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normal(text: &str) -> String {
        Reference::parse(text).unwrap_or_else(|e| panic!("{e}")).to_string()
    }

    #[test]
    fn references_normalize_like_the_docker_cli() {
        let hex = "0123456789abcdef".repeat(4);
        let digested = format!("busybox@sha256:{hex}");
        let tagged_and_digested = format!("busybox:1.36@sha256:{hex}");
        let digest_only = format!("@sha256:{hex}");
        let table: &[(&str, String)] = &[
            ("busybox", "docker.io/library/busybox:latest".into()),
            ("busybox:1.36", "docker.io/library/busybox:1.36".into()),
            ("library/busybox:1.36", "docker.io/library/busybox:1.36".into()),
            ("docker.io/busybox", "docker.io/library/busybox:latest".into()),
            ("docker.io/library/busybox:1.36", "docker.io/library/busybox:1.36".into()),
            ("index.docker.io/library/busybox", "docker.io/library/busybox:latest".into()),
            ("acme/app:1", "docker.io/acme/app:1".into()),
            ("docker.io/acme/app:1", "docker.io/acme/app:1".into()),
            ("acme/team/app", "docker.io/acme/team/app:latest".into()),
            // A registry with a port: that colon is not a tag.
            ("localhost:5000/app", "localhost:5000/app:latest".into()),
            ("localhost:5000/app:2", "localhost:5000/app:2".into()),
            ("localhost/app", "localhost/app:latest".into()),
            ("quay.io/org/app:v1.2_rc-1", "quay.io/org/app:v1.2_rc-1".into()),
            ("Registry/app", "Registry/app:latest".into()),
            // Only one component: a name and a tag, as docker reads it.
            ("localhost:5000", "docker.io/library/localhost:5000".into()),
            ("my-app.v2", "docker.io/library/my-app.v2:latest".into()),
            // With a digest there is no default tag.
            (&digested, format!("docker.io/library/busybox@sha256:{hex}")),
            (&tagged_and_digested, format!("docker.io/library/busybox:1.36@sha256:{hex}")),
            (&digest_only, format!("@sha256:{hex}")),
        ];
        for (text, want) in table {
            assert_eq!(normal(text), *want, "{text:?}");
        }
        // Both spellings meet in the middle.
        let short = Reference::parse("busybox:1.36").expect("short");
        let long = Reference::parse("docker.io/library/busybox:1.36").expect("long");
        assert!(
            short.same_name_and_tag(&long) && !short.same_name_and_tag(&Reference::parse("busybox").expect("bare"))
        );
    }

    #[test]
    fn registry_references_follow_the_stricter_rules() {
        let hex = "a".repeat(64);
        for good in
            ["nginx", "registry.local:5000/acme/api:2", "[::1]:5000/app", "a__b/c-----d/e.f_g", "127.0.0.1:5000/x"]
        {
            Reference::parse_named(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        let named = Reference::parse_named("registry.local:5000/acme/api:2").expect("named");
        assert_eq!((named.registry(), named.repository()), (Some("registry.local:5000"), Some("acme/api")));
        let official = Reference::parse_named("nginx").expect("official");
        assert_eq!((official.registry(), official.repository()), (Some("docker.io"), Some("library/nginx")));
        let cases: &[(String, &str)] = &[
            (format!("@sha256:{hex}"), "needs a repository name"),
            ("a..b".into(), "joins lowercase"),
            ("a._b".into(), "joins lowercase"),
            ("a___b".into(), "joins lowercase"),
            (format!("acme/{}", "a".repeat(260)), "at most 255"),
            ("bad_host.io/app".into(), "host name or address"),
            ("host.io:port/app".into(), "host name or address"),
            ("-host.io/app".into(), "host name or address"),
            ("ab".repeat(32), "image ID"),
        ];
        for (text, reason) in cases {
            let err = Reference::parse_named(text).expect_err(text);
            assert!(err.reason.contains(reason), "{text:?}: {err}");
        }
    }

    #[test]
    fn bad_references_say_why() {
        let hex = "a".repeat(64);
        let cases: &[(String, &str)] = &[
            ("".into(), "the reference is empty"),
            ("Busybox".into(), "a repository is lowercase"),
            ("busybox:".into(), "a tag is 1-128"),
            ("busybox:.x".into(), "a tag is 1-128"),
            (format!("busybox:{}", "t".repeat(129)), "a tag is 1-128"),
            ("busybox:1:2".into(), "a repository is lowercase"),
            (":1.36".into(), "a repository is lowercase"),
            ("a//b".into(), "a repository is lowercase"),
            ("acme/-app".into(), "a repository is lowercase"),
            ("busybox@sha256:xyz".into(), "64 lowercase hex"),
            (format!("busybox@sha256:{}", "A".repeat(64)), "64 lowercase hex"),
            (format!("busybox@sha512:{hex}"), "only sha256"),
            ("busybox@".into(), "expected a digest"),
        ];
        for (text, reason) in cases {
            let err = Reference::parse(text).expect_err(text);
            assert!(err.reason.contains(reason), "{text:?}: {err}");
            assert!(err.to_string().starts_with(&format!("invalid image reference {text:?}: ")), "{err}");
        }
    }
}
