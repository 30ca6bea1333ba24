//! The control API's PKI. A PKI directory holds a CA (ten years, `pathLen 0`: it signs
//! leaves only), the admin client certificate `hoist build` hands the operator, and the
//! server certificates; `hoist pki` issues more client certificates, each with its role
//! in its subject (`O=hoist:ROLE`, [`hoist_guest::pki::Role`]), and revokes them.
//!
//! - Made once, when the directory does not exist or is empty; reused by later builds, so
//!   rebuilding keeps the same credentials and the same bytes. A directory missing some of
//!   its files is an error, never a reason for a new CA (clients would all be locked out).
//! - A directory another user can write is refused: whoever can swap its files can swap
//!   the CA key the build signs with, or the server key that goes into the image.
//! - The server certificate of a host names `127.0.0.1`, `hoist` (what clients check) and
//!   the host's own name; it is made once per host name (`hosts/NAME.pem`).
//! - Issued client certificates are kept (`issued/SERIAL.pem`, no key) so `revoke` can
//!   find them by name; revoked serials go to `revoked.txt`, which the next build puts
//!   into the image for the server to check.
//! - Private keys are written 0600, through a fresh temp file and a rename.
//!
//! The file names and the role's encoding are the guest contract's ([`hoist_guest::pki`]).

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SerialNumber,
};

use hoist_guest::pki::{
    CA_CERT, CA_KEY, CLIENT_CERT, CLIENT_KEY, FILES, REVOKED, Role, SERVER_CERT, SERVER_KEY, SERVER_NAME,
};

/// How long the CA is valid.
pub const CA_DAYS: u32 = 3650;
/// How long a client certificate is valid unless asked otherwise (`--days`).
pub const CLIENT_DAYS: u32 = 365;
/// Longest client certificate `issue` makes (the CA's life).
pub const MAX_DAYS: u32 = CA_DAYS;
/// Server certificates live as long as the CA: they go into every build of the host.
pub const SERVER_DAYS: u32 = CA_DAYS;
/// Where issued client certificates are kept, by serial.
pub const ISSUED_DIR: &str = "issued";
/// Where per-host server certificates are kept, by host name.
pub const HOSTS_DIR: &str = "hosts";
/// The name of the client certificate `hoist build` makes.
pub const BUILD_CLIENT_NAME: &str = "hoist-admin";

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {cause}")]
    Io { path: PathBuf, cause: std::io::Error },
    #[error("generating {what}: {cause}")]
    Generate { what: &'static str, cause: rcgen::Error },
    #[error("{dir}: PKI directory is missing {missing} (restore them, or use an empty directory for a new CA)")]
    Incomplete { dir: PathBuf, missing: String },
    #[error("{dir}: not a PKI directory (none of ca.pem, ca.key, ...) and not empty; name an empty or new one")]
    Foreign { dir: PathBuf },
    #[error("{dir}: {why}; refusing to use it for keys (chmod go-w, or chown it to uid {euid})")]
    Unsafe { dir: PathBuf, why: String, euid: u32 },
    #[error("{path}: not a certificate hoist can read")]
    BadCert { path: PathBuf },
    #[error("invalid client name {0:?}: 1 to 64 letters, digits, '.', '_', '@' or '-'")]
    BadName(String),
    #[error("--days {0}: must be 1 to {MAX_DAYS}")]
    BadDays(u32),
    #[error("{0:?}: no certificate issued to that name, and not a serial number (hex)")]
    Unknown(String),
    #[error("{path}: exists; remove it or choose another output directory")]
    Exists { path: PathBuf },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |cause| PkiError::Io { path: path.to_path_buf(), cause }
}

