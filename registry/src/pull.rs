//! Pulling an image into the [`Cache`]: the reference's manifest (by tag, or by the
//! digest it is pinned to), an index followed to the platform asked for, then the config
//! and every layer the cache lacks, each streamed through [`crate::cache::BlobWriter`]
//! (hash and size cap; renamed into the cache only when whole and matching). A pinned
//! image that is whole in the cache is not asked of the registry at all.
//!
//! Transient failures (connection, timeout, 5xx, 429, a body cut short) are retried with
//! backoff; a wrong digest, refused credentials and an unknown tag are final.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use hoist_config::Reference;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, RegistryOperation};

use crate::auth::{Credential, DockerConfig};
use crate::cache::{Cache, CacheError};
use crate::manifest::{ACCEPTED, Document, MAX_JSON, Platform, offered};

/// Attempts per request, and the first pause between them (doubled each time).
const TRIES: u32 = 4;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// How long one try at a manifest (and its token) may take in all.
const MANIFEST_TIME: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("{reference}: {registry} refused {who}")]
    Auth { reference: String, registry: String, who: String },
    #[error("{reference}: not found in {registry} (no such repository, tag or digest)")]
    NotFound { reference: String, registry: String },
    #[error("{reference}: {registry} is unreachable ({tries} tries): {cause}")]
    Unreachable { reference: String, registry: String, tries: u32, cause: String },
    #[error("{reference}: its index has no {platform} image (it has {offered})")]
    NoPlatform { reference: String, platform: String, offered: String },
    #[error("{reference}: {cause}")]
    Cache { reference: String, cause: CacheError },
    #[error("{reference}: {cause}")]
    Other { reference: String, cause: String },
}

/// What a pull did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    /// What the reference resolved to (index or manifest): the digest to pin.
    pub digest: String,
    /// The platform's image manifest.
    pub manifest: String,
    pub downloaded_blobs: u32,
    pub downloaded_bytes: u64,
    pub cached_blobs: u32,
}

/// Progress of one pull, for the CLI.
pub trait Progress: Send + Sync {
    /// A blob is being downloaded (`what`: config or layer N/M).
    fn blob(&self, what: &str, digest: &str, size: u64);
    /// Bytes of the current blob so far.
    fn bytes(&self, done: u64, size: u64);
    fn blob_done(&self, digest: &str);
}

pub struct Quiet;

impl Progress for Quiet {
    fn blob(&self, _: &str, _: &str, _: u64) {}
    fn bytes(&self, _: u64, _: u64) {}
    fn blob_done(&self, _: &str) {}
}

pub struct Options {
    pub platform: Platform,
    /// `host[:port]` of registries spoken to over plain HTTP (no TLS).
    pub insecure: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options { platform: Platform::build_host(), insecure: Vec::new() }
    }
}

pub struct Puller {
    cache: Cache,
    opts: Options,
    docker: Option<DockerConfig>,
    clients: Mutex<HashMap<String, (Arc<Client>, RegistryAuth)>>,
}

impl Puller {
    pub fn new(cache: Cache, opts: Options) -> Result<Puller, String> {
        // reqwest is built without a default crypto provider: ring, as the rest of hoist.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let docker = DockerConfig::load()?;
        Ok(Puller { cache, opts, docker, clients: Mutex::new(HashMap::new()) })
    }

    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// Whether `digest` (an index or manifest) and everything the platform's image needs
    /// are in the cache, verified; the image manifest's digest if so.
    pub fn cached(&self, digest: &str) -> Result<Option<String>, String> {
        let Some(data) = self.cache.read(digest, MAX_JSON as u64).map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        let doc = Document::parse(digest, &data)?;
        let (manifest_digest, doc) = match &doc.manifests {
            Some(list) => {
                let Some(d) = self.opts.platform.pick(list) else { return Ok(None) };
                let Some(data) = self.cache.read(&d.digest, MAX_JSON as u64).map_err(|e| e.to_string())? else {
                    return Ok(None);
                };
                (d.digest.clone(), Document::parse(&d.digest, &data)?)
            }
            None => (digest.to_string(), doc),
        };
        for blob in doc.config.iter().chain(&doc.layers) {
            if !self.cache.has(&blob.digest, Some(blob.size)).map_err(|e| e.to_string())? {
                return Ok(None);
            }
        }
        Ok(Some(manifest_digest))
    }

