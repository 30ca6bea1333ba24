//! What the core shows: every service's status, one service's recent events, and what the
//! control API needs to exec into a service. Answered in every phase.

use super::{Core, Ms, Phase, Refused, State};

/// Something that happened to a service, for `describe` and the event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub uptime_ms: Ms,
    pub service: String,
    pub kind: &'static str,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceView {
    pub name: String,
    pub state: &'static str,
    /// 0 when it does not run.
    pub pid: u32,
    pub restarts: u32,
    pub last_exit: Option<u32>,
    pub uptime_ms: Ms,
    pub ready: bool,
    pub waiting_for: Vec<String>,
    /// Why it is in its state, in words.
    pub reason: String,
}

impl Core {
    pub fn status(&self, now: Ms) -> Vec<ServiceView> {
        self.services.keys().filter_map(|n| self.view(now, n)).collect()
    }

    pub fn describe(&self, now: Ms, name: &str) -> Result<(ServiceView, Vec<Event>), Refused> {
        let view = self.view(now, name).ok_or_else(|| Refused::NoService(name.to_string()))?;
        Ok((view, self.services[name].recent.iter().cloned().collect()))
    }

    /// What is wrong with the host itself, as the core sees it.
    pub fn problems(&self, now: Ms) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(since) = self.lost_at {
            let ms = now.saturating_sub(since);
            out.push(format!("containerd is not answering (for {ms} ms); running services keep running"));
        }
        if let Phase::BootFailed { reason } = &self.phase {
            out.push(format!("boot failed: {reason}; services not started"));
        }
        if let Some(why) = self.network.as_ref().and_then(|n| n.degraded.as_ref()) {
            out.push(format!("network degraded: {why}"));
        }
        for (name, state) in &self.volumes {
            if let hoist_guest::volume::State::Failed { reason, required: true, .. } = state {
                out.push(format!("volume {name} not mounted: {reason}"));
            }
        }
        out
    }

    /// The host's network as PID 1 (or its DHCP helper) last reported it, in words; None
    /// before the first report.
    pub fn network_summary(&self) -> Option<String> {
        let n = self.network.as_ref()?;
        Some(match (&n.degraded, &n.detail) {
            (Some(why), _) => format!("degraded: {why}"),
            (None, Some(detail)) => format!("up: {detail}"),
            (None, None) => "up".to_string(),
        })
    }

    /// The volumes some service binds (their targets are in its dependencies).
    pub fn volumes_bound(&self) -> std::collections::BTreeSet<String> {
        let deps = self.services.values().flat_map(|s| s.plan.depends_on.iter());
        deps.filter_map(|d| hoist_guest::volume::of_target(d)).map(str::to_string).collect()
    }

    pub fn state(&self, name: &str) -> Option<&State> {
        self.services.get(name).map(|s| &s.state)
    }

    /// The process JSON to exec into `name` with, if it runs.
    pub fn exec_process(&self, name: &str) -> Result<Vec<u8>, Refused> {
        match self.services.get(name) {
            Some(s) if matches!(s.state, State::Running { .. }) => Ok(s.plan.process.clone()),
            Some(s) => Err(Refused::Conflict(format!("service {name} is {}, not running", s.state.name()))),
            None => Err(Refused::NoService(name.to_string())),
        }
    }

    fn view(&self, now: Ms, name: &str) -> Option<ServiceView> {
        let svc = self.services.get(name)?;
        let record = self.persisted.service.get(name);
        let (pid, ready) = match svc.state {
            State::Running { pid, ready, .. } => (pid, ready),
            State::Stopping { pid, .. } => (pid, false),
            _ => (0, false),
        };
        let reason = match &svc.state {
            State::Failed { reason } => reason.clone(),
            State::Waiting { on } if on.is_empty() => self.not_yet(),
            State::Waiting { on } => {
                let why = |dep: &String| match hoist_guest::volume::of_target(dep).and_then(|v| self.volumes.get(v)) {
                    Some(hoist_guest::volume::State::Failed { reason, .. }) => format!("{dep} (not mounted: {reason})"),
                    _ => dep.clone(),
                };
                format!("waits for {}", on.iter().map(why).collect::<Vec<_>>().join(", "))
            }
            State::Backoff { until } => format!("restart in {} ms", until.saturating_sub(now)),
            State::Running { ready: false, .. } => format!("waiting for readiness ({})", svc.plan.ready),
            State::Stopping { .. } => "stop signal sent".into(),
            _ => String::new(),
        };
        let started = record.and_then(|r| r.started_ms).unwrap_or(now);
        Some(ServiceView {
            name: name.to_string(),
            state: svc.state.name(),
            pid,
            restarts: record.map(|r| r.restarts).unwrap_or(0),
            last_exit: record.and_then(|r| r.last_exit),
            uptime_ms: if pid != 0 { now.saturating_sub(started) } else { 0 },
            ready,
            waiting_for: match &svc.state {
                State::Waiting { on } => on.clone(),
                _ => Vec::new(),
            },
            reason,
        })
    }

    /// Why a service that waits on nothing has not started.
    fn not_yet(&self) -> String {
        match &self.phase {
            Phase::Connecting => "waits for containerd".into(),
            Phase::Onboot { .. } => match &self.stage {
                Some(s) => format!("waits for onboot stage {}", s.name),
                None => "waits for the onboot stages".into(),
            },
            Phase::BootFailed { reason } => format!("not started: boot failed: {reason}"),
            _ => String::new(),
        }
    }
}
