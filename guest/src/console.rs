//! The console lines other code reads: what PID 1 and the supervisor print for `hoist run`,
//! `boot-bench` and the VM tests to find. Each is one [`Line`]: printed with its
//! `Display` (`hoist: ` and the [`Line::body`]) and read back with [`Line::parse`], so
//! the printer and every reader use the same grammar.
//!
//! Free-text lines (errors, waits, onboot results) are printed with [`PREFIX`] too but
//! are not part of this contract: they are for people, and may change wording.

use std::fmt;

use crate::signals::Action;

/// What every hoist line on the console starts with.
pub const PREFIX: &str = "hoist: ";

/// A console line with a meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// `phase NAME uptime_ms=N`: a boot phase done (PID 1's, and the supervisor's `containerd`).
    Phase { name: String, uptime_ms: u64 },
    /// `service NAME running pid=P uptime_ms=N`, then `, waiting for readiness (PROBE)`
    /// when the service has a readiness probe.
    Running { service: String, pid: u32, uptime_ms: u64, waiting_for: Option<String> },
    /// `service NAME ready uptime_ms=N`: its readiness probe passed.
    ServiceReady { service: String, uptime_ms: u64 },
    /// `service NAME WHAT; THEN uptime_ms=N`: what happened to a service (`exited
    /// status=N`, `failed to start: ...`) and what the supervisor does about it (`restart in
    /// N ms`, `not restarted`, `stopped by request`, ...).
    Outcome { service: String, what: String, then: String, uptime_ms: u64 },
    /// `service NAME stopped (HOW)`: a service stopped by the shutdown; HOW is its exit
    /// (`status=0`), `killed after N ms stop timeout, status=137` or `did not stop after
    /// SIGKILL`.
    Stopped { service: String, how: String },
    /// `ready uptime_ms=N services=N`: every service settled; N of them ready.
    Ready { uptime_ms: u64, services: usize },
    /// `timeline NAME=MS ...`: every boot phase, printed after the ready line.
    Timeline(Vec<(String, u64)>),
    /// `memory KEY=N ...`: `pid1_rss_kb`, `supervisor_rss_kb`, `containerd_rss_kb` (those
    /// that could be read), printed once after the ready line.
    Memory(Vec<(String, u64)>),
    /// `containerd back after N ms: K running tasks re-adopted`.
    ContainerdBack { after_ms: u64, tasks: usize },
    /// `shutdown started (power off)` or `shutdown started (reboot)`: PID 1 begins its
    /// orderly shutdown.
    ShutdownStarted(Action),
    /// `all processes stopped, zombies=N after M ms`: PID 1's kill sweep is done.
    AllStopped { zombies: usize, after_ms: u64 },
    /// `audit allowed|denied call=CALL target=TARGET caller=CN role=ROLE`: a control API
    /// call that changes something (or was refused). Values are [`escape`]d, so a hostile
    /// certificate name cannot forge a line or reach the terminal raw; an empty target is `-`.
    Audit { allowed: bool, call: String, target: String, caller: String, role: String },
    /// PID 1's last line: `power off` or `rebooting`. QEMU under `-no-reboot` ends on a
    /// reboot and on a kernel panic alike, with a reset: `hoist run` tells them apart by it.
    Last(Action),
}

