//! Bringing services up and keeping them up: adoption, dependency-ordered starts (the
//! `network` target counting as a dependency that becomes ready once), readiness and start
//! timeouts, exits under the restart policy, and the onboot stages.

use std::collections::BTreeMap;

use hoist_config::Ready;
use hoist_guest::console::Line;
use hoist_guest::{network, volume};

use super::{After, Core, Effect, Ms, Phase, StageRun, StartError, State};
use crate::policy::{Decision, after_exit};
use crate::state::Held;

impl Core {
    /// After the onboot stages (or at once when an earlier supervisor of this boot ran
    /// them): adopt what runs, keep down what must stay down, start the rest.
    pub(super) fn adopt_or_start(&mut self, now: Ms, running: &BTreeMap<String, u32>) {
        for name in self.adopt(now, running) {
            self.try_start(now, &name);
        }
        // A task started from another plan than the one in force (a supervisor restarted in
        // the middle of an apply): replaced, so the host runs one generation, consistently.
        let stale: Vec<String> = self
            .services
            .iter()
            .filter(|(name, svc)| {
                running.contains_key(*name)
                    && self
                        .persisted
                        .service
                        .get(*name)
                        .and_then(|r| r.plan.as_ref())
                        .is_some_and(|id| *id != svc.plan.id())
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            self.say(format!("service {name} runs another version than the generation in force: replacing it"));
            self.begin_stop(now, &name, After::Replace);
        }
        // A task of a service the generation in force does not have (added by an apply
        // that was cut short): stopped and forgotten, not left running unmanaged.
        let orphans: Vec<(String, u32)> =
            running.iter().filter(|(n, _)| !self.services.contains_key(*n)).map(|(n, p)| (n.clone(), *p)).collect();
        for (name, pid) in orphans {
            self.say(format!("service {name} runs but is not in the generation in force: stopping it"));
            let plan = super::Plan {
                name: name.clone(),
                stop_signal: libc::SIGTERM,
                stop_timeout: std::time::Duration::from_secs(10),
                ..Default::default()
            };
            let mut svc = super::Svc::new(plan);
            svc.state = State::Running { pid, ready: true, deadline: None };
            self.services.insert(name.clone(), svc);
            self.out.push(Effect::Wait { name: name.clone(), pid });
            self.begin_stop(now, &name, After::Remove);
        }
    }

    /// Takes over the tasks that run and the states that must outlive a supervisor
    /// restart; returns the services that should be started.
    pub(super) fn adopt(&mut self, now: Ms, running: &BTreeMap<String, u32>) -> Vec<String> {
        let names: Vec<String> = self.services.keys().cloned().collect();
        let mut to_start = Vec::new();
        for name in names {
            let record = self.persisted.service.get(&name).cloned().unwrap_or_default();
            let state = if let Some(&pid) = running.get(&name) {
                // Started by an earlier supervisor of this boot, which already saw it
                // pass its readiness check or wait for it: count it ready, restart nothing.
                self.say(format!("service {name} adopted pid={pid} restarts={}", record.restarts));
                self.out.push(Effect::Wait { name: name.clone(), pid });
                if record.started_ms.is_none() {
                    self.record(&name).started_ms = Some(now);
                }
                State::Running { pid, ready: true, deadline: None }
            } else if let Some(reason) = record.failed {
                State::Failed { reason }
            } else {
                match record.held {
                    Some(Held::Stopped) => State::Stopped,
                    Some(Held::Exited { status }) => State::Exited { status },
                    Some(Held::Backoff { until_ms }) => State::Backoff { until: until_ms },
                    None => {
                        to_start.push(name.clone());
                        continue;
                    }
                }
            };
            self.set_state(&name, state);
        }
        to_start
    }

    /// Whether the dependency `name` is ready: a service running and ready, or the network
    /// target reached.
    pub(super) fn is_ready(&self, name: &str) -> bool {
        if name == network::TARGET {
            return self.network.is_some();
        }
        if let Some(v) = volume::of_target(name) {
            return matches!(self.volumes.get(v), Some(volume::State::Mounted { .. }));
        }
        matches!(self.services.get(name).map(|s| &s.state), Some(State::Running { ready: true, .. }))
    }

    /// Starts the service if every dependency is ready; otherwise it waits, naming them.
    pub(super) fn try_start(&mut self, now: Ms, name: &str) {
        if self.phase != Phase::Up {
            return;
        }
        let Some(svc) = self.services.get(name) else { return };
        if self.rollout.as_ref().is_some_and(|r| r.holds(name)) {
            return; // replaced once the dependencies it shares the rollout with are ready
        }
        let waiting: Vec<String> = svc.plan.depends_on.iter().filter(|d| !self.is_ready(d)).cloned().collect();
        if !waiting.is_empty() {
            if !matches!(&svc.state, State::Waiting { on } if *on == waiting) {
                self.say(format!("service {name} waiting for {}", waiting.join(", ")));
                self.emit(now, name, "waiting", waiting.join(", "));
            }
            self.set_state(name, State::Waiting { on: waiting });
            return;
        }
        let id = svc.plan.id();
        self.set_state(name, State::Starting { notified: None, then: None });
        let record = self.record(name);
        record.held = None;
        // Before the task exists, so a supervisor restarted at any point knows what it runs.
        record.plan = Some(id);
        self.out.push(Effect::Start { name: name.to_string() });
        self.out.push(Effect::Persist);
    }

    pub(super) fn on_started(&mut self, now: Ms, name: &str, result: Result<u32, StartError>) {
        let Some(svc) = self.services.get(name) else { return };
        let State::Starting { notified, then } = svc.state.clone() else { return };
        let (ready, timeout) = (svc.plan.ready.clone(), svc.plan.start_timeout);
        let pid = match result {
            Ok(pid) => pid,
            Err(e) => return self.start_failed(now, name, e, then),
        };
        self.out.push(Effect::Wait { name: name.to_string(), pid });
        // A run is as long as its task ran, not as long as containerd took to start it:
        // a slow start must not count as a stable run that resets the backoff.
        self.record(name).started_ms = Some(now);
        if !self.persisted.ready_done {
            self.timeline.push((name.to_string(), now));
        }
        self.emit(now, name, "started", format!("pid {pid}"));
        if let Some(then) = then {
            self.set_state(name, State::Running { pid, ready: false, deadline: None });
            return self.begin_stop(now, name, then);
        }
        if ready == Ready::Running {
            self.print(Line::Running { service: name.to_string(), pid, uptime_ms: now, waiting_for: None });
            self.set_state(name, State::Running { pid, ready: false, deadline: None });
            return self.on_ready(now, name, pid);
        }
        let waiting_for = Some(ready.to_string());
        self.print(Line::Running { service: name.to_string(), pid, uptime_ms: now, waiting_for });
        let deadline = now.saturating_add(timeout.as_millis() as Ms);
        self.set_state(name, State::Running { pid, ready: false, deadline: Some(deadline) });
        if ready != Ready::Notify {
            self.out.push(Effect::Probe { name: name.to_string(), pid });
        }
        if notified == Some(pid) {
            // READY=1 came before containerd answered Start.
            self.on_ready(now, name, pid);
        }
    }

    /// A start that failed: a plan that cannot work fails for good; anything else (containerd
    /// gone, disk full) goes through the restart policy like a failed run.
    fn start_failed(&mut self, now: Ms, name: &str, e: StartError, then: Option<After>) {
        if let Some(then) = then {
            self.say(format!("service {name} failed to start: {}", e.reason));
            return self.gone(now, name, then, None);
        }
        if e.permanent {
            self.say(format!("service {name} failed: {}", e.reason));
            self.emit(now, name, "failed", e.reason.clone());
            return self.fail(name, e.reason);
        }
        self.apply_policy(now, name, 255, true, &format!("failed to start: {}", e.reason), false);
    }

    pub(super) fn on_notify(&mut self, now: Ms, name: &str, pid: u32) {
        let Some(svc) = self.services.get_mut(name) else { return };
        match &mut svc.state {
            State::Running { pid: main, .. } if *main == pid => self.on_ready(now, name, pid),
            State::Starting { notified, .. } => *notified = Some(pid),
            state => {
                let main = match state {
                    State::Running { pid, .. } => pid.to_string(),
                    other => other.name().to_string(),
                };
                self.out.push(Effect::Warn(format!("service {name}: notify from pid {pid} ignored (main pid {main})")));
            }
        }
    }

    pub(super) fn on_ready(&mut self, now: Ms, name: &str, pid: u32) {
        let Some(svc) = self.services.get(name) else { return };
        if !matches!(svc.state, State::Running { pid: p, ready: false, .. } if p == pid) {
            return; // a probe of an earlier run, already ready, or stopping after a timeout
        }
        let announce = svc.plan.ready != Ready::Running;
        self.set_state(name, State::Running { pid, ready: true, deadline: None });
        if announce {
            self.print(Line::ServiceReady { service: name.to_string(), uptime_ms: now });
        }
        self.emit(now, name, "ready", format!("pid {pid}"));
        self.start_waiting(now);
    }

    /// PID 1's network setup ended: the target is reached for this boot, degraded or not.
    /// PID 1 has given up on a degraded network, so waiting longer would hold its
    /// dependents forever: it is said once and they start anyway. Recorded in the timeline
    /// at PID 1's time, in time order.
    /// Later states (a DHCP lease that came late, or ended) only change what status says:
    /// the target stays reached, and the DHCP helper said the change on the console.
    pub(super) fn on_network(&mut self, now: Ms, state: network::State) {
        if let Some(old) = &mut self.network {
            *old = network::State { uptime_ms: old.uptime_ms, ..state };
            return;
        }
        if let Some(why) = &state.degraded {
            self.say(format!("network degraded: {why}; services that depend on it start anyway"));
        }
        if !self.timeline.iter().any(|(n, _)| n == network::TARGET) {
            let at = self.timeline.partition_point(|(_, ms)| *ms <= state.uptime_ms);
            self.timeline.insert(at, (network::TARGET.to_string(), state.uptime_ms));
        }
        self.network = Some(state);
        self.start_waiting(now);
    }

    /// PID 1's helper is done with a volume. Mounted: the services that bind it may start.
    /// Failed: they keep waiting, and each says why (the helper said it on the console).
    pub(super) fn on_volume(&mut self, now: Ms, name: String, state: volume::State) {
        if self.volumes.contains_key(&name) {
            return;
        }
        let target = volume::target(&name);
        if let volume::State::Failed { reason, .. } = &state {
            let waiting: Vec<String> = self
                .services
                .iter()
                .filter(|(_, s)| s.plan.depends_on.contains(&target))
                .map(|(n, _)| n.clone())
                .collect();
            for service in waiting {
                self.emit(now, &service, "waiting", format!("{target}: not mounted: {reason}"));
            }
        }
        self.volumes.insert(name, state);
        self.start_waiting(now);
    }

    /// Starts the waiting services whose dependencies are all ready now.
    fn start_waiting(&mut self, now: Ms) {
        let waiting: Vec<String> = self
            .services
            .iter()
            .filter(|(_, s)| matches!(&s.state, State::Waiting { .. }))
            .map(|(n, _)| n.clone())
            .collect();
        for w in waiting {
            self.try_start(now, &w);
        }
    }

    pub(super) fn on_exit(&mut self, now: Ms, name: &str, pid: u32, status: u32, oom: bool) {
        let Some(svc) = self.services.get(name) else { return };
        let then = match svc.state {
            State::Running { pid: p, .. } if p == pid => None,
            State::Stopping { pid: p, then, .. } if p == pid => Some(then),
            _ => return, // an exit we already handled (e.g. reported twice across a reconnect)
        };
        self.record(name).last_exit = Some(status);
        if oom {
            self.emit(now, name, "oom", format!("killed by the OOM killer ({status})"));
        }
        match then {
            Some(then) => self.gone(now, name, then, Some((status, oom))),
            None => {
                let how = how(status, oom);
                self.apply_policy(now, name, status, oom, &format!("exited {how}"), true);
            }
        }
    }

    /// Restart, stay down or fail, per the policy; `what` says what happened, for the
    /// console; `ran` is false when the task never started (then "not restarted" is a failure).
    pub(super) fn apply_policy(&mut self, now: Ms, name: &str, status: u32, failure: bool, what: &str, ran: bool) {
        let Some(svc) = self.services.get(name) else { return };
        let policy = svc.plan.policy;
        let record = self.persisted.service.entry(name.to_string()).or_default();
        let ran_ms = now.saturating_sub(record.started_ms.unwrap_or(now));
        let decision = match &policy {
            Some(p) => after_exit(record, p, status, failure, std::time::Duration::from_millis(ran_ms), now),
            None => Decision::Done,
        };
        let (then, state, kind) = match decision {
            Decision::Restart(delay) => {
                let until = now.saturating_add(delay.as_millis() as Ms);
                record.held = Some(Held::Backoff { until_ms: until });
                (format!("restart in {} ms", delay.as_millis()), State::Backoff { until }, "exited")
            }
            Decision::Done if ran => {
                record.held = Some(Held::Exited { status });
                ("not restarted".to_string(), State::Exited { status }, "exited")
            }
            Decision::Done => {
                let reason = what.to_string();
                record.failed = Some(reason.clone());
                ("not restarted".to_string(), State::Failed { reason }, "failed")
            }
            Decision::Failed(reason) => (format!("failed: {reason}"), State::Failed { reason }, "failed"),
        };
        self.print(Line::Outcome { service: name.to_string(), what: what.to_string(), then, uptime_ms: now });
        if !matches!(state, State::Backoff { .. }) {
            self.out.push(Effect::Cleanup { name: name.to_string() });
        }
        self.set_state(name, state);
        self.emit(now, name, kind, what.to_string());
        self.out.push(Effect::Persist);
    }

    /// Failed for good (until started by hand).
    pub(super) fn fail(&mut self, name: &str, reason: String) {
        self.record(name).failed = Some(reason.clone());
        self.set_state(name, State::Failed { reason });
        self.out.push(Effect::Persist);
    }

    pub(super) fn on_timer(&mut self, now: Ms) {
        let names: Vec<String> = self.services.keys().cloned().collect();
        for name in names {
            let Some(svc) = self.services.get(&name) else { continue };
            match svc.state {
                State::Backoff { until } if until <= now => self.try_start(now, &name),
                State::Running { ready: false, deadline: Some(d), .. } if d <= now => {
                    let ms = svc.plan.start_timeout.as_millis();
                    self.say(format!("service {name} not ready after {ms} ms: stopping it"));
                    self.begin_stop(now, &name, After::TimedOut);
                }
                State::Stopping { .. } => self.stop_deadlines(now, &name),
                _ => {}
            }
        }
        self.stage_deadlines(now);
        if self.stop_when_connected.is_some_and(|t| t <= now) {
            self.say("stopping services: containerd did not answer; leaving them to PID 1".into());
            self.stop_when_connected = None;
            self.phase = Phase::Done;
            self.out.push(Effect::Exit);
        }
    }

    /// Prints the ready line once every service has settled: ready, or never going to be
    /// without outside help (failed, exited, in backoff, stopped, or waiting on something
    /// that is itself settled and not ready).
    pub(super) fn check_settled(&mut self, now: Ms) {
        if self.persisted.ready_done || self.phase != Phase::Up {
            return;
        }
        let mut memo = BTreeMap::new();
        if !self.services.keys().all(|n| self.settled(n, &mut memo)) {
            return;
        }
        self.persisted.ready_done = true;
        self.out.push(Effect::Persist);
        let ready = self.services.keys().filter(|n| self.is_ready(n)).count();
        self.timeline.push(("ready".into(), now));
        self.print(Line::Ready { uptime_ms: now, services: ready });
        self.print(Line::Timeline(self.timeline.clone()));
        self.out.push(Effect::Settled);
    }

    /// The network target is settled once reached: PID 1 always ends its setup, so a
    /// service waiting for it is not settled before (the ready line waits for the network
    /// only when a service does).
    pub(super) fn settled<'a>(&'a self, name: &'a str, memo: &mut BTreeMap<&'a str, bool>) -> bool {
        if name == network::TARGET {
            return self.network.is_some();
        }
        if let Some(v) = volume::of_target(name) {
            return self.volumes.contains_key(v);
        }
        if let Some(&known) = memo.get(name) {
            return known;
        }
        let Some(svc) = self.services.get(name) else { return true };
        let settled = match &svc.state {
            State::Running { ready, .. } => *ready,
            State::Failed { .. } | State::Exited { .. } | State::Backoff { .. } | State::Stopped => true,
            State::Starting { .. } | State::Stopping { .. } => false,
            // The config has no cycles (validated), so this recursion ends.
            State::Waiting { on } => !on.is_empty() && on.iter().all(|d| self.settled(d, memo) && !self.is_ready(d)),
        };
        memo.insert(name, settled);
        settled
    }

