//! The supervisor's state machine. One task owns every service's state (DESIGN.md
//! decision 5); starting, waiting and stopping run as spawned tasks that report back over
//! a channel. Restarts use capped exponential backoff and a start limit; all timers use
//! tokio's monotonic clock.
//!
//! On start it adopts tasks that are already running in containerd (a supervisor restart
//! does not restart services) and starts the rest. SIGTERM means shutdown: every service is
//! stopped (stop signal, stop timeout, SIGKILL) and the process exits 0.

use std::collections::BTreeMap;
use std::time::Duration;

use hoist_config::manifest::BuildManifest;
use hoist_config::{Config, RestartPolicy};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::containerd::Containerd;
use crate::runner::{self, Plan};
use crate::{say, uptime_ms};

const BACKOFF_FLOOR: Duration = Duration::from_millis(100);
const BACKOFF_CAP: Duration = Duration::from_secs(30);
const STABLE_AFTER: Duration = Duration::from_secs(10);
const START_LIMIT_BURST: usize = 5;
const START_LIMIT_WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Starting,
    Running {
        pid: u32,
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
}

#[derive(Debug)]
pub enum Msg {
    Started { name: String, result: Result<u32, String> },
    Exited { name: String, status: u32 },
}

pub struct Service {
    pub plan: Plan,
    pub restart: RestartPolicy,
    pub state: State,
    pub restarts: u32,
    backoff: Duration,
    exits: Vec<Instant>,
    started_at: Option<Instant>,
    /// The first start attempt has finished (for the ready line).
    settled: bool,
}

/// What to do after an exit, by restart policy, backoff and start limit. Pure, unit-tested.
pub fn after_exit(svc: &mut Service, status: u32, now: Instant) -> State {
    let restart = match svc.restart {
        RestartPolicy::Always => true,
        RestartPolicy::OnFailure => status != 0,
        RestartPolicy::Never => false,
    };
    if !restart {
        return State::Exited { status };
    }
    if svc.started_at.is_some_and(|t| now.duration_since(t) >= STABLE_AFTER) {
        svc.backoff = BACKOFF_FLOOR;
    }
    svc.exits.retain(|t| now.duration_since(*t) < START_LIMIT_WINDOW);
    svc.exits.push(now);
    if svc.exits.len() >= START_LIMIT_BURST {
        return State::Failed {
            reason: format!(
                "start limit: {} exits within {} s (last status {status})",
                svc.exits.len(),
                START_LIMIT_WINDOW.as_secs()
            ),
        };
    }
    let delay = svc.backoff;
    svc.backoff = (svc.backoff * 2).min(BACKOFF_CAP);
    State::Backoff { until: now + delay }
}

pub struct Supervisor {
    client: Containerd,
    services: BTreeMap<String, Service>,
    tx: mpsc::UnboundedSender<Msg>,
    rx: mpsc::UnboundedReceiver<Msg>,
    timeline: Vec<(String, u128)>,
    ready_printed: bool,
}

impl Supervisor {
    pub fn new(client: Containerd, config: &Config, manifest: &BuildManifest, timeline: Vec<(String, u128)>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let services = config
            .service
            .iter()
            .map(|(name, s)| {
                let svc = Service {
                    plan: runner::plan(name, s, manifest.service.get(name)),
                    restart: s.restart,
                    state: State::Starting,
                    restarts: 0,
                    backoff: BACKOFF_FLOOR,
                    exits: Vec::new(),
                    started_at: None,
                    settled: false,
                };
                (name.clone(), svc)
            })
            .collect();
        Supervisor { client, services, tx, rx, timeline, ready_printed: false }
    }

    /// Adopts running tasks, starts the rest, then supervises until SIGTERM.
    pub async fn run(mut self) -> std::io::Result<()> {
        let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let running = match self.client.list_tasks().await {
            Ok(tasks) => tasks.into_iter().filter(|t| t.status == 2).map(|t| (t.container_id, t.pid)).collect(),
            Err(e) => {
                log::warn!("{e}: starting every service");
                BTreeMap::new()
            }
        };
        let names: Vec<String> = self.services.keys().cloned().collect();
        for name in names {
            match running.get(&name) {
                Some(pid) => {
                    say(&format!("service {name} adopted pid={pid}"));
                    self.set_running(&name, *pid);
                    runner::spawn_waiter(self.client.clone(), name, self.tx.clone());
                }
                None => self.start(&name),
            }
        }
        self.check_ready();
        loop {
            let next = self.next_deadline();
            tokio::select! {
                Some(msg) = self.rx.recv() => self.handle(msg),
                _ = sleep_until(next) => self.start_due(),
                _ = sigterm.recv() => break,
            }
        }
        self.stop_all().await;
        Ok(())
    }

    fn start(&mut self, name: &str) {
        let Some(svc) = self.services.get_mut(name) else { return };
        svc.state = State::Starting;
        svc.started_at = Some(Instant::now());
        runner::spawn_start(self.client.clone(), name.to_string(), svc.plan.clone(), self.tx.clone());
    }

