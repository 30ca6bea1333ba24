use super::*;
use std::os::unix::fs::PermissionsExt;

use x509_parser::extensions::GeneralName;

fn der_of(path: &Path) -> Vec<u8> {
    let text = std::fs::read(path).expect("read pem");
    x509_parser::pem::parse_x509_pem(&text).expect("pem").1.contents
}

/// A certificate's basic constraints: (ca, pathLen).
type Constraints = Option<(bool, Option<u32>)>;

/// Days between a certificate's not_before and not_after, and its basic constraints
/// (ca, pathLen), and its SANs as text.
fn facts(path: &Path) -> (i64, Constraints, Vec<String>) {
    let der = der_of(path);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("certificate");
    let v = cert.validity();
    let days = (v.not_after.timestamp() - v.not_before.timestamp()) / 86400;
    let bc = cert.basic_constraints().expect("bc").map(|b| (b.value.ca, b.value.path_len_constraint));
    let sans = cert
        .subject_alternative_name()
        .expect("san")
        .map(|s| {
            s.value
                .general_names
                .iter()
                .map(|n| match n {
                    GeneralName::DNSName(d) => d.to_string(),
                    GeneralName::IPAddress(ip) => ip.iter().map(|b| b.to_string()).collect::<Vec<_>>().join("."),
                    other => format!("{other:?}"),
                })
                .collect()
        })
        .unwrap_or_default();
    (days, bc, sans)
}

fn new_pki() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = dir.path().join("pki");
    ensure(&pki).expect("pki");
    (dir, pki)
}

#[test]
fn pki_is_made_once_with_private_files_and_real_lifetimes() {
    let (_t, pki) = new_pki();
    for f in FILES {
        let meta = std::fs::metadata(pki.join(f)).expect("file");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{f}");
    }
    assert_eq!(std::fs::metadata(&pki).expect("dir").permissions().mode() & 0o777, 0o700);
    let ca = std::fs::read(pki.join(CA_CERT)).expect("ca");
    assert_eq!(ensure(&pki).expect("again"), Vec::<String>::new());
    assert_eq!(std::fs::read(pki.join(CA_CERT)).expect("ca"), ca, "an existing PKI is reused");

    let (days, bc, _) = facts(&pki.join(CA_CERT));
    assert!((3650..=3651).contains(&days), "CA lasts ten years: {days}");
    assert_eq!(bc, Some((true, Some(0))), "the CA signs leaves only");
    let (days, bc, sans) = facts(&pki.join(CLIENT_CERT));
    assert!((365..=366).contains(&days), "a client certificate lasts a year: {days}");
    assert_eq!(bc, None);
    assert!(sans.is_empty(), "{sans:?}");
    let client = read_pem_cert(&pki.join(CLIENT_CERT)).expect("client");
    assert_eq!((client.name.as_str(), client.role), (BUILD_CLIENT_NAME, Some(Role::Admin)));
    assert!(pki.join(ISSUED_DIR).join(format!("{}.pem", client.serial)).is_file());
}

