//! Showing a rollout: the plan a host worked out (`hoist apply --plan`, the first message of
//! `hoist apply` and `hoist ctl rollback`), the progress stream that follows, and what its
//! last message means for the exit status. Rendering and classification are pure; only
//! [`follow`] does I/O.

use std::io::Write;
use std::process::ExitCode;

use hoist_api::pb;
use tokio_stream::{Stream, StreamExt};

use crate::conn::status_err;

/// The plan as lines for people: one per service in the server's order (removals, then
/// replacements, starts, the unchanged), the reboot-required keys, and a summary.
pub fn plan_lines(plan: &pb::PlanReply, allow_reboot: bool) -> Vec<String> {
    let width = plan.services.iter().map(|s| s.service.len()).max().unwrap_or(0).max(9);
    let mut lines = Vec::with_capacity(plan.services.len() + 2);
    for s in &plan.services {
        let sign = match s.action.as_str() {
            "remove" => '-',
            "replace" => '~',
            "start" => '+',
            "unchanged" => ' ',
            _ => '?',
        };
        let line = if s.keys.is_empty() {
            format!("{sign} {:<width$} {}", s.service, s.action)
        } else {
            format!("{sign} {:<width$} {:<9} ({})", s.service, s.action, s.keys.join(", "))
        };
        lines.push(line);
    }
    if !plan.reboot_required.is_empty() {
        let note = if allow_reboot {
            "left as they are; --allow-reboot applies the rest live"
        } else {
            "not applied without --allow-reboot"
        };
        lines.push(format!("reboot required ({note}): {}", plan.reboot_required.join(", ")));
    }
    lines.push(plan_summary(plan));
    lines
}

/// `plan: 1 to remove, 1 to replace, 1 to start, 1 unchanged (generation 3 running)`.
pub fn plan_summary(plan: &pb::PlanReply) -> String {
    let count = |action: &str| plan.services.iter().filter(|s| s.action == action).count();
    format!(
        "plan: {} to remove, {} to replace, {} to start, {} unchanged (generation {} running)",
        count("remove"),
        count("replace"),
        count("start"),
        count("unchanged"),
        plan.current
    )
}

/// Like terraform's `-detailed-exitcode`: 0 when nothing would change, 2 when something would.
pub fn plan_exit_code(plan: &pb::PlanReply) -> u8 {
    if plan.changes { 2 } else { 0 }
}

pub fn change_json(c: &pb::ServiceChange) -> serde_json::Value {
    serde_json::json!({ "service": c.service, "action": c.action, "keys": c.keys })
}

pub fn plan_json(plan: &pb::PlanReply) -> serde_json::Value {
    serde_json::json!({
        "current": plan.current,
        "digest": plan.digest,
        "changes": plan.changes,
        "services": plan.services.iter().map(change_json).collect::<Vec<_>>(),
        "reboot_required": plan.reboot_required,
    })
}

/// `  7.123 s  web        stopping     detail`; `-` stands for the generation as a whole.
pub fn progress_text(p: &pb::ApplyProgress) -> String {
    let service = if p.service.is_empty() { "-" } else { p.service.as_str() };
    let line = format!("{:>7.3} s  {:<10} {:<12} {}", p.uptime_ms as f64 / 1000.0, service, p.kind, p.detail);
    line.trim_end().to_string()
}

pub fn progress_json(p: &pb::ApplyProgress) -> serde_json::Value {
    let mut v = serde_json::json!({
        "generation": p.generation, "uptime_ms": p.uptime_ms, "service": p.service,
        "kind": p.kind, "detail": p.detail,
    });
    if let Some(plan) = &p.plan {
        v["plan"] = plan_json(plan);
    }
    v
}

/// How a progress stream ended, from its last message.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Tentative {
        generation: u64,
        detail: String,
    },
    RolledBack {
        generation: u64,
        detail: String,
    },
    Failed {
        generation: u64,
        detail: String,
    },
    /// The stream ended (or broke, `cause`) before a final message.
    Lost {
        cause: Option<String>,
    },
}

impl Outcome {
    /// The last message decides: `done`, `tentative`, `rolled-back` and `failed` are final;
    /// a stream that stops after anything else (or nothing) lost its connection.
    pub fn of(last: Option<&pb::ApplyProgress>) -> Outcome {
        let Some(p) = last else { return Outcome::Lost { cause: None } };
        let (generation, detail) = (p.generation, p.detail.clone());
        match p.kind.as_str() {
            "done" => Outcome::Done,
            "tentative" => Outcome::Tentative { generation, detail },
            "rolled-back" => Outcome::RolledBack { generation, detail },
            "failed" => Outcome::Failed { generation, detail },
            _ => Outcome::Lost { cause: None },
        }
    }

