//! Taking services down: the stop signal then SIGKILL after the stop timeout, what follows
//! a stop (stay down, restart, replace, forget), commands by hand, and the ordered shutdown.

use hoist_guest::console::Line;

use super::run::how;
use super::{After, Command, Core, Effect, KILL_GRACE_MS, Ms, Phase, Refused, State};
use crate::state::Held;

/// A command on one service.
#[derive(Clone, Copy)]
enum Act {
    Start,
    Stop,
    Restart,
}

impl Core {
    /// Sends the stop signal and arms the SIGKILL deadline; `then` says what follows.
    pub(super) fn begin_stop(&mut self, now: Ms, name: &str, then: After) {
        let Some(svc) = self.services.get_mut(name) else { return };
        match &mut svc.state {
            State::Running { pid, .. } => {
                let pid = *pid;
                let kill_at = now.saturating_add(svc.plan.stop_timeout.as_millis() as Ms);
                let signal = svc.plan.stop_signal;
                svc.state = State::Stopping { pid, then, kill_at: Some(kill_at), give_up_at: None, killed: false };
                self.out.push(Effect::Signal { name: name.to_string(), signal });
            }
            State::Starting { then: pending, .. } if pending.is_none_or(|current| then.wins_over(current)) => {
                *pending = Some(then)
            }
            State::Stopping { then: current, .. } if then.wins_over(*current) => *current = then,
            _ => {}
        }
    }

    /// SIGKILL past the stop timeout; give up waiting a while after that.
    pub(super) fn stop_deadlines(&mut self, now: Ms, name: &str) {
        let Some(svc) = self.services.get_mut(name) else { return };
        let State::Stopping { then, kill_at, give_up_at, killed, .. } = &mut svc.state else { return };
        if kill_at.is_some_and(|t| t <= now) {
            *kill_at = None;
            *give_up_at = Some(now.saturating_add(KILL_GRACE_MS));
            *killed = true;
            self.out.push(Effect::Signal { name: name.to_string(), signal: libc::SIGKILL });
        } else if give_up_at.is_some_and(|t| t <= now) {
            let then = *then;
            self.out.push(Effect::Warn(format!("service {name} did not go away after SIGKILL")));
            self.gone(now, name, then, None);
        }
    }

    /// The task of a stopping (or never started) service is gone: do what was asked.
    /// `exit` is its status and OOM flag, when it was seen to exit.
    pub(super) fn gone(&mut self, now: Ms, name: &str, then: After, exit: Option<(u32, bool)>) {
        let Some(svc) = self.services.get(name) else { return };
        let killed = matches!(svc.state, State::Stopping { killed: true, .. });
        let stop_ms = svc.plan.stop_timeout.as_millis();
        let status = exit.map(|(s, _)| s).unwrap_or(255);
        let how = match exit {
            Some((status, oom)) => how(status, oom),
            None => "(not seen to exit)".into(),
        };
        match then {
            After::Stop => {
                self.exited(now, name, &how, "stopped by request");
                // A config applied meanwhile is what the next start by hand runs.
                let plan = self.desired.services.get(name).cloned();
                if let (Some(svc), Some(plan)) = (self.services.get_mut(name), plan) {
                    svc.plan = plan;
                }
                self.record(name).held = Some(Held::Stopped);
                self.set_state(name, State::Stopped);
                self.out.push(Effect::Cleanup { name: name.to_string() });
                self.emit(now, name, "stopped", how);
            }
            After::Restart => {
                self.exited(now, name, &how, "restarting by request");
                self.record(name).restarts += 1;
                self.emit(now, name, "exited", how);
                self.set_state(name, State::Waiting { on: Vec::new() });
                self.try_start(now, name);
            }
            After::TimedOut => self.apply_policy(now, name, status, true, &format!("exited {how}"), true),
            After::Shutdown => {
                let outcome = match exit {
                    None => "did not stop after SIGKILL".to_string(),
                    Some(_) if killed => format!("killed after {stop_ms} ms stop timeout, {how}"),
                    Some(_) => how.clone(),
                };
                self.print(Line::Stopped { service: name.to_string(), how: outcome });
                self.set_state(name, State::Stopped);
                self.out.push(Effect::Cleanup { name: name.to_string() });
                self.emit(now, name, "stopped", how);
            }
            After::Replace => {
                self.exited(now, name, &how, "replaced by its new version");
                let plan = self.desired.services.get(name).cloned();
                if let (Some(svc), Some(plan)) = (self.services.get_mut(name), plan) {
                    if let (Some((subnet, _)), None) = (&svc.plan.bridge, &plan.bridge) {
                        self.out.push(Effect::LeaveBridge { name: name.to_string(), subnet: *subnet });
                    }
                    svc.plan = plan;
                }
                self.emit(now, name, "replaced", how);
                self.set_state(name, State::Waiting { on: Vec::new() });
                self.try_start(now, name);
            }
            After::Remove => {
                self.exited(now, name, &how, "removed from the config");
                self.emit(now, name, "removed", how);
                self.forget(name);
            }
        }
        self.out.push(Effect::Persist);
    }

    /// `service NAME exited HOW; THEN uptime_ms=N` for a task gone after a stop we asked for.
    fn exited(&mut self, now: Ms, name: &str, how: &str, then: &str) {
        let what = format!("exited {how}");
        self.print(Line::Outcome { service: name.to_string(), what, then: then.to_string(), uptime_ms: now });
    }

