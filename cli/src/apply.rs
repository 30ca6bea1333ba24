//! `hoist apply FILE`: roll a changed host config out to a running host as a new
//! generation. The config is validated here first and every container's image resolved to
//! its digest (imported from the same sources `hoist build` reads), so a broken file or a
//! missing image never reaches the host. The host works out the plan from what it runs and
//! does the rollout itself; this command shows the plan, then follows the progress.
//!
//! Images travel when the host lacks them: before applying, the host is asked which blobs
//! (manifest, config, layers) of the config's OCI layout and docker archive images it does
//! not hold, and only those are sent ([`crate::send`]). A `dir:` image cannot be sent; the
//! host must already hold it (it does when `hoist build` built it in). `--plan` sends
//! nothing: the plan is worked out from the digests alone.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use hoist_api::pb;
use hoist_config::{Container, ImageSource};
use hoist_images::oci::{self, Transfer};

use crate::conn::{Conn, status_err};
use crate::{rollout, send};

#[derive(clap::Args)]
pub struct ApplyArgs {
    /// The host config (host.toml) to roll out
    file: PathBuf,
    #[command(flatten)]
    conn: Conn,
    /// Only show what would change, and exit 0 when nothing would, 2 when something would
    /// (1 on an error); sends no images
    #[arg(long)]
    plan: bool,
    /// Accept images made for another architecture than the host's (linux/amd64)
    #[arg(long)]
    allow_foreign_arch: bool,
    #[command(flatten)]
    registry: crate::pull::RegistryArgs,
    /// JSON: the plan as one object with --plan; else first the bytes sent
    /// ({"sent_bytes":N,"image_bytes":M,"blobs_sent":K}), then one object per progress message
    #[arg(long)]
    json: bool,
    /// Apply what can change live even when some host-level keys (kernel, modules,
    /// network, ...) need a reboot; those keys stay as they are
    #[arg(long)]
    allow_reboot: bool,
    /// Tentative: the host rolls the new generation back by itself unless `hoist ctl
    /// confirm` comes within DURATION (e.g. 2m, 90s)
    #[arg(long = "try", value_name = "DURATION", value_parser = positive_duration)]
    try_for: Option<Duration>,
    /// How long replaced and started services must keep running once ready before the
    /// apply succeeds (e.g. 20s, 500ms; default: the host's, 10s)
    #[arg(long, value_name = "DURATION", value_parser = positive_duration)]
    settle: Option<Duration>,
}