    fn set_running(&mut self, name: &str, pid: u32) {
        if let Some(svc) = self.services.get_mut(name) {
            svc.state = State::Running { pid };
            svc.settled = true;
            svc.started_at.get_or_insert_with(Instant::now);
        }
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Started { name, result: Ok(pid) } => {
                let ms = uptime_ms();
                say(&format!("service {name} running pid={pid} uptime_ms={ms}"));
                if !self.ready_printed {
                    self.timeline.push((name.clone(), ms));
                }
                self.set_running(&name, pid);
                runner::spawn_waiter(self.client.clone(), name, self.tx.clone());
            }
            Msg::Started { name, result: Err(reason) } => {
                // A start that fails (missing binary, broken image) will fail the same way
                // again: the rootfs is immutable. Report it once and leave the service failed.
                say(&format!("service {name} failed: {reason}"));
                if let Some(svc) = self.services.get_mut(&name) {
                    svc.state = State::Failed { reason };
                    svc.settled = true;
                }
            }
            Msg::Exited { name, status } => self.on_exit(&name, status),
        }
        self.check_ready();
    }

    fn on_exit(&mut self, name: &str, status: u32) {
        let Some(svc) = self.services.get_mut(name) else { return };
        let now = Instant::now();
        svc.state = after_exit(svc, status, now);
        svc.settled = true;
        match &svc.state {
            State::Backoff { until } => {
                svc.restarts += 1;
                say(&format!(
                    "service {name} exited status={status}; restart in {} ms",
                    until.duration_since(now).as_millis()
                ));
            }
            State::Exited { status } => {
                say(&format!("service {name} exited status={status}; not restarted ({:?})", svc.restart));
                runner::spawn_cleanup(self.client.clone(), name.to_string());
            }
            State::Failed { reason } => {
                say(&format!("service {name} failed: {reason}"));
                runner::spawn_cleanup(self.client.clone(), name.to_string());
            }
            State::Starting | State::Running { .. } => {}
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.services
            .values()
            .filter_map(|s| match s.state {
                State::Backoff { until } => Some(until),
                _ => None,
            })
            .min()
    }

    fn start_due(&mut self) {
        let now = Instant::now();
        let due: Vec<String> = self
            .services
            .iter()
            .filter(|(_, s)| matches!(s.state, State::Backoff { until } if until <= now))
            .map(|(n, _)| n.clone())
            .collect();
        for name in due {
            self.start(&name);
        }
    }

    /// Prints the ready line once every service's first start has settled.
    fn check_ready(&mut self) {
        if self.ready_printed || !self.services.values().all(|s| s.settled) {
            return;
        }
        self.ready_printed = true;
        let running = self.services.values().filter(|s| matches!(s.state, State::Running { .. })).count();
        let ms = uptime_ms();
        self.timeline.push(("ready".to_string(), ms));
        say(&format!("ready uptime_ms={ms} services={running}"));
        let phases: Vec<String> = self.timeline.iter().map(|(n, ms)| format!("{n}={ms}")).collect();
        say(&format!("timeline {}", phases.join(" ")));
        say(&format!("memory {}", crate::stats::memory_line(std::path::Path::new("/proc"))));
    }

    async fn stop_all(&mut self) {
        say("stopping services");
        let mut stops = tokio::task::JoinSet::new();
        for (name, svc) in &self.services {
            if matches!(svc.state, State::Running { .. } | State::Starting) {
                stops.spawn(runner::stop(
                    self.client.clone(),
                    name.clone(),
                    svc.plan.stop_signal,
                    svc.plan.stop_timeout,
                ));
            }
        }
        while let Some(done) = stops.join_next().await {
            if let Ok((name, outcome)) = done {
                say(&format!("service {name} stopped ({outcome})"));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(restart: RestartPolicy) -> Service {
        Service {
            plan: Plan::default(),
            restart,
            state: State::Running { pid: 1 },
            restarts: 0,
            backoff: BACKOFF_FLOOR,
            exits: Vec::new(),
            started_at: None,
            settled: true,
        }
    }

    #[test]
    fn policies_decide_restarts() {
        let now = Instant::now();
        assert_eq!(after_exit(&mut svc(RestartPolicy::OnFailure), 0, now), State::Exited { status: 0 });
        assert!(matches!(after_exit(&mut svc(RestartPolicy::OnFailure), 1, now), State::Backoff { .. }));
        assert!(matches!(after_exit(&mut svc(RestartPolicy::Always), 0, now), State::Backoff { .. }));
        assert_eq!(after_exit(&mut svc(RestartPolicy::Never), 137, now), State::Exited { status: 137 });
    }

    #[test]
    fn backoff_doubles_then_the_start_limit_fails_the_service() {
        let mut s = svc(RestartPolicy::Always);
        let t0 = Instant::now();
        let mut delays = Vec::new();
        for i in 0..START_LIMIT_BURST as u64 {
            let now = t0 + Duration::from_millis(i);
            s.started_at = Some(now);
            match after_exit(&mut s, 1, now) {
                State::Backoff { until } => delays.push(until.duration_since(now).as_millis()),
                State::Failed { reason } => {
                    assert!(reason.contains("start limit"), "{reason}");
                    delays.push(0);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(delays, [100, 200, 400, 800, 0]);
    }

    #[test]
    fn a_long_run_resets_the_backoff() {
        let mut s = svc(RestartPolicy::Always);
        let t0 = Instant::now();
        s.backoff = Duration::from_secs(8);
        s.started_at = Some(t0);
        let later = t0 + Duration::from_secs(20);
        assert_eq!(after_exit(&mut s, 1, later), State::Backoff { until: later + BACKOFF_FLOOR });
    }
}
