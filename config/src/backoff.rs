//! How fast a failing service is restarted (`backoff`) and when the supervisor gives up
//! on it (`start_limit`), so that a crash loop costs neither CPU nor log space.

use std::time::Duration;

use crate::error::{ConfigError, Source};
use crate::raw::{RawBackoff, RawStartLimit};

/// The shortest first restart delay: below this a crash loop is a busy loop.
pub(crate) const BACKOFF_FLOOR_MS: u64 = 100;

/// The delay before restart `n` (counting from 0) is `initial * factor^n`, capped at `max`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub initial: Duration,
    pub factor: f64,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { initial: Duration::from_millis(BACKOFF_FLOOR_MS), factor: 2.0, max: Duration::from_secs(30) }
    }
}

/// More than `burst` starts within `interval` and the service is marked failed and left
/// alone until someone restarts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartLimit {
    pub burst: u32,
    pub interval: Duration,
}

impl Default for StartLimit {
    fn default() -> Self {
        StartLimit { burst: 5, interval: Duration::from_secs(60) }
    }
}

pub(crate) fn backoff(raw: RawBackoff, src: &Source, key: &str) -> Result<Backoff, ConfigError> {
    let defaults = Backoff::default();
    let initial = raw.initial.map(|i| (i.span(), i.into_inner().0.0));
    let factor = match raw.factor {
        // Written this way round so that NaN fails too.
        Some(f) if f.get_ref().0 >= 1.0 && f.get_ref().0 <= 10.0 => f.into_inner().0,
        Some(f) => {
            let message = format!("expected a factor from 1.0 to 10.0, got {}", f.get_ref().0);
            return Err(src.invalid(Some(f.span()), format!("{key}.factor"), message));
        }
        None => defaults.factor,
    };
    let max = raw.max.map(|m| (m.span(), m.into_inner().0.0));
    let initial_or_default = initial.as_ref().map_or(defaults.initial, |(_, i)| *i);
    match (&initial, &max) {
        (_, Some((span, max))) if *max < initial_or_default => {
            let message = format!("max {max:?} is below initial {initial_or_default:?}");
            return Err(src.invalid(Some(span.clone()), format!("{key}.max"), message));
        }
        (Some((span, initial)), None) if *initial > defaults.max => {
            let message = format!("initial {initial:?} is above the default max {:?}: set max too", defaults.max);
            return Err(src.invalid(Some(span.clone()), format!("{key}.initial"), message));
        }
        _ => {}
    }
    Ok(Backoff { initial: initial_or_default, factor, max: max.map_or(defaults.max, |(_, m)| m) })
}

pub(crate) fn start_limit(raw: RawStartLimit, src: &Source, key: &str) -> Result<StartLimit, ConfigError> {
    let defaults = StartLimit::default();
    let burst = match raw.burst {
        None => defaults.burst,
        Some(b) => match u32::try_from(b.get_ref().0) {
            Ok(n) if n >= 1 => n,
            _ => {
                let message = format!("expected a number of starts from 1 to {}, got {}", u32::MAX, b.get_ref().0);
                return Err(src.invalid(Some(b.span()), format!("{key}.burst"), message));
            }
        },
    };
    Ok(StartLimit { burst, interval: raw.interval.map_or(defaults.interval, |i| i.0.0) })
}