    /// Success with a note for the user, or the error to exit 1 with.
    pub fn verdict(self) -> Result<Option<String>, anyhow::Error> {
        match self {
            Outcome::Done => Ok(None),
            Outcome::Tentative { generation, detail } => Ok(Some(format!(
                "generation {generation} is tentative ({detail}): keep it with `hoist ctl confirm` \
                 before then, or the host rolls it back by itself"
            ))),
            Outcome::RolledBack { generation, detail } => {
                Err(anyhow::anyhow!("generation {generation} rolled back: {detail}"))
            }
            Outcome::Failed { generation, detail } => Err(anyhow::anyhow!("generation {generation} failed: {detail}")),
            Outcome::Lost { cause } => {
                let cause = cause.map(|c| format!(" ({c})")).unwrap_or_default();
                Err(anyhow::anyhow!(
                    "the connection ended before the rollout did{cause}; it continues on the host, \
                     and `hoist ctl history` shows how it ended"
                ))
            }
        }
    }
}

/// Prints a progress stream as it arrives (the plan from the message that carries it, then
/// a line per message; or a JSON object per message) and exits by how it ended.
pub async fn follow<S>(stream: S, json: bool, allow_reboot: bool) -> anyhow::Result<ExitCode>
where
    S: Stream<Item = Result<pb::ApplyProgress, tonic::Status>> + Unpin,
{
    follow_to(stream, json, allow_reboot, &mut std::io::stdout()).await
}

