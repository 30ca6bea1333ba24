//! `docker://` images on the build host: pinned and pulled before `hoist build` (the
//! digests kept in the config's lock file, `host.toml` -> `host.lock`), and pulled or
//! inspected by hand with `hoist image pull` and `hoist image inspect`. The pulling is
//! hoist-registry's; this is the command line's part: which references, which pins,
//! progress and what moved.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use hoist_config::{ImageSource, Reference};
use hoist_registry::manifest::Platform;
use hoist_registry::pull::{Options, Progress};
use hoist_registry::{Cache, Lock, Puller};

/// How `docker://` images are fetched: `hoist build` and `hoist image pull` share these.
#[derive(clap::Args, Clone, Default)]
pub struct RegistryArgs {
    /// Resolve docker:// tags again and move the pins in the lock file (default: use the pins)
    #[arg(long)]
    pub update: bool,
    /// The platform an image index resolves to (default: this machine's, e.g. linux/amd64)
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<Platform>,
    /// HOST[:PORT] of a registry spoken to over plain HTTP, without TLS (repeatable)
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure: Vec<String>,
}

impl RegistryArgs {
    fn puller(&self) -> anyhow::Result<Puller> {
        let root = Cache::default_root();
        let cache = Cache::open(&root).with_context(|| "the image cache (HOIST_CACHE to put it elsewhere)")?;
        let opts = Options {
            platform: self.platform.clone().unwrap_or_else(Platform::build_host),
            insecure: self.insecure.clone(),
        };
        Puller::new(cache, opts).map_err(anyhow::Error::msg)
    }
}

/// Pins and pulls every `docker://` image of the config at `file`; the lock file is
/// written when a pin changed. Nothing is asked of a registry for an image that is pinned
/// and whole in the cache.
pub fn pin_config(file: &Path, args: &RegistryArgs) -> anyhow::Result<Pins> {
    pin(file, &hoist_config::load(file)?, args)
}

/// What [`pin`] resolved, and the cache held shared until the images are read (a prune
/// waits for it).
pub struct Pins {
    pub pinned: hoist_images::build::Pinned,
    _cache: Option<hoist_registry::cache::CacheLock>,
}

/// [`pin_config`] for a config already read from `file`.
pub fn pin(file: &Path, config: &hoist_config::Config, args: &RegistryArgs) -> anyhow::Result<Pins> {
    let mut wanted: BTreeMap<String, (Reference, Vec<String>)> = BTreeMap::new();
    for c in config.containers() {
        if let ImageSource::Registry { reference } = c.image {
            wanted
                .entry(reference.to_string())
                .or_insert_with(|| (reference.clone(), Vec::new()))
                .1
                .push(c.name.to_string());
        }
    }
    if wanted.is_empty() {
        return Ok(Pins { pinned: Default::default(), _cache: None });
    }
    let lock_path = hoist_registry::lock::path_for(file);
    let old = Lock::load(&lock_path)?;
    let puller = args.puller()?;
    let held = puller.cache().lock_shared()?;
    // Before pulling: what this lock pins stays through a later `hoist image prune`.
    hoist_registry::prune::remember(puller.cache(), &lock_path)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut lock = Lock::default();
    let mut digests = BTreeMap::new();
    for (key, (reference, services)) in &wanted {
        let who = format!("service {}: image docker://{key}", services.join(", "));
        let pinned = match (&reference.digest, args.update) {
            (Some(_), _) | (None, true) => None,
            (None, false) => old.images.get(key).map(String::as_str),
        };
        if let Some(d) = pinned {
            eprintln!("  {key}: pinned to {d} by {}", lock_path.display());
        }
        let started = Instant::now();
        let pulled = rt.block_on(puller.pull(reference, pinned, &Lines::new(key.clone()))).context(who)?;
        report(key, &pulled, started);
        if let Some(before) = old.images.get(key).filter(|b| **b != pulled.digest) {
            eprintln!("  {key}: moved from {before} to {}", pulled.digest);
        }
        // Every reference, a digest one too, so that `hoist image prune` keeps it.
        lock.images.insert(key.clone(), pulled.digest.clone());
        // The build reads the platform's manifest the pull chose, not the index again.
        digests.insert(key.clone(), pulled.manifest);
    }
    if lock != old {
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        lock.save(&lock_path, &name)?;
        eprintln!("  wrote {}", lock_path.display());
    }
    let pinned = hoist_images::build::Pinned { cache: puller.cache().root().to_path_buf(), digests };
    Ok(Pins { pinned, _cache: Some(held) })
}