/// Refuses a directory that another user could write (so could swap our keys): owned by
/// someone else, writable by others, or group-writable for a group that is not ours.
pub fn check_private_dir(dir: &Path) -> Result<(), PkiError> {
    let meta = std::fs::metadata(dir).map_err(io(dir))?;
    let euid = nix::unistd::geteuid().as_raw();
    let egid = nix::unistd::getegid().as_raw();
    let mode = meta.mode();
    let why = if meta.uid() != euid {
        Some(format!("owned by uid {}, not by us", meta.uid()))
    } else if mode & 0o002 != 0 {
        Some("writable by every user".to_string())
    } else if mode & 0o020 != 0 && meta.gid() != egid {
        Some(format!("writable by group {}", meta.gid()))
    } else {
        None
    };
    match why {
        Some(why) => Err(PkiError::Unsafe { dir: dir.to_path_buf(), why, euid }),
        None => Ok(()),
    }
}

/// Creates `dir` (0700) if missing, then [`check_private_dir`].
fn private_dir(dir: &Path) -> Result<(), PkiError> {
    if !dir.exists() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io(dir))?;
    }
    check_private_dir(dir)
}

/// Writes `path` 0600 through a new, unpredictably named temp file next to it (never
/// following a planted link, never sharing a temp file with a build running beside this
/// one), then renames it into place.
fn write_private(path: &Path, data: &[u8]) -> Result<(), PkiError> {
    hoist_guest::atomic::write_mode(path, data, 0o600).map_err(io(path))
}

/// Holds the PKI directory's lock (`flock` on the directory itself) until dropped.
/// Builds side by side (a CI job's, the VM tests') share one PKI: without it, one could
/// make a CA or a host certificate while another makes its own, and read a key that does
/// not belong to the certificate it read.
fn lock(dir: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, PkiError> {
    let file = std::fs::File::open(dir).map_err(io(dir))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, errno)| PkiError::Io { path: dir.to_path_buf(), cause: errno.into() })
}

fn gen_err(what: &'static str) -> impl FnOnce(rcgen::Error) -> PkiError {
    move |cause| PkiError::Generate { what, cause }
}

/// A validity period from an hour ago (clock skew between the builder and the host) for
/// `days` days.
fn validity(p: &mut CertificateParams, days: u32) {
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    let at = |secs: i64| time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    p.not_before = at(now - 3600);
    p.not_after = at(now + i64::from(days) * 86400);
}

/// 16 random bytes, positive as DER wants (so serials do not repeat across CAs or runs).
fn random_serial() -> Result<SerialNumber, PkiError> {
    use std::io::Read;
    let mut b = [0u8; 16];
    let urandom = Path::new("/dev/urandom");
    std::fs::File::open(urandom).and_then(|mut f| f.read_exact(&mut b)).map_err(io(urandom))?;
    b[0] = (b[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&b))
}

/// A leaf signed by the CA: (certificate PEM, key PEM).
fn leaf(
    issuer: &Issuer<'_, KeyPair>,
    names: Vec<String>,
    subject: &[(DnType, String)],
    usage: ExtendedKeyUsagePurpose,
    days: u32,
    what: &'static str,
) -> Result<(String, String), PkiError> {
    let mut p = CertificateParams::new(names).map_err(gen_err(what))?;
    for (ty, value) in subject {
        p.distinguished_name.push(ty.clone(), value.as_str());
    }
    p.extended_key_usages = vec![usage];
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.use_authority_key_identifier_extension = true;
    p.serial_number = Some(random_serial()?);
    validity(&mut p, days);
    let key = KeyPair::generate().map_err(gen_err(what))?;
    let cert = p.signed_by(&key, issuer).map_err(gen_err(what))?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn client_subject(name: &str, role: Role) -> Vec<(DnType, String)> {
    vec![(DnType::CommonName, name.to_string()), (DnType::OrganizationName, role.organization())]
}

/// The CA of an existing PKI directory, to sign with.
fn load_issuer(dir: &Path) -> Result<Issuer<'static, KeyPair>, PkiError> {
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).map_err(io(&dir.join(f)));
    let key = KeyPair::from_pem(&read(CA_KEY)?).map_err(gen_err("CA key"))?;
    Issuer::from_ca_cert_pem(&read(CA_CERT)?, key).map_err(gen_err("CA"))
}

