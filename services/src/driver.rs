//! The async loop around the core ([`crate::core`]): one loop for every phase. It feeds
//! the core its inputs (results of containerd calls, readiness, sd_notify, timers, control
//! commands, SIGTERM) with the boot time, and carries out the effects it returns, each
//! containerd call in a task of its own that reports back over one channel. Containers are
//! reached through the [`Runtime`] trait; [`crate::runner`] implements it over containerd.
//!
//! PID 1's network state file ([`hoist_guest::network`]) is read at start and, while
//! absent, polled by a task of its own until it parses; the core gets it as
//! [`Input::Network`], and again each time it changes (a DHCP lease that comes late, or
//! ends), polled once a second.
//!
//! The control API is answered from the first moment, before containerd answers: queries
//! from the core's view, commands by the core, which refuses with the reason when it
//! cannot act (connecting, onboot, failed boot, shutdown).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};

use crate::api::server::{Cmd, Rollout, to_status};
use crate::apply::Generations;
use crate::core::{Command, Core, Effect, Input, Ms, Plan, StartError};
use crate::{say, state};
use hoist_api::pb;
use hoist_guest::network;

/// How often a state file PID 1 writes once (the network's, a volume's) is looked for:
/// often while PID 1 is expected to write it (seconds into the boot), then rarely, so
/// that one never written costs next to nothing.
const NETWORK_POLL: Duration = Duration::from_millis(25);
const NETWORK_POLL_SLOW: Duration = Duration::from_secs(1);
/// How long the fast polling lasts.
const NETWORK_POLL_FAST_FOR: Duration = Duration::from_secs(120);

/// What the driver needs of the container runtime. Every call is one task's work; a call
/// cut by the runtime going away reports [`WaitError::Lost`] where it matters.
pub trait Runtime: Clone + Send + Sync + 'static {
    /// The running tasks: name -> pid.
    fn running(&self) -> impl Future<Output = Result<BTreeMap<String, u32>, String>> + Send;
    /// Creates and starts the container; the pid of its main process.
    fn start(&self, plan: Plan) -> impl Future<Output = Result<u32, StartError>> + Send;
    /// Until the task (main process `pid`) exits: its status and whether the OOM killer
    /// ended it.
    fn wait(&self, name: String, pid: u32) -> impl Future<Output = Result<(u32, bool), WaitError>> + Send;
    fn signal(&self, name: String, signal: i32) -> impl Future<Output = Result<(), String>> + Send;
    fn cleanup(&self, name: String) -> impl Future<Output = ()> + Send;
    /// True once the service is ready per its plan; false when the run is gone first.
    fn probe(&self, plan: Plan, pid: u32) -> impl Future<Output = bool> + Send;
    /// Runs a one-shot container to its end and removes it: its exit status.
    fn run_stage(&self, plan: Plan) -> impl Future<Output = Result<u32, String>> + Send;
}

#[derive(Debug)]
pub enum WaitError {
    /// containerd went away; the task may well still run.
    Lost(String),
    Other(String),
}

/// Everything the loop owns.
pub struct Driver<R: Runtime> {
    core: Core,
    runtime: Option<R>,
    tx: mpsc::UnboundedSender<Input>,
    rx: mpsc::UnboundedReceiver<Input>,
    events: broadcast::Sender<pb::Event>,
    state_path: PathBuf,
    /// Services whose sd_notify socket is bound.
    notify: BTreeSet<String>,
    generations: Generations,
    /// The booted config's volumes: every one is watched, so that a service an apply
    /// binds to one later finds it mounted.
    volumes: Vec<String>,
}

/// Boot time in ms (CLOCK_BOOTTIME).
pub fn now() -> Ms {
    crate::uptime_ms() as Ms
}

impl<R: Runtime> Driver<R> {
    pub fn new(
        core: Core,
        events: broadcast::Sender<pb::Event>,
        state_path: PathBuf,
        generations: Generations,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let volumes = Vec::new();
        Driver { core, runtime: None, tx, rx, events, state_path, notify: BTreeSet::new(), generations, volumes }
    }

    /// Watches the state files of these volumes (the booted config's), besides the ones
    /// the services bind.
    pub fn watch_volumes(mut self, names: impl IntoIterator<Item = String>) -> Self {
        self.volumes.extend(names);
        self
    }

