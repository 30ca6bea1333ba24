//! The supervisor's state machine. One task owns every service's state (DESIGN.md
//! decision 5); starting, waiting, probing and stopping run as spawned tasks that report
//! back over one channel. All timers use tokio's monotonic clock; what must survive a
//! supervisor restart (restart counts, backoff, start-limit window, failed marks, whether
//! onboot ran) is kept in [`crate::state`] in boot-time milliseconds.
//!
//! Order: `[[onboot]]` stages run one by one to completion; then every service whose
//! dependencies are ready starts, in parallel; a service is ready per its `ready` probe
//! (or at once), and readiness releases its dependents. A service not ready within its
//! start timeout is terminated and that counts as a failure. On SIGTERM services stop in
//! reverse dependency order, then `[[onshutdown]]` stages run, then the process exits 0.
//!
//! On start it adopts tasks that already run in containerd, so a supervisor restart
//! restarts no service.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::time::Duration;

use hoist_config::Config;
use hoist_config::manifest::BuildManifest;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

use crate::api::pb;
use crate::api::server::{ApiError, Cmd};
use crate::containerd::Containerd;
use crate::policy::{Decision, after_exit};
use crate::runner::{self, Plan};
use crate::state::{self, Persisted};
use crate::{say, uptime_ms};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Dependencies not ready yet (named).
    Waiting {
        on: Vec<String>,
    },
    Starting,
    Running {
        pid: u32,
        ready: bool,
        deadline: Option<Instant>,
    },
    /// Will be started again at this instant.
    Backoff {
        until: Instant,
    },
    /// Ended and not restarted, by policy.
    Exited {
        status: u32,
    },
    Failed {
        reason: String,
    },
    /// Stopped by hand (control API); stays stopped until started by hand.
    Stopped,
}

impl State {
    pub fn name(&self) -> &'static str {
        match self {
            State::Waiting { .. } => "waiting",
            State::Starting => "starting",
            State::Running { .. } => "running",
            State::Backoff { .. } => "backoff",
            State::Exited { .. } => "exited",
            State::Failed { .. } => "failed",
            State::Stopped => "stopped",
        }
    }
}

/// Recent events kept per service for `describe`.
const RECENT_EVENTS: usize = 32;

#[derive(Debug)]
pub enum Msg {
    Started {
        name: String,
        result: Result<u32, String>,
    },
    Exited {
        name: String,
        pid: u32,
        status: u32,
        oom: bool,
    },
    Ready {
        name: String,
        pid: u32,
    },
    Notify(crate::notify::Notice),
    /// A wait was cut by containerd going away.
    Lost,
    /// containerd answers again; this many tasks are running.
    Reconnected {
        running: usize,
    },
}

pub struct Service {
    pub plan: Plan,
    pub state: State,
    started_at: Option<Instant>,
    /// The current run was terminated for not getting ready in time.
    timed_out: bool,
    /// Asked by hand: stop (and stay stopped) or restart at once when the task exits.
    manual: Option<Manual>,
    last_exit: Option<u32>,
    recent: VecDeque<pb::Event>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Manual {
    Stop,
    Restart,
}

pub struct Supervisor {
    client: Containerd,
    services: BTreeMap<String, Service>,
    onboot: Vec<(Plan, Duration, bool)>,
    onshutdown: Vec<(Plan, Duration)>,
    persisted: Persisted,
    state_path: PathBuf,
    tx: mpsc::UnboundedSender<Msg>,
    rx: mpsc::UnboundedReceiver<Msg>,
    timeline: Vec<(String, u128)>,
    ready_printed: bool,
    /// Uptime (ms) when containerd was found gone, while we wait for it to come back.
    lost_at: Option<u128>,
    cmd_tx: mpsc::UnboundedSender<Cmd>,
    cmd_rx: mpsc::UnboundedReceiver<Cmd>,
    events: broadcast::Sender<pb::Event>,
}

fn oneshot_plan(o: &hoist_config::OneShot, manifest: &BuildManifest, log_max: u64) -> Plan {
    let plan =
        runner::plan(&o.name, &crate::spec::Settings::from(o), manifest.service.get(&o.name), &o.image.describe());
    Plan { log_max, ..plan }
}

impl Supervisor {
    pub fn new(client: Containerd, config: &Config, manifest: &BuildManifest, timeline: Vec<(String, u128)>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let services = config
            .service
            .iter()
            .map(|(name, s)| {
                let plan =
                    Plan { log_max: config.logs.max_size, ..runner::plan_service(name, s, manifest.service.get(name)) };
                let svc = Service {
                    plan,
                    state: State::Starting,
                    started_at: None,
                    timed_out: false,
                    manual: None,
                    last_exit: None,
                    recent: VecDeque::new(),
                };
                (name.clone(), svc)
            })
            .collect();
        let log_max = config.logs.max_size;
        let onboot =
            config.onboot.iter().map(|o| (oneshot_plan(o, manifest, log_max), o.timeout, o.required)).collect();
        let onshutdown = config.onshutdown.iter().map(|o| (oneshot_plan(o, manifest, log_max), o.timeout)).collect();
        let state_path = PathBuf::from(state::PATH);
        let persisted = state::load(&state_path);
        let ready_printed = persisted.ready_done;
        Supervisor {
            client,
            services,
            onboot,
            onshutdown,
            persisted,
            state_path,
            tx,
            rx,
            timeline,
            ready_printed,
            lost_at: None,
            cmd_tx,
            cmd_rx,
            events: broadcast::channel(256).0,
        }
    }