/// The summary of the first certificate in a PEM file.
pub fn read_pem_cert(path: &Path) -> Result<hoist_guest::pki::CertSummary, PkiError> {
    let text = std::fs::read(path).map_err(io(path))?;
    hoist_guest::pki::read_cert_pem(&text).ok_or_else(|| PkiError::BadCert { path: path.to_path_buf() })
}

/// Makes the PKI in `dir` when it does not exist or is empty; checks an existing one is
/// whole, and re-issues a client certificate made before roles existed as admin (it was
/// all-powerful then; it keeps working). Returns what it did that the user should know.
pub fn ensure(dir: &Path) -> Result<Vec<String>, PkiError> {
    private_dir(dir)?;
    let _lock = lock(dir)?;
    {
        let present: Vec<&str> = FILES.iter().copied().filter(|f| dir.join(f).exists()).collect();
        if present.len() == FILES.len() {
            return upgrade_client(dir);
        }
        if !present.is_empty() {
            let missing: Vec<&str> = FILES.iter().copied().filter(|f| !present.contains(f)).collect();
            return Err(PkiError::Incomplete { dir: dir.to_path_buf(), missing: missing.join(", ") });
        }
        if std::fs::read_dir(dir).map_err(io(dir))?.next().is_some() {
            return Err(PkiError::Foreign { dir: dir.to_path_buf() });
        }
    }
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(gen_err("CA"))?;
    ca.distinguished_name.push(DnType::CommonName, "hoist control CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    ca.serial_number = Some(random_serial()?);
    validity(&mut ca, CA_DAYS);
    let ca_key = KeyPair::generate().map_err(gen_err("CA key"))?;
    let ca_pem = ca.self_signed(&ca_key).map_err(gen_err("CA"))?.pem();
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(ca, ca_key);
    let (server_pem, server_key) = server_leaf(&issuer, None)?;
    let (client_pem, client_key) = leaf(
        &issuer,
        vec![],
        &client_subject(BUILD_CLIENT_NAME, Role::Admin),
        ExtendedKeyUsagePurpose::ClientAuth,
        CLIENT_DAYS,
        "client certificate",
    )?;
    // The CA key last: a directory is whole only once every file is in.
    for (name, data) in [
        (CA_CERT, ca_pem),
        (SERVER_CERT, server_pem),
        (SERVER_KEY, server_key),
        (CLIENT_CERT, client_pem.clone()),
        (CLIENT_KEY, client_key),
        (CA_KEY, ca_key_pem),
    ] {
        write_private(&dir.join(name), data.as_bytes())?;
    }
    keep_issued(dir, &client_pem)?;
    Ok(vec![format!("new CA and admin client certificate in {}", dir.display())])
}

fn server_leaf(issuer: &Issuer<'_, KeyPair>, host: Option<&str>) -> Result<(String, String), PkiError> {
    let mut names = vec!["127.0.0.1".to_string(), SERVER_NAME.to_string()];
    names.extend(host.filter(|h| *h != SERVER_NAME).map(String::from));
    let subject = [(DnType::CommonName, host.unwrap_or(SERVER_NAME).to_string())];
    leaf(issuer, names, &subject, ExtendedKeyUsagePurpose::ServerAuth, SERVER_DAYS, "server certificate")
}

/// A client certificate from before roles is re-issued as admin, with the same name.
fn upgrade_client(dir: &Path) -> Result<Vec<String>, PkiError> {
    let cert = read_pem_cert(&dir.join(CLIENT_CERT))?;
    if cert.role.is_some() {
        return Ok(Vec::new());
    }
    let name = if cert.name.is_empty() { BUILD_CLIENT_NAME.to_string() } else { cert.name };
    let issuer = load_issuer(dir)?;
    let subject = client_subject(&name, Role::Admin);
    let (pem, key) =
        leaf(&issuer, vec![], &subject, ExtendedKeyUsagePurpose::ClientAuth, CLIENT_DAYS, "client certificate")?;
    write_private(&dir.join(CLIENT_KEY), key.as_bytes())?;
    write_private(&dir.join(CLIENT_CERT), pem.as_bytes())?;
    keep_issued(dir, &pem)?;
    Ok(vec![format!(
        "{}: had no role; re-issued as admin (the old one still works until revoked: hoist pki revoke {})",
        dir.join(CLIENT_CERT).display(),
        cert.serial
    )])
}

fn keep_issued(dir: &Path, pem: &str) -> Result<(), PkiError> {
    let issued = dir.join(ISSUED_DIR);
    private_dir(&issued)?;
    let cert = hoist_guest::pki::read_cert_pem(pem.as_bytes());
    let serial = cert.ok_or_else(|| PkiError::BadCert { path: issued.clone() })?.serial;
    write_private(&issued.join(format!("{serial}.pem")), pem.as_bytes())
}

/// A file for the image: its name in [`hoist_guest::pki::TLS_DIR`], mode, bytes.
pub type ImageFile = (&'static str, u32, Vec<u8>);

/// The server side for a host named `host`, for [`hoist_guest::pki::TLS_DIR`],
/// and the revocation list when there is one.
pub fn server_side(dir: &Path, host: &str) -> Result<Vec<ImageFile>, PkiError> {
    let _lock = lock(dir)?;
    let hosts = dir.join(HOSTS_DIR);
    let (cert, key) = (hosts.join(format!("{host}.pem")), hosts.join(format!("{host}.key")));
    if !cert.exists() || !key.exists() {
        private_dir(&hosts)?;
        let (pem, key_pem) = server_leaf(&load_issuer(dir)?, Some(host))?;
        write_private(&key, key_pem.as_bytes())?;
        write_private(&cert, pem.as_bytes())?;
    }
    let read = |p: &Path| std::fs::read(p).map_err(io(p));
    let mut files = vec![
        (CA_CERT, 0o644, read(&dir.join(CA_CERT))?),
        (SERVER_CERT, 0o644, read(&cert)?),
        (SERVER_KEY, 0o600, read(&key)?),
    ];
    let revoked = dir.join(REVOKED);
    if revoked.exists() {
        files.push((REVOKED, 0o644, read(&revoked)?));
    }
    Ok(files)
}

/// A client certificate and its key, as [`issue`] made them.
#[derive(Debug)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub serial: String,
}

/// A client name: what goes into the certificate's CN and the audit lines.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b))
}

