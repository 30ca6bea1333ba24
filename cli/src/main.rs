//! `hoist`: the user's command. Argument parsing and printing only; the work is in the
//! hoist-config, hoist-images, hoist-registry (docker:// pulls, the lock file) and
//! hoist-qemu libraries (`hoist pki` is hoist-images' PKI),
//! `hoist ctl` and `hoist apply` talk through the hoist-api client, and `hoist run` reads the guest's console with hoist-guest's
//! `Line`. It links neither the supervisor (hoist-services) nor PID 1 (hoist-init).

mod apply;
mod conn;
mod ctl;
mod disk;
mod history;
mod image;
mod logger;
mod pki;
mod progress;
mod pull;
mod rollout;
mod run;
mod send;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "hoist", version, about = "Build, boot and run container hosts from one TOML file")]
struct Cli {
    /// Show more of what the libraries log (-v info, -vv debug, -vvv trace; HOIST_LOG=LEVEL overrides)
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a host config; prints FILE:LINE:COLUMN: KEY: problem and exits 1 when invalid.
    Check {
        /// The host config (host.toml)
        file: PathBuf,
    },
    /// Build DIR/kernel, DIR/initrd.img and DIR/cmdline from a host config (reproducible).
    ///
    /// docker:// images are pulled into the image cache first (what it lacks only) and
    /// pinned by digest in the lock file next to the config (host.toml -> host.lock):
    /// later builds use the pins, even if a tag has moved, until --update.
    Build {
        /// The host config (host.toml)
        file: PathBuf,
        /// Output directory (created if missing)
        #[arg(short, long, value_name = "DIR")]
        out: PathBuf,
        /// initramfs compression: lz4 (fastest to boot here), gzip, zstd or none
        #[arg(long, default_value = "lz4")]
        compress: hoist_images::compress::Compression,
        /// Directory holding hoist-init, hoist-supervisor and containerd-shim-hoist-v1 (default: next to this binary)
        #[arg(long, value_name = "DIR")]
        bin_dir: Option<PathBuf>,
        /// The control API's CA and certificates (made if missing; default: OUT/pki)
        #[arg(long, value_name = "DIR")]
        pki: Option<PathBuf>,
        /// Accept images made for another architecture than the host's (linux/amd64)
        #[arg(long)]
        allow_foreign_arch: bool,
        #[command(flatten)]
        registry: pull::RegistryArgs,
    },
    /// Boot a built host under QEMU with its console on this terminal; Ctrl-C powers it off.
    Run(run::RunArgs),
    /// Roll a changed host config out to a running host as a new generation (--plan: only
    /// show what would change). Validates the file and resolves its images here first;
    /// images the host lacks travel with it (only the blobs it does not hold).
    Apply(apply::ApplyArgs),
    /// Talk to a running host: status, logs, events, start/stop/restart, exec, shutdown,
    /// and the generations `hoist apply` makes: history, confirm, rollback.
    Ctl(ctl::CtlArgs),
    /// Make and inspect service images.
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// Client certificates for the control API: issue with a role, revoke, list.
    #[command(subcommand)]
    Pki(pki::PkiCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logger::init(cli.verbose);
    let result = match cli.command {
        Command::Check { file } => check(&file),
        Command::Build { file, out, compress, bin_dir, pki, allow_foreign_arch, registry } => {
            build(file, out, compress, bin_dir, pki, allow_foreign_arch, &registry)
        }
        Command::Run(args) => run::run(args),
        Command::Image(cmd) => image::run(cmd),
        Command::Apply(args) => apply::run(args),
        Command::Ctl(args) => ctl::run(args),
        Command::Pki(cmd) => pki::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hoist: error: {}", hoist_guest::text::escape_message(&error_text(&e)));
            ExitCode::FAILURE
        }
    }
}

/// The whole chain, once, at the top: each context, then each cause. Our errors never
/// quote a cause they also expose as their source, so nothing is said twice.
fn error_text(e: &anyhow::Error) -> String {
    format!("{e:#}")
}

fn check(file: &std::path::Path) -> anyhow::Result<ExitCode> {
    match hoist_config::load(file) {
        Ok(config) => {
            for warning in config.warnings() {
                log::warn!("{}: {warning}", file.display());
            }
            println!("{}: ok ({} services)", file.display(), config.service.len());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{}", hoist_guest::text::escape_message(&e.to_string()));
            Ok(ExitCode::FAILURE)
        }
    }
}

fn build(
    file: PathBuf,
    out: PathBuf,
    compression: hoist_images::compress::Compression,
    bin_dir: Option<PathBuf>,
    pki: Option<PathBuf>,
    allow_foreign_arch: bool,
    registry: &pull::RegistryArgs,
) -> anyhow::Result<ExitCode> {
    let bin_dir = match bin_dir {
        Some(d) => d,
        None => std::env::current_exe()?.parent().map(|p| p.to_path_buf()).unwrap_or_default(),
    };
    let started = std::time::Instant::now();
    // Held until the build has read the images (a prune waits).
    let pins = pull::pin_config(&file, registry)?;
    let opts = hoist_images::build::BuildOptions {
        config: file,
        out: out.clone(),
        bin_dir,
        compression,
        pki,
        allow_foreign_arch,
        pinned: pins.pinned.clone(),
    };
    let report = hoist_images::build::build(&opts, &progress::Bar::new())?;
    println!(
        "built {} in {:.1} s: kernel {}, initrd.img {:.1} MB ({} files, {:.1} MB unpacked), services: {}",
        out.display(),
        started.elapsed().as_secs_f64(),
        report.release,
        report.initrd_bytes as f64 / 1e6,
        report.files,
        report.uncompressed as f64 / 1e6,
        report.services.keys().cloned().collect::<Vec<_>>().join(", ")
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use anyhow::Context;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        // ctl's connection flags go before or after the subcommand, as they always did.
        for argv in [
            &["hoist", "ctl", "--target", "out/x", "status", "--json"][..],
            &["hoist", "ctl", "history", "--api", "127.0.0.1:1", "--pki", "p"],
            &["hoist", "ctl", "rollback", "2"],
            // Generation 0 is the build's.
            &["hoist", "ctl", "rollback", "0"],
            &["hoist", "apply", "host.toml", "-t", "out/x", "--plan", "--try", "2m", "--settle", "20s"],
            &["hoist", "pki", "issue", "--role", "operator", "alice", "--days", "30", "--pki", "p", "-o", "d"],
            &["hoist", "pki", "revoke", "alice"],
        ] {
            Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        }
        for argv in [
            &["hoist", "apply", "host.toml", "--try", "0"][..],
            &["hoist", "apply", "host.toml", "--settle", "2 minutes"],
            &["hoist", "pki", "issue", "--role", "root", "alice"],
            &["hoist", "pki", "issue", "alice"],
        ] {
            assert!(Cli::try_parse_from(argv).is_err(), "{argv:?}");
        }
    }

    #[test]
    fn every_cause_is_said_once() {
        let io = std::fs::read("/nonexistent/hoist-test").context("--add x:/x");
        let text = error_text(&io.expect_err("no such file"));
        assert_eq!(text.matches("No such file or directory").count(), 1, "{text}");
        assert!(text.starts_with("--add x:/x: "), "{text}");
        let kernel = hoist_images::kernel::newest_kernel(std::path::Path::new("/nonexistent/boot"));
        let text = error_text(&anyhow::Error::from(kernel.expect_err("no /boot")).context("hoist build"));
        assert_eq!(text.matches("No such file or directory").count(), 1, "{text}");
    }
}