    /// Where the control API sends its commands and gets its events.
    pub fn handles(&self) -> (mpsc::UnboundedSender<Cmd>, broadcast::Sender<pb::Event>) {
        (self.cmd_tx.clone(), self.events.clone())
    }

    /// Records an event for `describe` and the event stream.
    fn emit(&mut self, service: &str, kind: &str, detail: String) {
        let event =
            pb::Event { uptime_ms: uptime_ms() as u64, service: service.to_string(), kind: kind.to_string(), detail };
        if let Some(svc) = self.services.get_mut(service) {
            if svc.recent.len() == RECENT_EVENTS {
                svc.recent.pop_front();
            }
            svc.recent.push_back(event.clone());
        }
        let _ = self.events.send(event);
    }

    fn save(&self) {
        if let Err(e) = state::save(&self.state_path, &self.persisted) {
            log::warn!("{}: {e}", self.state_path.display());
        }
    }

    /// Onboot, adoption and start, supervision until SIGTERM, then the ordered stop.
    pub async fn run(mut self) -> std::io::Result<()> {
        let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        if !self.persisted.onboot_done {
            tokio::select! {
                _ = self.run_onboot() => {}
                _ = sigterm.recv() => {
                    self.shutdown().await;
                    return Ok(());
                }
            }
        }
        if let Some(reason) = self.persisted.boot_failed.clone() {
            say(&format!("boot failed: {reason}; services not started (the host stays up)"));
            sigterm.recv().await;
            self.shutdown().await;
            return Ok(());
        }
        self.start_notify_listeners();
        self.adopt_or_start().await;
        self.check_ready();
        loop {
            let next = self.next_deadline();
            tokio::select! {
                Some(msg) = self.rx.recv() => self.handle(msg),
                Some(cmd) = self.cmd_rx.recv() => self.on_cmd(cmd),
                _ = sleep_until(next) => self.on_deadlines(),
                _ = sigterm.recv() => break,
            }
        }
        self.shutdown().await;
        Ok(())
    }

    async fn run_onboot(&mut self) {
        for (plan, timeout, required) in self.onboot.clone() {
            let t = Instant::now();
            let outcome = match runner::run_oneshot(&self.client, &plan, timeout).await {
                Ok(0) => Ok(()),
                Ok(status) => Err(format!("exited status={status}")),
                Err(e) => Err(e),
            };
            let ms = t.elapsed().as_millis();
            match outcome {
                Ok(()) => say(&format!("onboot {} done in {ms} ms", plan.name)),
                Err(reason) if required => {
                    say(&format!("onboot {} failed: {reason}", plan.name));
                    self.persisted.boot_failed = Some(format!("required onboot {} failed: {reason}", plan.name));
                    break;
                }
                Err(reason) => say(&format!("onboot {} failed: {reason}; not required, boot goes on", plan.name)),
            }
        }
        self.persisted.onboot_done = true;
        self.save();
    }

    fn start_notify_listeners(&self) {
        for (name, svc) in &self.services {
            if matches!(svc.plan.ready, hoist_config::Ready::Notify)
                && let Err(e) = crate::notify::listen(name, self.tx.clone())
            {
                log::warn!("service {name}: notify socket: {e}");
            }
        }
    }

