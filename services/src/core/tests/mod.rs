//! Table-style tests of the core: a fake clock (a number) and the effects it returns,
//! recorded. No tokio, no containerd; the whole suite runs in milliseconds.

mod desired;
mod faults;
mod manual;
mod network;
mod rollout;
mod shutdown;
mod stages;
mod start;

use std::collections::BTreeMap;
use std::time::Duration;

use hoist_config::{Backoff, Ready, RestartPolicy, StartLimit};

use super::*;
use crate::policy::Policy;
use crate::state::Persisted;

pub fn plan(name: &str, deps: &[&str]) -> Plan {
    Plan {
        name: name.into(),
        spec: format!("spec of {name}").into_bytes(),
        rootfs: format!("/images/{name}"),
        stop_signal: libc::SIGTERM,
        stop_timeout: Duration::from_secs(10),
        start_timeout: Duration::from_secs(30),
        depends_on: deps.iter().map(|d| d.to_string()).collect(),
        policy: Some(Policy {
            restart: RestartPolicy::Always,
            backoff: Backoff { initial: Duration::from_millis(100), factor: 2.0, max: Duration::from_secs(30) },
            limit: StartLimit { burst: 5, interval: Duration::from_secs(60) },
        }),
        ..Default::default()
    }
}

pub fn with_ready(mut p: Plan, ready: Ready) -> Plan {
    p.ready = ready;
    p
}

pub fn with_restart(mut p: Plan, restart: RestartPolicy) -> Plan {
    if let Some(policy) = &mut p.policy {
        policy.restart = restart;
    }
    p
}

pub fn desired(plans: Vec<Plan>) -> Desired {
    Desired { services: plans.into_iter().map(|p| (p.name.clone(), p)).collect(), ..Default::default() }
}

pub fn stage(name: &str, timeout_ms: u64, required: bool) -> Stage {
    Stage { plan: plan(name, &[]), timeout: Duration::from_millis(timeout_ms), required }
}

/// A core, the fake clock, and every effect it returned so far.
pub struct H {
    pub core: Core,
    pub now: Ms,
    pub log: Vec<Effect>,
    /// The generation the next [`H::apply`] rolls out.
    pub generation: u64,
}

impl H {
    /// A fresh boot: the core is made and containerd answers at t=1000 with no task.
    pub fn boot(d: Desired) -> (H, Vec<Effect>) {
        Self::resume(d, Persisted::default(), BTreeMap::new())
    }

    /// A supervisor (re)started with this persisted state, containerd running these tasks.
    pub fn resume(d: Desired, persisted: Persisted, running: BTreeMap<String, u32>) -> (H, Vec<Effect>) {
        let mut h = H { core: Core::new(d, persisted, Vec::new()), now: 1000, log: Vec::new(), generation: 1 };
        let fx = h.input(Input::Connected { running });
        (h, fx)
    }

    pub fn input(&mut self, input: Input) -> Vec<Effect> {
        let fx = self.core.handle(self.now, input);
        self.log.extend(fx.iter().cloned());
        fx
    }

    pub fn cmd(&mut self, cmd: Command) -> (Result<String, Refused>, Vec<Effect>) {
        let (reply, fx) = self.core.command(self.now, cmd);
        self.log.extend(fx.iter().cloned());
        (reply, fx)
    }

    /// Moves the clock by `ms`, firing the timer at every deadline on the way, in order.
    pub fn advance(&mut self, ms: Ms) -> Vec<Effect> {
        let end = self.now + ms;
        let mut fx = Vec::new();
        while let Some(d) = self.core.next_deadline().filter(|d| *d <= end) {
            self.now = d.max(self.now);
            fx.extend(self.input(Input::Timer));
        }
        self.now = end;
        fx
    }

    /// Rolls `d` out as the next generation (10 s settle, not tentative); it must be taken.
    pub fn apply(&mut self, d: Desired) -> Vec<Effect> {
        self.apply_with(d, 10_000, None).expect("apply taken")
    }

    pub fn apply_with(&mut self, d: Desired, settle_ms: Ms, try_ms: Option<Ms>) -> Result<Vec<Effect>, Refused> {
        let apply = Apply { generation: self.generation, desired: d, settle_ms, try_ms };
        let (reply, fx) = self.cmd(Command::Apply(Box::new(apply)));
        reply?;
        self.generation += 1;
        Ok(fx)
    }

    pub fn started(&mut self, name: &str, pid: u32) -> Vec<Effect> {
        self.input(Input::Started { name: name.into(), result: Ok(pid) })
    }

    pub fn exited(&mut self, name: &str, pid: u32, status: u32) -> Vec<Effect> {
        self.input(Input::Exited { name: name.into(), pid, status, oom: false })
    }

    pub fn ready(&mut self, name: &str, pid: u32) -> Vec<Effect> {
        self.input(Input::Ready { name: name.into(), pid })
    }

    pub fn state(&self, name: &str) -> State {
        self.core.state(name).cloned().unwrap_or_else(|| panic!("no service {name}"))
    }
}

/// Names of the services a list of effects starts, in order.
pub fn starts(fx: &[Effect]) -> Vec<&str> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Start { name } => Some(name.as_str()),
            _ => None,
        })
        .collect()
}

/// (service, signal) of every Signal effect, in order.
pub fn signals(fx: &[Effect]) -> Vec<(&str, i32)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Signal { name, signal } => Some((name.as_str(), *signal)),
            _ => None,
        })
        .collect()
}

/// The console lines among the effects.
pub fn lines(fx: &[Effect]) -> Vec<&str> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Say(l) => Some(l.as_str()),
            _ => None,
        })
        .collect()
}

/// Index of the first console line containing `needle`.
#[track_caller]
pub fn line(fx: &[Effect], needle: &str) -> usize {
    let all = lines(fx);
    all.iter().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("no line with {needle:?} in {all:#?}"))
}

/// (service, kind) of every rollout step among the effects.
pub fn progress(fx: &[Effect]) -> Vec<(String, &'static str)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Progress(p) => Some((p.service.clone(), p.kind)),
            _ => None,
        })
        .collect()
}

/// The final step of a rollout among the effects, if any: (kind, detail).
pub fn outcome(fx: &[Effect]) -> Option<(&'static str, String)> {
    fx.iter().find_map(|e| match e {
        Effect::Progress(p) if p.is_final() => Some((p.kind, p.detail.clone())),
        _ => None,
    })
}

pub fn has(fx: &[Effect], e: &Effect) -> bool {
    fx.contains(e)
}
