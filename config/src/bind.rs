//! `binds = ["/var/lib/data:/data", "/etc/ssl:/etc/ssl:ro", "data/db:/var/lib/db"]`: host
//! directories or files bind-mounted into a container. A source that is not absolute
//! starts with a volume's name: `data` is the root of `[volume.data]`, `data/db` the
//! directory `db` on it (made with the container's uid and gid if missing).

use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// Absolute path on the host; for a volume bind, the path on the volume, relative and
    /// without a leading or trailing '/' ("" for the volume's root).
    pub source: String,
    /// The `[volume.NAME]` the source is on; None: a host path.
    pub volume: Option<String>,
    /// Absolute path inside the container.
    pub dest: String,
    /// `:ro`; the default is read-write.
    pub readonly: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BindError {
    #[error("invalid bind {0:?}: expected SOURCE:DEST[:ro|rw]")]
    Form(String),
    #[error("invalid bind {0:?}: SOURCE must be an absolute path or VOLUME[/PATH], and DEST an absolute path")]
    Relative(String),
    #[error("invalid bind {0:?}: paths must not contain \"..\"")]
    DotDot(String),
    #[error(
        "invalid bind {0:?}: volumes are mounted under {VOLUMES_DIR} by hoist; write VOLUME/PATH as the source, so \
         that the service waits for the volume"
    )]
    VolumesDir(String),
    #[error("invalid bind {0:?}: the mode after DEST must be ro or rw")]
    Mode(String),
}

/// Where the guest mounts volumes (hoist-guest's `VOLUMES_DIR`): a host bind from there
/// would not wait for the volume, so it is written `VOLUME/PATH` instead.
pub const VOLUMES_DIR: &str = "/var/lib/hoist/volumes";

/// `Bind` parsed from its string form (private, so the error type stays private).
pub(crate) struct BindSpec(pub Bind);

impl FromStr for BindSpec {
    type Err = BindError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |make: fn(String) -> BindError| make(s.to_string());
        let mut parts = s.split(':');
        let (Some(source), Some(dest)) = (parts.next(), parts.next()) else {
            return Err(err(BindError::Form));
        };
        let readonly = match (parts.next(), parts.next()) {
            (None, _) | (Some("rw"), None) => false,
            (Some("ro"), None) => true,
            (Some(_), None) => return Err(err(BindError::Mode)),
            (Some(_), Some(_)) => return Err(err(BindError::Form)),
        };
        let volume =
            if source.starts_with('/') { None } else { Some(volume_source(source).ok_or(err(BindError::Relative))?) };
        let both = [source, dest];
        let checked = if volume.is_some() { &both[1..] } else { &both[..] };
        for path in checked {
            if !path.starts_with('/') || path.contains('\0') {
                return Err(err(BindError::Relative));
            }
        }
        // ".." could climb out of the container's root on the DEST side, and makes the
        // SOURCE side mean something other than what it reads as (or leave the volume).
        if [source, dest].iter().any(|path| path.split('/').any(|part| part == "..")) {
            return Err(err(BindError::DotDot));
        }
        let under = |p: &str| p == VOLUMES_DIR || p.starts_with(&format!("{VOLUMES_DIR}/"));
        if volume.is_none() && under(source.trim_end_matches('/')) {
            return Err(err(BindError::VolumesDir));
        }
        let (volume, source) = match volume {
            Some((name, sub)) => (Some(name.to_string()), sub.to_string()),
            None => (None, source.to_string()),
        };
        Ok(BindSpec(Bind { source, volume, dest: dest.to_string(), readonly }))
    }
}

/// `NAME` or `NAME/PATH` -> (NAME, PATH without a trailing '/'), if NAME has a volume
/// name's syntax and PATH no empty or "." part. ".." is left for the caller's message.
fn volume_source(source: &str) -> Option<(&str, &str)> {
    let (name, sub) = source.split_once('/').unwrap_or((source, ""));
    let sub = sub.strip_suffix('/').unwrap_or(sub);
    name.parse::<crate::names::VolumeName>().ok()?;
    let parts_ok = sub.is_empty() || sub.split('/').all(|p| !p.is_empty() && p != "." && !p.contains('\0'));
    parts_ok.then_some((name, sub))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind(s: &str) -> Result<Bind, BindError> {
        s.parse::<BindSpec>().map(|b| b.0)
    }

    #[test]
    fn modes_default_to_read_write() {
        let rw = Bind { source: "/var/lib/data".into(), volume: None, dest: "/data".into(), readonly: false };
        assert_eq!(bind("/var/lib/data:/data"), Ok(rw.clone()));
        assert_eq!(bind("/var/lib/data:/data:rw"), Ok(rw));
        assert_eq!(bind("/etc/ssl:/etc/ssl:ro").map(|b| b.readonly), Ok(true));
        let dots = Bind { source: "/a..b".into(), volume: None, dest: "/c..".into(), readonly: false };
        assert_eq!(bind("/a..b:/c.."), Ok(dots));
    }

    #[test]
    fn a_relative_source_is_on_a_volume() {
        let on = |volume: &str, source: &str, readonly| Bind {
            source: source.into(),
            volume: Some(volume.into()),
            dest: "/d".into(),
            readonly,
        };
        assert_eq!(bind("data:/d"), Ok(on("data", "", false)));
        assert_eq!(bind("data/:/d:ro"), Ok(on("data", "", true)));
        assert_eq!(bind("data/db/x:/d"), Ok(on("data", "db/x", false)));
        assert_eq!(bind("data/db/:/d"), Ok(on("data", "db", false)));
        for bad in ["Data:/d", "data//x:/d", "data/./x:/d", "./data:/d", "-x:/d"] {
            assert_eq!(bind(bad), Err(BindError::Relative(bad.into())), "{bad:?}");
        }
        assert_eq!(bind("data/../x:/d"), Err(BindError::DotDot("data/../x:/d".into())));
        for raw in ["/var/lib/hoist/volumes/data/x:/d", "/var/lib/hoist/volumes/:/d"] {
            assert_eq!(bind(raw), Err(BindError::VolumesDir(raw.into())), "{raw:?}");
        }
        assert!(bind("/var/lib/hoist/volumesx:/d").is_ok());
    }

    #[test]
    fn rejections() {
        type Make = fn(String) -> BindError;
        let cases: [(&str, Make); 10] = [
            ("/data", BindError::Form),
            ("", BindError::Form),
            ("/a:/b:ro:x", BindError::Form),
            ("da ta:/data", BindError::Relative),
            ("/data:data", BindError::Relative),
            ("/data:", BindError::Relative),
            ("/a/../b:/b", BindError::DotDot),
            ("/a:/b/..", BindError::DotDot),
            ("/a:/b:rx", BindError::Mode),
            ("/a:/b:", BindError::Mode),
        ];
        for (text, expected) in cases {
            assert_eq!(bind(text), Err(expected(text.to_string())), "{text:?}");
        }
    }
}