    async fn adopt_or_start(&mut self) {
        let running: BTreeMap<String, u32> = match self.client.list_tasks().await {
            // containerd 1.6 names the task in `id` and leaves `container_id` empty.
            Ok(tasks) => tasks
                .into_iter()
                .filter(|t| t.status == containerd_client::types::v1::Status::Running as i32)
                .map(|t| (if t.container_id.is_empty() { t.id } else { t.container_id }, t.pid))
                .collect(),
            Err(e) => {
                log::warn!("{e}: starting every service");
                BTreeMap::new()
            }
        };
        let names: Vec<String> = self.services.keys().cloned().collect();
        for name in &names {
            let record = self.persisted.service.get(name).cloned().unwrap_or_default();
            if let Some(pid) = running.get(name) {
                // It ran before we (re)started: it was started by an earlier supervisor
                // of this boot, so it already passed its readiness check or is waiting
                // for it; treat it as ready rather than restarting it.
                say(&format!("service {name} adopted pid={pid} restarts={}", record.restarts));
                self.set_state(name, State::Running { pid: *pid, ready: true, deadline: None });
                runner::spawn_waiter(self.client.clone(), name.clone(), *pid, self.tx.clone());
            } else if let Some(reason) = record.failed {
                self.set_state(name, State::Failed { reason });
            }
        }
        for name in &names {
            if matches!(self.services[name].state, State::Starting) {
                self.try_start(name);
            }
        }
    }

    fn set_state(&mut self, name: &str, state: State) {
        if let Some(svc) = self.services.get_mut(name) {
            svc.state = state;
        }
    }

    fn is_ready(&self, name: &str) -> bool {
        matches!(self.services.get(name).map(|s| &s.state), Some(State::Running { ready: true, .. }))
    }

    /// Starts the service if every dependency is ready; otherwise it waits, naming them.
    fn try_start(&mut self, name: &str) {
        let Some(svc) = self.services.get(name) else { return };
        let waiting: Vec<String> = svc.plan.depends_on.iter().filter(|d| !self.is_ready(d)).cloned().collect();
        if !waiting.is_empty() {
            if !matches!(&svc.state, State::Waiting { on } if *on == waiting) {
                say(&format!("service {name} waiting for {}", waiting.join(", ")));
                self.emit(name, "waiting", waiting.join(", "));
            }
            self.set_state(name, State::Waiting { on: waiting });
            return;
        }
        let Some(svc) = self.services.get_mut(name) else { return };
        svc.state = State::Starting;
        svc.started_at = Some(Instant::now());
        svc.timed_out = false;
        runner::spawn_start(self.client.clone(), svc.plan.clone(), self.tx.clone());
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Started { name, result: Ok(pid) } => self.on_started(&name, pid),
            Msg::Started { name, result: Err(reason) } => {
                // A start that fails (missing binary, broken image) fails the same way
                // again: the rootfs is immutable. Report it once and leave it failed.
                say(&format!("service {name} failed: {reason}"));
                self.emit(&name, "failed", reason.clone());
                self.set_state(&name, State::Failed { reason });
            }
            Msg::Exited { name, pid, status, oom } => self.on_exit(&name, pid, status, oom),
            Msg::Lost => {
                if self.lost_at.is_none() {
                    self.lost_at = Some(uptime_ms());
                    say("lost containerd; services keep running, waiting for it to come back");
                    runner::spawn_reconnect(self.client.clone(), self.tx.clone());
                }
            }
            Msg::Reconnected { running } => {
                let since = self.lost_at.take().unwrap_or_default();
                say(&format!("containerd back after {} ms: {running} running tasks re-adopted", uptime_ms() - since));
            }
            Msg::Ready { name, pid } => self.on_ready(&name, pid),
            Msg::Notify(n) => {
                let main = match self.services.get(&n.service).map(|s| &s.state) {
                    Some(State::Running { pid, .. }) => Some(*pid),
                    _ => None,
                };
                if main != Some(n.pid) {
                    log::warn!("service {}: notify from pid {} ignored (main pid {main:?})", n.service, n.pid);
                } else if n.ready {
                    self.on_ready(&n.service, n.pid);
                }
            }
        }
        self.check_ready();
    }