    /// Pulls `reference` into the cache: by `pinned` (or the reference's own digest) when
    /// given, else by its tag. Nothing is downloaded that the cache holds.
    pub async fn pull(
        &self,
        reference: &Reference,
        pinned: Option<&str>,
        progress: &dyn Progress,
    ) -> Result<Pulled, PullError> {
        let shown = reference.to_string();
        let target = pinned.or(reference.digest.as_deref());
        if let Some(digest) = target {
            let cached = self.cached(digest).map_err(|cause| PullError::Other { reference: shown.clone(), cause })?;
            if let Some(manifest) = cached {
                return Ok(Pulled {
                    digest: digest.to_string(),
                    manifest,
                    downloaded_blobs: 0,
                    downloaded_bytes: 0,
                    cached_blobs: 0,
                });
            }
        }
        let (Some(registry), Some(repository)) = (reference.registry(), reference.repository()) else {
            return Err(PullError::Other { reference: shown, cause: "no repository name".into() });
        };
        let remote = match target {
            Some(d) => oci_client::Reference::with_digest(registry.into(), repository.into(), d.into()),
            None => oci_client::Reference::with_tag(
                registry.into(),
                repository.into(),
                reference.tag.clone().unwrap_or_else(|| "latest".into()),
            ),
        };
        let call = Call { puller: self, reference: shown.clone(), registry: registry.to_string() };
        let (client, auth) = call.client().await?;
        let mut pulled = Pulled {
            digest: String::new(),
            manifest: String::new(),
            downloaded_blobs: 0,
            downloaded_bytes: 0,
            cached_blobs: 0,
        };

        let (data, digest) = call.manifest(&client, &auth, &remote).await?;
        if target.is_some_and(|t| t != digest) {
            return Err(call.other(format!("the registry sent {digest} for {}", target.unwrap_or_default())));
        }
        let doc = Document::parse(&digest, &data).map_err(|c| call.other(c))?;
        self.cache.put(&digest, &data).map_err(|c| call.cache(c))?;
        pulled.digest = digest.clone();
        let doc = match &doc.manifests {
            Some(list) => {
                let Some(d) = self.opts.platform.pick(list) else {
                    return Err(PullError::NoPlatform {
                        reference: shown,
                        platform: self.opts.platform.to_string(),
                        offered: offered(list),
                    });
                };
                let child = remote.clone_with_digest(d.digest.clone());
                let (data, got) = call.manifest(&client, &auth, &child).await?;
                if got != d.digest || data.len() as u64 != d.size {
                    return Err(call.other(format!("manifest {}: the registry sent other content ({got})", d.digest)));
                }
                let doc = Document::parse(&got, &data).map_err(|c| call.other(c))?;
                if doc.manifests.is_some() {
                    return Err(call.other(format!("{got}: an index inside an index")));
                }
                self.cache.put(&got, &data).map_err(|c| call.cache(c))?;
                pulled.manifest = got;
                doc
            }
            None => {
                pulled.manifest = digest;
                doc
            }
        };

        let blobs: Vec<_> = doc.config.iter().chain(&doc.layers).collect();
        let layers = doc.layers.len();
        for (i, blob) in blobs.iter().enumerate() {
            if self.cache.has(&blob.digest, Some(blob.size)).map_err(|c| call.cache(c))? {
                pulled.cached_blobs += 1;
                continue;
            }
            let what = if i == 0 { "config".to_string() } else { format!("layer {i}/{layers}") };
            progress.blob(&what, &blob.digest, blob.size);
            call.blob(&client, &remote, &blob.digest, blob.size, progress).await?;
            progress.blob_done(&blob.digest);
            pulled.downloaded_blobs += 1;
            pulled.downloaded_bytes += blob.size;
        }
        Ok(pulled)
    }

    fn credential(&self, registry: &str) -> Result<Credential, String> {
        match &self.docker {
            Some(c) => c.credential(registry),
            None => Ok(Credential::Anonymous),
        }
    }
}

/// One reference's requests, with what its errors name.
struct Call<'a> {
    puller: &'a Puller,
    reference: String,
    registry: String,
}

