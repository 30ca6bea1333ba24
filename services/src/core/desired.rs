//! A new desired state (a new config generation) as one more input: the core compares
//! plans and does the least that converges. An unchanged service is left alone, a changed
//! one is stopped and started again from its new plan, a removed one is stopped and
//! forgotten, an added one is started (once its dependencies are ready). A changed or added
//! service whose dependency also changes is held back until that dependency is ready again
//! ([`super::rollout`] releases it).

use std::collections::BTreeSet;

use super::{After, Core, Desired, Ms, Phase, State, Svc};

/// What [`Core::converge`] set in motion.
#[derive(Debug, Default)]
pub(super) struct Converged {
    /// Replaced or started now.
    pub touched: BTreeSet<String>,
    /// Changed, but waiting for a changed dependency to be ready first.
    pub held: BTreeSet<String>,
    /// Removed; their tasks are being stopped.
    pub removing: BTreeSet<String>,
}

impl Core {
    /// Makes `new` the desired state and starts moving towards it.
    pub(super) fn converge(&mut self, now: Ms, new: Desired) -> Converged {
        let old = std::mem::replace(&mut self.desired, new);
        let removed: Vec<String> =
            old.services.keys().filter(|n| !self.desired.services.contains_key(*n)).cloned().collect();
        let mut done = Converged::default();
        for name in removed {
            self.say(format!("service {name} removed from the config"));
            match self.services.get(&name).map(|s| s.state.active()) {
                Some(true) => {
                    self.progress(&name, "removing", "stop signal sent".into());
                    done.removing.insert(name.clone());
                    self.begin_stop(now, &name, After::Remove);
                }
                Some(false) => {
                    self.progress(&name, "removed", String::new());
                    self.forget(&name);
                }
                None => {}
            }
        }
        let changed: BTreeSet<String> = self
            .desired
            .services
            .iter()
            .filter(|(name, plan)| match self.services.get(*name) {
                None => true,
                Some(svc) => svc.plan != **plan || svc.state.removing(),
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in &changed {
            let deps = &self.desired.services[name].depends_on;
            if deps.iter().any(|d| changed.contains(d)) {
                done.held.insert(name.clone());
            }
        }
        for name in &changed {
            if done.held.contains(name) {
                if !self.services.contains_key(name) {
                    let plan = self.desired.services[name].clone();
                    self.services.insert(name.clone(), Svc::new(plan));
                }
                let deps = self.desired.services[name].depends_on.iter().filter(|d| changed.contains(*d));
                let deps: Vec<String> = deps.cloned().collect();
                self.progress(name, "held", format!("until {} is ready again", deps.join(", ")));
                continue;
            }
            if self.replace(now, name) {
                done.touched.insert(name.clone());
            }
        }
        done
    }

    /// Moves one service to its desired plan; true when that (re)starts it.
    pub(super) fn replace(&mut self, now: Ms, name: &str) -> bool {
        let Some(plan) = self.desired.services.get(name).cloned() else { return false };
        let Some(svc) = self.services.get_mut(name) else {
            self.say(format!("service {name} added to the config"));
            self.services.insert(name.to_string(), Svc::new(plan));
            self.progress(name, "starting", "new service".into());
            self.try_start(now, name);
            return true;
        };
        let removing = svc.state.removing();
        if svc.plan == plan && !removing && !matches!(svc.state, State::Waiting { .. }) {
            return false;
        }
        if let State::Starting { then: then @ Some(After::Remove), .. } = &mut svc.state
            && svc.plan == plan
        {
            // Its removal is undone before its task even ran: it just goes on starting.
            *then = None;
            self.progress(name, "starting", "kept after all".into());
            return true;
        }
        let state = svc.state.clone();
        if !state.active() {
            svc.plan = plan;
        }
        self.say(format!("service {name} changed in the config"));
        if state.active() {
            // The new plan is taken when the old task is gone.
            self.progress(name, "replacing", "stop signal sent to the old version".into());
            self.begin_stop(now, name, After::Replace);
            return true;
        }
        match state {
            // Stopped by hand stays stopped; the next start uses the new plan.
            State::Stopped => false,
            // Anything else gets a fresh chance with the new plan.
            _ => {
                let record = self.record(name);
                record.failed = None;
                record.exits_ms.clear();
                record.backoff_ms = 0;
                record.held = None;
                self.progress(name, "starting", String::new());
                self.set_state(name, State::Waiting { on: Vec::new() });
                if self.phase == Phase::Up {
                    self.try_start(now, name);
                }
                true
            }
        }
    }
}