    /// Runs the current stage of the onboot or onshutdown phase, or moves past the last.
    pub(super) fn run_stage(&mut self, now: Ms) {
        let (list, index) = match self.phase {
            Phase::Onboot { index } => (&self.desired.onboot, index),
            Phase::Onshutdown { index } => (&self.desired.onshutdown, index),
            _ => return,
        };
        let interrupted = matches!(self.phase, Phase::Onboot { .. }) && self.stop_after_stage;
        if let Some(stage) = list.get(index).filter(|_| !interrupted) {
            let name = stage.plan.name.clone();
            let deadline = now.saturating_add(stage.timeout.as_millis() as Ms);
            self.stage = Some(StageRun { name: name.clone(), started: now, deadline, give_up_at: None });
            self.out.push(Effect::RunStage { name });
            return;
        }
        match self.phase {
            Phase::Onboot { .. } if self.stop_after_stage => self.phase = Phase::Stopping,
            Phase::Onboot { .. } => {
                self.persisted.onboot_done = true;
                self.out.push(Effect::Persist);
                self.phase = Phase::Up;
                self.adopt_or_start(now, &BTreeMap::new());
            }
            _ => {
                self.phase = Phase::Done;
                self.out.push(Effect::Exit);
            }
        }
    }

    pub(super) fn on_stage_done(&mut self, now: Ms, name: &str, result: Result<u32, String>) {
        let Some(stage) = self.stage.take_if(|s| s.name == name) else { return };
        let killed = stage.give_up_at.is_some() && !self.stop_after_stage;
        let outcome = match result {
            _ if killed => Err(format!("did not finish within {} ms: killed", stage.deadline - stage.started)),
            Ok(0) => Ok(()),
            Ok(status) => Err(format!("exited status={status}")),
            Err(e) => Err(e),
        };
        let ms = now.saturating_sub(stage.started);
        match (&self.phase, outcome) {
            (Phase::Onboot { index }, outcome) => {
                let index = *index;
                let required = self.desired.onboot.get(index).is_some_and(|s| s.required);
                match outcome {
                    _ if self.stop_after_stage => self.say(format!("onboot {name} stopped by the shutdown")),
                    Ok(()) => self.say(format!("onboot {name} done in {ms} ms")),
                    Err(reason) if required => {
                        self.say(format!("onboot {name} failed: {reason}"));
                        let reason = format!("required onboot {name} failed: {reason}");
                        self.persisted.boot_failed = Some(reason.clone());
                        self.persisted.onboot_done = true;
                        self.out.push(Effect::Persist);
                        return self.boot_failed(reason);
                    }
                    Err(reason) => self.say(format!("onboot {name} failed: {reason}; not required, boot goes on")),
                }
                self.phase = Phase::Onboot { index: index + 1 };
            }
            (Phase::Onshutdown { index }, outcome) => {
                let index = *index;
                match outcome {
                    Ok(()) => self.say(format!("onshutdown {name} exited status=0")),
                    Err(reason) => self.say(format!("onshutdown {name} failed: {reason}")),
                }
                self.phase = Phase::Onshutdown { index: index + 1 };
            }
            _ => return,
        }
        self.run_stage(now);
    }

    /// A stage past its timeout is killed; one that is not reported gone after that is
    /// given up on, so no stage can hold the boot or the shutdown forever.
    fn stage_deadlines(&mut self, now: Ms) {
        let Some(stage) = &mut self.stage else { return };
        match stage.give_up_at {
            None if stage.deadline <= now => {
                stage.give_up_at = Some(now + super::KILL_GRACE_MS);
                let name = stage.name.clone();
                self.out.push(Effect::Signal { name, signal: libc::SIGKILL });
            }
            Some(t) if t <= now => {
                let name = stage.name.clone();
                self.out.push(Effect::Warn(format!("stage {name} did not go away after SIGKILL")));
                self.on_stage_done(now, &name, Err("did not stop after SIGKILL".into()));
            }
            _ => {}
        }
    }
}

/// An exit status for the console: `status=N`, with OOM kills named.
pub(super) fn how(status: u32, oom: bool) -> String {
    if oom { format!("status={status} (OOM killed)") } else { format!("status={status}") }
}