    fn on_started(&mut self, name: &str, pid: u32) {
        let ms = uptime_ms();
        if !self.ready_printed {
            self.timeline.push((name.to_string(), ms));
        }
        self.emit(name, "started", format!("pid {pid}"));
        let Some(svc) = self.services.get(name) else { return };
        let (ready, timeout, process) = (svc.plan.ready.clone(), svc.plan.start_timeout, svc.plan.process.clone());
        runner::spawn_waiter(self.client.clone(), name.to_string(), pid, self.tx.clone());
        if matches!(ready, hoist_config::Ready::Running) {
            say(&format!("service {name} running pid={pid} uptime_ms={ms}"));
            self.set_state(name, State::Running { pid, ready: false, deadline: None });
            self.on_ready(name, pid);
            return;
        }
        say(&format!("service {name} running pid={pid} uptime_ms={ms}, waiting for readiness ({ready:?})"));
        self.set_state(name, State::Running { pid, ready: false, deadline: Some(Instant::now() + timeout) });
        crate::ready::spawn_probe(self.client.clone(), name.to_string(), pid, ready, process, self.tx.clone());
    }

    fn on_ready(&mut self, name: &str, pid: u32) {
        let Some(svc) = self.services.get(name) else { return };
        if !matches!(svc.state, State::Running { pid: p, ready: false, .. } if p == pid) {
            return; // a probe of an earlier run, or already ready
        }
        self.set_state(name, State::Running { pid, ready: true, deadline: None });
        if !matches!(self.services[name].plan.ready, hoist_config::Ready::Running) {
            say(&format!("service {name} ready uptime_ms={}", uptime_ms()));
        }
        self.emit(name, "ready", format!("pid {pid}"));
        let waiting: Vec<String> = self
            .services
            .iter()
            .filter(|(_, s)| matches!(&s.state, State::Waiting { .. }))
            .map(|(n, _)| n.clone())
            .collect();
        for w in waiting {
            self.try_start(&w);
        }
    }

    fn on_exit(&mut self, name: &str, pid: u32, status: u32, oom: bool) {
        let Some(svc) = self.services.get_mut(name) else { return };
        if !matches!(svc.state, State::Running { pid: p, .. } if p == pid) {
            return; // an exit we already handled (e.g. reported twice across a reconnect)
        }
        svc.last_exit = Some(status);
        let ms = uptime_ms();
        let how = if oom { format!("status={status} (OOM killed)") } else { format!("status={status}") };
        if let Some(manual) = svc.manual.take() {
            let what = if manual == Manual::Stop { "stopped" } else { "restarting" };
            say(&format!("service {name} exited {how}; {what} by request uptime_ms={ms}"));
            if manual == Manual::Stop {
                svc.state = State::Stopped;
                runner::spawn_cleanup(self.client.clone(), name.to_string());
                self.emit(name, "stopped", how);
            } else {
                self.persisted.service.entry(name.to_string()).or_default().restarts += 1;
                self.emit(name, "exited", how);
                self.try_start(name);
            }
            self.save();
            return;
        }
        if oom {
            self.emit(name, "oom", format!("killed by the OOM killer ({status})"));
        }
        let Some(svc) = self.services.get_mut(name) else { return };
        let ran = svc.started_at.map(|t| t.elapsed()).unwrap_or_default();
        let failure = svc.timed_out || oom;
        let record = self.persisted.service.entry(name.to_string()).or_default();
        let decision = match &svc.plan.policy {
            Some(p) => after_exit(record, p, status, failure, ran, uptime_ms() as u64),
            None => Decision::Done,
        };
        svc.state = match decision {
            Decision::Restart(delay) => {
                say(&format!("service {name} exited {how}; restart in {} ms uptime_ms={ms}", delay.as_millis()));
                State::Backoff { until: Instant::now() + delay }
            }
            Decision::Done => {
                say(&format!("service {name} exited {how}; not restarted uptime_ms={ms}"));
                runner::spawn_cleanup(self.client.clone(), name.to_string());
                State::Exited { status }
            }
            Decision::Failed(reason) => {
                say(&format!("service {name} exited {how}; failed: {reason} uptime_ms={ms}"));
                runner::spawn_cleanup(self.client.clone(), name.to_string());
                State::Failed { reason }
            }
        };
        let kind = if matches!(svc.state, State::Failed { .. }) { "failed" } else { "exited" };
        self.emit(name, kind, how);
        self.save();
    }