    /// Drops a service that left the config, and what containerd still holds of it.
    pub(super) fn forget(&mut self, name: &str) {
        let bridge = self.services.remove(name).and_then(|s| s.plan.bridge);
        self.persisted.service.remove(name);
        self.out.push(Effect::Cleanup { name: name.to_string() });
        if let Some((subnet, _)) = bridge {
            self.out.push(Effect::LeaveBridge { name: name.to_string(), subnet });
        }
    }

    pub(super) fn on_command(&mut self, now: Ms, cmd: Command) -> Result<String, Refused> {
        if let Some(reason) = self.unavailable() {
            return Err(Refused::Unavailable(reason));
        }
        let (act, name) = match cmd {
            Command::Apply(apply) => return self.apply(now, *apply),
            Command::Confirm => return self.confirm(),
            Command::Reject => return self.reject(now),
            Command::Start(n) => (Act::Start, n),
            Command::Stop(n) => (Act::Stop, n),
            Command::Restart(n) => (Act::Restart, n),
        };
        let Some(svc) = self.services.get_mut(&name) else { return Err(Refused::NoService(name)) };
        let state = svc.state.clone();
        match (act, &state) {
            (Act::Start, s) | (Act::Restart, s) if s.active() && !matches!(s, State::Running { .. }) => {
                Err(Refused::Conflict(format!("service {name} is already {}", s.name())))
            }
            (Act::Start, State::Running { .. }) => Err(Refused::Conflict(format!("service {name} is already running"))),
            (Act::Restart, State::Running { .. }) => {
                self.begin_stop(now, &name, After::Restart);
                Ok(format!("restarting {name}"))
            }
            (Act::Start | Act::Restart, _) => {
                let record = self.record(&name);
                record.failed = None;
                record.exits_ms.clear();
                record.backoff_ms = 0;
                record.held = None;
                self.say(format!("service {name} started by request"));
                self.set_state(&name, State::Waiting { on: Vec::new() });
                self.try_start(now, &name);
                self.out.push(Effect::Persist);
                Ok(format!("starting {name}"))
            }
            (Act::Stop, State::Running { .. } | State::Starting { .. }) => {
                self.begin_stop(now, &name, After::Stop);
                Ok(format!("stopping {name}"))
            }
            (Act::Stop, State::Waiting { .. } | State::Backoff { .. }) => {
                self.record(&name).held = Some(Held::Stopped);
                self.set_state(&name, State::Stopped);
                self.emit(now, &name, "stopped", "by request".into());
                self.out.push(Effect::Persist);
                Ok(format!("stopped {name}"))
            }
            (Act::Stop, State::Stopping { .. }) => {
                Err(Refused::Conflict(format!("service {name} is already stopping")))
            }
            (Act::Stop, s) => Err(Refused::Conflict(format!("service {name} is {}, not running", s.name()))),
        }
    }

    pub(super) fn on_shutdown(&mut self, now: Ms) {
        match self.phase {
            Phase::Stopping | Phase::Onshutdown { .. } | Phase::Done => return, // one shutdown
            Phase::Connecting => {
                if self.stop_when_connected.is_none() {
                    self.say("stopping services once containerd answers".into());
                    self.stop_when_connected = Some(now.saturating_add(super::CONNECT_GRACE_MS));
                }
                return;
            }
            Phase::Onboot { .. } => {
                self.say("stopping services".into());
                self.stop_after_stage = true;
                if let Some(stage) = &mut self.stage {
                    stage.give_up_at = Some(now.saturating_add(KILL_GRACE_MS));
                    let name = stage.name.clone();
                    self.out.push(Effect::Signal { name, signal: libc::SIGKILL });
                } else {
                    self.phase = Phase::Stopping;
                }
                return;
            }
            Phase::BootFailed { .. } | Phase::Up => {}
        }
        self.say("stopping services".into());
        self.phase = Phase::Stopping;
        let names: Vec<String> = self.services.keys().cloned().collect();
        for name in names {
            match self.services[&name].state {
                State::Waiting { .. } | State::Backoff { .. } => self.set_state(&name, State::Stopped),
                State::Starting { .. } | State::Stopping { .. } => self.begin_stop(now, &name, After::Shutdown),
                _ => {}
            }
        }
    }

    /// During shutdown: stop each running service once nothing that depends on it runs;
    /// once none is left, the onshutdown stages.
    pub(super) fn advance_shutdown(&mut self, now: Ms) {
        if self.phase != Phase::Stopping || self.stage.is_some() {
            return;
        }
        let active: Vec<&String> = self.services.iter().filter(|(_, s)| s.state.active()).map(|(n, _)| n).collect();
        if active.is_empty() {
            self.phase = Phase::Onshutdown { index: 0 };
            return self.run_stage(now);
        }
        let can_stop: Vec<String> = active
            .iter()
            .filter(|n| matches!(self.services[n.as_str()].state, State::Running { .. }))
            .filter(|n| !active.iter().any(|o| self.services[o.as_str()].plan.depends_on.contains(n)))
            .map(|n| n.to_string())
            .collect();
        for name in can_stop {
            self.begin_stop(now, &name, After::Shutdown);
        }
    }
}