async fn follow_to<S>(mut stream: S, json: bool, allow_reboot: bool, out: &mut impl Write) -> anyhow::Result<ExitCode>
where
    S: Stream<Item = Result<pb::ApplyProgress, tonic::Status>> + Unpin,
{
    let mut last: Option<pb::ApplyProgress> = None;
    let outcome = loop {
        match stream.next().await {
            Some(Ok(p)) => {
                if json {
                    writeln!(out, "{}", progress_json(&p))?;
                } else {
                    if let Some(plan) = &p.plan {
                        for line in plan_lines(plan, allow_reboot) {
                            writeln!(out, "{line}")?;
                        }
                    }
                    if p.kind != "plan" {
                        writeln!(out, "{}", progress_text(&p))?;
                    }
                }
                out.flush()?;
                last = Some(p);
            }
            // Refused before anything happened (ABORTED, INVALID_ARGUMENT, ...): a plain error.
            Some(Err(e)) if last.is_none() => return Err(status_err(e)),
            Some(Err(e)) => break Outcome::Lost { cause: Some(format!("{:#}", status_err(e))) },
            None => break Outcome::of(last.as_ref()),
        }
    };
    if let Some(note) = outcome.verdict()? {
        // On stderr with --json, so stdout stays one object per line.
        if json {
            eprintln!("{note}");
        } else {
            writeln!(out, "{note}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(service: &str, action: &str, keys: &[&str]) -> pb::ServiceChange {
        pb::ServiceChange {
            service: service.into(),
            action: action.into(),
            keys: keys.iter().map(|k| k.to_string()).collect(),
        }
    }

    fn plan() -> pb::PlanReply {
        pb::PlanReply {
            services: vec![
                change("db", "remove", &[]),
                change("web", "replace", &["env.FOO", "memory"]),
                change("cache", "start", &[]),
                change("api", "unchanged", &[]),
            ],
            reboot_required: vec!["kernel.modules".into()],
            current: 3,
            digest: "sha256:00".into(),
            changes: true,
        }
    }

    #[test]
    fn a_plan_reads_in_the_servers_order_with_a_summary() {
        assert_eq!(
            plan_lines(&plan(), false),
            [
                "- db        remove",
                "~ web       replace   (env.FOO, memory)",
                "+ cache     start",
                "  api       unchanged",
                "reboot required (not applied without --allow-reboot): kernel.modules",
                "plan: 1 to remove, 1 to replace, 1 to start, 1 unchanged (generation 3 running)",
            ]
        );
        let mut nothing = plan();
        nothing.services = vec![change("a-very-long-name", "unchanged", &[]), change("x", "bogus", &[])];
        nothing.reboot_required.clear();
        assert_eq!(
            plan_lines(&nothing, true),
            [
                "  a-very-long-name unchanged",
                "? x                bogus",
                "plan: 0 to remove, 0 to replace, 0 to start, 1 unchanged (generation 3 running)",
            ]
        );
        assert!(plan_lines(&plan(), true)[4].contains("--allow-reboot applies the rest"));
    }

    #[test]
    fn the_plan_exit_code_says_whether_anything_would_change() {
        let mut p = plan();
        assert_eq!(plan_exit_code(&p), 2);
        p.changes = false;
        assert_eq!(plan_exit_code(&p), 0);
    }

    #[test]
    fn the_plan_as_json() {
        let v = plan_json(&plan());
        assert_eq!(v["current"], 3);
        assert_eq!(v["changes"], true);
        assert_eq!(
            v["services"][1],
            serde_json::json!({"service":"web","action":"replace","keys":["env.FOO","memory"]})
        );
        assert_eq!(v["reboot_required"][0], "kernel.modules");
        let first = pb::ApplyProgress { generation: 4, kind: "plan".into(), plan: Some(plan()), ..Default::default() };
        assert_eq!(progress_json(&first)["plan"], v);
        assert!(progress_json(&pb::ApplyProgress::default()).get("plan").is_none());
    }

    #[test]
    fn a_progress_line() {
        let p = pb::ApplyProgress {
            generation: 4,
            uptime_ms: 7123,
            service: "web".into(),
            kind: "stopping".into(),
            detail: "SIGTERM".into(),
            plan: None,
        };
        assert_eq!(progress_text(&p), "  7.123 s  web        stopping     SIGTERM");
        let whole = pb::ApplyProgress { uptime_ms: 12000, kind: "done".into(), ..Default::default() };
        assert_eq!(progress_text(&whole), " 12.000 s  -          done");
    }

    fn last(kind: &str) -> pb::ApplyProgress {
        pb::ApplyProgress { generation: 4, kind: kind.into(), detail: "web: exited 1".into(), ..Default::default() }
    }

    #[test]
    fn the_last_message_decides_the_exit() {
        assert!(Outcome::of(Some(&last("done"))).verdict().expect("done").is_none());
        let note = Outcome::of(Some(&last("tentative"))).verdict().expect("tentative").expect("a note");
        assert!(note.contains("hoist ctl confirm"), "{note}");
        let e = Outcome::of(Some(&last("rolled-back"))).verdict().expect_err("rolled back");
        assert_eq!(e.to_string(), "generation 4 rolled back: web: exited 1");
        let e = Outcome::of(Some(&last("failed"))).verdict().expect_err("failed");
        assert_eq!(e.to_string(), "generation 4 failed: web: exited 1");
        for lost in [None, Some(&last("starting")), Some(&last("rolling-back"))] {
            assert_eq!(Outcome::of(lost), Outcome::Lost { cause: None });
            let e = Outcome::of(lost).verdict().expect_err("lost");
            assert!(e.to_string().contains("hoist ctl history"), "{e}");
        }
    }

    async fn follow_test(items: Vec<Result<pb::ApplyProgress, tonic::Status>>) -> (anyhow::Result<ExitCode>, String) {
        let mut out = Vec::new();
        let result = follow_to(tokio_stream::iter(items), false, false, &mut out).await;
        (result, String::from_utf8(out).expect("utf-8"))
    }

    #[tokio::test]
    async fn following_a_stream() {
        let first = pb::ApplyProgress { generation: 4, kind: "plan".into(), plan: Some(plan()), ..Default::default() };
        let (result, out) = follow_test(vec![Ok(first.clone()), Ok(last("starting")), Ok(last("done"))]).await;
        assert_eq!(result.expect("done"), ExitCode::SUCCESS);
        let lines: Vec<_> = out.lines().collect();
        assert_eq!(lines.len(), 6 + 2, "{out}"); // the plan, then one line per progress message
        assert!(lines[6].contains("starting") && lines[7].contains("done"), "{out}");

        let (result, _) = follow_test(vec![Ok(first.clone()), Ok(last("failed")), Ok(last("rolled-back"))]).await;
        assert!(result.expect_err("rolled back").to_string().starts_with("generation 4 rolled back: "));

        // Refused before it began: the server's error as is. Broken off later: lost.
        let (result, _) = follow_test(vec![Err(tonic::Status::aborted("an apply is in progress"))]).await;
        assert_eq!(result.expect_err("refused").to_string(), "Aborted: an apply is in progress");
        let (result, _) = follow_test(vec![Ok(first), Err(tonic::Status::unavailable("gone"))]).await;
        let e = result.expect_err("lost").to_string();
        assert!(e.contains("(Unavailable: gone)") && e.contains("continues on the host"), "{e}");
    }
}