    fn status_of(&self, name: &str, svc: &Service) -> pb::ServiceStatus {
        let (pid, ready) = match svc.state {
            State::Running { pid, ready, .. } => (pid, ready),
            _ => (0, false),
        };
        let reason = match &svc.state {
            State::Failed { reason } => reason.clone(),
            State::Waiting { on } => format!("waits for {}", on.join(", ")),
            State::Backoff { until } => {
                format!("restart in {} ms", until.saturating_duration_since(Instant::now()).as_millis())
            }
            State::Running { ready: false, .. } => format!("waiting for readiness ({:?})", svc.plan.ready),
            _ => String::new(),
        };
        pb::ServiceStatus {
            name: name.to_string(),
            state: svc.state.name().to_string(),
            pid,
            restarts: self.persisted.service.get(name).map(|r| r.restarts).unwrap_or(0),
            last_exit: svc.last_exit.map(i64::from).unwrap_or(-1),
            uptime_ms: if pid != 0 { svc.started_at.map(|t| t.elapsed().as_millis() as u64).unwrap_or(0) } else { 0 },
            ready,
            waiting_for: match &svc.state {
                State::Waiting { on } => on.clone(),
                _ => Vec::new(),
            },
            reason,
        }
    }

    /// Commands from the control API.
    fn on_cmd(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Status(tx) => {
                let _ = tx.send(self.services.iter().map(|(n, s)| self.status_of(n, s)).collect());
            }
            Cmd::Describe(name, tx) => {
                let detail = match self.services.get(&name) {
                    Some(s) => Ok(pb::ServiceDetail {
                        status: Some(self.status_of(&name, s)),
                        events: s.recent.iter().cloned().collect(),
                    }),
                    None => Err(ApiError::NoService(name)),
                };
                let _ = tx.send(detail);
            }
            Cmd::Start(name, tx) => {
                let _ = tx.send(self.start_by_hand(&name));
            }
            Cmd::Stop(name, tx) => {
                let _ = tx.send(self.stop_by_hand(&name, Manual::Stop));
            }
            Cmd::Restart(name, tx) => {
                let running = matches!(self.services.get(&name).map(|s| &s.state), Some(State::Running { .. }));
                let reply = if running { self.stop_by_hand(&name, Manual::Restart) } else { self.start_by_hand(&name) };
                let _ = tx.send(reply);
            }
            Cmd::ExecPlan(name, tx) => {
                let reply = match self.services.get(&name) {
                    Some(Service { state: State::Running { .. }, plan, .. }) => Ok(plan.process.clone()),
                    Some(s) => Err(ApiError::Conflict(format!("service {name} is {}, not running", s.state.name()))),
                    None => Err(ApiError::NoService(name)),
                };
                let _ = tx.send(reply);
            }
            Cmd::Timeline(tx) => {
                let _ = tx.send(self.timeline.clone());
            }
        }
        self.check_ready();
    }

    /// Start by hand: also clears a failed mark and the start-limit window.
    fn start_by_hand(&mut self, name: &str) -> Result<String, ApiError> {
        let Some(svc) = self.services.get(name) else { return Err(ApiError::NoService(name.to_string())) };
        if matches!(svc.state, State::Running { .. } | State::Starting) {
            return Err(ApiError::Conflict(format!("service {name} is already {}", svc.state.name())));
        }
        if let Some(r) = self.persisted.service.get_mut(name) {
            r.failed = None;
            r.exits_ms.clear();
            r.backoff_ms = 0;
        }
        self.save();
        say(&format!("service {name} started by request"));
        self.try_start(name);
        Ok(format!("starting {name}"))
    }

    fn stop_by_hand(&mut self, name: &str, manual: Manual) -> Result<String, ApiError> {
        let client = self.client.clone();
        let Some(svc) = self.services.get_mut(name) else { return Err(ApiError::NoService(name.to_string())) };
        match svc.state {
            State::Running { .. } => {
                svc.manual = Some(manual);
                runner::spawn_terminate(client, name.to_string(), svc.plan.stop_signal, svc.plan.stop_timeout);
                Ok(format!("{} {name}", if manual == Manual::Stop { "stopping" } else { "restarting" }))
            }
            State::Waiting { .. } | State::Backoff { .. } => {
                svc.state = State::Stopped;
                Ok(format!("stopped {name}"))
            }
            _ => Err(ApiError::Conflict(format!("service {name} is {}, not running", svc.state.name()))),
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.services
            .values()
            .filter_map(|s| match s.state {
                State::Backoff { until } => Some(until),
                State::Running { deadline, .. } => deadline,
                _ => None,
            })
            .min()
    }

    fn on_deadlines(&mut self) {
        let now = Instant::now();
        let names: Vec<String> = self.services.keys().cloned().collect();
        for name in names {
            let svc = &self.services[&name];
            match svc.state {
                State::Backoff { until } if until <= now => self.try_start(&name),
                State::Running { pid, ready: false, deadline: Some(d) } if d <= now => {
                    let timeout = svc.plan.start_timeout;
                    say(&format!("service {name} not ready after {} ms: stopping it", timeout.as_millis()));
                    let (signal, stop) = (svc.plan.stop_signal, svc.plan.stop_timeout);
                    if let Some(s) = self.services.get_mut(&name) {
                        s.timed_out = true;
                        s.state = State::Running { pid, ready: false, deadline: None };
                    }
                    runner::spawn_terminate(self.client.clone(), name.clone(), signal, stop);
                }
                _ => {}
            }
        }
    }

    /// Settled: ready, or never going to be without outside help (failed, exited, crash
    /// looping, or waiting on something that is itself settled and not ready).
    fn settled(&self, name: &str, depth: usize) -> bool {
        let Some(svc) = self.services.get(name) else { return true };
        match &svc.state {
            State::Running { ready, .. } => *ready,
            State::Failed { .. } | State::Exited { .. } | State::Backoff { .. } | State::Stopped => true,
            State::Starting => false,
            State::Waiting { on } => depth < 64 && on.iter().all(|d| self.settled(d, depth + 1) && !self.is_ready(d)),
        }
    }

    /// Prints the ready line once every service has settled.
    fn check_ready(&mut self) {
        if self.ready_printed || !self.services.keys().all(|n| self.settled(n, 0)) {
            return;
        }
        self.ready_printed = true;
        self.persisted.ready_done = true;
        self.save();
        let ready = self.services.keys().filter(|n| self.is_ready(n)).count();
        let ms = uptime_ms();
        self.timeline.push(("ready".to_string(), ms));
        say(&format!("ready uptime_ms={ms} services={ready}"));
        let phases: Vec<String> = self.timeline.iter().map(|(n, ms)| format!("{n}={ms}")).collect();
        say(&format!("timeline {}", phases.join(" ")));
        say(&format!("memory {}", crate::stats::memory_line(std::path::Path::new("/proc"))));
    }

    /// Services in reverse dependency order (a service stops once every service that
    /// depends on it has stopped), then the onshutdown stages.
    async fn shutdown(&mut self) {
        say("stopping services");
        let mut remaining: BTreeSet<String> = self
            .services
            .iter()
            .filter(|(_, s)| matches!(s.state, State::Running { .. } | State::Starting))
            .map(|(n, _)| n.clone())
            .collect();
        let mut stopping: BTreeSet<String> = BTreeSet::new();
        let mut stops = tokio::task::JoinSet::new();
        loop {
            let can_stop: Vec<String> = remaining
                .iter()
                .filter(|n| !stopping.contains(*n))
                .filter(|n| !remaining.iter().any(|o| self.services[o].plan.depends_on.contains(n)))
                .cloned()
                .collect();
            for name in can_stop {
                let plan = &self.services[&name].plan;
                stops.spawn(runner::stop(self.client.clone(), name.clone(), plan.stop_signal, plan.stop_timeout));
                stopping.insert(name);
            }
            let Some(done) = stops.join_next().await else { break };
            if let Ok((name, outcome)) = done {
                say(&format!("service {name} stopped ({outcome})"));
                remaining.remove(&name);
            }
        }
        for (plan, timeout) in self.onshutdown.clone() {
            match runner::run_oneshot(&self.client, &plan, timeout).await {
                Ok(status) => say(&format!("onshutdown {} exited status={status}", plan.name)),
                Err(e) => say(&format!("onshutdown {} failed: {e}", plan.name)),
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