impl Line {
    /// The line without [`PREFIX`] (what the supervisor also writes to its log file).
    pub fn body(&self) -> Body<'_> {
        Body(self)
    }

    /// Reads a console line printed by `Display` (surrounding whitespace, such as the
    /// serial console's `\r`, is ignored). `None` for any other line.
    pub fn parse(console_line: &str) -> Option<Line> {
        Self::parse_body(console_line.trim().strip_prefix(PREFIX)?)
    }

    /// Reads a [`Line::body`].
    pub fn parse_body(body: &str) -> Option<Line> {
        let (word, rest) = body.split_once(' ').unwrap_or((body, ""));
        match word {
            "phase" => {
                let (name, ms) = rest.split_once(" uptime_ms=")?;
                Some(Line::Phase { name: name.to_string(), uptime_ms: ms.parse().ok()? })
            }
            "service" => parse_service(rest),
            "ready" => {
                let (ms, services) = rest.strip_prefix("uptime_ms=")?.split_once(" services=")?;
                Some(Line::Ready { uptime_ms: ms.parse().ok()?, services: services.parse().ok()? })
            }
            "timeline" => Some(Line::Timeline(pairs(rest)?)),
            "memory" => Some(Line::Memory(pairs(rest)?)),
            "containerd" => {
                let (ms, tasks) = rest.strip_prefix("back after ")?.split_once(" ms: ")?;
                let tasks = tasks.strip_suffix(" running tasks re-adopted")?;
                Some(Line::ContainerdBack { after_ms: ms.parse().ok()?, tasks: tasks.parse().ok()? })
            }
            "shutdown" => match rest {
                "started (power off)" => Some(Line::ShutdownStarted(Action::PowerOff)),
                "started (reboot)" => Some(Line::ShutdownStarted(Action::Reboot)),
                _ => None,
            },
            "all" => {
                let (zombies, ms) = rest.strip_prefix("processes stopped, zombies=")?.split_once(" after ")?;
                let ms = ms.strip_suffix(" ms")?;
                Some(Line::AllStopped { zombies: zombies.parse().ok()?, after_ms: ms.parse().ok()? })
            }
            "audit" => parse_audit(rest),
            "rebooting" if rest.is_empty() => Some(Line::Last(Action::Reboot)),
            "power" if rest == "off" => Some(Line::Last(Action::PowerOff)),
            _ => None,
        }
    }

    /// The service the line is about.
    pub fn service(&self) -> Option<&str> {
        match self {
            Line::Running { service, .. }
            | Line::ServiceReady { service, .. }
            | Line::Outcome { service, .. }
            | Line::Stopped { service, .. } => Some(service),
            _ => None,
        }
    }

    /// The number the line prints as `key=N` (`uptime_ms`, `pid`, `services`, `zombies`,
    /// a timeline phase, a memory figure).
    pub fn field(&self, key: &str) -> Option<u64> {
        match (self, key) {
            (
                Line::Phase { uptime_ms, .. }
                | Line::Running { uptime_ms, .. }
                | Line::ServiceReady { uptime_ms, .. }
                | Line::Outcome { uptime_ms, .. }
                | Line::Ready { uptime_ms, .. },
                "uptime_ms",
            ) => Some(*uptime_ms),
            (Line::Running { pid, .. }, "pid") => Some(u64::from(*pid)),
            (Line::Ready { services, .. }, "services") => Some(*services as u64),
            (Line::AllStopped { zombies, .. }, "zombies") => Some(*zombies as u64),
            (Line::Timeline(pairs) | Line::Memory(pairs), _) => pairs.iter().find(|(k, _)| k == key).map(|(_, v)| *v),
            _ => None,
        }
    }
}

/// `service NAME ...`
fn parse_service(rest: &str) -> Option<Line> {
    let (service, rest) = rest.split_once(' ')?;
    let service = service.to_string();
    if let Some(running) = rest.strip_prefix("running pid=") {
        let (pid, tail) = running.split_once(" uptime_ms=")?;
        let pid = pid.parse().ok()?;
        return Some(match tail.split_once(", waiting for readiness (") {
            Some((ms, probe)) => Line::Running {
                service,
                pid,
                uptime_ms: ms.parse().ok()?,
                waiting_for: Some(probe.strip_suffix(')')?.to_string()),
            },
            None => Line::Running { service, pid, uptime_ms: tail.parse().ok()?, waiting_for: None },
        });
    }
    if let Some(ms) = rest.strip_prefix("ready uptime_ms=") {
        return Some(Line::ServiceReady { service, uptime_ms: ms.parse().ok()? });
    }
    if let Some(how) = rest.strip_prefix("stopped (") {
        return Some(Line::Stopped { service, how: how.strip_suffix(')')?.to_string() });
    }
    let (what, tail) = rest.split_once("; ")?;
    let (then, ms) = tail.rsplit_once(" uptime_ms=")?;
    Some(Line::Outcome { service, what: what.to_string(), then: then.to_string(), uptime_ms: ms.parse().ok()? })
}

