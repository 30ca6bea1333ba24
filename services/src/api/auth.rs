//! Who may call what: one table from call to the least role it needs ([`RULES`]), checked
//! for every request by one tower layer ([`AuthLayer`]) in front of the handlers, before
//! any request body is read.
//!
//! - Over TCP the caller is its TLS client certificate (already verified against the
//!   host's CA by the TLS handshake): its CN names it, its subject's Organization carries
//!   its role ([`Role`], `O=hoist:operator`). A certificate with no recognised role is a
//!   reader: least privilege. A certificate whose serial is in the build's revocation
//!   list is refused as `Unauthenticated`.
//! - On the Unix socket (root only, inside the guest) the caller is `local`, an admin.
//! - A call missing from the table (a new RPC nobody classified) is refused: the table
//!   fails closed. A role below what the call needs gets `PermissionDenied` naming both.
//! - What it lets through carries a [`Caller`] in the request's extensions, for the
//!   handlers' [`audit`] lines; a refused call that would change something is audited
//!   here, as denied.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hoist_guest::console::Line;
use hoist_guest::pki::{CertSummary, Role};
use tonic::Status;
use tonic::codegen::http;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

/// One call: its name in the proto, the least role that may make it, and whether it
/// changes something (then it is audited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub call: &'static str,
    pub role: Role,
    pub mutating: bool,
}

const fn rule(call: &'static str, role: Role, mutating: bool) -> Rule {
    Rule { call, role, mutating }
}

/// Every call of `hoist.v1.Control`. Plan and History only read; MissingBlobs only
/// prepares an upload, which is an admin's.
pub const RULES: &[Rule] = &[
    rule("Status", Role::Reader, false),
    rule("Describe", Role::Reader, false),
    rule("Logs", Role::Reader, false),
    rule("Events", Role::Reader, false),
    rule("Version", Role::Reader, false),
    rule("Plan", Role::Reader, false),
    rule("History", Role::Reader, false),
    rule("Start", Role::Operator, true),
    rule("Stop", Role::Operator, true),
    rule("Restart", Role::Operator, true),
    rule("Exec", Role::Admin, true),
    rule("Shutdown", Role::Admin, true),
    rule("Apply", Role::Admin, true),
    rule("Confirm", Role::Admin, true),
    rule("Rollback", Role::Admin, true),
    rule("MissingBlobs", Role::Admin, false),
    rule("UploadBlob", Role::Admin, true),
];

/// The rule for a request path (`/hoist.v1.Control/Exec`); `None` for anything else.
pub fn rule_for(path: &str) -> Option<&'static Rule> {
    let call = path.strip_prefix('/')?.strip_prefix(hoist_api::pb::control_server::SERVICE_NAME)?.strip_prefix('/')?;
    RULES.iter().find(|r| r.call == call)
}

/// Who is calling, as the layer found out; in each admitted request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
    pub rule: Rule,
}

/// The other end of a connection.
#[derive(Debug)]
pub enum Peer {
    /// The Unix socket: root in the guest.
    Local,
    /// A TLS client certificate (`None`: one we could not read).
    Cert(Option<CertSummary>),
    /// Neither (cannot happen with TLS client authentication required; refused).
    Unknown,
}

/// The serials refused, or why the list could not be read (then every certificate is).
pub type Revoked = Result<BTreeSet<String>, String>;

/// The revocation list in force: the build's, plus what `hoist apply` added since boot
/// (kept in a file of its own, so a restarted supervisor still refuses them). Shared by
/// the layer and the apply handler.
#[derive(Debug, Clone)]
pub struct Revocations {
    list: Arc<std::sync::RwLock<Revoked>>,
    /// Where added serials are kept.
    applied: std::path::PathBuf,
}

impl Revocations {
    /// The union of the `build` and `applied` lists (a missing file is an empty list; an
    /// unreadable one refuses every certificate).
    pub fn load(build: &std::path::Path, applied: &std::path::Path) -> Self {
        let list = read_list(build).and_then(|mut set| {
            set.extend(read_list(applied)?);
            Ok(set)
        });
        Revocations { list: Arc::new(std::sync::RwLock::new(list)), applied: applied.to_path_buf() }
    }

    /// Runs `f` on the list as [`decide`] takes it, under the read lock (no copy per call).
    pub fn with<T>(&self, f: impl FnOnce(&Revoked) -> T) -> T {
        match self.list.read() {
            Ok(list) => f(&list),
            Err(_) => f(&Err("revocation list poisoned".to_string())),
        }
    }

    /// Adds `serials` (hex) for good: refused from now on, and after a supervisor restart.
    /// A serial that is not hex refuses the whole request, adding nothing. Returns how
    /// many were new.
    pub fn add(&self, serials: &[String]) -> Result<usize, Status> {
        if let Some(bad) =
            serials.iter().find(|s| s.is_empty() || s.len() > 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            let bad = hoist_guest::console::escape(bad);
            return Err(Status::invalid_argument(format!("revoked: {bad} is not a certificate serial (hex)")));
        }
        // Held across the file's read, extend and write: two applies at once must not each
        // write back a list without the other's serials.
        let mut list = self.list.write().map_err(|_| Status::internal("revocation list poisoned"))?;
        let mut applied = read_list(&self.applied).map_err(Status::internal)?;
        let before = applied.len();
        applied.extend(serials.iter().map(|s| hoist_guest::pki::normal_serial(s)));
        let new = applied.len() - before;
        if new > 0 {
            let text: String = applied.iter().map(|s| format!("{s}\n")).collect();
            hoist_guest::atomic::write(&self.applied, text.as_bytes())
                .map_err(|e| Status::internal(format!("{}: {e}", self.applied.display())))?;
        }
        if let Ok(set) = list.as_mut() {
            set.extend(applied);
        }
        Ok(new)
    }
}