    /// Feeds the core the input a state file PID 1 writes once makes (`make`), now if it is
    /// written, or once it is ([`watch_pid1_file`]).
    fn input_when_written(
        &mut self,
        path: PathBuf,
        make: impl Fn(&str) -> Option<Input> + Send + 'static,
        waiting: String,
        follow: bool,
    ) {
        let seen = read_pid1_file(&path).filter(|text| make(text).is_some());
        if let Some(input) = seen.as_deref().and_then(&make) {
            let fx = self.core.handle(now(), input);
            self.execute(fx);
            if !follow {
                return;
            }
        }
        watch_pid1_file(path, make, waiting, seen, follow, self.tx.clone());
    }

    /// Runs until the core says everything stopped. `connect` yields the runtime once
    /// containerd answers; `shutdown` yields on every SIGTERM.
    pub async fn run(
        mut self,
        connect: impl Future<Output = R>,
        mut cmds: mpsc::UnboundedReceiver<Cmd>,
        mut shutdown: mpsc::UnboundedReceiver<()>,
    ) {
        let mut connect = std::pin::pin!(connect);
        // Read before any other input, so that a restarted supervisor never sees the
        // network as not reached when PID 1 is long done with it.
        let network = PathBuf::from(hoist_guest::paths::NETWORK_STATE);
        self.input_when_written(network, network_input, "services that depend on network".into(), true);
        let mut volumes = self.core.volumes_bound();
        volumes.extend(self.volumes.iter().cloned());
        for name in volumes {
            let path = hoist_guest::volume::state_path(&name);
            let waiting = format!("services that bind volume {name}");
            self.input_when_written(path, volume_input(name), waiting, false);
        }
        loop {
            let deadline = self.core.next_deadline();
            let fx = tokio::select! {
                rt = &mut connect, if self.runtime.is_none() => {
                    self.spawn_list(rt.clone());
                    self.runtime = Some(rt);
                    Vec::new()
                }
                Some(input) = self.rx.recv() => self.core.handle(now(), input),
                Some(cmd) = cmds.recv() => self.on_cmd(cmd),
                _ = sleep_until(deadline) => self.core.handle(now(), Input::Timer),
                Some(()) = shutdown.recv() => self.core.handle(now(), Input::Shutdown),
            };
            if self.execute(fx) {
                return;
            }
        }
    }

    /// Carries out effects; true when the core is done.
    fn execute(&mut self, effects: Vec<Effect>) -> bool {
        let mut exit = false;
        let mut persist = false;
        for effect in effects {
            match effect {
                Effect::Say(line) => say(&line),
                Effect::Warn(w) => log::warn!("{w}"),
                Effect::Event(e) => {
                    let _ = self.events.send(crate::api::server::event_to_pb(e));
                }
                Effect::Progress(p) => self.generations.on_progress(now(), &p),
                // Once per batch, after the effects that led to it were started.
                Effect::Persist => persist = true,
                Effect::Settled => {
                    let memory = crate::stats::memory(std::path::Path::new("/proc"));
                    say(&hoist_guest::console::Line::Memory(memory).body().to_string());
                }
                Effect::Exit => exit = true,
                effect => self.call(effect),
            }
        }
        if persist && let Err(e) = state::save(&self.state_path, self.core.persisted()) {
            log::warn!("{}: {e}", self.state_path.display());
        }
        exit
    }

