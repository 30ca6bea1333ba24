//! `hoist ctl`: talk to a running host's control API over mutual TLS; how it is reached
//! (`--target`, `--api`, `--pki`) is [`crate::conn`].

use std::io::Write;
use std::process::ExitCode;

use hoist_api::pb;
use tokio_stream::StreamExt;

use crate::conn::{Conn, status_err};
use crate::{history, rollout};

#[derive(clap::Args)]
pub struct CtlArgs {
    #[command(flatten)]
    conn: Conn,
    /// Machine-readable JSON instead of tables
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(clap::Subcommand)]
enum CtlCommand {
    /// Every service: state, pid, restarts, last exit, uptime, readiness, what it waits for
    Status,
    /// One service with its recent events
    Describe { service: String },
    /// Start a stopped or failed service (clears its start limit)
    Start { service: String },
    /// Stop a service (stop signal, then SIGKILL after its stop timeout); it stays stopped
    Stop { service: String },
    /// Stop and start a service again
    Restart { service: String },
    /// Log lines of a service, or of supervisor, containerd, kernel
    Logs {
        source: String,
        /// Show the last N lines
        #[arg(long, short = 'n', default_value_t = 50)]
        tail: u32,
        /// Keep streaming new lines
        #[arg(long, short)]
        follow: bool,
        /// An earlier boot's log: -1 the boot before this one, -2 the one before that
        /// (kept for the last 5 boots when the host has a [state] volume)
        #[arg(long, allow_negative_numbers = true, default_value_t = 0, value_parser = clap::value_parser!(i32).range(..=0))]
        boot: i32,
    },
    /// Stream events (starts, readiness, exits, OOM kills) as they happen
    Events,
    /// Run a command in a running service's container; exits with its exit code
    Exec {
        service: String,
        /// Seconds before the command is killed (the host refuses more than 600)
        #[arg(long, default_value_t = 30)]
        timeout: u32,
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Power the host off (orderly: services stopped first)
    Shutdown,
    /// Reboot the host (orderly)
    Reboot,
    /// Supervisor version and the boot timeline
    Version,
    /// Keep the tentative generation of an `hoist apply --try` (else it rolls back by itself)
    Confirm,
    /// Every generation of this boot: when, config digest, result; `*` marks the one in use
    History,
    /// Roll back to the previous generation, or to GEN; follows the progress like `hoist apply`
    Rollback {
        /// The generation to go back to (default: the one before the current; 0 is the build's)
        #[arg(value_name = "GEN")]
        generation: Option<u64>,
    },
}

pub fn run(args: CtlArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(run_async(args))
}

async fn run_async(args: CtlArgs) -> anyhow::Result<ExitCode> {
    let mut c = args.conn.connect().await?;
    let json = args.json;
    match args.command {
        CtlCommand::Status => {
            let reply = c.status(pb::StatusRequest {}).await.map_err(status_err)?.into_inner();
            print_status(&reply.services, json);
            // The JSON form stays the array of services it always was; problems go to
            // stderr there, so a script still sees them.
            let network = (!reply.network.is_empty()).then(|| format!("network: {}", reply.network));
            let problems = reply.problems.iter().map(|p| format!("problem: {p}"));
            for line in network.into_iter().chain(problems) {
                if json {
                    eprintln!("{line}");
                } else {
                    println!("{line}");
                }
            }
        }
        CtlCommand::Describe { service } => {
            let d = c.describe(pb::ServiceRequest { name: service }).await.map_err(status_err)?.into_inner();
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "status": d.status.as_ref().map(status_json), "events": d.events.iter().map(event_json).collect::<Vec<_>>() })
                );
            } else {
                print_status(d.status.as_slice(), false);
                for e in &d.events {
                    println!("{}", event_text(e));
                }
            }
        }
        CtlCommand::Start { service } => action(c.start(pb::ServiceRequest { name: service }).await)?,
        CtlCommand::Stop { service } => action(c.stop(pb::ServiceRequest { name: service }).await)?,
        CtlCommand::Restart { service } => action(c.restart(pb::ServiceRequest { name: service }).await)?,
        CtlCommand::Logs { source, tail, follow, boot } => {
            let request = pb::LogsRequest { source, tail, follow, boot };
            let mut stream = c.logs(request).await.map_err(status_err)?.into_inner();
            let mut out = std::io::stdout();
            while let Some(line) = stream.next().await {
                let line = line.map_err(status_err)?;
                if json {
                    writeln!(out, "{}", serde_json::json!({ "source": line.source, "line": line.line }))?;
                } else {
                    writeln!(out, "{}", line.line)?;
                }
                out.flush()?;
            }
        }
        CtlCommand::Events => {
            let mut stream = c.events(pb::EventsRequest {}).await.map_err(status_err)?.into_inner();
            while let Some(e) = stream.next().await {
                let e = e.map_err(status_err)?;
                println!("{}", if json { event_json(&e).to_string() } else { event_text(&e) });
            }
        }
        CtlCommand::Exec { service, timeout, command } => {
            let r = c
                .exec(pb::ExecRequest { service, command, timeout_secs: timeout })
                .await
                .map_err(status_err)?
                .into_inner();
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "exit_code": r.exit_code, "stdout": String::from_utf8_lossy(&r.stdout), "stderr": String::from_utf8_lossy(&r.stderr), "truncated": r.truncated })
                );
            } else {
                std::io::stdout().write_all(&r.stdout)?;
                std::io::stderr().write_all(&r.stderr)?;
                if r.truncated {
                    eprintln!("hoist: exec output cut at {} bytes", r.stdout.len());
                }
            }
            return Ok(ExitCode::from(r.exit_code.clamp(0, 255) as u8));
        }
        CtlCommand::Shutdown => action(c.shutdown(pb::ShutdownRequest { reboot: false }).await)?,
        CtlCommand::Reboot => action(c.shutdown(pb::ShutdownRequest { reboot: true }).await)?,
        CtlCommand::Version => {
            let v = c.version(pb::VersionRequest {}).await.map_err(status_err)?.into_inner();
            println!("hoist-supervisor {}", v.version);
            for p in v.timeline {
                println!("  {:<12} {:>7} ms", p.name, p.uptime_ms);
            }
        }
        CtlCommand::Confirm => action(c.confirm(pb::ConfirmRequest {}).await)?,
        CtlCommand::History => {
            let reply = c.history(pb::HistoryRequest {}).await.map_err(status_err)?.into_inner();
            if json {
                println!("{}", history::json(&reply));
            } else {
                for line in history::table(&reply) {
                    println!("{line}");
                }
            }
        }
        CtlCommand::Rollback { generation } => {
            let request = pb::RollbackRequest { generation };
            let stream = c.rollback(request).await.map_err(status_err)?.into_inner();
            return rollout::follow(stream, json, false).await;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn action(r: Result<tonic::Response<pb::ActionReply>, tonic::Status>) -> anyhow::Result<()> {
    let reply = r.map_err(status_err)?.into_inner();
    println!("{}", reply.message);
    Ok(())
}

fn status_json(s: &pb::ServiceStatus) -> serde_json::Value {
    serde_json::json!({
        "name": s.name, "state": s.state, "pid": s.pid, "restarts": s.restarts,
        "last_exit": (s.last_exit >= 0).then_some(s.last_exit), "uptime_ms": s.uptime_ms,
        "ready": s.ready, "waiting_for": s.waiting_for, "reason": s.reason,
    })
}

fn event_json(e: &pb::Event) -> serde_json::Value {
    serde_json::json!({ "uptime_ms": e.uptime_ms, "service": e.service, "kind": e.kind, "detail": e.detail })
}

fn event_text(e: &pb::Event) -> String {
    format!("{:>9.3} {:<12} {:<8} {}", e.uptime_ms as f64 / 1000.0, e.service, e.kind, e.detail)
}

fn print_status(services: &[pb::ServiceStatus], json: bool) {
    if json {
        println!("{}", serde_json::Value::Array(services.iter().map(status_json).collect()));
        return;
    }
    println!(
        "{:<14} {:<9} {:>6} {:>8} {:>9} {:>9} {:<5} REASON",
        "SERVICE", "STATE", "PID", "RESTARTS", "LAST EXIT", "UPTIME", "READY"
    );
    for s in services {
        let exit = if s.last_exit >= 0 { s.last_exit.to_string() } else { "-".into() };
        let up = if s.pid != 0 { format!("{:.1}s", s.uptime_ms as f64 / 1000.0) } else { "-".into() };
        let pid = if s.pid != 0 { s.pid.to_string() } else { "-".into() };
        println!(
            "{:<14} {:<9} {:>6} {:>8} {:>9} {:>9} {:<5} {}",
            s.name,
            s.state,
            pid,
            s.restarts,
            exit,
            up,
            if s.ready { "yes" } else { "no" },
            s.reason
        );
    }
}