/// A revocation list file's serials; none when there is no file.
fn read_list(path: &std::path::Path) -> Revoked {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(hoist_guest::pki::parse_revoked(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeSet::new()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// A refusal, and the audit line it makes (for calls that would change something).
pub type Denied = (Status, Option<Line>);

/// The decision for one request.
pub fn decide(path: &str, peer: &Peer, revoked: &Revoked) -> Result<Caller, Denied> {
    let Some(rule) = rule_for(path) else {
        let name = hoist_guest::console::escape(path);
        return Err((Status::permission_denied(format!("{name}: not a call this server knows")), None));
    };
    let (name, role) = match peer {
        Peer::Local => ("local".to_string(), Role::Admin),
        Peer::Unknown => return Err((Status::unauthenticated("no client certificate"), None)),
        Peer::Cert(None) => return Err((Status::unauthenticated("client certificate cannot be read"), None)),
        Peer::Cert(Some(cert)) => {
            let revoked = match revoked {
                Ok(set) => set.contains(&cert.serial),
                Err(why) => return Err((Status::unavailable(format!("revocation list: {why}")), None)),
            };
            let name = cert.name.clone();
            if revoked {
                let shown = hoist_guest::console::escape(&name);
                let status = Status::unauthenticated(format!("certificate {} ({shown}) is revoked", cert.serial));
                return Err((status, rule.mutating.then(|| audit_line(false, rule, "", &name, "revoked"))));
            }
            (name, cert.role.unwrap_or(Role::Reader))
        }
    };
    if role < rule.role {
        let status = Status::permission_denied(format!(
            "{} needs the {} role; this certificate ({}) has {role}",
            rule.call,
            rule.role,
            hoist_guest::console::escape(&name)
        ));
        return Err((status, rule.mutating.then(|| audit_line(false, rule, "", &name, role.name()))));
    }
    Ok(Caller { name, role, rule: *rule })
}

fn audit_line(allowed: bool, rule: &Rule, target: &str, caller: &str, role: &str) -> Line {
    Line::Audit {
        allowed,
        call: rule.call.to_ascii_lowercase(),
        target: target.to_string(),
        caller: caller.to_string(),
        role: role.to_string(),
    }
}

/// The audit line of an admitted call that changes something: on the console and in the
/// supervisor's log ([`crate::say`]). `target` is what it acts on (a service, a
/// generation, a digest).
pub fn audit<T>(r: &tonic::Request<T>, target: &str) {
    audit_as(r.extensions().get::<Caller>(), target);
}

/// [`audit`] for a handler that took its request apart already.
pub fn audit_as(caller: Option<&Caller>, target: &str) {
    match caller {
        Some(c) => crate::say(&audit_line(true, &c.rule, target, &c.name, c.role.name()).body().to_string()),
        // Every request passes the layer; a handler reached without it is a bug to see.
        None => log::error!("audit: a call on {target:?} came without a caller"),
    }
}

/// The layer that runs [`decide`] in front of the control API.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    local: bool,
    revoked: Option<Revocations>,
}

impl AuthLayer {
    /// For the Unix socket: every caller is `local`.
    pub fn local() -> Self {
        AuthLayer { local: true, revoked: None }
    }

    /// For TCP with TLS client certificates, refusing the `revoked` serials.
    pub fn tls(revoked: Revocations) -> Self {
        AuthLayer { local: false, revoked: Some(revoked) }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Auth<S> {
        Auth { inner, layer: self.clone() }
    }
}

#[derive(Debug, Clone)]
pub struct Auth<S> {
    inner: S,
    layer: AuthLayer,
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, B, R> tower::Service<http::Request<B>> for Auth<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let peer = if self.layer.local {
            Peer::Local
        } else {
            match req.extensions().get::<TlsConnectInfo<TcpConnectInfo>>() {
                Some(info) => match info.peer_certs() {
                    Some(certs) => Peer::Cert(certs.first().and_then(|c| hoist_guest::pki::read_cert(c))),
                    None => Peer::Unknown,
                },
                None => Peer::Unknown,
            }
        };
        let decided = match &self.layer.revoked {
            Some(revoked) => revoked.with(|list| decide(req.uri().path(), &peer, list)),
            None => decide(req.uri().path(), &peer, &Ok(BTreeSet::new())),
        };
        match decided {
            Ok(caller) => {
                req.extensions_mut().insert(caller);
                Box::pin(self.inner.call(req))
            }
            Err((status, line)) => {
                if let Some(line) = line {
                    crate::say(&line.body().to_string());
                }
                let response = status.into_http();
                Box::pin(async move { Ok(response) })
            }
        }
    }
}

#[cfg(test)]
mod tests;