impl Call<'_> {
    fn other(&self, cause: String) -> PullError {
        PullError::Other { reference: self.reference.clone(), cause }
    }

    fn cache(&self, cause: CacheError) -> PullError {
        PullError::Cache { reference: self.reference.clone(), cause }
    }

    /// The registry's client (one per registry: its CA certificates are its own), made once.
    async fn client(&self) -> Result<(Arc<Client>, RegistryAuth), PullError> {
        if let Some(found) = self.puller.clients.lock().unwrap_or_else(|p| p.into_inner()).get(&self.registry) {
            return Ok(found.clone());
        }
        let certs = crate::certs::for_registry(&self.registry, &crate::certs::dirs()).map_err(|c| self.other(c))?;
        let insecure = self.puller.opts.insecure.contains(&self.registry);
        let config = ClientConfig {
            protocol: if insecure { ClientProtocol::Http } else { ClientProtocol::Https },
            extra_root_certificates: certs
                .into_iter()
                .map(|(_, data)| Certificate { encoding: CertificateEncoding::Pem, data })
                .collect(),
            platform_resolver: None,
            connect_timeout: Some(Duration::from_secs(15)),
            read_timeout: Some(Duration::from_secs(60)),
            user_agent: concat!("hoist/", env!("CARGO_PKG_VERSION")),
            ..Default::default()
        };
        let client = Client::try_from(config).map_err(|e| self.other(format!("registry client: {e}")))?;
        let auth = match self.puller.credential(&self.registry).map_err(|c| self.other(c))? {
            Credential::Anonymous => RegistryAuth::Anonymous,
            Credential::Basic { user, password } => RegistryAuth::Basic(user, password),
        };
        let made = (Arc::new(client), auth);
        self.puller.clients.lock().unwrap_or_else(|p| p.into_inner()).insert(self.registry.clone(), made.clone());
        Ok(made)
    }

    async fn manifest(
        &self,
        client: &Client,
        auth: &RegistryAuth,
        remote: &oci_client::Reference,
    ) -> Result<(Vec<u8>, String), PullError> {
        let (data, digest) = self
            .retry(|| async {
                // Token registries want the token first; a refused one is an error here
                // (the implicit path would go on anonymously).
                let request = async {
                    client.auth(remote, auth, RegistryOperation::Pull).await?;
                    client.pull_manifest_raw(remote, auth, &ACCEPTED).await
                };
                // A manifest is small: a registry that takes minutes for one is not answering.
                tokio::time::timeout(MANIFEST_TIME, request).await.unwrap_or_else(|_| {
                    Err(OciDistributionError::IoError(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no whole manifest within {} s", MANIFEST_TIME.as_secs()),
                    )))
                })
            })
            .await?;
        if data.len() > MAX_JSON {
            return Err(self.other(format!("manifest of {} bytes, more than the {MAX_JSON} allowed", data.len())));
        }
        Ok((data.to_vec(), digest))
    }

    async fn blob(
        &self,
        client: &Client,
        remote: &oci_client::Reference,
        digest: &str,
        size: u64,
        progress: &dyn Progress,
    ) -> Result<(), PullError> {
        // Each try is bounded by what the manifest claims: a minute, plus a second per MB
        // (a registry that trickles is given up on, and tried again).
        let limit = Duration::from_secs(60 + size / 1_000_000);
        self.with_retries(|| async move {
            match tokio::time::timeout(limit, self.blob_once(client, remote, digest, size, progress)).await {
                Ok(done) => done,
                Err(_) => Err(Failure::Transient(format!("blob {digest}: not whole after {} s", limit.as_secs()))),
            }
        })
        .await
    }

    async fn blob_once(
        &self,
        client: &Client,
        remote: &oci_client::Reference,
        digest: &str,
        size: u64,
        progress: &dyn Progress,
    ) -> Result<(), Failure> {
        let mut stream = client.pull_blob_stream(remote, digest).await.map_err(|e| self.classify(e))?;
        if stream.content_length.is_some_and(|n| n > size) {
            let n = stream.content_length.unwrap_or_default();
            return Err(Failure::Final(
                self.other(format!("blob {digest}: the registry offers {n} bytes, the manifest says {size}")),
            ));
        }
        let mut writer = self.puller.cache.writer(digest, Some(size)).map_err(|c| Failure::Final(self.cache(c)))?;
        while let Some(chunk) = stream.stream.next().await {
            // A body cut short is worth another try (the partial file goes with the
            // writer); content that is not what its digest says is final.
            let chunk = chunk.map_err(|e| {
                let what = format!("blob {digest}: {e}");
                match e.get_ref().is_some_and(|inner| inner.is::<oci_client::errors::DigestError>()) {
                    true => Failure::Final(
                        self.other(format!("{} sent bad content: {what}; nothing was cached", self.registry)),
                    ),
                    false => Failure::Transient(what),
                }
            })?;
            writer.write(&chunk).map_err(|c| Failure::Final(self.cache(c)))?;
            progress.bytes(writer.written(), size);
        }
        writer.finish().map_err(|c| Failure::Final(self.cache(c)))
    }

    async fn retry<T, F, Fut>(&self, mut attempt: F) -> Result<T, PullError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, OciDistributionError>>,
    {
        self.with_retries(|| {
            let fut = attempt();
            async move { fut.await.map_err(|e| self.classify(e)) }
        })
        .await
    }

    /// Runs `attempt` until it succeeds, fails for good, or has failed [`TRIES`] times,
    /// pausing [`FIRST_BACKOFF`], doubled each time, between tries.
    async fn with_retries<T, F, Fut>(&self, mut attempt: F) -> Result<T, PullError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        let mut tries = 0;
        loop {
            tries += 1;
            match attempt().await {
                Ok(v) => return Ok(v),
                Err(Failure::Final(e)) => return Err(e),
                Err(Failure::Transient(cause)) if tries >= TRIES => {
                    return Err(PullError::Unreachable {
                        reference: self.reference.clone(),
                        registry: self.registry.clone(),
                        tries,
                        cause,
                    });
                }
                Err(Failure::Transient(cause)) => {
                    log::warn!("{}: {cause}; trying again", self.reference);
                    tokio::time::sleep(FIRST_BACKOFF * 2u32.pow(tries - 1)).await;
                }
            }
        }
    }

    fn classify(&self, e: OciDistributionError) -> Failure {
        use OciDistributionError as E;
        let reference = self.reference.clone();
        let registry = self.registry.clone();
        match e {
            E::UnauthorizedError { .. } | E::AuthenticationFailure(_) => {
                let who = match self.puller.credential(&self.registry) {
                    Ok(Credential::Basic { user, .. }) => format!("the credentials of user {user:?} (wrong password?)"),
                    _ => format!("an anonymous pull (log in: no credentials for {registry} in ~/.docker/config.json)"),
                };
                Failure::Final(PullError::Auth { reference, registry, who })
            }
            E::ImageManifestNotFoundError(_) => Failure::Final(PullError::NotFound { reference, registry }),
            E::RegistryError { envelope, .. } => {
                let codes: Vec<String> = envelope.errors.iter().map(|e| format!("{:?}", e.code)).collect();
                let text = format!("{envelope}");
                if codes.iter().any(|c| c.contains("Unknown")) {
                    Failure::Final(PullError::NotFound { reference, registry })
                } else if codes.iter().any(|c| c.to_lowercase().contains("toomanyrequests")) {
                    Failure::Transient(text)
                } else if codes.iter().any(|c| c == "Unauthorized" || c == "Denied") {
                    Failure::Final(PullError::Auth { reference, registry, who: format!("the pull: {text}") })
                } else {
                    Failure::Final(PullError::Other { reference, cause: format!("{registry}: {text}") })
                }
            }
            E::ServerError { code, message, .. } if code >= 500 || code == 429 => {
                Failure::Transient(format!("HTTP {code}: {}", message.trim()))
            }
            E::ServerError { code: 404, .. } => Failure::Final(PullError::NotFound { reference, registry }),
            E::RequestError(e) => {
                let text = error_chain(&e);
                if text.contains("certificate") || text.contains("InvalidCertificate") {
                    Failure::Final(PullError::Other { reference, cause: format!("{registry}: TLS: {text}") })
                } else if e.is_connect() || e.is_timeout() || e.is_body() {
                    Failure::Transient(text)
                } else {
                    Failure::Final(PullError::Other { reference, cause: format!("{registry}: {text}") })
                }
            }
            E::ServerError { code: 408, message, .. } => Failure::Transient(format!("HTTP 408: {}", message.trim())),
            E::IoError(e) => Failure::Transient(e.to_string()),
            E::DigestError(e) => {
                Failure::Final(PullError::Other { reference, cause: format!("{registry} sent bad content: {e}") })
            }
            other => Failure::Final(PullError::Other { reference, cause: format!("{registry}: {other}") }),
        }
    }
}

enum Failure {
    Transient(String),
    Final(PullError),
}

/// An error and its causes on one line (reqwest hides the interesting part in `source`).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}
