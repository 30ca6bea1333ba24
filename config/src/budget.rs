//! The shutdown budget. Services stop one after another in the worst case, then the
//! onshutdown stages run, so a shutdown may last the sum of every `stop_timeout` and
//! onshutdown `timeout`; PID 1 sums them for its own deadline. Each is capped at an hour
//! and their sum at two, so that a typo cannot hold a shutdown for days.

use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use crate::duration::format_duration;
use crate::error::{ConfigError, Source};

/// The most one `stop_timeout` or onshutdown `timeout` may be.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

/// The most all `stop_timeout`s and onshutdown `timeout`s together may be, defaults
/// included.
pub const MAX_SHUTDOWN: Duration = Duration::from_secs(2 * 3600);

/// `timeout` (written at its span, under `key`) if it is at most [`MAX_TIMEOUT`].
pub(crate) fn capped(timeout: Spanned<Duration>, src: &Source, key: &str) -> Result<Duration, ConfigError> {
    if *timeout.get_ref() <= MAX_TIMEOUT {
        return Ok(timeout.into_inner());
    }
    let message =
        format!("{} is above the maximum of {}", format_duration(*timeout.get_ref()), format_duration(MAX_TIMEOUT));
    Err(src.invalid(Some(timeout.span()), key.to_string(), message))
}

/// The running sum of the timeouts seen so far.
#[derive(Default)]
pub(crate) struct Budget {
    total: Duration,
}

impl Budget {
    /// Adds the timeout at `key`. `written` is its span, or None for a default, which is
    /// then reported at `owner` (the service's image or the one-shot's name).
    pub fn charge(
        &mut self,
        src: &Source,
        key: &str,
        timeout: Duration,
        written: Option<Range<usize>>,
        owner: Range<usize>,
    ) -> Result<(), ConfigError> {
        self.total = self.total.saturating_add(timeout);
        if self.total <= MAX_SHUTDOWN {
            return Ok(());
        }
        let default = if written.is_none() { " (the default)" } else { "" };
        let message = format!(
            "{}{default} brings the stop_timeouts and onshutdown timeouts to {}, above the shutdown maximum of {}",
            format_duration(timeout),
            format_duration(self.total),
            format_duration(MAX_SHUTDOWN)
        );
        Err(src.invalid(Some(written.unwrap_or(owner)), key.to_string(), message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sum_is_capped_and_never_overflows() {
        let src = Source { file: "t.toml", text: "" };
        let mut budget = Budget::default();
        let hour = Duration::from_secs(3600);
        assert!(budget.charge(&src, "a", hour, Some(0..0), 0..0).is_ok());
        assert!(budget.charge(&src, "b", hour, None, 0..0).is_ok());
        match budget.charge(&src, "c", Duration::from_millis(1), None, 0..0) {
            Err(ConfigError::Invalid { key, message, .. }) => {
                assert_eq!(key, "c");
                assert_eq!(
                    message,
                    "1ms (the default) brings the stop_timeouts and onshutdown timeouts to 2h0m0s1ms, above the shutdown maximum of 2h"
                );
            }
            other => panic!("expected the budget to run out, got {other:?}"),
        }
        assert!(budget.charge(&src, "d", Duration::MAX, Some(0..0), 0..0).is_err());
        assert_eq!(budget.total, Duration::MAX);
    }

    #[test]
    fn one_timeout_is_capped() {
        let src = Source { file: "t.toml", text: "" };
        assert_eq!(capped(Spanned::new(0..0, MAX_TIMEOUT), &src, "k").ok(), Some(MAX_TIMEOUT));
        let over = capped(Spanned::new(0..0, MAX_TIMEOUT + Duration::from_millis(1)), &src, "k");
        assert_eq!(
            over.map_err(|e| e.to_string()),
            Err("t.toml:1:1: k: 1h0m0s1ms is above the maximum of 1h".to_string())
        );
    }
}
