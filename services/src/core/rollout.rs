//! An apply as the core sees it: converge on a new generation's [`Desired`], then watch
//! what it touched. Dependents whose dependency changed too are released once it is ready
//! again. When every touched service is ready, a settle window starts; a touched service
//! that exits, fails, is not ready within its start timeout, or waits on something that
//! will not come, rolls the whole generation back to the previous desired state. A
//! tentative (`--try`) generation is rolled back at its deadline unless confirmed.
//!
//! Progress goes out as [`Effect::Progress`]; the generation's end is one of the final
//! kinds ([`Progress::is_final`]).

use std::collections::{BTreeMap, BTreeSet};

use super::{Core, Desired, Effect, Ms, Phase, Refused, State};

/// A new generation to roll out.
#[derive(Debug, Clone, PartialEq)]
pub struct Apply {
    pub generation: u64,
    pub desired: Desired,
    /// How long touched services must stay up once all are ready.
    pub settle_ms: Ms,
    /// Tentative for this long once settled, unless confirmed.
    pub try_ms: Option<Ms>,
}

/// One step of a rollout, for the apply stream and the generation history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub generation: u64,
    /// Empty for the generation as a whole.
    pub service: String,
    pub kind: &'static str,
    pub detail: String,
}

/// The kinds that end a rollout's progress: the generation is in use (`done`,
/// `confirmed`), waits for confirmation (`tentative`), or was undone (`rolled-back`).
pub const FINAL_KINDS: [&str; 4] = ["done", "tentative", "rolled-back", "confirmed"];