/// Issues a client certificate for `name` with `role`, valid `days` days, signed by the
/// CA in `dir` (which must be whole); a copy of the certificate stays in `dir/issued`.
pub fn issue(dir: &Path, name: &str, role: Role, days: u32) -> Result<Issued, PkiError> {
    if !valid_name(name) {
        return Err(PkiError::BadName(name.to_string()));
    }
    if !(1..=MAX_DAYS).contains(&days) {
        return Err(PkiError::BadDays(days));
    }
    check_whole(dir)?;
    let _lock = lock(dir)?;
    let issuer = load_issuer(dir)?;
    let (cert_pem, key_pem) =
        leaf(&issuer, vec![], &client_subject(name, role), ExtendedKeyUsagePurpose::ClientAuth, days, "client")?;
    keep_issued(dir, &cert_pem)?;
    let serial = hoist_guest::pki::read_cert_pem(cert_pem.as_bytes()).map(|c| c.serial);
    Ok(Issued { cert_pem, key_pem, serial: serial.unwrap_or_default() })
}

/// An existing, private, whole PKI directory (for `issue` and `revoke`, which never make one).
fn check_whole(dir: &Path) -> Result<(), PkiError> {
    check_private_dir(dir)?;
    let missing: Vec<&str> = FILES.iter().copied().filter(|f| !dir.join(f).exists()).collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(PkiError::Incomplete { dir: dir.to_path_buf(), missing: missing.join(", ") })
    }
}