    /// An effect that calls the runtime, in a task that reports back.
    fn call(&mut self, effect: Effect) {
        let Some(rt) = self.runtime.clone() else {
            log::warn!("{effect:?} before containerd answered: dropped");
            return;
        };
        let tx = self.tx.clone();
        match effect {
            Effect::Start { name } => {
                let Some(plan) = self.core.plan(&name).cloned() else { return };
                self.listen_notify(&plan);
                tokio::spawn(async move {
                    let result = rt.start(plan).await;
                    let _ = tx.send(Input::Started { name, result });
                });
            }
            Effect::Wait { name, pid } => {
                tokio::spawn(async move {
                    let mut warned = false;
                    loop {
                        match rt.wait(name.clone(), pid).await {
                            Ok((status, oom)) => {
                                let _ = tx.send(Input::Exited { name, pid, status, oom });
                                return;
                            }
                            Err(WaitError::Lost(e)) => {
                                if !warned {
                                    log::debug!("lost containerd while waiting for {name}: {e}; retrying");
                                    let _ = tx.send(Input::Lost);
                                    warned = true;
                                }
                                tokio::time::sleep(Duration::from_millis(250)).await;
                            }
                            Err(WaitError::Other(e)) => {
                                log::warn!("{e}");
                                let _ = tx.send(Input::Exited { name, pid, status: 255, oom: false });
                                return;
                            }
                        }
                    }
                });
            }
            Effect::Probe { name, pid } => {
                let Some(plan) = self.core.plan(&name).cloned() else { return };
                tokio::spawn(async move {
                    if rt.probe(plan, pid).await {
                        let _ = tx.send(Input::Ready { name, pid });
                    }
                });
            }
            Effect::Signal { name, signal } => {
                tokio::spawn(async move {
                    if let Err(error) = rt.signal(name.clone(), signal).await {
                        let _ = tx.send(Input::SignalFailed { name, error });
                    }
                });
            }
            Effect::Cleanup { name } => {
                tokio::spawn(async move { rt.cleanup(name).await });
            }
            Effect::LeaveBridge { name, subnet } => {
                tokio::spawn(async move {
                    rt.cleanup(name.clone()).await;
                    let left = tokio::task::spawn_blocking(move || {
                        crate::bridge::release(&name, subnet).map_err(|e| format!("{name} leaving the bridge: {e}"))
                    })
                    .await;
                    match left {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => log::warn!("{e}"),
                        Err(e) => log::warn!("leaving the bridge: {e}"),
                    }
                });
            }
            Effect::RunStage { name } => {
                let Some(stage) = self.core.stage_plan(&name).cloned() else { return };
                tokio::spawn(async move {
                    let result = rt.run_stage(stage.plan).await;
                    let _ = tx.send(Input::StageDone { name, result });
                });
            }
            // The core asks once per loss.
            Effect::Reconnect => self.spawn_list(rt),
            _ => {}
        }
    }

