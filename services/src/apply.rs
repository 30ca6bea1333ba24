//! The driver's side of `hoist apply`: requests become candidates ([`crate::candidate`]),
//! plans ([`crate::diff`]) and generations ([`crate::generations`]); the core's rollout
//! progress goes to the apply streams and settles each generation's record. Everything
//! here runs on the driver's loop, so one apply at a time is simply the core's rule.

use std::collections::BTreeMap;

use hoist_api::pb;
use hoist_config::manifest::BuildManifest;
use tokio::sync::broadcast;
use tonic::Status;

use crate::candidate::{self, Candidate, Missing};
use crate::core::{Apply, Desired, Ms, Progress};
use crate::diff::{self, PlanDiff};
use crate::generations::{PlanEntry, Record, Store, now_unix};
use crate::images::Library;

/// Settle window when the request leaves it at 0.
pub const DEFAULT_SETTLE_MS: Ms = 10_000;
/// Longest settle window and try period a request may ask for.
pub const MAX_SETTLE_MS: Ms = 3_600_000;
pub const MAX_TRY_MS: Ms = 24 * 3_600_000;

pub struct Generations {
    store: Store,
    library: std::sync::Arc<Library>,
    kernel_release: String,
    /// The build's compiled seccomp filters, for candidates' plans.
    filters: crate::plan::Filters,
    /// The config the host booted with: host-level keys are compared against it.
    booted: toml::Table,
    /// Generation 0, exactly as booted.
    built: Candidate,
    /// What the core runs (or is rolling out): its text, images and plans.
    running: Candidate,
    /// The generation in force before the rollout under way, and whether that rollout is
    /// a rollback; restored if it is undone.
    before: Option<(Candidate, bool)>,
    progress: broadcast::Sender<pb::ApplyProgress>,
}

impl Generations {
    /// Opens the store and picks the generation to run: the one in force (an apply cut
    /// short by our restart is not); generation 0 when its record cannot be used.
    pub fn open(
        dir: &std::path::Path,
        built_text: &str,
        config: &hoist_config::Config,
        manifest: &BuildManifest,
        library: std::sync::Arc<Library>,
    ) -> Self {
        let built_images: BTreeMap<String, String> =
            manifest.service.iter().map(|(n, s)| (n.clone(), s.digest.clone())).collect();
        let booted: toml::Table = built_text.parse().unwrap_or_default();
        let built = Candidate {
            text: built_text.to_string(),
            table: booted.clone(),
            digest: crate::generations::digest(built_text),
            images: built_images.clone(),
            desired: Desired::from_config(config, manifest),
        };
        let (store, notes) = match Store::open(dir, built_text, built_images) {
            Ok(s) => s,
            Err(e) => {
                crate::say(&format!("{}: {e}; generations cannot be kept", dir.display()));
                (Store::at(dir), Vec::new())
            }
        };
        for note in notes {
            crate::say(&note);
        }
        let mut g = Generations {
            store,
            library,
            kernel_release: manifest.kernel_release.clone(),
            filters: manifest.seccomp_bpf.clone(),
            booted,
            running: built.clone(),
            built,
            before: None,
            progress: broadcast::channel(256).0,
        };
        let current = g.store.current();
        if current != 0 {
            match g.load(current) {
                Ok(c) => {
                    crate::say(&format!("running generation {current}"));
                    g.running = c;
                }
                Err(e) => {
                    crate::say(&format!("generation {current} cannot be loaded ({e}): running generation 0"));
                    let _ = g.store.set_current(0);
                }
            }
        }
        g.publish_in_use();
        g
    }

    pub fn desired(&self) -> Desired {
        self.running.desired.clone()
    }

    fn load(&self, id: u64) -> Result<Candidate, String> {
        if id == 0 {
            // Exactly as booted: the build's own manifest entries.
            return Ok(self.built.clone());
        }
        let record = self.store.record(id).ok_or_else(|| format!("no generation {id}"))?;
        let text = self.store.config(id).ok_or_else(|| format!("generation {id}: config missing"))?;
        let known = self.library.known();
        candidate::make(
            &text,
            &format!("generation {id}"),
            &record.images,
            &known,
            &self.kernel_release,
            &self.filters,
            Missing::Refuse,
        )
    }

