//! The control API's PKI: file names, the server name, and the roles a client certificate
//! carries. `hoist build` makes the CA, the server certificate and the admin client
//! certificate in a PKI directory (`OUT/pki`), puts the server side (and the revocation
//! list) into the image under [`TLS_DIR`]; the client side stays with the operator.

use std::fmt;

/// The server side of the PKI in the guest: [`CA_CERT`], [`SERVER_CERT`], [`SERVER_KEY`],
/// and [`REVOKED`] when there is one.
pub const TLS_DIR: &str = "/etc/hoist/tls";

pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca.key";
pub const SERVER_CERT: &str = "server.pem";
pub const SERVER_KEY: &str = "server.key";
pub const CLIENT_CERT: &str = "client.pem";
pub const CLIENT_KEY: &str = "client.key";
/// Serial numbers of revoked client certificates, one a line in lower-case hex (no
/// leading zeros), `#` comments allowed. Written by `hoist pki revoke`, checked by the
/// server.
pub const REVOKED: &str = "revoked.txt";

/// Every file a PKI directory must hold (a directory with only some of them is an error,
/// never a reason to make a new CA).
pub const FILES: [&str; 6] = [CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY, CLIENT_CERT, CLIENT_KEY];

/// The DNS name in the server certificate, the one clients check.
pub const SERVER_NAME: &str = "hoist";

/// What a client may do, from least to most. A certificate names its role in its
/// subject's Organization as `hoist:ROLE` (`openssl req -subj "/CN=alice/O=hoist:operator"`);
/// one without a recognised role is a [`Role::Reader`] (least privilege), and one naming
/// several gets the least of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// status, describe, logs, events, version, plan, history.
    Reader,
    /// Also start, stop, restart.
    Operator,
    /// Also exec, shutdown/reboot, apply, confirm, rollback, blob uploads.
    Admin,
}

/// What an Organization value starts with when it names a role.
pub const ROLE_PREFIX: &str = "hoist:";

impl Role {
    pub const ALL: [Role; 3] = [Role::Reader, Role::Operator, Role::Admin];

    pub fn name(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// `reader`, `operator` or `admin`.
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == name)
    }

    /// The Organization value that carries this role: `hoist:NAME`.
    pub fn organization(self) -> String {
        format!("{ROLE_PREFIX}{}", self.name())
    }

    /// The role of a certificate whose subject has these Organization values: the least
    /// one named, or `None` when none is (the caller then treats it as a reader).
    pub fn from_organizations<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<Role> {
        values.into_iter().filter_map(|o| Role::parse(o.strip_prefix(ROLE_PREFIX)?)).min()
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Reads a [`REVOKED`] file's serials (lower-case hex). Lines that are not hex are
/// skipped: the writer is `hoist pki revoke`, which writes only hex.
pub fn parse_revoked(text: &str) -> std::collections::BTreeSet<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(normal_serial)
        .collect()
}

/// A serial as [`REVOKED`] writes it: lower-case hex without leading zeros (`0` for zero).
pub fn normal_serial(hex: &str) -> String {
    let t = hex.trim_start_matches('0').to_ascii_lowercase();
    if t.is_empty() { "0".into() } else { t }
}

/// [`normal_serial`] of big-endian serial bytes.
pub fn serial_hex(bytes: &[u8]) -> String {
    normal_serial(&bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// What the server and `hoist pki` read from a certificate (feature `x509`).
#[cfg(feature = "x509")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    /// The subject's first Common Name ("" when it has none).
    pub name: String,
    /// From the subject's Organization values ([`Role::from_organizations`]).
    pub role: Option<Role>,
    /// [`serial_hex`] of the serial number.
    pub serial: String,
    /// The end of the validity period, in seconds since the epoch.
    pub not_after: i64,
}

/// Reads a DER certificate; `None` when it does not parse.
#[cfg(feature = "x509")]
pub fn read_cert(der: &[u8]) -> Option<CertSummary> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let name = subject.iter_common_name().find_map(|a| a.as_str().ok()).unwrap_or("").to_string();
    let role = Role::from_organizations(subject.iter_organization().filter_map(|a| a.as_str().ok()));
    Some(CertSummary {
        name,
        role,
        serial: serial_hex(cert.raw_serial()),
        not_after: cert.validity().not_after.timestamp(),
    })
}

/// [`read_cert`] of the first PEM block (a `CERTIFICATE`) in `text`.
#[cfg(feature = "x509")]
pub fn read_cert_pem(text: &[u8]) -> Option<CertSummary> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(text).ok()?;
    if pem.label != "CERTIFICATE" {
        return None;
    }
    read_cert(&pem.contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_role_comes_from_the_organization_and_the_least_wins() {
        assert_eq!(Role::from_organizations(["hoist:operator"]), Some(Role::Operator));
        assert_eq!(Role::from_organizations(["acme", "hoist:admin"]), Some(Role::Admin));
        assert_eq!(Role::from_organizations(["hoist:admin", "hoist:reader"]), Some(Role::Reader));
        for none in [&[][..], &["acme"], &["hoist:root"], &["hoist:Admin"], &["admin"], &["xhoist:admin"]] {
            assert_eq!(Role::from_organizations(none.iter().copied()), None, "{none:?}");
        }
        for r in Role::ALL {
            assert_eq!(Role::from_organizations([r.organization().as_str()]), Some(r));
        }
        assert!(Role::Reader < Role::Operator && Role::Operator < Role::Admin);
    }

    #[test]
    fn revoked_serials_are_read_in_one_form() {
        let text = "# revoked by hoist pki\n00AB12  # alice\n\nnot-hex\n7f\n0\n";
        let set = parse_revoked(text);
        assert_eq!(set.into_iter().collect::<Vec<_>>(), ["0", "7f", "ab12"]);
        assert_eq!(serial_hex(&[0x00, 0x0a, 0xff]), "aff");
        assert_eq!(serial_hex(&[]), "0");
    }
}
