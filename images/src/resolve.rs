//! Image config values that would need a lookup in the guest, resolved at build time
//! against the unpacked image, so the build manifest hands the supervisor numbers and
//! absolute paths only.
//!
//! - `User` (`nobody`, `www-data:www-data`, `1000`, `1000:staff`) becomes `UID:GID` from
//!   the image's own /etc/passwd and /etc/group, the way runc resolves it for docker: a
//!   name must be in the file; a number is used as is, and without a group takes its
//!   passwd entry's group (or 0 if it has none). Supplementary groups are not looked up:
//!   the runtime spec the supervisor writes carries one uid and one gid.
//! - A relative `WorkingDir` is taken relative to `/`, as docker does.
//!
//! The files are read from the image tree only: symlinks are followed inside it (a link
//! to `/etc/passwd` means the image's), never out to the build host, and a file over
//! [`MAX_DB_SIZE`] is refused.

use crate::tree::{Node, Tree};

/// The most of /etc/passwd or /etc/group that is read; a real one is a few KiB.
pub const MAX_DB_SIZE: usize = 1 << 20;

/// (uid_t)-1, which the kernel does not take as an id (as in hoist-config).
const NO_ID: u32 = u32::MAX;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("no user named {0:?} in the image's /etc/passwd")]
    NoSuchUser(String),
    #[error("no group named {0:?} in the image's /etc/group")]
    NoSuchGroup(String),
    #[error("the image has no /etc/{0} to look {1:?} up in")]
    NoDatabase(&'static str, String),
    #[error("the image's /etc/{0} is larger than 1 MiB")]
    TooLarge(&'static str),
    #[error("the image's /etc/{0} is not a regular file")]
    NotAFile(&'static str),
    #[error("the image's /etc/{0} is not UTF-8")]
    NotUtf8(&'static str),
    #[error("id {0} is invalid: 4294967295 is (uid_t)-1")]
    InvalidId(u32),
    #[error("expected USER, UID, USER:GROUP or UID:GID")]
    Form,
}

/// The image's `User` as numeric `UID:GID`; empty stays empty (root, the runtime's
/// default).
pub fn user(rootfs: &Tree, spec: &str) -> Result<String, UserError> {
    let spec = spec.trim();
    if spec.is_empty() {
        return Ok(String::new());
    }
    let (user, group) = match spec.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (spec, None),
    };
    if user.is_empty() || group.is_some_and(str::is_empty) || group.is_some_and(|g| g.contains(':')) {
        return Err(UserError::Form);
    }
    let (uid, primary_gid) = match number(user)? {
        Some(uid) => {
            // A number need not be in passwd; when it is, it brings its group.
            let passwd = database(rootfs, "passwd", None)?;
            let gid = records(&passwd).find(|r| r.id == Some(uid)).and_then(|r| r.gid).unwrap_or(0);
            (uid, gid)
        }
        None => {
            let passwd = database(rootfs, "passwd", Some(user))?;
            let entry = records(&passwd).find(|r| r.name == user && r.id.is_some());
            let entry = entry.ok_or_else(|| UserError::NoSuchUser(user.to_string()))?;
            (entry.id.expect("filtered on id"), entry.gid.unwrap_or(0))
        }
    };
    let gid = match group {
        None => primary_gid,
        Some(group) => match number(group)? {
            Some(gid) => gid,
            None => {
                let groups = database(rootfs, "group", Some(group))?;
                let entry = records(&groups).find(|r| r.name == group && r.id.is_some());
                entry.and_then(|r| r.id).ok_or_else(|| UserError::NoSuchGroup(group.to_string()))?
            }
        },
    };
    if uid == NO_ID || gid == NO_ID {
        return Err(UserError::InvalidId(NO_ID));
    }
    Ok(format!("{uid}:{gid}"))
}

/// The image's `WorkingDir` as an absolute path: relative to `/` as docker takes it, with
/// `.` and `..` folded (`..` stops at `/`). Empty stays empty (the runtime's `/`).
pub fn working_dir(dir: &str) -> String {
    if dir.is_empty() {
        return String::new();
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in dir.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// All digits: an id (u32::from_str alone would take "+1"). Too large for u32: invalid.
fn number(text: &str) -> Result<Option<u32>, UserError> {
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| UserError::Form)
}

/// /etc/`name` of the image as text; empty when the image has none, unless `looking_for`
/// a name, which then cannot be found.
fn database(rootfs: &Tree, name: &'static str, looking_for: Option<&str>) -> Result<String, UserError> {
    let node = rootfs.resolve(format!("etc/{name}")).and_then(|path| rootfs.get(&path)).map(|e| &e.node);
    let data = match node {
        Some(Node::File { data, .. }) => data,
        Some(_) => return Err(UserError::NotAFile(name)),
        None => {
            return match looking_for {
                Some(wanted) => Err(UserError::NoDatabase(name, wanted.to_string())),
                None => Ok(String::new()),
            };
        }
    };
    if data.len() > MAX_DB_SIZE {
        return Err(UserError::TooLarge(name));
    }
    String::from_utf8(data.to_vec()).map_err(|_| UserError::NotUtf8(name))
}

/// One line of passwd (`name:x:uid:gid:...`) or group (`name:x:gid:members`); `gid` is
/// only meaningful for passwd.
struct Record<'a> {
    name: &'a str,
    id: Option<u32>,
    gid: Option<u32>,
}

/// The lines that have a name and an id field; comments and blank lines are skipped, and
/// an id that does not parse is None, so such an entry never matches.
fn records(text: &str) -> impl Iterator<Item = Record<'_>> {
    text.lines().filter(|l| !l.trim_start().starts_with('#')).filter_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next().filter(|n| !n.is_empty())?;
        let id = fields.nth(1)?.parse().ok();
        let gid = fields.next().and_then(|g| g.parse().ok());
        Some(Record { name, id, gid })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n# a comment\n\nwww-data:x:33:33:www:/var/www:/sbin/nologin\nnobody:x:65534:65534:nobody:/:/bin/false\nbroken:x:notanumber:1::/:\napp:x:1000:1001::/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nwww-data:x:33:\nstaff:x:50:app\nnogroup:x:65534:\napp:x:1001:\n";

    fn image() -> Tree {
        let mut t = Tree::new();
        t.insert_file("etc/passwd", 0o644, PASSWD.as_bytes().to_vec());
        t.insert_file("etc/group", 0o644, GROUP.as_bytes().to_vec());
        t
    }

    #[test]
    fn names_and_numbers_resolve_like_runc() {
        let t = image();
        let cases = [
            ("", ""),
            ("nobody", "65534:65534"),
            ("www-data:www-data", "33:33"),
            ("app", "1000:1001"),
            ("app:staff", "1000:50"),
            ("app:7", "1000:7"),
            // A uid in passwd brings its group; one that is not gets 0.
            ("1000", "1000:1001"),
            ("4242", "4242:0"),
            ("4242:staff", "4242:50"),
            ("0:0", "0:0"),
            (" 33 ", "33:33"),
        ];
        for (spec, want) in cases {
            assert_eq!(user(&t, spec).as_deref(), Ok(want), "{spec:?}");
        }
    }

    #[test]
    fn what_cannot_be_resolved_says_why() {
        let t = image();
        let cases = [
            ("mysql", UserError::NoSuchUser("mysql".into())),
            ("broken", UserError::NoSuchUser("broken".into())),
            ("app:wheel", UserError::NoSuchGroup("wheel".into())),
            ("app:", UserError::Form),
            (":staff", UserError::Form),
            ("a:b:c", UserError::Form),
            ("4294967296", UserError::Form),
            ("4294967295", UserError::InvalidId(u32::MAX)),
            ("0:4294967295", UserError::InvalidId(u32::MAX)),
        ];
        for (spec, want) in cases {
            assert_eq!(user(&t, spec), Err(want), "{spec:?}");
        }
        let empty = Tree::new();
        assert_eq!(user(&empty, "1000").as_deref(), Ok("1000:0"));
        assert_eq!(user(&empty, "nobody"), Err(UserError::NoDatabase("passwd", "nobody".into())));
        assert_eq!(user(&empty, "1:staff"), Err(UserError::NoDatabase("group", "staff".into())));
    }

    #[test]
    fn the_files_are_read_inside_the_image_only() {
        // /etc/passwd -> /usr/share/passwd: followed inside the image.
        let mut t = Tree::new();
        t.insert_file("usr/share/passwd", 0o644, b"svc:x:7:8::/:\n".to_vec());
        t.insert_symlink("etc/passwd", "/usr/share/passwd");
        assert_eq!(user(&t, "svc").as_deref(), Ok("7:8"));
        // Climbing out with .. stops at the image's root, so this is the image's file.
        t.insert_symlink("etc/passwd", "../../../../usr/share/passwd");
        assert_eq!(user(&t, "svc").as_deref(), Ok("7:8"));
        // A link to the host's /etc/passwd points at the image's own /etc/passwd: a loop.
        t.insert_symlink("etc/passwd", "/etc/passwd");
        assert_eq!(user(&t, "root"), Err(UserError::NoDatabase("passwd", "root".into())));
        t.insert_dir("etc/passwd", 0o755);
        assert_eq!(user(&t, "root"), Err(UserError::NotAFile("passwd")));
        t.insert_file("etc/passwd", 0o644, vec![b'#'; MAX_DB_SIZE + 1]);
        assert_eq!(user(&t, "root"), Err(UserError::TooLarge("passwd")));
        t.insert_file("etc/passwd", 0o644, b"r\xf6ot:x:0:0::/:\n".to_vec());
        assert_eq!(user(&t, "root"), Err(UserError::NotUtf8("passwd")));
    }

    #[test]
    fn working_dirs_are_relative_to_the_root() {
        for (dir, want) in [
            ("", ""),
            ("/", "/"),
            ("/srv/www", "/srv/www"),
            ("app", "/app"),
            ("./app/", "/app"),
            ("../../x/./y", "/x/y"),
        ] {
            assert_eq!(working_dir(dir), want, "{dir:?}");
        }
    }
}