/// `hoist image pull REF`: into the cache; prints the digest to pin. Returns the reference
/// with the digest of the image manifest the platform selects.
pub fn pull(reference: &str, args: &RegistryArgs) -> anyhow::Result<Reference> {
    let text = reference.strip_prefix("docker://").unwrap_or(reference);
    let reference = Reference::parse_named(text)?;
    let puller = args.puller()?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let started = Instant::now();
    let pulled = rt.block_on(puller.pull(&reference, None, &Lines::new(reference.to_string())))?;
    report(&reference.to_string(), &pulled, started);
    let (blobs, bytes) = puller.cache().usage()?;
    println!("docker://{reference} {} (image manifest {})", pulled.digest, pulled.manifest);
    eprintln!("  cache {}: {blobs} blobs, {:.1} MB", puller.cache().root().display(), bytes as f64 / 1e6);
    Ok(Reference { digest: Some(pulled.manifest), ..reference })
}

fn report(key: &str, pulled: &hoist_registry::Pulled, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    if pulled.downloaded_blobs == 0 {
        eprintln!("  {key}: {} (in the cache)", pulled.digest);
    } else {
        let mb = pulled.downloaded_bytes as f64 / 1e6;
        eprintln!(
            "  {key}: {} ({} blobs, {mb:.1} MB downloaded in {secs:.1} s, {:.1} MB/s; {} were cached)",
            pulled.digest,
            pulled.downloaded_blobs,
            mb / secs.max(0.001),
            pulled.cached_blobs
        );
    }
}

/// A line per blob as it starts, and one every 5 s for a long one.
struct Lines {
    name: String,
    last: std::sync::Mutex<Option<Instant>>,
}

impl Lines {
    fn new(name: String) -> Lines {
        Lines { name, last: std::sync::Mutex::new(None) }
    }

    fn last(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.last.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Progress for Lines {
    fn blob(&self, what: &str, digest: &str, size: u64) {
        eprintln!("  {}: {what} {digest} ({:.1} MB)", self.name, size as f64 / 1e6);
        *self.last() = Some(Instant::now());
    }

    fn bytes(&self, done: u64, size: u64) {
        let mut last = self.last();
        if size > 0 && last.is_none_or(|t| t.elapsed().as_secs() >= 5) {
            eprintln!("  {}: {:.1}/{:.1} MB ({}%)", self.name, done as f64 / 1e6, size as f64 / 1e6, done * 100 / size);
            *last = Some(Instant::now());
        }
    }

    fn blob_done(&self, _digest: &str) {}
}

/// `hoist image prune`: what no remembered lock file pins goes (or, dry, is counted).
pub fn prune(dry_run: bool) -> anyhow::Result<()> {
    let root = Cache::default_root();
    let cache = Cache::open(&root)?;
    let r = hoist_registry::prune::prune(&cache, dry_run).map_err(anyhow::Error::msg)?;
    for lock in &r.locks {
        eprintln!("  keeping what {} pins", lock.display());
    }
    let verb = if dry_run { "would remove" } else { "removed" };
    println!(
        "{}: {verb} {} blobs ({:.1} MB); kept {} blobs ({:.1} MB) for {} lock files",
        root.display(),
        r.removed,
        r.removed_bytes as f64 / 1e6,
        r.kept,
        r.kept_bytes as f64 / 1e6,
        r.locks.len()
    );
    Ok(())
}