impl Progress {
    pub fn is_final(&self) -> bool {
        self.service.is_empty() && FINAL_KINDS.contains(&self.kind)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Converging,
    Settling { until: Ms },
    Tentative { until: Ms },
    RollingBack { reason: String },
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Rollout {
    generation: u64,
    previous: Desired,
    touched: BTreeSet<String>,
    held: BTreeSet<String>,
    /// Removed services whose tasks are not gone yet.
    removing: BTreeSet<String>,
    ready: BTreeSet<String>,
    settle_ms: Ms,
    try_ms: Option<Ms>,
    step: Step,
}

impl Rollout {
    pub(super) fn deadline(&self) -> Option<Ms> {
        match self.step {
            Step::Settling { until } | Step::Tentative { until } => Some(until),
            _ => None,
        }
    }

    pub(super) fn holds(&self, name: &str) -> bool {
        self.held.contains(name)
    }
}

impl Core {
    pub(super) fn apply(&mut self, now: Ms, apply: Apply) -> Result<String, Refused> {
        if let Some(reason) = self.unavailable() {
            return Err(Refused::Unavailable(reason));
        }
        if let Some(r) = &self.rollout {
            let what = match r.step {
                Step::Tentative { .. } => "is tentative (confirm it or roll it back first)",
                Step::RollingBack { .. } => "is being rolled back",
                _ => "is being applied",
            };
            return Err(Refused::Busy(format!("generation {} {what}", r.generation)));
        }
        let generation = apply.generation;
        self.say(format!("applying generation {generation}"));
        self.rollout = Some(Rollout {
            generation,
            previous: self.desired.clone(),
            touched: BTreeSet::new(),
            held: BTreeSet::new(),
            removing: BTreeSet::new(),
            ready: BTreeSet::new(),
            settle_ms: apply.settle_ms,
            try_ms: apply.try_ms,
            step: Step::Converging,
        });
        let c = self.converge(now, apply.desired);
        if let Some(r) = &mut self.rollout {
            (r.touched, r.held, r.removing) = (c.touched, c.held, c.removing);
        }
        Ok(format!("applying generation {generation}"))
    }

    /// Keeps a tentative generation.
    pub(super) fn confirm(&mut self) -> Result<String, Refused> {
        match &self.rollout {
            Some(Rollout { generation, step: Step::Tentative { .. }, .. }) => {
                let generation = *generation;
                self.rollout = None;
                self.say(format!("generation {generation} confirmed"));
                self.finish(generation, "confirmed", String::new());
                Ok(format!("generation {generation} confirmed"))
            }
            Some(r) => Err(Refused::Conflict(format!("generation {} is still being applied", r.generation))),
            None => Err(Refused::Conflict("no generation is tentative".into())),
        }
    }

    /// Rolls the generation under way (or tentative) back now.
    pub(super) fn reject(&mut self, now: Ms) -> Result<String, Refused> {
        match &self.rollout {
            Some(Rollout { generation, step: Step::RollingBack { .. }, .. }) => {
                Err(Refused::Busy(format!("generation {generation} is already being rolled back")))
            }
            Some(r) => {
                let generation = r.generation;
                self.roll_back(now, "", "rolled back by request".into());
                Ok(format!("rolling generation {generation} back"))
            }
            None => Err(Refused::Conflict("no generation is being applied or tentative".into())),
        }
    }

    /// The generation being applied or tentative, if any.
    pub fn rollout_generation(&self) -> Option<u64> {
        self.rollout.as_ref().map(|r| r.generation)
    }

    pub(super) fn progress(&mut self, service: &str, kind: &'static str, detail: String) {
        let Some(r) = &self.rollout else { return };
        let p = Progress { generation: r.generation, service: service.to_string(), kind, detail };
        self.out.push(Effect::Progress(p));
    }

    fn finish(&mut self, generation: u64, kind: &'static str, detail: String) {
        let p = Progress { generation, service: String::new(), kind, detail };
        self.out.push(Effect::Progress(p));
    }

    /// After every input: move the rollout on, or roll it back.
    pub(super) fn check_rollout(&mut self, now: Ms) {
        let Some(r) = &self.rollout else { return };
        if self.phase != Phase::Up {
            // A shutdown ends the rollout where it stands.
            let generation = r.generation;
            self.rollout = None;
            return self.finish(generation, "rolled-back", "the host is shutting down".into());
        }
        let step = r.step.clone();
        if let Step::RollingBack { reason } = step {
            let mut memo = BTreeMap::new();
            let touched = r.touched.clone();
            // Removals too: what the rolled-back generation added must be gone before its
            // images may be collected.
            let removed = r.removing.iter().all(|n| !self.services.contains_key(n));
            if removed && touched.iter().all(|n| self.settled(n, &mut memo)) {
                let generation = r.generation;
                self.rollout = None;
                self.say(format!("generation {generation} rolled back: {reason}"));
                self.finish(generation, "rolled-back", reason);
            }
            return;
        }
        self.release_held(now);
        let Some(r) = &self.rollout else { return };
        let newly_ready: Vec<String> =
            r.touched.iter().filter(|n| !r.ready.contains(*n) && self.is_ready(n)).cloned().collect();
        for name in newly_ready {
            if let Some(r) = &mut self.rollout {
                r.ready.insert(name.clone());
            }
            self.progress(&name, "ready", String::new());
        }
        let Some(r) = &self.rollout else { return };
        let failure = r.touched.iter().find_map(|n| self.failure(n).map(|why| (n.clone(), why))).or_else(|| {
            // A held service whose dependency was stopped by hand would wait forever.
            r.held.iter().find_map(|n| {
                let deps = self.desired.services.get(n).map(|p| p.depends_on.clone()).unwrap_or_default();
                let stopped = deps.into_iter().find(|d| matches!(self.state(d), Some(State::Stopped)))?;
                Some((n.clone(), format!("waits for {stopped}, which was stopped by hand")))
            })
        });
        if let Some((service, why)) = failure {
            return self.roll_back(now, &service, format!("service {service} {why}"));
        }
        let generation = r.generation;
        match step {
            Step::Converging => {
                let up = r.held.is_empty()
                    && r.removing.iter().all(|n| !self.services.contains_key(n))
                    && r.touched.iter().all(|n| self.is_ready(n) || matches!(self.state(n), Some(State::Stopped)));
                if up {
                    let until = now.saturating_add(r.settle_ms);
                    let secs = r.settle_ms as f64 / 1000.0;
                    if let Some(r) = &mut self.rollout {
                        r.step = Step::Settling { until };
                    }
                    self.progress(
                        "",
                        "settling",
                        format!("every changed service is ready; watching it for {secs:.1} s"),
                    );
                    if until <= now {
                        self.check_rollout(now);
                    }
                }
            }
            Step::Settling { until } if until <= now => match r.try_ms {
                Some(ms) => {
                    let until = now.saturating_add(ms);
                    if let Some(r) = &mut self.rollout {
                        r.step = Step::Tentative { until };
                    }
                    let secs = ms as f64 / 1000.0;
                    self.say(format!(
                        "generation {generation} is tentative: rolled back in {secs:.1} s unless confirmed"
                    ));
                    self.finish(
                        generation,
                        "tentative",
                        format!("rolled back in {secs:.0} s unless `hoist ctl confirm` keeps it"),
                    );
                }
                None => {
                    self.rollout = None;
                    self.say(format!("generation {generation} applied"));
                    self.finish(generation, "done", String::new());
                }
            },
            Step::Tentative { until } if until <= now => {
                self.roll_back(now, "", "not confirmed in time".into());
            }
            _ => {}
        }
    }

    /// Held services whose changed dependencies are ready again are replaced now.
    fn release_held(&mut self, now: Ms) {
        loop {
            let Some(r) = &self.rollout else { return };
            let free = r.held.iter().find(|name| {
                let deps = self.desired.services.get(*name).map(|p| p.depends_on.clone()).unwrap_or_default();
                deps.iter().all(|d| !r.held.contains(d) && (!r.touched.contains(d) || self.is_ready(d)))
            });
            let Some(name) = free.cloned() else { return };
            if let Some(r) = &mut self.rollout {
                r.held.remove(&name);
            }
            if self.replace(now, &name)
                && let Some(r) = &mut self.rollout
            {
                r.touched.insert(name);
            }
        }
    }

    /// Why a touched service counts as failed, if it does.
    fn failure(&self, name: &str) -> Option<String> {
        let svc = self.services.get(name)?;
        let last = || svc.recent.back().map(|e| e.detail.clone()).unwrap_or_default();
        match &svc.state {
            State::Failed { reason } => Some(format!("failed: {reason}")),
            State::Exited { status } => Some(format!("exited status={status}")),
            State::Backoff { .. } => Some(last()),
            State::Stopping { then: super::After::TimedOut, .. } => {
                Some(format!("was not ready within its start timeout ({} ms)", svc.plan.start_timeout.as_millis()))
            }
            State::Waiting { on } if !on.is_empty() => {
                let mut memo = BTreeMap::new();
                let stuck = on.iter().all(|d| self.settled(d, &mut memo) && !self.is_ready(d));
                stuck.then(|| format!("waits for {}, which is not ready", on.join(", ")))
            }
            _ => None,
        }
    }

    /// Undoes the rollout: back to the previous desired state, watching what that touches.
    fn roll_back(&mut self, now: Ms, service: &str, reason: String) {
        let Some(r) = self.rollout.take() else { return };
        self.say(format!("generation {} failed: {reason}; rolling back", r.generation));
        if !service.is_empty() {
            self.out.push(Effect::Progress(Progress {
                generation: r.generation,
                service: service.to_string(),
                kind: "failed",
                detail: reason.clone(),
            }));
        }
        self.finish(r.generation, "rolling-back", reason.clone());
        let generation = r.generation;
        let previous = r.previous.clone();
        self.rollout = Some(Rollout { step: Step::RollingBack { reason }, ..r });
        let c = self.converge(now, previous);
        if let Some(r) = &mut self.rollout {
            debug_assert_eq!(r.generation, generation);
            // Nothing is held on the way back: every earlier version ran together before.
            r.touched = c.touched.into_iter().chain(c.held.iter().cloned()).collect();
            r.held.clear();
            r.removing = c.removing;
        }
        for name in c.held {
            self.replace(now, &name);
        }
        self.check_rollout(now);
    }
}
