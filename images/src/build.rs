//! `hoist build`: config in, `DIR/kernel`, `DIR/initrd.img` and `DIR/cmdline` out.
//!
//! Everything is first collected into an in-memory [`Tree`], then written as one sorted
//! newc archive with fixed owners and mtimes, so the same inputs give the same bytes. The
//! archive is streamed through the compressor into the output file: only the tree is held
//! in memory, not the archive and its compressed copy as well.
//! Outputs are written to temporary names and renamed into place: an interrupted build
//! never leaves a half-written initrd behind a valid-looking name.
//!
//! The initrd holds the server's TLS key and the config with every `env` value, so every
//! output (`kernel`, `initrd.img` and `cmdline` alike: one rule, and the cmdline may carry
//! secrets too) is written 0600, through [`hoist_guest::atomic::Dir`]: an unpredictable
//! temporary made with `O_EXCL | O_NOFOLLOW` in the opened directory, then renamed. An
//! output directory another user can write (not owned by this user or root, or group- or
//! other-writable) is refused before anything is read or written (a missing one is made
//! once the images are read, so a bad config or image leaves nothing behind). In the guest,
//! `/etc/hoist` (config, manifest, TLS) is root's alone: 0700, files 0600 except the
//! certificates.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use hoist_config::manifest::{BuildManifest, ServiceImage};
use hoist_config::{Config, OciRuntime};
use hoist_guest::kernel::{ALWAYS_MODULES, DEFAULT_CMDLINE};
use hoist_guest::modules::{ModuleError, ModuleIndex};
use hoist_guest::{paths, pki};

use crate::compress::{Compression, Compressor};
use crate::tree::{Entry, Node, Tree};
use crate::{cpio, elf, kernel, oci};

/// Modules the QEMU machine's devices need (network, disk, entropy, console), shipped with
/// [`ALWAYS_MODULES`]; those the kernel has built in, or lacks, are skipped. e1000 and
/// e1000e are QEMU's default NICs (pc and q35 machines), for a VM started without
/// `-nic virtio`; PID 1 loads only what the devices present ask for.
pub const DEVICE_MODULES: &[&str] =
    &["virtio_pci", "virtio_net", "virtio_blk", "virtio_rng", "virtio_console", "e1000", "e1000e"];

/// Host binaries that go into every image: (host path candidates, guest path).
const RUNTIME_BINARIES: &[(&[&str], &str)] = &[(&["/usr/bin/containerd"], paths::CONTAINERD)];