    pub fn subscribe(&self) -> broadcast::Receiver<pb::ApplyProgress> {
        self.progress.subscribe()
    }

    /// The plan for a request, against what runs now. `missing`: whether images the host
    /// does not hold may stand in by their digest (a plan only) or not (to apply).
    pub fn plan(&self, req: &pb::ApplyRequest, missing: Missing) -> Result<(Candidate, PlanDiff), Status> {
        let images: BTreeMap<String, String> = req.images.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let known = self.library.known();
        let c = candidate::make(&req.config, &req.file, &images, &known, &self.kernel_release, &self.filters, missing)
            .map_err(Status::invalid_argument)?;
        let d = self.diff(&c);
        Ok((c, d))
    }

    fn diff(&self, c: &Candidate) -> PlanDiff {
        let r = &self.running;
        diff::diff(&self.booted, (&r.table, &r.desired, &r.images), (&c.table, &c.desired, &c.images))
    }

    pub fn plan_reply(&self, c: &Candidate, d: &PlanDiff) -> pb::PlanReply {
        pb::PlanReply {
            services: d.services.iter().map(change_pb).collect(),
            reboot_required: d.reboot_required.clone(),
            current: self.store.current(),
            digest: c.digest.clone(),
            changes: d.changes(),
        }
    }

    /// Checks a request and records its generation as `applying`: what the core is to
    /// roll out. `Ok(None)` when nothing would change.
    pub fn begin(&mut self, req: &pb::ApplyRequest) -> Result<(pb::PlanReply, Option<Apply>), Status> {
        let (settle_ms, try_ms) = timing(req)?;
        let (c, d) = self.plan(req, Missing::Refuse)?;
        let reply = self.plan_reply(&c, &d);
        if !d.reboot_required.is_empty() && !req.allow_reboot {
            return Err(Status::failed_precondition(format!(
                "these keys take effect only at boot: {}; nothing applied (--allow-reboot applies the rest)",
                d.reboot_required.join(", ")
            )));
        }
        if !d.services.iter().any(|c| c.action != "unchanged") && c.digest == self.running.digest {
            return Ok((reply, None));
        }
        let id = self.store.next_id();
        let record = Record {
            id,
            time_unix: now_unix(),
            digest: c.digest.clone(),
            result: "applying".into(),
            detail: if d.reboot_required.is_empty() {
                String::new()
            } else {
                format!("{}: {}", crate::generations::NOT_IN_EFFECT, d.reboot_required.join(", "))
            },
            previous: self.store.current(),
            images: c.images.clone(),
            plan: d.services.iter().map(PlanEntry::from).collect(),
            was_active: false,
        };
        self.store.begin(&record, &c.text).map_err(|e| Status::internal(format!("recording generation {id}: {e}")))?;
        let apply = Apply { generation: id, desired: c.desired.clone(), settle_ms, try_ms };
        self.before = Some((std::mem::replace(&mut self.running, c), false));
        self.publish_in_use();
        Ok((pb::PlanReply { current: record.previous, ..reply }, Some(apply)))
    }

    /// A rollback to `target` (none: the generation before the one in force).
    pub fn begin_rollback(&mut self, target: Option<u64>) -> Result<(pb::PlanReply, Apply), Status> {
        let current = self.store.current();
        let target = if let Some(target) = target {
            target
        } else {
            let r = self
                .store
                .record(current)
                .ok_or_else(|| Status::internal(format!("no record of generation {current}")))?;
            if current == 0 {
                return Err(Status::failed_precondition("generation 0 (the build) has no generation before it"));
            }
            r.previous
        };
        if target == current {
            return Err(Status::failed_precondition(format!("generation {target} is already in force")));
        }
        match self.store.record(target) {
            Some(r) if r.was_active => {}
            Some(r) => {
                return Err(Status::failed_precondition(format!(
                    "generation {target} was never in force ({}): nothing to go back to",
                    r.result
                )));
            }
            None => return Err(Status::not_found(format!("no generation {target} (this boot keeps the last 32)"))),
        }
        let c = self.load(target).map_err(|e| Status::not_found(format!("generation {target}: {e}")))?;
        let d = self.diff(&c);
        let reply = pb::PlanReply { current, ..self.plan_reply(&c, &d) };
        let apply =
            Apply { generation: target, desired: c.desired.clone(), settle_ms: DEFAULT_SETTLE_MS, try_ms: None };
        self.before = Some((std::mem::replace(&mut self.running, c), true));
        self.publish_in_use();
        Ok((reply, apply))
    }