#[test]
fn a_pki_missing_a_file_is_an_error_not_a_new_ca() {
    for lost in FILES {
        let (_t, pki) = new_pki();
        let ca = std::fs::read(pki.join(CA_CERT)).expect("ca");
        std::fs::remove_file(pki.join(lost)).expect("rm");
        let err = ensure(&pki).expect_err("incomplete");
        assert!(matches!(&err, PkiError::Incomplete { missing, .. } if missing == lost), "{err}");
        assert!(!pki.join(lost).exists(), "nothing was made");
        if lost != CA_CERT {
            assert_eq!(std::fs::read(pki.join(CA_CERT)).expect("ca"), ca);
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("notes.txt"), "mine").expect("write");
    let err = ensure(dir.path()).expect_err("foreign");
    assert!(matches!(err, PkiError::Foreign { .. }), "{err}");
    // An empty directory is a new PKI.
    let empty = tempfile::tempdir().expect("tempdir");
    ensure(empty.path()).expect("empty dir");
}

#[test]
fn a_directory_others_can_write_is_refused() {
    let (_t, pki) = new_pki();
    let before = std::fs::read(pki.join(CA_KEY)).expect("key");
    for mode in [0o777, 0o703, 0o722] {
        std::fs::set_permissions(&pki, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let err = ensure(&pki).expect_err("unsafe");
        assert!(matches!(&err, PkiError::Unsafe { .. }), "{mode:o}: {err}");
        assert!(err.to_string().contains(&pki.display().to_string()), "{err}");
        assert!(matches!(issue(&pki, "alice", Role::Reader, 1), Err(PkiError::Unsafe { .. })));
    }
    // Group-writable for our own group is fine (a user-private group, umask 002).
    std::fs::set_permissions(&pki, std::fs::Permissions::from_mode(0o770)).expect("chmod");
    ensure(&pki).expect("our group");
    assert_eq!(std::fs::read(pki.join(CA_KEY)).expect("key"), before);
    // Owned by another user (only testable as root).
    if nix::unistd::geteuid().is_root() {
        std::fs::set_permissions(&pki, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        nix::unistd::chown(&pki, Some(nix::unistd::Uid::from_raw(65534)), None).expect("chown");
        let err = ensure(&pki).expect_err("not ours");
        assert!(err.to_string().contains("owned by uid 65534"), "{err}");
    } else {
        eprintln!("SKIP part of a_directory_others_can_write_is_refused: chown needs root");
    }
}

#[test]
fn a_client_certificate_without_a_role_is_reissued_as_admin() {
    let (_t, pki) = new_pki();
    let issuer = load_issuer(&pki).expect("issuer");
    let subject = [(DnType::CommonName, "hoist operator".to_string())];
    let (old, key) =
        leaf(&issuer, vec![], &subject, ExtendedKeyUsagePurpose::ClientAuth, 30, "old client").expect("old");
    std::fs::write(pki.join(CLIENT_CERT), &old).expect("write");
    std::fs::write(pki.join(CLIENT_KEY), &key).expect("write");
    let notes = ensure(&pki).expect("upgrade");
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains("re-issued as admin"), "{notes:?}");
    let now = read_pem_cert(&pki.join(CLIENT_CERT)).expect("client");
    assert_eq!((now.name.as_str(), now.role), ("hoist operator", Some(Role::Admin)));
    assert_ne!(std::fs::read_to_string(pki.join(CLIENT_KEY)).expect("key"), key);
    assert_eq!(ensure(&pki).expect("again"), Vec::<String>::new());
}

#[test]
fn issued_certificates_carry_name_role_and_lifetime() {
    let (t, pki) = new_pki();
    let issued = issue(&pki, "alice", Role::Operator, 30).expect("issue");
    let out = t.path().join("alice");
    write_client(&pki, &out, &issued).expect("write");
    for f in [CA_CERT, CLIENT_CERT, CLIENT_KEY] {
        let meta = std::fs::metadata(out.join(f)).expect("file");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{f}");
    }
    let cert = read_pem_cert(&out.join(CLIENT_CERT)).expect("cert");
    assert_eq!((cert.name.as_str(), cert.role, cert.serial.as_str()), ("alice", Some(Role::Operator), &*issued.serial));
    assert!((29..=30).contains(&days_left(cert.not_after)), "{}", days_left(cert.not_after));
    assert!(matches!(write_client(&pki, &out, &issued), Err(PkiError::Exists { .. })));
    for bad in ["", "a b", "a/b", "\u{1b}[2J", &"x".repeat(65)] {
        assert!(matches!(issue(&pki, bad, Role::Reader, 1), Err(PkiError::BadName(_))), "{bad:?}");
    }
    for days in [0, MAX_DAYS + 1] {
        assert!(matches!(issue(&pki, "bob", Role::Reader, days), Err(PkiError::BadDays(_))), "{days}");
    }
    let other = tempfile::tempdir().expect("tempdir");
    assert!(matches!(issue(other.path(), "bob", Role::Reader, 1), Err(PkiError::Incomplete { .. })));
}

#[test]
fn the_server_certificate_names_the_host() {
    let (_t, pki) = new_pki();
    let files = server_side(&pki, "edge-1").expect("server side");
    let names: Vec<&str> = files.iter().map(|f| f.0).collect();
    assert_eq!(names, [CA_CERT, SERVER_CERT, SERVER_KEY]);
    assert_eq!(files[2].1, 0o600);
    let (days, bc, sans) = facts(&pki.join(HOSTS_DIR).join("edge-1.pem"));
    assert_eq!(sans, ["127.0.0.1", "hoist", "edge-1"]);
    assert_eq!(bc, None);
    assert!((3650..=3651).contains(&days));
    let again = server_side(&pki, "edge-1").expect("again");
    assert_eq!(again, files, "made once per host name: rebuilds are reproducible");
    server_side(&pki, "hoist").expect("the default host name");
    let (_, _, sans) = facts(&pki.join(HOSTS_DIR).join("hoist.pem"));
    assert_eq!(sans, ["127.0.0.1", "hoist"]);
}

#[test]
fn revoked_certificates_go_into_the_next_build() {
    let (_t, pki) = new_pki();
    let alice = issue(&pki, "alice", Role::Reader, 10).expect("alice");
    let alice2 = issue(&pki, "alice", Role::Admin, 10).expect("alice again");
    let bob = issue(&pki, "bob", Role::Reader, 10).expect("bob");
    assert!(!server_side(&pki, "h").expect("files").iter().any(|f| f.0 == REVOKED));
    let mut hits = revoke(&pki, "alice").expect("revoke");
    hits.sort();
    let mut want = vec![(alice.serial.clone(), "alice".to_string()), (alice2.serial.clone(), "alice".to_string())];
    want.sort();
    assert_eq!(hits, want);
    assert_eq!(revoke(&pki, "alice").expect("again"), vec![], "revoking twice adds nothing");
    assert_eq!(revoke(&pki, &bob.serial.to_uppercase()).expect("by serial"), vec![(bob.serial.clone(), "bob".into())]);
    assert_eq!(revoke(&pki, "0abc").expect("a serial issued elsewhere"), vec![("abc".into(), String::new())]);
    assert!(matches!(revoke(&pki, "nobody"), Err(PkiError::Unknown(_))));
    let files = server_side(&pki, "h").expect("files");
    let (_, mode, list) = files.iter().find(|f| f.0 == REVOKED).expect("revoked list in the image");
    assert_eq!(*mode, 0o644);
    let set = hoist_guest::pki::parse_revoked(std::str::from_utf8(list).expect("utf-8"));
    assert_eq!(set.len(), 4);
    for s in [&alice.serial, &alice2.serial, &bob.serial] {
        assert!(set.contains(s), "{s}");
    }
}

/// openssl accepts our chain, and a certificate openssl makes with
/// `-subj "/CN=carol/O=hoist:operator"` reads as an operator.
#[test]
fn openssl_accepts_the_chain_and_its_certificates_carry_roles() {
    let (t, pki) = new_pki();
    server_side(&pki, "edge").expect("server");
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(t.path())
            .output()
            .unwrap_or_else(|e| panic!("openssl is needed for this check (apt-get install openssl): {e}"));
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let p = |f: &str| pki.join(f).display().to_string();
    let host = pki.join(HOSTS_DIR).join("edge.pem").display().to_string();
    openssl(&["verify", "-CAfile", &p(CA_CERT), &p(SERVER_CERT), &p(CLIENT_CERT), &host]);
    openssl(
        &["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
            .into_iter()
            .chain(["-keyout", "carol.key", "-out", "carol.csr", "-subj", "/CN=carol/O=hoist:operator"])
            .collect::<Vec<_>>(),
    );
    openssl(&[
        "x509",
        "-req",
        "-in",
        "carol.csr",
        "-CA",
        &p(CA_CERT),
        "-CAkey",
        &p(CA_KEY),
        "-days",
        "2",
        "-out",
        "carol.pem",
    ]);
    let carol = read_pem_cert(&t.path().join("carol.pem")).expect("openssl's certificate");
    assert_eq!((carol.name.as_str(), carol.role), ("carol", Some(Role::Operator)));
}

/// The public key a PEM certificate or private key holds, as DER.
fn public_key_of_cert(pem: &[u8]) -> Vec<u8> {
    let der = x509_parser::pem::parse_x509_pem(pem).expect("pem").1.contents;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("certificate");
    cert.public_key().subject_public_key.data.to_vec()
}

fn public_key_of_key(pem: &[u8]) -> Vec<u8> {
    rcgen::KeyPair::from_pem(std::str::from_utf8(pem).expect("utf-8")).expect("key").public_key_raw().to_vec()
}

#[test]
fn builds_side_by_side_share_one_pki_and_get_matching_keys() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki = tmp.path().join("pki");
    let results: Vec<Vec<ImageFile>> = std::thread::scope(|s| {
        let runs: Vec<_> = (0..6)
            .map(|_| {
                s.spawn(|| {
                    ensure(&pki).expect("ensure");
                    server_side(&pki, "side").expect("server side")
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().expect("thread")).collect()
    });
    for files in &results {
        assert_eq!(files, &results[0], "one CA and one host certificate for every build");
        let (cert, key) = (&files[1].2, &files[2].2);
        assert_eq!(public_key_of_cert(cert), public_key_of_key(key), "the key is the certificate's");
    }
}
