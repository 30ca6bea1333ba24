//! `hoist image`: make a service image from local files (no registry, no Docker), and
//! look inside an image source the way `hoist build` will read it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use hoist_images::oci::{self, ImageConfig};
use hoist_images::tree::Tree;

#[derive(clap::Subcommand)]
pub enum ImageCommand {
    /// Write an OCI image layout at OUT with one layer made from local files.
    ///
    /// Example (the demo's image, from Debian's busybox-static):
    ///   hoist image create out/images/busybox --add /bin/busybox:/bin/busybox --busybox-applets /bin/busybox
    Create {
        /// Output directory (must not exist yet, or be empty)
        out: PathBuf,
        /// Tag, stored as org.opencontainers.image.ref.name
        #[arg(long, default_value = "latest")]
        tag: String,
        /// SRC[:DEST]: a file or directory on this machine, put at DEST in the image (default: same path)
        #[arg(long, value_name = "SRC[:DEST]")]
        add: Vec<String>,
        /// Add a symlink to this busybox path for every applet it lists (`busybox --list-full`)
        #[arg(long, value_name = "GUEST_PATH")]
        busybox_applets: Option<String>,
        /// Image entrypoint (repeat for each argument)
        #[arg(long)]
        entrypoint: Vec<String>,
        /// Image cmd (repeat for each argument)
        #[arg(long)]
        cmd: Vec<String>,
        /// KEY=VALUE environment (repeatable)
        #[arg(long)]
        env: Vec<String>,
        /// Working directory
        #[arg(long, default_value = "")]
        workdir: String,
    },
    /// Read an image source (docker://REF, oci:DIR[:TAG], docker-archive:FILE.tar[:REF], dir:DIR), verify it, and
    /// summarize it. A docker:// image is pulled into the image cache first (what it lacks only).
    Inspect {
        source: String,
        #[command(flatten)]
        registry: crate::pull::RegistryArgs,
    },
    /// Pull a registry image (docker://REF, or REF as docker names it: nginx:1.27,
    /// registry.local:5000/acme/api@sha256:...) into the image cache, and print its digest.
    ///
    /// Credentials come from ~/.docker/config.json (or $DOCKER_CONFIG, $REGISTRY_AUTH_FILE);
    /// a registry's own CA from certs.d/HOST:PORT/*.crt under ~/.config/containers,
    /// /etc/containers or /etc/docker. The cache is $HOIST_CACHE, else ~/.cache/hoist/oci.
    Pull {
        reference: String,
        #[command(flatten)]
        registry: crate::pull::RegistryArgs,
    },
    /// Remove from the image cache what no lock file pins (lock files are remembered when
    /// a build or apply reads or writes them; one that is gone no longer counts).
    Prune {
        /// Only say what would be removed
        #[arg(long)]
        dry_run: bool,
    },
}

pub fn run(cmd: ImageCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ImageCommand::Create { out, tag, add, busybox_applets, entrypoint, cmd, env, workdir } => {
            let mut tree = Tree::new();
            for spec in &add {
                add_path(&mut tree, spec)?;
            }
            if let Some(guest) = &busybox_applets {
                add_busybox_applets(&mut tree, &add, guest)?;
            }
            for kv in &env {
                if !kv.contains('=') {
                    bail!("--env {kv}: expected KEY=VALUE");
                }
            }
            let config = ImageConfig { entrypoint, cmd, env, working_dir: workdir, user: String::new() };
            let digest = oci::create_oci_layout(&out, &tag, &tree, &config)?;
            println!("{}:{tag} {digest} ({} entries)", out.display(), tree.len());
            Ok(ExitCode::SUCCESS)
        }
        ImageCommand::Prune { dry_run } => {
            crate::pull::prune(dry_run)?;
            Ok(ExitCode::SUCCESS)
        }
        ImageCommand::Pull { reference, registry } => {
            crate::pull::pull(&reference, &registry)?;
            Ok(ExitCode::SUCCESS)
        }
        ImageCommand::Inspect { source, registry } => {
            let text = format!("version = 1\n[service.x]\nimage = {source:?}\n");
            let config = hoist_config::parse(&text, "--source").map_err(|e| anyhow::anyhow!("{source}: {e}"))?;
            let image_source = &config.service["x"].image;
            let image = match image_source {
                hoist_config::ImageSource::Registry { .. } => {
                    // The platform's manifest, as the pull resolved it.
                    let pinned = crate::pull::pull(&source, &registry)?;
                    let digest = pinned.digest.unwrap_or_default();
                    oci::import_pinned(&hoist_registry::Cache::default_root(), &digest, &Default::default())?
                }
                other => oci::import(other)?,
            };
            println!("platform:   {}", image.platform);
            println!("digest:     {}", image.digest);
            println!("entries:    {} ({} bytes of files)", image.rootfs.len(), image.rootfs.content_bytes());
            println!("entrypoint: {:?}", image.config.entrypoint);
            println!("cmd:        {:?}", image.config.cmd);
            println!("env:        {:?}", image.config.env);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn split_add(spec: &str) -> (&str, &str) {
    match spec.split_once(':') {
        Some((src, dest)) => (src, dest),
        None => (spec, spec),
    }
}

fn add_path(tree: &mut Tree, spec: &str) -> anyhow::Result<()> {
    let (src, dest) = split_add(spec);
    let meta = std::fs::metadata(src).with_context(|| format!("--add {spec}: {src}"))?;
    if meta.is_dir() {
        let image = oci::import_dir(Path::new(src)).with_context(|| format!("--add {spec}"))?;
        tree.insert_dir(dest, 0o755);
        tree.graft(dest.trim_start_matches('/'), &image.rootfs);
    } else {
        use std::os::unix::fs::PermissionsExt;
        let data = std::fs::read(src).with_context(|| format!("--add {spec}: {src}"))?;
        tree.insert_file(dest, meta.permissions().mode() & 0o7777, data);
    }
    Ok(())
}

fn add_busybox_applets(tree: &mut Tree, adds: &[String], guest: &str) -> anyhow::Result<()> {
    let host = adds
        .iter()
        .map(|a| split_add(a))
        .find(|(_, dest)| *dest == guest)
        .map(|(src, _)| src.to_string())
        .with_context(|| format!("--busybox-applets {guest}: add the busybox binary with --add SRC:{guest} first"))?;
    let out = std::process::Command::new(&host)
        .arg("--list-full")
        .output()
        .with_context(|| format!("running {host} --list-full"))?;
    if !out.status.success() {
        bail!("{host} --list-full failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    for applet in String::from_utf8_lossy(&out.stdout).lines().map(str::trim).filter(|l| !l.is_empty()) {
        let path = format!("/{applet}");
        if path != guest && tree.get(&path).is_none() {
            tree.insert_symlink(&path, guest);
        }
    }
    Ok(())
}