/// Where the host has the OCI runtime `[host] runtime` names (Debian's places).
fn oci_runtime_on_host(runtime: OciRuntime) -> &'static [&'static str] {
    match runtime {
        OciRuntime::Crun => &["/usr/bin/crun"],
        OciRuntime::Runc => &["/usr/sbin/runc", "/usr/bin/runc"],
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Config(#[from] hoist_config::ConfigError),
    #[error(transparent)]
    Kernel(#[from] kernel::KernelError),
    #[error("kernel modules for {release}: {cause}")]
    Modules { release: String, cause: ModuleError },
    #[error("{0} not found (install it: apt-get install containerd)")]
    MissingRuntime(String),
    #[error(
        "/usr/sbin/nft not found: network = \"bridge\" services need nftables in the image (install it: apt-get install nftables)"
    )]
    MissingNft,
    #[error("{0} not found: [volume] tables need e2fsprogs in the image (install it: apt-get install e2fsprogs)")]
    MissingE2fsprogs(String),
    #[error(
        "{path} not found ([host] runtime = \"{name}\"; install it with apt-get install {name}, or choose the other runtime)"
    )]
    MissingOciRuntime { name: &'static str, path: String },
    #[error("{name} not found in {dir} (build it first: cargo build --release)")]
    MissingOwnBinary { name: &'static str, dir: PathBuf },
    #[error(transparent)]
    Elf(#[from] elf::ElfError),
    #[error("service {service}: image {image}: {cause}")]
    Image { service: String, image: String, cause: Box<oci::OciError> },
    #[error("service {service}: image {image}: {cause}")]
    Platform { service: String, image: String, cause: oci::ForeignPlatform },
    #[error("service {service}: image {image}: user {user:?}: {cause}")]
    User { service: String, image: String, user: String, cause: crate::resolve::UserError },
    #[error("{path}: {cause}")]
    Io { path: PathBuf, cause: std::io::Error },
    #[error(transparent)]
    Pki(#[from] crate::pki::PkiError),
    #[error("output directory {0}")]
    OutDir(#[from] hoist_guest::atomic::UnsafeDir),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BuildError + '_ {
    move |cause| BuildError::Io { path: path.to_path_buf(), cause }
}

/// Progress of a long build, shown by the CLI.
pub trait Progress {
    fn begin(&self, step: &str);
    fn end(&self, step: &str, detail: &str);
}

pub struct Quiet;

impl Progress for Quiet {
    fn begin(&self, _: &str) {}
    fn end(&self, _: &str, _: &str) {}
}

pub struct BuildOptions {
    pub config: PathBuf,
    pub out: PathBuf,
    /// Where hoist-init, hoist-supervisor and containerd-shim-hoist-v1 are (normally next
    /// to `hoist`).
    pub bin_dir: PathBuf,
    pub compression: Compression,
    /// The control API's PKI (made there if missing); default `OUT/pki`.
    pub pki: Option<PathBuf>,
    /// Build in images made for another platform than [`oci::TARGET_PLATFORM`] (a warning).
    pub allow_foreign_arch: bool,
    /// Where `docker://` images were pulled to, and the digest each is pinned to.
    pub pinned: Pinned,
}

/// `docker://` images, pulled beforehand (by hoist-registry, for the CLI): the cache (an
/// OCI layout of blobs) and, for each reference (normalized), the digest of the image
/// manifest its pin resolved to for the platform pulled. The build itself does no network.
#[derive(Debug, Clone, Default)]
pub struct Pinned {
    pub cache: PathBuf,
    pub digests: BTreeMap<String, String>,
}

#[derive(Debug)]
pub struct BuildReport {
    pub kernel: PathBuf,
    pub release: String,
    pub files: usize,
    pub uncompressed: u64,
    pub initrd_bytes: u64,
    pub modules: Vec<String>,
    pub services: BTreeMap<String, String>,
}

pub fn build(opts: &BuildOptions, progress: &dyn Progress) -> Result<BuildReport, BuildError> {
    // An output directory that will be refused is refused before any work; a missing one
    // is made only once everything it will hold has been read.
    if opts.out.exists() {
        open_out_dir(&opts.out)?;
    }
    progress.begin("config");
    // Read once: the text validated is the text the guest gets.
    let config_text = std::fs::read(&opts.config).map_err(io(&opts.config))?;
    let config = hoist_config::load_bytes(&opts.config, &config_text)?;
    for warning in config.warnings() {
        log::warn!("{}: {warning}", opts.config.display());
    }
    progress.end("config", &format!("{} services", config.service.len()));

    let mut tree = skeleton();
    tree.insert_file(paths::HOST_CONFIG, 0o600, config_text);
    tree.insert_file(paths::BOOT_CONFIG, 0o600, crate::boot::facts(&config).format().into_bytes());
    tree.insert_file(paths::CONTAINERD_CONFIG, 0o644, paths::CONTAINERD_CONFIG_TOML.as_bytes().to_vec());

    progress.begin("kernel");
    let kernel_path = match &config.kernel.path {
        Some(p) => p.clone(),
        None => kernel::newest_kernel(Path::new("/boot"))?,
    };
    let kernel_bytes = std::fs::read(&kernel_path).map_err(io(&kernel_path))?;
    let release = kernel::release_of(&kernel_bytes, &kernel_path)?;
    let modules = add_modules(&mut tree, &config, &release)?;
    progress.end("kernel", &format!("{release}, {} modules", modules.len()));

    progress.begin("binaries");
    let bridge = config.service.values().any(|s| s.network == hoist_config::ServiceNetwork::Bridge);
    let libseccomp = add_binaries(&mut tree, &opts.bin_dir, config.host.runtime, !config.volume.is_empty(), bridge)?;
    progress.end("binaries", &format!("{} files", tree.len()));

    let mut manifest = BuildManifest { kernel_release: release.clone(), ..Default::default() };
    if let Some(lib) = &libseccomp {
        compile_filters(&config, lib, &mut manifest);
    }
    let mut services = BTreeMap::new();
    let mut unpacked: BTreeMap<String, String> = BTreeMap::new();
    // What the images still unpacked may add, on top of each one's own cap.
    let mut total_left = oci::TOTAL_BYTES;
    for hoist_config::Container { name, image: image_source, user: config_user, .. } in config.containers() {
        let step = format!("image {name}");
        progress.begin(&step);
        let source = image_source.describe();
        let limits = image_limits(total_left);
        let imported = match image_source {
            hoist_config::ImageSource::Registry { reference } => {
                match opts.pinned.digests.get(&reference.to_string()) {
                    Some(digest) => oci::import_pinned(&opts.pinned.cache, digest, &limits),
                    None => Err(oci::OciError::NotPinned { reference: reference.to_string() }),
                }
            }
            other => oci::import_with(other, &limits),
        };
        let image = imported.map_err(|e| BuildError::Image {
            service: name.to_string(),
            image: source.clone(),
            cause: Box::new(e),
        })?;
        image
            .check_platform(&format!("service {name}"), opts.allow_foreign_arch)
            .map_err(|cause| BuildError::Platform { service: name.to_string(), image: source.clone(), cause })?;
        let hex = image.digest.trim_start_matches("sha256:");
        let rootfs = format!("{}/{}/rootfs", paths::IMAGES_DIR, &hex[..hex.len().min(16)]);
        if !unpacked.contains_key(&image.digest) {
            total_left = total_left.saturating_sub(image.rootfs.content_bytes());
            tree.graft(rootfs.trim_start_matches('/'), &image.rootfs);
            unpacked.insert(image.digest.clone(), rootfs.clone());
        }
        manifest.service.insert(name.to_string(), manifest_entry(name, &source, &image, rootfs, config_user)?);
        progress.end(&step, &format!("{} files, {}", image.rootfs.len(), image.digest));
        services.insert(name.to_string(), image.digest);
    }
    tree.insert_file(paths::BUILD_MANIFEST, 0o600, manifest.to_toml().into_bytes());

    let out = open_out_dir(&opts.out)?;
    let pki_dir = opts.pki.clone().unwrap_or_else(|| opts.out.join("pki"));
    progress.begin("pki");
    let notes = crate::pki::ensure(&pki_dir)?;
    for (file, mode, data) in crate::pki::server_side(&pki_dir, &config.host.hostname)? {
        tree.insert_file(format!("{}/{file}", pki::TLS_DIR), mode, data);
    }
    progress.end("pki", &if notes.is_empty() { format!("{}", pki_dir.display()) } else { notes.join("; ") });

    progress.begin("initramfs");
    // Counted first (headers only, no data copied), then streamed through the compressor
    // into the output: neither the archive nor its compressed copy is ever held whole.
    let uncompressed = cpio::write_tree(&tree, std::io::sink()).map_err(io(&opts.out))?;
    let cmdline = config.kernel.cmdline.clone().unwrap_or_else(|| DEFAULT_CMDLINE.to_string());
    out.write("kernel".as_ref(), &kernel_bytes, OUTPUT_MODE).map_err(io(&opts.out.join("kernel")))?;
    let initrd_path = opts.out.join("initrd.img");
    out.write_with("initrd.img".as_ref(), OUTPUT_MODE, |file| {
        let mut enc =
            Compressor::new(std::io::BufWriter::with_capacity(1 << 20, file), opts.compression, uncompressed)?;
        cpio::write_tree(&tree, &mut enc)?;
        enc.finish()?.flush()
    })
    .map_err(io(&initrd_path))?;
    let initrd_bytes = std::fs::metadata(&initrd_path).map_err(io(&initrd_path))?.len();
    progress.end("initramfs", &format!("{} MB cpio -> {} MB {}", mb(uncompressed), mb(initrd_bytes), opts.compression));
    out.write("cmdline".as_ref(), format!("{cmdline}\n").as_bytes(), OUTPUT_MODE)
        .map_err(io(&opts.out.join("cmdline")))?;
    Ok(BuildReport { kernel: kernel_path, release, files: tree.len(), uncompressed, initrd_bytes, modules, services })
}

/// The cap for the next image: its own, or what is left of the build's total if that is less.
fn image_limits(total_left: u64) -> oci::Limits {
    match total_left {
        left if left < oci::IMAGE_BYTES => {
            oci::Limits { bytes: left, scope: "left for all of a build's images together", ..Default::default() }
        }
        _ => oci::Limits::default(),
    }
}

/// The manifest entry for one container: the image's run settings, with its `User`
/// resolved to numbers and its `WorkingDir` made absolute ([`crate::resolve`]), so the
/// guest needs no lookups. When the config's `user` replaces the image's, the image's is
/// left as written: it is never used, and may name someone the image does not know.
fn manifest_entry(
    name: &str,
    source: &str,
    image: &oci::Image,
    rootfs: String,
    config_user: Option<(u32, u32)>,
) -> Result<ServiceImage, BuildError> {
    let c = &image.config;
    let user = match config_user {
        Some(_) => c.user.clone(),
        None => crate::resolve::user(&image.rootfs, &c.user).map_err(|err| BuildError::User {
            service: name.to_string(),
            image: source.to_string(),
            user: c.user.clone(),
            cause: err,
        })?,
    };
    Ok(ServiceImage {
        source: source.to_string(),
        digest: image.digest.clone(),
        rootfs,
        entrypoint: c.entrypoint.clone(),
        cmd: c.cmd.clone(),
        env: c.env.clone(),
        working_dir: crate::resolve::working_dir(&c.working_dir),
        user,
    })
}

fn mb(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / 1e6)
}

/// The mode of every build output: they hold secrets (see the crate doc).
pub const OUTPUT_MODE: u32 = 0o600;

/// Creates the output directory (0755) if missing, and refuses one another user can write.
pub fn open_out_dir(out: &Path) -> Result<hoist_guest::atomic::Dir, BuildError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o755).create(out).map_err(io(out))?;
    let dir = hoist_guest::atomic::Dir::open(out).map_err(io(out))?;
    dir.check_private()?;
    Ok(dir)
}

/// Merged-/usr layout, API mount points, and the two device nodes the kernel and PID 1
/// need before devtmpfs is mounted.
fn skeleton() -> Tree {
    let mut t = Tree::new();
    for d in [
        "usr/bin",
        "usr/sbin",
        "usr/lib",
        "usr/lib64",
        "etc/containerd",
        "proc",
        "sys",
        "dev",
        "run",
        "root",
        "var/log",
        "var/lib/containerd",
        "var/lib/hoist/images",
    ] {
        t.insert_dir(d, 0o755);
    }
    t.insert_dir("tmp", 0o1777);
    t.insert_dir("etc/hoist", 0o700);
    for (link, target) in [("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib"), ("lib64", "usr/lib64")] {
        t.insert_symlink(link, target);
    }
    t.insert("dev/console", Entry::root(Node::CharDev { mode: 0o600, major: 5, minor: 1 }));
    t.insert("dev/null", Entry::root(Node::CharDev { mode: 0o666, major: 1, minor: 3 }));
    t
}

fn add_modules(tree: &mut Tree, config: &Config, release: &str) -> Result<Vec<String>, BuildError> {
    let host_dir = Path::new("/lib/modules").join(release);
    let err = |cause| BuildError::Modules { release: release.to_string(), cause };
    let index = ModuleIndex::load(&host_dir).map_err(err)?;
    let mut wanted: Vec<&str> =
        DEVICE_MODULES.iter().chain(ALWAYS_MODULES).copied().filter(|m| index.resolve(&[m]).is_ok()).collect();
    // Configured modules must exist: a typo is reported now, not discovered at boot.
    let configured = crate::boot::modules(config);
    wanted.extend(configured.iter().map(|m| m.as_str()));
    let rel_paths = index.resolve(&wanted).map_err(err)?;
    let guest_dir = format!("{}/{release}", paths::MODULES_DIR.trim_start_matches('/'));
    let mut names = Vec::new();
    for rel in &rel_paths {
        let host = host_dir.join(rel);
        let data = std::fs::read(&host).map_err(io(&host))?;
        tree.insert_file(format!("{guest_dir}/{rel}"), 0o644, data);
        names.push(ModuleIndex::normalize(rel));
    }
    tree.insert_file(format!("{guest_dir}/modules.dep"), 0o644, index.filtered_dep(&names).into_bytes());
    tree.insert_file(format!("{guest_dir}/modules.alias"), 0o644, index.filtered_alias(&names).into_bytes());
    let builtin = host_dir.join("modules.builtin");
    if let Ok(data) = std::fs::read(&builtin) {
        tree.insert_file(format!("{guest_dir}/modules.builtin"), 0o644, data);
    }
    Ok(names)
}

/// Adds the runtime binaries and their libraries; returns the host file of the
/// libseccomp crun will use, if the runtime is crun and links it.
/// e2fsprogs (host candidates, guest path): in the image only when the config has volumes.
const E2FSPROGS: &[(&[&str], &str)] =
    &[(&["/usr/sbin/mke2fs", "/sbin/mke2fs"], paths::MKE2FS), (&["/usr/sbin/e2fsck", "/sbin/e2fsck"], paths::E2FSCK)];

fn add_binaries(
    tree: &mut Tree,
    bin_dir: &Path,
    runtime: OciRuntime,
    volumes: bool,
    bridge: bool,
) -> Result<Option<PathBuf>, BuildError> {
    let find = |candidates: &[&str]| candidates.iter().map(PathBuf::from).find(|p| p.is_file());
    let mut executables: Vec<(PathBuf, String)> = Vec::new();
    if volumes {
        for (candidates, guest) in E2FSPROGS {
            let host = find(candidates).ok_or_else(|| BuildError::MissingE2fsprogs(candidates[0].to_string()))?;
            executables.push((host, guest.to_string()));
        }
        // mke2fs's defaults from a file, not from whatever its binary was built with.
        let conf = Path::new(paths::MKE2FS_CONF);
        let data = std::fs::read(conf).map_err(|_| BuildError::MissingE2fsprogs(paths::MKE2FS_CONF.to_string()))?;
        tree.insert_file(paths::MKE2FS_CONF.as_bytes(), 0o644, data);
    }
    if bridge {
        let host = find(&["/usr/sbin/nft", "/sbin/nft"]).ok_or(BuildError::MissingNft)?;
        executables.push((host, paths::NFT.to_string()));
    }
    for (candidates, guest) in RUNTIME_BINARIES {
        let host = find(candidates).ok_or_else(|| BuildError::MissingRuntime(candidates[0].to_string()))?;
        executables.push((host, guest.to_string()));
    }
    let candidates = oci_runtime_on_host(runtime);
    let missing = || BuildError::MissingOciRuntime { name: runtime.name(), path: candidates[0].to_string() };
    let guest = paths::oci_runtime(runtime.name()).ok_or_else(missing)?;
    executables.push((find(candidates).ok_or_else(missing)?, guest.to_string()));
    for (name, guest) in
        [("hoist-init", "/init"), ("hoist-supervisor", paths::SUPERVISOR), ("containerd-shim-hoist-v1", paths::SHIM)]
    {
        let host = bin_dir.join(name);
        if !host.is_file() {
            return Err(BuildError::MissingOwnBinary { name, dir: bin_dir.to_path_buf() });
        }
        executables.push((host, guest.to_string()));
    }
    let hosts: Vec<PathBuf> = executables.iter().map(|(h, _)| h.clone()).collect();
    let mut libseccomp = None;
    for needed in elf::Resolver::new(Path::new("/")).closure(&hosts)? {
        let data = std::fs::read(&needed.host_file).map_err(io(&needed.host_file))?;
        tree.insert_file(needed.guest_path.as_os_str().as_bytes(), 0o755, data);
        let name = needed.guest_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        // Version 2's ABI is what crate::seccomp calls; another soname is left to crun.
        if runtime == OciRuntime::Crun && name == "libseccomp.so.2" {
            libseccomp = Some(needed.host_file.clone());
        }
    }
    for (host, guest) in executables {
        let data = std::fs::read(&host).map_err(io(&host))?;
        tree.insert_file(&guest, 0o755, data);
    }
    Ok(libseccomp)
}

/// Compiles every distinct seccomp profile the config's containers get, with the image's
/// own libseccomp ([`crate::seccomp`]), into the manifest. A profile that does not
/// compile here is left to crun (a warning): the host still boots, just slower.
fn compile_filters(config: &Config, libseccomp: &Path, manifest: &mut BuildManifest) {
    use hoist_config::seccomp::{for_container, key};
    let containers = config.service.iter().map(|(name, s)| (name.as_str(), &s.capabilities, s.seccomp)).chain(
        config
            .onboot
            .iter()
            .chain(&config.onshutdown)
            .map(|o| (o.name.as_str(), &o.capabilities, hoist_config::Seccomp::Default)),
    );
    for (name, caps, mode) in containers {
        let Ok(Some(profile)) = for_container(caps, mode) else { continue };
        let Some(key) = key(&profile) else { continue };
        if manifest.seccomp_bpf.contains_key(&key) {
            continue;
        }
        let compiled = serde_json::to_value(&profile)
            .map_err(|e| e.to_string())
            .and_then(|json| crate::seccomp::compile(libseccomp, &json));
        match compiled {
            Ok(program) => {
                manifest.seccomp_bpf.insert(key, crate::seccomp::base64(&program));
            }
            Err(e) => log::warn!("{name}: seccomp filter left to crun: {}: {e}", libseccomp.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::{Image, ImageConfig};

    fn image(user: &str, working_dir: &str) -> Image {
        let mut rootfs = Tree::new();
        rootfs.insert_file("etc/passwd", 0o644, b"root:x:0:0::/:\nwww-data:x:33:33::/var/www:\n".to_vec());
        rootfs.insert_file("etc/group", 0o644, b"root:x:0:\nwww-data:x:33:\n".to_vec());
        let config = ImageConfig { user: user.into(), working_dir: working_dir.into(), ..Default::default() };
        Image { rootfs, config, digest: "sha256:00".into(), platform: "linux/amd64".into() }
    }

    #[test]
    fn every_runtime_the_config_offers_has_a_guest_path() {
        for runtime in [OciRuntime::Crun, OciRuntime::Runc] {
            assert!(paths::oci_runtime(runtime.name()).is_some(), "{runtime:?}");
            assert!(!oci_runtime_on_host(runtime).is_empty(), "{runtime:?}");
        }
    }

    #[test]
    fn images_are_capped_by_what_is_left_of_the_total() {
        assert_eq!(image_limits(oci::TOTAL_BYTES), oci::Limits::default());
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::write(tmp.path().join("big"), vec![0u8; 2 << 20]).expect("file");
        let source = hoist_config::ImageSource::Dir { dir: tmp.path().to_path_buf() };
        let cause = oci::import_with(&source, &image_limits(1 << 20)).expect_err("over what is left");
        let err = BuildError::Image { service: "web".into(), image: "dir:/x".into(), cause: Box::new(cause) };
        assert_eq!(
            err.to_string(),
            "service web: image dir:/x: unpacks to more than 1 MiB (the cap left for all of a build's images together)"
        );
    }

    #[test]
    fn the_manifest_gets_numeric_users_and_absolute_working_dirs() {
        let entry = |img: &Image, config_user| manifest_entry("web", "dir:/x", img, "/r".into(), config_user);
        let e = entry(&image("www-data:www-data", "srv/www"), None).expect("resolves");
        assert_eq!((e.user.as_str(), e.working_dir.as_str()), ("33:33", "/srv/www"));
        let e = entry(&image("", ""), None).expect("defaults");
        assert_eq!((e.user.as_str(), e.working_dir.as_str()), ("", ""));
        // The config's user replaces the image's, which is then not looked up.
        let e = entry(&image("mysql", "/"), Some((1000, 1000))).expect("replaced");
        assert_eq!(e.user, "mysql");
        let err = entry(&image("mysql", "/"), None).expect_err("unknown user");
        assert_eq!(
            err.to_string(),
            "service web: image dir:/x: user \"mysql\": no user named \"mysql\" in the image's /etc/passwd"
        );
    }
}