    /// Polls the runtime's task list until it answers; reports `Connected`.
    fn spawn_list(&mut self, rt: R) {
        let tx = self.tx.clone();
        tokio::spawn(async move {
            loop {
                match rt.running().await {
                    Ok(running) => {
                        let _ = tx.send(Input::Connected { running });
                        return;
                    }
                    Err(e) => log::debug!("containerd task list: {e}; retrying"),
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
    }

    /// Binds the sd_notify socket of a `ready = { notify = true }` service, once.
    fn listen_notify(&mut self, plan: &Plan) {
        if plan.ready != hoist_config::Ready::Notify || self.notify.contains(&plan.name) {
            return;
        }
        match crate::notify::listen(&plan.name, self.tx.clone()) {
            Ok(()) => {
                self.notify.insert(plan.name.clone());
            }
            Err(e) => log::warn!("service {}: notify socket: {e}", plan.name),
        }
    }

    fn on_cmd(&mut self, cmd: Cmd) -> Vec<Effect> {
        let now = now();
        match cmd {
            Cmd::Status(tx) => {
                let services = self.core.status(now).into_iter().map(crate::api::server::to_pb).collect();
                let mut problems = pid1_problems(std::path::Path::new(hoist_guest::paths::PROBLEMS));
                problems.extend(self.core.problems(now));
                let network = self.core.network_summary().unwrap_or_default();
                let _ = tx.send(pb::StatusReply { services, problems, network });
            }
            Cmd::Describe(name, tx) => {
                let detail = self.core.describe(now, &name).map(|(view, events)| pb::ServiceDetail {
                    status: Some(crate::api::server::to_pb(view)),
                    events: events.into_iter().map(crate::api::server::event_to_pb).collect(),
                });
                let _ = tx.send(detail);
            }
            Cmd::Act(command, tx) => {
                let (reply, fx) = self.core.command(now, command);
                let _ = tx.send(reply);
                return fx;
            }
            Cmd::ExecPlan(name, tx) => {
                let _ = tx.send(self.core.exec_process(&name));
            }
            Cmd::Timeline(tx) => {
                let _ = tx.send(self.core.timeline().to_vec());
            }
            Cmd::Plan(req, tx) => {
                let plan = self.generations.plan(&req, crate::candidate::Missing::Allow);
                let reply = plan.map(|(c, d)| self.generations.plan_reply(&c, &d));
                let _ = tx.send(reply);
            }
            Cmd::Apply(req, tx) => {
                if let Some(g) = self.core.rollout_generation() {
                    let _ = tx.send(Err(tonic::Status::aborted(format!(
                        "generation {g} is being applied or is tentative; one apply at a time"
                    ))));
                    return Vec::new();
                }
                match self.generations.begin(&req) {
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                    Ok((plan, None)) => {
                        let _ = tx.send(Ok(Rollout { generation: plan.current, plan, progress: None }));
                    }
                    Ok((plan, Some(apply))) => return self.start_rollout(now, plan, apply, tx),
                }
            }
            Cmd::Rollback(target, tx) => {
                if let Some(generation) = self.core.rollout_generation() {
                    if target.is_some_and(|t| t != generation) {
                        let _ = tx.send(Err(tonic::Status::failed_precondition(format!(
                            "generation {generation} is being applied or is tentative: `hoist ctl rollback` without a \
                             generation rolls it back"
                        ))));
                        return Vec::new();
                    }
                    // The tentative generation (or the one under way) is what gets undone.
                    let progress = Some(self.generations.subscribe());
                    let (reply, fx) = self.core.command(now, Command::Reject);
                    let reply = reply.map(|_| Rollout { generation, plan: Default::default(), progress });
                    let _ = tx.send(reply.map_err(to_status));
                    return fx;
                }
                match self.generations.begin_rollback(target) {
                    Ok((plan, apply)) => return self.start_rollout(now, plan, apply, tx),
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            }
            Cmd::History(tx) => {
                let _ = tx.send(self.generations.history());
            }
            Cmd::Busy(tx) => {
                let _ = tx.send(self.core.rollout_generation());
            }
        }
        Vec::new()
    }

    /// Hands a generation to the core, with a progress stream subscribed before anything moves.
    fn start_rollout(
        &mut self,
        now: Ms,
        plan: pb::PlanReply,
        apply: crate::core::Apply,
        tx: tokio::sync::oneshot::Sender<Result<Rollout, tonic::Status>>,
    ) -> Vec<Effect> {
        let generation = apply.generation;
        let progress = Some(self.generations.subscribe());
        let (reply, fx) = self.core.command(now, Command::Apply(Box::new(apply)));
        match reply {
            Ok(_) => {
                let _ = tx.send(Ok(Rollout { generation, plan, progress }));
            }
            Err(e) => {
                self.generations.abandon(generation, &e.to_string());
                let _ = tx.send(Err(to_status(e)));
            }
        }
        fx
    }
}

/// The network target reached, from PID 1's state file's text.
fn network_input(text: &str) -> Option<Input> {
    network::State::parse(text).map(Input::Network)
}

/// Volume `name`'s setup ended, from the helper's state file's text.
fn volume_input(name: String) -> impl Fn(&str) -> Option<Input> + Send + 'static {
    move |text| hoist_guest::volume::State::parse(text).map(|state| Input::Volume { name: name.clone(), state })
}

/// Polls `path` until `make` turns its text into an input, then sends it: once, or with
/// `follow` again whenever the text changes (from `seen`, the text already handled). PID 1
/// replaces these files whole; no deadline here (a volume may take its `wait` and then a
/// check), but a warning says who waits when it is late.
fn watch_pid1_file(
    path: PathBuf,
    make: impl Fn(&str) -> Option<Input> + Send + 'static,
    waiting: String,
    mut seen: Option<String>,
    follow: bool,
    tx: mpsc::UnboundedSender<Input>,
) {
    tokio::spawn(async move {
        let fast_until = tokio::time::Instant::now() + NETWORK_POLL_FAST_FOR;
        let mut every = if seen.is_some() { NETWORK_POLL_SLOW } else { NETWORK_POLL };
        loop {
            if let Some(text) = read_pid1_file(&path)
                && seen.as_ref() != Some(&text)
                && let Some(input) = make(&text)
            {
                if tx.send(input).is_err() || !follow {
                    return;
                }
                seen = Some(text);
                every = NETWORK_POLL_SLOW;
            }
            if seen.is_none() && every == NETWORK_POLL && tokio::time::Instant::now() >= fast_until {
                let secs = NETWORK_POLL_FAST_FOR.as_secs();
                log::warn!("{}: not written after {secs} s; {waiting} wait", path.display());
                every = NETWORK_POLL_SLOW;
            }
            tokio::time::sleep(every).await;
        }
    });
}

/// The text of a state file PID 1 writes; None while it is absent. Bounded: the state is
/// one short line.
fn read_pid1_file(path: &Path) -> Option<String> {
    let mut text = String::new();
    std::fs::File::open(path).ok()?.take(4 << 10).read_to_string(&mut text).ok()?;
    Some(text)
}

/// The input a state file PID 1 wrote at `path` makes, once it has; None while the file
/// is absent or does not parse.
#[cfg(test)]
fn pid1_input(path: &Path, make: &impl Fn(&str) -> Option<Input>) -> Option<Input> {
    make(&read_pid1_file(path)?)
}

/// PID 1's problems, one per line; bounded, since it is read on every status call.
fn pid1_problems(path: &Path) -> Vec<String> {
    let mut text = String::new();
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.take(64 << 10).read_to_string(&mut text);
    }
    text.lines().filter(|l| !l.is_empty()).map(str::to_string).collect()
}

async fn sleep_until(at: Option<Ms>) {
    match at {
        Some(at) => tokio::time::sleep(Duration::from_millis(at.saturating_sub(now()))).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid1_problems_are_read_line_by_line_and_a_missing_file_is_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("problems");
        assert!(pid1_problems(&path).is_empty());
        std::fs::write(&path, "module kvm_intel did not load\n\ncontainerd marked failed\n").expect("write");
        assert_eq!(pid1_problems(&path), ["module kvm_intel did not load", "containerd marked failed"]);
    }

    #[test]
    fn the_network_state_is_read_once_it_parses() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("network");
        assert_eq!(pid1_input(&path, &network_input), None);
        std::fs::write(&path, "sideways\n").expect("write");
        assert_eq!(pid1_input(&path, &network_input), None);
        let up = network::State::up(2100);
        std::fs::write(&path, up.format()).expect("write");
        assert_eq!(pid1_input(&path, &network_input), Some(Input::Network(up)));
        let down = network::State::degraded(7000, "no carrier on eth0");
        std::fs::write(&path, down.format()).expect("write");
        assert_eq!(pid1_input(&path, &network_input), Some(Input::Network(down)));
        let volume = dir.path().join("data");
        let mounted = hoist_guest::volume::State::Mounted { uptime_ms: 9, device: "/dev/vda".into(), uuid: "u".into() };
        std::fs::write(&volume, mounted.format()).expect("write");
        let want = Input::Volume { name: "data".into(), state: mounted };
        assert_eq!(pid1_input(&volume, &volume_input("data".into())), Some(want));
    }

    #[tokio::test]
    async fn the_network_state_is_sent_once_it_is_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("network");
        let (tx, mut rx) = mpsc::unbounded_channel();
        watch_pid1_file(path.clone(), network_input, "services that depend on network".into(), None, false, tx);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(rx.try_recv().is_err());
        let up = network::State::up(2100);
        std::fs::write(&path, up.format()).expect("write");
        let got = tokio::time::timeout(Duration::from_secs(1), rx.recv()).await.expect("sent within a poll");
        assert_eq!(got, Some(Input::Network(up)));
        // Once: the task is gone, and with it the sender.
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn a_followed_state_is_sent_again_when_it_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("network");
        let down = network::State::degraded(7000, "no DHCP lease on eth0 after 5 s; still trying");
        std::fs::write(&path, down.format()).expect("write");
        let (tx, mut rx) = mpsc::unbounded_channel();
        // The text already handled is not sent again.
        watch_pid1_file(path.clone(), network_input, "x".into(), Some(down.format()), true, tx);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(rx.try_recv().is_err());
        let up = network::State { detail: Some("DHCP 10.0.2.15/24 on eth0".into()), ..network::State::up(9000) };
        std::fs::write(&path, up.format()).expect("write");
        let got = tokio::time::timeout(Duration::from_secs(3), rx.recv()).await.expect("sent within a poll");
        assert_eq!(got, Some(Input::Network(up)));
        std::fs::write(&path, down.format()).expect("write");
        let got = tokio::time::timeout(Duration::from_secs(3), rx.recv()).await.expect("sent within a poll");
        assert_eq!(got, Some(Input::Network(down)));
    }
}