    /// The core refused the rollout: forget it.
    pub fn abandon(&mut self, generation: u64, why: &str) {
        if let Some((before, rollback)) = self.before.take() {
            self.running = before;
            if !rollback {
                let _ = self.store.mark(generation, "refused", why);
            }
        }
        self.publish_in_use();
    }

    /// A step of a rollout: to the streams, and the end of it to the record.
    pub fn on_progress(&mut self, now: Ms, p: &Progress) {
        let _ = self.progress.send(progress_pb(now, p));
        if !p.is_final() {
            return;
        }
        let rollback = self.before.as_ref().is_some_and(|(_, r)| *r);
        let result = match p.kind {
            "done" | "confirmed" => {
                self.before = None;
                self.store.activate(p.generation, rollback)
            }
            "tentative" => self.store.mark(p.generation, "tentative", &p.detail),
            _ => {
                if let Some((before, _)) = self.before.take() {
                    self.running = before;
                }
                if rollback {
                    crate::say(&format!("rollback to generation {} failed: {}", p.generation, p.detail));
                    Ok(())
                } else {
                    self.store.mark(p.generation, "rolled-back", &p.detail)
                }
            }
        };
        if let Err(e) = result {
            log::warn!("generation {}: {e}", p.generation);
        }
        self.publish_in_use();
        self.library.spawn_collect();
    }

    /// Tells the image library what [`Generations::images_in_use`] is now, after every
    /// change of what runs, what runs before, or the lineage.
    fn publish_in_use(&self) {
        self.library.set_in_use(self.images_in_use());
    }

    /// Images a generation may still need: the one in force, the two before it (what a
    /// rollback goes back to), and one under way. Older generations keep their record, and a
    /// rollback to them needs their images sent again.
    pub fn images_in_use(&self) -> std::collections::BTreeSet<String> {
        let mut keep: std::collections::BTreeSet<String> = self.running.images.values().cloned().collect();
        if let Some((before, _)) = &self.before {
            keep.extend(before.images.values().cloned());
        }
        for record in self.store.lineage() {
            keep.extend(record.images.values().cloned());
        }
        keep
    }

    pub fn history(&self) -> pb::HistoryReply {
        let generations = self
            .store
            .list()
            .into_iter()
            .map(|r| pb::Generation {
                id: r.id,
                time_unix: r.time_unix,
                digest: r.digest,
                result: r.result,
                detail: r.detail,
                plan: r
                    .plan
                    .into_iter()
                    .map(|e| pb::ServiceChange { service: e.service, action: e.action, keys: e.keys })
                    .collect(),
            })
            .collect();
        pb::HistoryReply { generations, current: self.store.current() }
    }
}

fn timing(req: &pb::ApplyRequest) -> Result<(Ms, Option<Ms>), Status> {
    let settle = if req.settle_ms == 0 { DEFAULT_SETTLE_MS } else { req.settle_ms };
    if settle > MAX_SETTLE_MS {
        return Err(Status::invalid_argument(format!("settle {settle} ms is over the {MAX_SETTLE_MS} ms limit")));
    }
    if req.try_ms > MAX_TRY_MS {
        return Err(Status::invalid_argument(format!("try {} ms is over the {MAX_TRY_MS} ms limit", req.try_ms)));
    }
    Ok((settle, (req.try_ms > 0).then_some(req.try_ms)))
}

fn change_pb(c: &diff::Change) -> pb::ServiceChange {
    pb::ServiceChange { service: c.service.clone(), action: c.action.to_string(), keys: c.keys.clone() }
}

pub fn progress_pb(now: Ms, p: &Progress) -> pb::ApplyProgress {
    pb::ApplyProgress {
        generation: p.generation,
        uptime_ms: now,
        service: p.service.clone(),
        kind: p.kind.to_string(),
        detail: p.detail.clone(),
        plan: None,
    }
}
