//! The supervisor's decisions: a pure state machine with no I/O, no tokio and no clock
//! (DESIGN.md decision 7). It holds the desired state (a [`Desired`]: every service's plan
//! and the one-shot stages) and the observed state of every service, takes [`Input`]s
//! (task started, exited or adopted, readiness, a timer, a control command, containerd lost
//! or back, the network target reached, shutdown, a new desired config) with the boot-time
//! in milliseconds, and returns the [`Effect`]s to carry out. The driver
//! ([`crate::driver`]) executes them against containerd and feeds the results back as
//! inputs.
//!
//! Phases, one machine for all of them: connecting to containerd, the onboot stages, a
//! failed required onboot (the host stays up, services do not start), services up, and
//! shutdown (services stop in reverse dependency order, then the onshutdown stages run).
//! The built-in `network` target ([`hoist_guest::network`]) is reached once per boot, when
//! PID 1's network setup ends, up or degraded: a service that lists it in `depends_on` waits
//! for [`Input::Network`] as for a dependency to be ready; the others never wait for it.
//! A service that binds a volume waits the same way for its target (`volume:NAME`,
//! [`Input::Volume`]), which is reached only when PID 1's helper mounted it: a volume that
//! failed leaves the services that bind it waiting, with the reason, and the rest run.
//!
//! Every timer is a deadline the core keeps ([`Core::next_deadline`]); the driver sleeps
//! until it and sends [`Input::Timer`].
//!
//! What must survive a supervisor restart is in [`Persisted`]: a new core adopts the tasks
//! containerd still runs, keeps services down that were stopped by hand or exited under
//! their policy, and waits out the rest of a backoff.

mod desired;
mod rollout;
mod run;
mod stop;
#[cfg(test)]
mod tests;
mod view;

use std::collections::{BTreeMap, VecDeque};

pub use crate::plan::{Desired, Plan, Stage};
use hoist_guest::console::Line;
use hoist_guest::{network, volume};

use crate::state::Persisted;
pub use rollout::{Apply, FINAL_KINDS, Progress};
pub use view::{Event, ServiceView};

/// CLOCK_BOOTTIME milliseconds: keeps counting across supervisor restarts, ignores
/// wall-clock jumps.
pub type Ms = u64;

/// Recent events kept per service for `describe`.
pub const RECENT_EVENTS: usize = 32;
/// After SIGKILL, how long a task may take to be reported gone before we stop waiting.
pub const KILL_GRACE_MS: Ms = 5_000;
/// A shutdown asked before containerd answers waits this long for it (to stop what runs
/// in order), then gives up and leaves the rest to PID 1's sweep.
pub const CONNECT_GRACE_MS: Ms = 10_000;

#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// containerd answers; these tasks run (name, pid). The first one adopts them.
    Connected {
        running: BTreeMap<String, u32>,
    },
    /// A call was cut by containerd going away.
    Lost,
    Started {
        name: String,
        result: Result<u32, StartError>,
    },
    Exited {
        name: String,
        pid: u32,
        status: u32,
        oom: bool,
    },
    /// A readiness probe passed for this run.
    Ready {
        name: String,
        pid: u32,
    },
    /// sd_notify `READY=1` from this pid.
    Notify {
        name: String,
        pid: u32,
    },
    /// A signal could not be delivered.
    SignalFailed {
        name: String,
        error: String,
    },
    /// A one-shot stage ended: its exit status, or why it could not run.
    StageDone {
        name: String,
        result: Result<u32, String>,
    },
    /// PID 1's network setup ended (its state file parsed): the `network` target is
    /// reached, degraded or not. Fed once per supervisor; later ones are ignored.
    Network(network::State),
    /// PID 1's volume helper is done with volume `name` (its state file parsed): the
    /// target [`hoist_guest::volume::target`] is reached when it is mounted. Fed once per
    /// volume; later ones are ignored.
    Volume {
        name: String,
        state: volume::State,
    },
    /// The driver's sleep until [`Core::next_deadline`] ended.
    Timer,
    /// SIGTERM: stop everything in order, then exit.
    Shutdown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartError {
    pub reason: String,
    /// The same start fails the same way again (no image, bad spec): not retried.
    pub permanent: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Create and start the service's container from [`Core::plan`]; report `Started`.
    Start {
        name: String,
    },
    /// Wait for the task to exit (across containerd restarts); report `Exited`.
    Wait {
        name: String,
        pid: u32,
    },
    /// Run the service's readiness probe for this run; report `Ready`.
    Probe {
        name: String,
        pid: u32,
    },
    /// Signal every process of the task; report `SignalFailed` if it could not.
    Signal {
        name: String,
        signal: i32,
    },
    /// Remove what is left of the container in containerd.
    Cleanup {
        name: String,
    },
    /// The service is off the bridge for good (removed, or replaced by a version on another
    /// network): once its container is gone, free its namespace, address and rules.
    LeaveBridge {
        name: String,
        subnet: hoist_config::Ipv4Cidr,
    },
    /// Run a one-shot stage (plan from [`Core::stage_plan`]) to its end; report `StageDone`.
    RunStage {
        name: String,
    },
    /// Poll containerd until it answers; report `Connected`.
    Reconnect,
    /// A console line (`hoist: ...`).
    Say(String),
    /// A warning for the supervisor's own log.
    Warn(String),
    Event(Event),
    /// A step of the rollout of a generation.
    Progress(Progress),
    /// Write [`Core::persisted`].
    Persist,
    /// Every service settled: print the memory figures after the ready line.
    Settled,
    /// Everything stopped: the supervisor exits.
    Exit,
}