/// Writes what a client needs into `out` (made 0700 if missing): `ca.pem`, `client.pem`,
/// `client.key` (0600), so `hoist ctl --pki OUT` uses it. Refuses to overwrite a client
/// certificate there.
pub fn write_client(dir: &Path, out: &Path, issued: &Issued) -> Result<(), PkiError> {
    private_dir(out)?;
    for f in [CLIENT_CERT, CLIENT_KEY] {
        if out.join(f).exists() {
            return Err(PkiError::Exists { path: out.join(f) });
        }
    }
    let ca = std::fs::read(dir.join(CA_CERT)).map_err(io(&dir.join(CA_CERT)))?;
    write_private(&out.join(CA_CERT), &ca)?;
    write_private(&out.join(CLIENT_KEY), issued.key_pem.as_bytes())?;
    write_private(&out.join(CLIENT_CERT), issued.cert_pem.as_bytes())
}

/// Every certificate kept in `dir/issued`, by serial.
pub fn issued(dir: &Path) -> Result<Vec<hoist_guest::pki::CertSummary>, PkiError> {
    let issued = dir.join(ISSUED_DIR);
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(&issued) else { return Ok(out) };
    for e in entries {
        let path = e.map_err(io(&issued))?.path();
        if path.extension().is_some_and(|x| x == "pem") {
            out.push(read_pem_cert(&path)?);
        }
    }
    out.sort_by(|a, b| (&a.name, a.not_after).cmp(&(&b.name, b.not_after)));
    Ok(out)
}

/// The serials revoked so far.
pub fn revoked(dir: &Path) -> Result<std::collections::BTreeSet<String>, PkiError> {
    let path = dir.join(REVOKED);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(hoist_guest::pki::parse_revoked(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Default::default()),
        Err(e) => Err(PkiError::Io { path, cause: e }),
    }
}

/// Revokes every certificate issued to `what` (a client name), or the one with that
/// serial (hex, issued here or not). Returns the serials newly revoked, with their names.
pub fn revoke(dir: &Path, what: &str) -> Result<Vec<(String, String)>, PkiError> {
    check_whole(dir)?;
    let _lock = lock(dir)?;
    let known = issued(dir)?;
    let mut hits: Vec<(String, String)> =
        known.iter().filter(|c| c.name == what).map(|c| (c.serial.clone(), c.name.clone())).collect();
    let as_serial = what.trim_start_matches("0x");
    if hits.is_empty() && !as_serial.is_empty() && as_serial.bytes().all(|b| b.is_ascii_hexdigit()) {
        let serial = hoist_guest::pki::normal_serial(as_serial);
        let name = known.iter().find(|c| c.serial == serial).map(|c| c.name.clone()).unwrap_or_default();
        hits.push((serial, name));
    }
    if hits.is_empty() {
        return Err(PkiError::Unknown(what.to_string()));
    }
    let mut list = revoked(dir)?;
    let path = dir.join(REVOKED);
    let mut text = std::fs::read_to_string(&path).unwrap_or_else(|_| "# revoked by hoist pki revoke\n".into());
    hits.retain(|(serial, _)| list.insert(serial.clone()));
    for (serial, name) in &hits {
        text.push_str(&format!("{serial}  # {}\n", hoist_guest::console::escape(name)));
    }
    write_private(&path, text.as_bytes())?;
    Ok(hits)
}

/// The days left of a certificate valid until `not_after` (unix seconds), for listings.
pub fn days_left(not_after: i64) -> i64 {
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs() as i64;
    (not_after - now).div_euclid(86400)
}

#[cfg(test)]
mod tests;
