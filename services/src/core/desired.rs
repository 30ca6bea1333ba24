//! A new desired state (a new config generation) as one more input: the core compares
//! plans and does the least that converges. An unchanged service is left alone, a changed
//! one is stopped and started again from its new plan, a removed one is stopped and
//! forgotten, an added one is started (once its dependencies are ready).

use super::{After, Core, Desired, Ms, Phase, State, Svc};

impl Core {
    pub(super) fn on_desired(&mut self, now: Ms, new: Desired) {
        let old = std::mem::replace(&mut self.desired, new);
        let removed: Vec<String> =
            old.services.keys().filter(|n| !self.desired.services.contains_key(*n)).cloned().collect();
        for name in removed {
            self.say(format!("service {name} removed from the config"));
            match self.services.get(&name).map(|s| s.state.active()) {
                Some(true) => self.begin_stop(now, &name, After::Remove),
                Some(false) => self.forget(&name),
                None => {}
            }
        }
        let plans: Vec<(String, super::Plan)> =
            self.desired.services.iter().map(|(n, p)| (n.clone(), p.clone())).collect();
        for (name, plan) in plans {
            let Some(svc) = self.services.get_mut(&name) else {
                self.say(format!("service {name} added to the config"));
                self.services.insert(name.clone(), Svc::new(plan));
                self.try_start(now, &name);
                continue;
            };
            if svc.plan == plan {
                continue;
            }
            let state = svc.state.clone();
            if !state.active() {
                svc.plan = plan;
            }
            self.say(format!("service {name} changed in the config"));
            if state.active() {
                // The new plan is taken when the old task is gone.
                self.begin_stop(now, &name, After::Replace);
                continue;
            }
            match state {
                // Stopped by hand stays stopped; the next start uses the new plan.
                State::Stopped => {}
                // Anything else gets a fresh chance with the new plan.
                _ => {
                    let record = self.record(&name);
                    record.failed = None;
                    record.exits_ms.clear();
                    record.backoff_ms = 0;
                    record.held = None;
                    self.set_state(&name, State::Waiting { on: Vec::new() });
                    if self.phase == Phase::Up {
                        self.try_start(now, &name);
                    }
                }
            }
        }
    }
}