/// A control command that changes something.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Start(String),
    Stop(String),
    Restart(String),
    /// Roll a new generation out ([`Apply`]).
    Apply(Box<Apply>),
    /// Keep the tentative generation.
    Confirm,
    /// Roll the tentative generation back now.
    Reject,
}

/// Why a command was not carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("no service {0:?}")]
    NoService(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Invalid(String),
    /// Another apply is under way (or tentative).
    #[error("{0}")]
    Busy(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum State {
    /// Not started yet: dependencies not ready (named), or the boot has not reached services.
    Waiting {
        on: Vec<String>,
    },
    /// Start asked of containerd; `then` is set when a stop was asked meanwhile.
    Starting {
        notified: Option<u32>,
        then: Option<After>,
    },
    Running {
        pid: u32,
        ready: bool,
        deadline: Option<Ms>,
    },
    /// Stop signal sent; SIGKILL at `kill_at`, given up at `give_up_at`.
    Stopping {
        pid: u32,
        then: After,
        kill_at: Option<Ms>,
        give_up_at: Option<Ms>,
        killed: bool,
    },
    Backoff {
        until: Ms,
    },
    /// Ended and not restarted, by policy.
    Exited {
        status: u32,
    },
    Failed {
        reason: String,
    },
    /// Stopped by hand; stays stopped until started by hand.
    Stopped,
}

/// What happens once a stopping task is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// Stopped by hand: stays down.
    Stop,
    /// Restarted by hand: start again at once.
    Restart,
    /// Not ready within its start timeout: a failure under the restart policy.
    TimedOut,
    /// The host shuts down.
    Shutdown,
    /// Its plan changed: start the new one.
    Replace,
    /// It left the config: forget it.
    Remove,
}

impl After {
    /// Whether this reason for a stop replaces `current`, one already under way: a shutdown
    /// or a removal wins over anything; a new version over anything but a shutdown or a
    /// stop by hand.
    fn wins_over(self, current: After) -> bool {
        match self {
            After::Shutdown | After::Remove => true,
            After::Replace => !matches!(current, After::Shutdown | After::Stop),
            _ => false,
        }
    }
}

impl State {
    pub fn name(&self) -> &'static str {
        match self {
            State::Waiting { .. } => "waiting",
            State::Starting { .. } => "starting",
            State::Running { .. } => "running",
            State::Stopping { .. } => "stopping",
            State::Backoff { .. } => "backoff",
            State::Exited { .. } => "exited",
            State::Failed { .. } => "failed",
            State::Stopped => "stopped",
        }
    }

    /// Being stopped to be forgotten (it left the config).
    fn removing(&self) -> bool {
        matches!(self, State::Stopping { then: After::Remove, .. } | State::Starting { then: Some(After::Remove), .. })
    }

    /// A task exists (or is being made) for it.
    fn active(&self) -> bool {
        matches!(self, State::Starting { .. } | State::Running { .. } | State::Stopping { .. })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Svc {
    /// The plan of the current (or next) run.
    pub plan: Plan,
    pub state: State,
    pub recent: VecDeque<Event>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    /// containerd has not answered yet.
    Connecting,
    /// `[[onboot]]` stage `index` runs.
    Onboot {
        index: usize,
    },
    /// A required onboot stage failed; services do not start.
    BootFailed {
        reason: String,
    },
    Up,
    /// Services stop in reverse dependency order.
    Stopping,
    /// `[[onshutdown]]` stage `index` runs.
    Onshutdown {
        index: usize,
    },
    Done,
}

/// The one stage that runs, and its deadlines.
#[derive(Debug, Clone, PartialEq)]
struct StageRun {
    name: String,
    started: Ms,
    deadline: Ms,
    /// SIGKILLed at its deadline (or by a shutdown); given up on at this time.
    give_up_at: Option<Ms>,
}

pub struct Core {
    desired: Desired,
    services: BTreeMap<String, Svc>,
    persisted: Persisted,
    phase: Phase,
    stage: Option<StageRun>,
    /// A shutdown was asked while an onboot stage ran.
    stop_after_stage: bool,
    /// A shutdown was asked before containerd answered: stop what runs once it does,
    /// or give up at this time.
    stop_when_connected: Option<Ms>,
    connected: bool,
    lost_at: Option<Ms>,
    /// How PID 1's network setup ended, once it has: the `network` target is reached.
    network: Option<network::State>,
    /// How each volume's setup ended, once it has.
    volumes: BTreeMap<String, volume::State>,
    timeline: Vec<(String, Ms)>,
    /// The generation being applied, tentative, or rolled back.
    rollout: Option<rollout::Rollout>,
    out: Vec<Effect>,
}

impl Core {
    /// A core for `desired`, remembering what an earlier supervisor of this boot persisted.
    pub fn new(desired: Desired, persisted: Persisted, timeline: Vec<(String, Ms)>) -> Self {
        let services = desired.services.iter().map(|(name, plan)| (name.clone(), Svc::new(plan.clone()))).collect();
        Core {
            desired,
            services,
            persisted,
            phase: Phase::Connecting,
            stage: None,
            stop_after_stage: false,
            stop_when_connected: None,
            connected: false,
            lost_at: None,
            network: None,
            volumes: BTreeMap::new(),
            timeline,
            rollout: None,
            out: Vec::new(),
        }
    }

    /// Takes one input at boot-time `now`; returns what to do.
    pub fn handle(&mut self, now: Ms, input: Input) -> Vec<Effect> {
        match input {
            Input::Connected { running } => self.on_connected(now, running),
            Input::Lost => self.on_lost(now),
            Input::Started { name, result } => self.on_started(now, &name, result),
            Input::Exited { name, pid, status, oom } => self.on_exit(now, &name, pid, status, oom),
            Input::Ready { name, pid } => self.on_ready(now, &name, pid),
            Input::Notify { name, pid } => self.on_notify(now, &name, pid),
            Input::SignalFailed { name, error } => self.out.push(Effect::Warn(format!("service {name}: {error}"))),
            Input::StageDone { name, result } => self.on_stage_done(now, &name, result),
            Input::Network(state) => self.on_network(now, state),
            Input::Volume { name, state } => self.on_volume(now, name, state),
            Input::Timer => self.on_timer(now),
            Input::Shutdown => self.on_shutdown(now),
        }
        self.after(now)
    }

    /// A control command; the reply and what to do.
    pub fn command(&mut self, now: Ms, cmd: Command) -> (Result<String, Refused>, Vec<Effect>) {
        let reply = self.on_command(now, cmd);
        (reply, self.after(now))
    }

    /// The earliest time a timer is due.
    pub fn next_deadline(&self) -> Option<Ms> {
        let services = self.services.values().filter_map(|s| match s.state {
            State::Backoff { until } => Some(until),
            State::Running { deadline, .. } => deadline,
            State::Stopping { kill_at, give_up_at, .. } => kill_at.or(give_up_at),
            _ => None,
        });
        let stage = self.stage.as_ref().map(|s| s.give_up_at.unwrap_or(s.deadline));
        let rollout = self.rollout.as_ref().and_then(|r| r.deadline());
        services.chain(stage).chain(self.stop_when_connected).chain(rollout).min()
    }

    /// The plan a `Start` effect means.
    pub fn plan(&self, name: &str) -> Option<&Plan> {
        self.services.get(name).map(|s| &s.plan)
    }

    /// The plan a `RunStage` effect means.
    pub fn stage_plan(&self, name: &str) -> Option<&Stage> {
        let list = match self.phase {
            Phase::Onboot { .. } => &self.desired.onboot,
            _ => &self.desired.onshutdown,
        };
        list.iter().find(|s| s.plan.name == name)
    }

    pub fn persisted(&self) -> &Persisted {
        &self.persisted
    }

    pub fn timeline(&self) -> &[(String, Ms)] {
        &self.timeline
    }

    /// Work that follows any input: settle the ready line, move the shutdown on.
    fn after(&mut self, now: Ms) -> Vec<Effect> {
        self.check_settled(now);
        self.check_rollout(now);
        self.advance_shutdown(now);
        std::mem::take(&mut self.out)
    }

    fn say(&mut self, line: String) {
        self.out.push(Effect::Say(line));
    }

    /// A line others read (the tests, boot-bench): said in the contract's grammar.
    fn print(&mut self, line: Line) {
        self.say(line.body().to_string());
    }

    /// Records an event for `describe` and the event stream.
    fn emit(&mut self, now: Ms, service: &str, kind: &'static str, detail: String) {
        let event = Event { uptime_ms: now, service: service.to_string(), kind, detail };
        if let Some(svc) = self.services.get_mut(service) {
            if svc.recent.len() == RECENT_EVENTS {
                svc.recent.pop_front();
            }
            svc.recent.push_back(event.clone());
        }
        self.out.push(Effect::Event(event));
    }

    fn set_state(&mut self, name: &str, state: State) {
        if let Some(svc) = self.services.get_mut(name) {
            svc.state = state;
        }
    }

    fn record(&mut self, name: &str) -> &mut crate::state::Record {
        self.persisted.service.entry(name.to_string()).or_default()
    }

    fn on_lost(&mut self, now: Ms) {
        if self.lost_at.is_none() && self.connected {
            self.lost_at = Some(now);
            self.say("lost containerd; services keep running, waiting for it to come back".into());
            self.out.push(Effect::Reconnect);
        }
    }

    fn on_connected(&mut self, now: Ms, running: BTreeMap<String, u32>) {
        if self.connected {
            if let Some(since) = self.lost_at.take() {
                let n = running.len();
                self.print(Line::ContainerdBack { after_ms: now.saturating_sub(since), tasks: n });
            }
            return;
        }
        self.connected = true;
        self.print(Line::Phase { name: "containerd".into(), uptime_ms: now });
        self.timeline.push(("containerd".into(), now));
        if self.phase != Phase::Connecting {
            return;
        }
        if self.stop_when_connected.take().is_some() {
            // PID 1 restarted us to stop what runs: adopt it, start nothing, stop in order.
            self.phase = Phase::Up;
            self.adopt(now, &running);
            return self.on_shutdown(now);
        }
        if !self.persisted.onboot_done {
            self.phase = Phase::Onboot { index: 0 };
            self.run_stage(now);
        } else if let Some(reason) = self.persisted.boot_failed.clone() {
            self.boot_failed(reason);
        } else {
            self.phase = Phase::Up;
            self.adopt_or_start(now, &running);
        }
    }

    fn boot_failed(&mut self, reason: String) {
        self.say(format!("boot failed: {reason}; services not started (the host stays up)"));
        self.phase = Phase::BootFailed { reason };
    }

    /// Why commands cannot act now, if they cannot.
    fn unavailable(&self) -> Option<String> {
        match &self.phase {
            Phase::Connecting => Some("containerd is not answering yet".into()),
            Phase::Onboot { .. } => Some(match &self.stage {
                Some(s) => format!("onboot stage {} running", s.name),
                None => "onboot stages running".into(),
            }),
            Phase::BootFailed { reason } => Some(format!("boot failed: {reason}")),
            Phase::Stopping | Phase::Onshutdown { .. } | Phase::Done => Some("shutting down".into()),
            Phase::Up if self.lost_at.is_some() => Some("containerd is not answering; waiting for it".into()),
            Phase::Up => None,
        }
    }
}

impl Svc {
    fn new(plan: Plan) -> Self {
        Svc { plan, state: State::Waiting { on: Vec::new() }, recent: VecDeque::new() }
    }
}