/// A duration flag: `hoist_config::parse_duration`, and more than 0 (0 is the API's "not
/// set", so it would not mean what it says).
fn positive_duration(text: &str) -> Result<Duration, String> {
    match hoist_config::parse_duration(text) {
        Ok(d) if d.is_zero() => Err("must be more than 0 (leave the flag out for the default)".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

fn millis(d: Option<Duration>) -> u64 {
    d.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub fn run(args: ApplyArgs) -> anyhow::Result<ExitCode> {
    let file = args.file.display().to_string();
    // Read once: what is validated here is what the host gets.
    let bytes = std::fs::read(&args.file).with_context(|| file.clone())?;
    let config = match hoist_config::load_bytes(&args.file, &bytes) {
        Ok(config) => config,
        Err(e) => {
            // Already `file:line:column: key: message`, as `hoist check` prints it.
            eprintln!("{}", hoist_guest::text::escape_message(&e.to_string()));
            return Ok(ExitCode::FAILURE);
        }
    };
    for warning in config.warnings() {
        log::warn!("{file}: {warning}");
    }
    let text = String::from_utf8(bytes).with_context(|| file.clone())?;
    // The plan needs digests only; blobs are listed (and hashed) only to be sent.
    let containers: Vec<Container<'_>> = config.containers().collect();
    // docker:// images: pinned by the lock next to the file, pulled into the cache here.
    let pins = crate::pull::pin(&args.file, &config, &args.registry)?;
    let resolved = resolve_images(
        &containers,
        |source| resolve(source, &pins.pinned, !args.plan, args.allow_foreign_arch),
        &mut std::io::stderr(),
    )?;
    let request = pb::ApplyRequest {
        config: text,
        file,
        images: resolved.digests,
        allow_reboot: args.allow_reboot,
        settle_ms: millis(args.settle),
        try_ms: millis(args.try_for),
        manifests: resolved.transfers.iter().map(|t| (t.image.clone(), t.manifest.clone())).collect(),
        // What `hoist pki revoke` listed (none in a directory `hoist pki issue` wrote).
        revoked: hoist_images::pki::revoked(&args.conn.pki_dir())?.into_iter().collect(),
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(apply(&args, request, &resolved.transfers))
}

/// An image source's digest, as `hoist build` would import it, and with `with_blobs` the
/// blobs to send if the host lacks it (none for `dir:`, which cannot be sent).
fn resolve(
    source: &ImageSource,
    pinned: &hoist_images::build::Pinned,
    with_blobs: bool,
    allow_foreign_arch: bool,
) -> anyhow::Result<Resolved> {
    let pin = match source {
        ImageSource::Registry { reference } => {
            let digest = pinned.digests.get(&reference.to_string());
            Some(digest.ok_or_else(|| oci::OciError::NotPinned { reference: reference.to_string() })?)
        }
        _ => None,
    };
    let image = match pin {
        Some(d) => oci::import_pinned(&pinned.cache, d, &Default::default())?,
        None => oci::import(source)?,
    };
    image.check_platform(&source.describe(), allow_foreign_arch)?;
    let digest = image.digest;
    let transfer = match source {
        ImageSource::Dir { .. } => None,
        _ if !with_blobs => None,
        _ => {
            let t = match pin {
                Some(d) => oci::pinned_blobs(&pinned.cache, d)?,
                None => oci::blobs(source)?,
            };
            anyhow::ensure!(t.image == digest, "its blobs make image {}, but it imports as {digest}", t.image);
            Some(t)
        }
    };
    Ok(Resolved { digest, transfer })
}

async fn apply(args: &ApplyArgs, request: pb::ApplyRequest, transfers: &[Transfer]) -> anyhow::Result<ExitCode> {
    let mut c = args.conn.connect().await?;
    if args.plan {
        let plan = c.plan(request).await.map_err(status_err)?.into_inner();
        if args.json {
            println!("{}", rollout::plan_json(&plan));
        } else {
            for line in rollout::plan_lines(&plan, args.allow_reboot) {
                println!("{line}");
            }
        }
        return Ok(ExitCode::from(rollout::plan_exit_code(&plan)));
    }
    let sent = send::send_images(&mut c, transfers, &mut std::io::stderr()).await?;
    if args.json {
        println!("{}", sent.json());
    }
    let stream = c.apply(request).await.map_err(status_err)?.into_inner();
    rollout::follow(stream, args.json, args.allow_reboot).await
}

/// What one image source resolved to.
#[derive(Debug)]
struct Resolved {
    digest: String,
    transfer: Option<Transfer>,
}

/// Every container's image digest by name, and the blobs of each distinct image that has them.
#[derive(Debug)]
struct ResolvedImages {
    digests: HashMap<String, String>,
    transfers: Vec<Transfer>,
}

/// Resolves every container's image, each distinct source once, saying so on `log` as it
/// goes (an import takes seconds).
fn resolve_images(
    containers: &[Container<'_>],
    mut import: impl FnMut(&ImageSource) -> anyhow::Result<Resolved>,
    log: &mut impl Write,
) -> anyhow::Result<ResolvedImages> {
    // source text -> (digest, the first container that used it)
    let mut seen: HashMap<String, (String, &str)> = HashMap::new();
    let mut digests = HashMap::new();
    let mut transfers: Vec<Transfer> = Vec::new();
    for c in containers {
        let source = c.image.describe();
        write!(log, "resolving image {} ({source})... ", c.name)?;
        log.flush()?;
        let digest = match seen.get(&source) {
            Some((digest, first)) => {
                writeln!(log, "{} (same as {first})", short(digest))?;
                digest.clone()
            }
            None => {
                let started = Instant::now();
                let Resolved { digest, transfer } = match import(c.image) {
                    Ok(r) => r,
                    Err(e) => {
                        writeln!(log, "failed")?;
                        return Err(e.context(format!("{} {}: image {source}", c.kind, c.name)));
                    }
                };
                writeln!(log, "{} ({:.1} s)", short(&digest), started.elapsed().as_secs_f64())?;
                seen.insert(source, (digest.clone(), c.name));
                // Two sources can hold the same image (a copied layout): list it once.
                transfers.extend(transfer.filter(|t| transfers.iter().all(|u| u.image != t.image)));
                digest
            }
        };
        digests.insert(c.name.to_string(), digest);
    }
    Ok(ResolvedImages { digests, transfers })
}

/// `sha256:` and the first 12 hex digits.
pub(crate) fn short(digest: &str) -> String {
    format!("sha256:{}", crate::history::short_digest(digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_flags() {
        assert_eq!(positive_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(positive_duration("500ms"), Ok(Duration::from_millis(500)));
        let e = positive_duration("0").expect_err("zero");
        assert!(e.contains("more than 0"), "{e}");
        let e = positive_duration("20").expect_err("no unit");
        assert!(e.contains("expected a number followed by ms, s, m or h"), "{e}");
        let e = positive_duration("10s1m").expect_err("order");
        assert!(e.contains("largest to smallest"), "{e}");
        assert_eq!(millis(None), 0);
        assert_eq!(millis(Some(Duration::from_secs(20))), 20_000);
    }

    #[test]
    fn each_image_source_is_imported_once() {
        let web = ImageSource::Dir { dir: "/images/web".into() };
        let base = ImageSource::Dir { dir: "/images/base".into() };
        let list = [
            Container { kind: "service", name: "api", image: &base, user: None },
            Container { kind: "service", name: "web", image: &web, user: None },
            Container { kind: "onboot", name: "migrate", image: &base, user: None },
        ];
        let mut imported = Vec::new();
        let mut log = Vec::new();
        let resolved = resolve_images(
            &list,
            |s| {
                imported.push(s.describe());
                let digest = format!("sha256:{}", if s == &web { "aa".repeat(32) } else { "bb".repeat(32) });
                let transfer = Transfer { image: digest.clone(), manifest: digest.clone(), blobs: Vec::new() };
                Ok(Resolved { digest, transfer: Some(transfer) })
            },
            &mut log,
        )
        .expect("resolved");
        let images: Vec<&str> = resolved.transfers.iter().map(|t| t.image.as_str()).collect();
        assert_eq!(images, [format!("sha256:{}", "bb".repeat(32)), format!("sha256:{}", "aa".repeat(32))]);
        let digests = resolved.digests;
        assert_eq!(imported, ["dir:/images/base", "dir:/images/web"]);
        assert_eq!(digests["migrate"], digests["api"]);
        assert_eq!(digests["web"], format!("sha256:{}", "aa".repeat(32)));
        let log = String::from_utf8(log).expect("utf-8");
        assert!(
            log.contains("resolving image migrate (dir:/images/base)... sha256:bbbbbbbbbbbb (same as api)"),
            "{log}"
        );

        let err = resolve_images(&list[1..], |_| Err(anyhow::anyhow!("cannot read /images/web")), &mut Vec::new())
            .expect_err("import fails");
        assert_eq!(format!("{err:#}"), "service web: image dir:/images/web: cannot read /images/web");
    }
}
