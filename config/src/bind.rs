//! `binds = ["/var/lib/data:/data", "/etc/ssl:/etc/ssl:ro"]`: host directories or files
//! bind-mounted into a container.

use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// Absolute path on the host (the VM's root, after PID 1 has mounted the volumes).
    pub source: String,
    /// Absolute path inside the container.
    pub dest: String,
    /// `:ro`; the default is read-write.
    pub readonly: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BindError {
    #[error("invalid bind {0:?}: expected SOURCE:DEST[:ro|rw]")]
    Form(String),
    #[error("invalid bind {0:?}: SOURCE and DEST must be absolute paths")]
    Relative(String),
    #[error("invalid bind {0:?}: paths must not contain \"..\"")]
    DotDot(String),
    #[error("invalid bind {0:?}: the mode after DEST must be ro or rw")]
    Mode(String),
}

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
        for path in [source, dest] {
            if !path.starts_with('/') || path.contains('\0') {
                return Err(err(BindError::Relative));
            }
            // ".." could climb out of the container's root on the DEST side, and makes
            // the SOURCE side mean something other than what it reads as.
            if path.split('/').any(|part| part == "..") {
                return Err(err(BindError::DotDot));
            }
        }
        Ok(BindSpec(Bind { source: source.to_string(), dest: dest.to_string(), readonly }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind(s: &str) -> Result<Bind, BindError> {
        s.parse::<BindSpec>().map(|b| b.0)
    }

    #[test]
    fn modes_default_to_read_write() {
        let rw = Bind { source: "/var/lib/data".into(), dest: "/data".into(), readonly: false };
        assert_eq!(bind("/var/lib/data:/data"), Ok(rw.clone()));
        assert_eq!(bind("/var/lib/data:/data:rw"), Ok(rw));
        assert_eq!(bind("/etc/ssl:/etc/ssl:ro").map(|b| b.readonly), Ok(true));
        assert_eq!(bind("/a..b:/c.."), Ok(Bind { source: "/a..b".into(), dest: "/c..".into(), readonly: false }));
    }

    #[test]
    fn rejections() {
        type Make = fn(String) -> BindError;
        let cases: [(&str, Make); 10] = [
            ("/data", BindError::Form),
            ("", BindError::Form),
            ("/a:/b:ro:x", BindError::Form),
            ("data:/data", BindError::Relative),
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
