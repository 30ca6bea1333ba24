//! `[[onboot]]` and `[[onshutdown]]`: containers run once, in file order, to completion;
//! onboot before any service starts, onshutdown after every service has stopped. They share
//! the containerd namespace with the services, so all their names must be distinct.

use std::collections::BTreeMap;
use std::time::Duration;

use toml::Spanned;

use crate::budget::{self, Budget};
use crate::error::{ConfigError, Source};
use crate::raw::{RawOneShot, Table};
use crate::validate::{binds, capabilities, env, strings};
use crate::{Bind, Capabilities, ImageSource};

#[derive(Debug, Clone, PartialEq)]
pub struct OneShot {
    /// Same rules as a service name; unique across onboot, onshutdown and services.
    pub name: String,
    pub image: ImageSource,
    /// Empty: the image's own entrypoint and cmd.
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Absolute; None: the image's working directory.
    pub working_dir: Option<String>,
    /// (uid, gid); None: the image's user.
    pub user: Option<(u32, u32)>,
    pub binds: Vec<Bind>,
    pub capabilities: Capabilities,
    /// Past this it is killed and counts as failed. onshutdown: at most 1h, and counted
    /// with the services' stop_timeouts in the 2h shutdown maximum.
    pub timeout: Duration,
    /// onboot only: a failure stops the boot (the machine stays up and says why) instead of
    /// being logged and skipped.
    pub required: bool,
}

impl OneShot {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
}

/// Builds the `stage` ("onboot" or "onshutdown") list. `taken` maps every name used so
/// far to where (`service.web`, `onboot[0]`); this stage's names are added to it.
/// onshutdown timeouts are capped and charged to the shutdown `budget`.
pub(crate) fn build(
    raw: Vec<Table<RawOneShot>>,
    stage: &str,
    src: &Source,
    taken: &mut BTreeMap<String, String>,
    budget: &mut Budget,
) -> Result<Vec<OneShot>, ConfigError> {
    let mut out = Vec::with_capacity(raw.len());
    for (i, Table(raw)) in raw.into_iter().enumerate() {
        let key = format!("{stage}[{i}]");
        let name_span = raw.name.span();
        let name = raw.name.into_inner().0.0;
        if let Some(first) = taken.get(&name) {
            let message = format!("name {name:?} is already used by {first}");
            return Err(src.invalid(Some(name_span), format!("{key}.name"), message));
        }
        taken.insert(name.clone(), key.clone());
        let written = raw.timeout.as_ref().map(|t| t.span());
        let timeout = match raw.timeout {
            Some(t) if stage == "onshutdown" => {
                budget::capped(Spanned::new(t.span(), t.into_inner().0.0), src, &format!("{key}.timeout"))?
            }
            Some(t) => t.into_inner().0.0,
            None => OneShot::DEFAULT_TIMEOUT,
        };
        if stage == "onshutdown" {
            budget.charge(src, &format!("{key}.timeout"), timeout, written)?;
        }
        let required = match raw.required {
            Some(r) if stage != "onboot" => {
                let message = "required only applies to onboot: a failed onshutdown never stops the shutdown";
                return Err(src.invalid(Some(r.span()), format!("{key}.required"), message));
            }
            Some(r) => r.into_inner(),
            None => false,
        };
        out.push(OneShot {
            name,
            image: raw.image.0,
            command: strings(raw.command),
            env: env(raw.env),
            working_dir: raw.working_dir.map(|w| w.0.0),
            user: raw.user.map(|u| (u.0.0, u.0.1)),
            binds: binds(raw.binds, src, &format!("{key}.binds"), None)?,
            capabilities: capabilities(raw.capabilities, src, &format!("{key}.capabilities"))?,
            timeout,
            required,
        });
    }
    Ok(out)
}
