//! `hoist pki`: client certificates for the control API, from the CA `hoist build` made.
//! `issue` writes a directory `hoist ctl --pki DIR` uses (ca.pem, client.pem, client.key);
//! `revoke` lists a certificate for the next build to refuse; `list` shows what was issued.

use std::path::PathBuf;
use std::process::ExitCode;

use hoist_guest::pki::Role;
use hoist_images::pki;

#[derive(clap::Subcommand)]
pub enum PkiCommand {
    /// Issue a client certificate with a role: reader (status, describe, logs, events,
    /// version, plan, history), operator (also start/stop/restart) or admin (everything).
    Issue {
        /// The client's name (its certificate's CN, shown in audit lines)
        name: String,
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Days it is valid
        #[arg(long, default_value_t = pki::CLIENT_DAYS)]
        days: u32,
        #[command(flatten)]
        dir: PkiDir,
        /// Where to write ca.pem, client.pem, client.key (default: PKI/clients/NAME)
        #[arg(short, long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Revoke every certificate issued to NAME, or the one with serial SERIAL (hex); the
    /// next `hoist build` with this PKI puts the list into the image.
    Revoke {
        /// A client name, or a certificate serial in hex
        what: String,
        #[command(flatten)]
        dir: PkiDir,
    },
    /// The client certificates issued from this PKI: name, role, serial, days left, revoked.
    List {
        #[command(flatten)]
        dir: PkiDir,
    },
}

#[derive(clap::Args)]
pub struct PkiDir {
    /// The PKI directory `hoist build` made (OUT/pki, or its --pki)
    #[arg(long, value_name = "DIR", default_value = "out/demo/pki")]
    pki: PathBuf,
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| format!("{s:?}: expected reader, operator or admin"))
}

pub fn run(cmd: PkiCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PkiCommand::Issue { name, role, days, dir, out } => {
            let issued = pki::issue(&dir.pki, &name, role, days)?;
            let out = out.unwrap_or_else(|| dir.pki.join("clients").join(&name));
            pki::write_client(&dir.pki, &out, &issued)?;
            println!(
                "issued {name} ({role}, {days} days, serial {}) in {}: hoist ctl --pki {} ...",
                issued.serial,
                out.display(),
                out.display()
            );
        }
        PkiCommand::Revoke { what, dir } => {
            let hits = pki::revoke(&dir.pki, &what)?;
            if hits.is_empty() {
                println!("{what}: revoked already");
            }
            for (serial, name) in hits {
                let name = if name.is_empty() { "not issued here".into() } else { name };
                println!("revoked {serial} ({name}); `hoist build` puts the list into the next image");
            }
        }
        PkiCommand::List { dir } => {
            let revoked = pki::revoked(&dir.pki)?;
            for c in pki::issued(&dir.pki)? {
                let role = c.role.map(Role::name).unwrap_or("reader (no role)");
                let state = if revoked.contains(&c.serial) { "revoked" } else { "" };
                let left = pki::days_left(c.not_after);
                let left = if left < 0 { "expired".to_string() } else { format!("{left} days left") };
                let name = hoist_guest::text::escape(&c.name);
                println!("{name:<20} {role:<16} {:<34} {left:<16} {state}", c.serial);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