/// `allowed|denied call=.. target=.. caller=.. role=..`
fn parse_audit(rest: &str) -> Option<Line> {
    let mut words = rest.split(' ');
    let allowed = match words.next()? {
        "allowed" => true,
        "denied" => false,
        _ => return None,
    };
    let mut field = |key: &str| unescape(words.next()?.strip_prefix(key)?.strip_prefix('=')?);
    let (call, target, caller, role) = (field("call")?, field("target")?, field("caller")?, field("role")?);
    if words.next().is_some() {
        return None;
    }
    let target = if target == "-" { String::new() } else { target };
    Some(Line::Audit { allowed, call, target, caller, role })
}

/// A value safe in a `key=value` console field: bytes outside `[A-Za-z0-9._:@/+-]`
/// (spaces, `=`, `%`, control characters, non-ASCII) become `%XX`.
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"._:@/+-".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The inverse of [`escape`]; `None` for a malformed escape or bytes that are not UTF-8.
pub fn unescape(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `K=N K=N ...` (possibly none).
fn pairs(text: &str) -> Option<Vec<(String, u64)>> {
    text.split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn write_pairs(f: &mut fmt::Formatter<'_>, pairs: &[(String, u64)]) -> fmt::Result {
    for (i, (k, v)) in pairs.iter().enumerate() {
        write!(f, "{}{k}={v}", if i == 0 { "" } else { " " })?;
    }
    Ok(())
}

fn action_name(action: Action) -> &'static str {
    match action {
        Action::PowerOff => "power off",
        Action::Reboot => "reboot",
    }
}

/// A [`Line`] without [`PREFIX`]; see [`Line::body`].
#[derive(Debug, Clone, Copy)]
pub struct Body<'a>(&'a Line);

impl fmt::Display for Body<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Line::Phase { name, uptime_ms } => write!(f, "phase {name} uptime_ms={uptime_ms}"),
            Line::Running { service, pid, uptime_ms, waiting_for } => {
                write!(f, "service {service} running pid={pid} uptime_ms={uptime_ms}")?;
                match waiting_for {
                    Some(probe) => write!(f, ", waiting for readiness ({probe})"),
                    None => Ok(()),
                }
            }
            Line::ServiceReady { service, uptime_ms } => write!(f, "service {service} ready uptime_ms={uptime_ms}"),
            Line::Outcome { service, what, then, uptime_ms } => {
                write!(f, "service {service} {what}; {then} uptime_ms={uptime_ms}")
            }
            Line::Stopped { service, how } => write!(f, "service {service} stopped ({how})"),
            Line::Ready { uptime_ms, services } => write!(f, "ready uptime_ms={uptime_ms} services={services}"),
            Line::Timeline(pairs) => {
                f.write_str("timeline ")?;
                write_pairs(f, pairs)
            }
            Line::Memory(pairs) => {
                f.write_str("memory ")?;
                write_pairs(f, pairs)
            }
            Line::ContainerdBack { after_ms, tasks } => {
                write!(f, "containerd back after {after_ms} ms: {tasks} running tasks re-adopted")
            }
            Line::ShutdownStarted(action) => write!(f, "shutdown started ({})", action_name(*action)),
            Line::AllStopped { zombies, after_ms } => {
                write!(f, "all processes stopped, zombies={zombies} after {after_ms} ms")
            }
            Line::Audit { allowed, call, target, caller, role } => write!(
                f,
                "audit {} call={} target={} caller={} role={}",
                if *allowed { "allowed" } else { "denied" },
                escape(call),
                if target.is_empty() { "-".into() } else { escape(target) },
                escape(caller),
                escape(role)
            ),
            Line::Last(Action::Reboot) => f.write_str("rebooting"),
            Line::Last(Action::PowerOff) => f.write_str("power off"),
        }
    }
}

impl fmt::Display for Line {
    /// The whole console line: [`PREFIX`] and the body, without a newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", self.body())
    }
}

#[cfg(test)]
mod tests;
