//! The control API's PKI: a CA, a server certificate for the host (SANs 127.0.0.1 and
//! "hoist", the name clients check) and a client certificate for the operator. Made once
//! per PKI directory and reused by later builds, so rebuilding keeps the same credentials
//! and the same bytes. Private keys are written 0600. The server side goes into the
//! image; the client side stays with the operator. The file names, the server name and
//! where the server side goes are the guest contract's ([`hoist_guest::pki`]).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

use hoist_guest::pki::{CA_CERT, CA_KEY, CLIENT_CERT, CLIENT_KEY, FILES, SERVER_CERT, SERVER_KEY, SERVER_NAME};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {cause}")]
    Io { path: PathBuf, cause: std::io::Error },
    #[error("generating {what}: {cause}")]
    Generate { what: &'static str, cause: rcgen::Error },
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), PkiError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |cause| PkiError::Io { path: path.to_path_buf(), cause };
    let mut f =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path).map_err(err)?;
    f.write_all(data).map_err(err)
}

/// Makes the PKI in `dir` unless all its files are already there.
pub fn ensure(dir: &Path) -> Result<(), PkiError> {
    if FILES.iter().all(|f| dir.join(f).is_file()) {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|cause| PkiError::Io { path: dir.to_path_buf(), cause })?;
    let gen_err = |what| move |cause| PkiError::Generate { what, cause };
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(gen_err("CA"))?;
    ca.distinguished_name.push(DnType::CommonName, "hoist control CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_key = KeyPair::generate().map_err(gen_err("CA key"))?;
    let ca_pem = ca.self_signed(&ca_key).map_err(gen_err("CA"))?.pem();
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(ca, ca_key);
    let leaf = |names: Vec<String>, cn: &str, usage: ExtendedKeyUsagePurpose, what: &'static str| {
        let mut p = CertificateParams::new(names).map_err(gen_err(what))?;
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![usage];
        p.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().map_err(gen_err(what))?;
        let cert = p.signed_by(&key, &issuer).map_err(gen_err(what))?;
        Ok::<_, PkiError>((cert.pem(), key.serialize_pem()))
    };
    let (server_pem, server_key) = leaf(
        vec!["127.0.0.1".into(), SERVER_NAME.into()],
        SERVER_NAME,
        ExtendedKeyUsagePurpose::ServerAuth,
        "server certificate",
    )?;
    let (client_pem, client_key) =
        leaf(vec![], "hoist operator", ExtendedKeyUsagePurpose::ClientAuth, "client certificate")?;
    for (name, data) in [
        (CA_CERT, ca_pem),
        (CA_KEY, ca_key_pem),
        (SERVER_CERT, server_pem),
        (SERVER_KEY, server_key),
        (CLIENT_CERT, client_pem),
        (CLIENT_KEY, client_key),
    ] {
        write_private(&dir.join(name), data.as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn pki_is_made_once_with_private_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        ensure(dir.path()).expect("pki");
        for f in FILES {
            let meta = std::fs::metadata(dir.path().join(f)).expect("file");
            assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{f}");
        }
        let ca = std::fs::read(dir.path().join(CA_CERT)).expect("ca");
        assert!(ca.starts_with(b"-----BEGIN CERTIFICATE-----"));
        ensure(dir.path()).expect("again");
        assert_eq!(std::fs::read(dir.path().join(CA_CERT)).expect("ca"), ca, "an existing PKI is reused");
    }

    #[test]
    fn openssl_accepts_the_chain_when_available() {
        let dir = tempfile::tempdir().expect("tempdir");
        ensure(dir.path()).expect("pki");
        let Ok(out) = std::process::Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(dir.path().join(CA_CERT))
            .arg(dir.path().join(SERVER_CERT))
            .arg(dir.path().join(CLIENT_CERT))
            .output()
        else {
            panic!("openssl is needed for this check (apt-get install openssl)");
        };
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    }
}
