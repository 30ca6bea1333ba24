//! The shutdown budget. Services stop one after another in the worst case, then the
//! onshutdown stages run, so a shutdown may last the sum of every `stop_timeout` and
//! onshutdown `timeout`; PID 1 sums them (saturating, capped) for its own deadline. Each
//! written one is capped at an hour and their sum at two, so that a typo cannot ask for a
//! shutdown of days. Defaults are not charged: a host of many services with the default
//! timeouts is valid however many there are.

use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use crate::duration::format_duration;
use crate::error::{ConfigError, Source};

/// The most one `stop_timeout` or onshutdown `timeout` may be.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

/// The most all written `stop_timeout`s and onshutdown `timeout`s together may be.
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
    /// Adds the timeout at `key` if it was written (`written` is its span); a default
    /// (None) is not charged.
    pub fn charge(
        &mut self,
        src: &Source,
        key: &str,
        timeout: Duration,
        written: Option<Range<usize>>,
    ) -> Result<(), ConfigError> {
        let Some(span) = written else { return Ok(()) };
        self.total = self.total.saturating_add(timeout);
        if self.total <= MAX_SHUTDOWN {
            return Ok(());
        }
        let message = format!(
            "{} brings the stop_timeouts and onshutdown timeouts to {}, above the shutdown maximum of {}",
            format_duration(timeout),
            format_duration(self.total),
            format_duration(MAX_SHUTDOWN)
        );
        Err(src.invalid(Some(span), key.to_string(), message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sum_of_written_timeouts_is_capped_and_never_overflows() {
        let src = Source { file: "t.toml", text: "" };
        let mut budget = Budget::default();
        let hour = Duration::from_secs(3600);
        assert!(budget.charge(&src, "a", hour, Some(0..0)).is_ok());
        assert!(budget.charge(&src, "b", hour, Some(0..0)).is_ok());
        assert!(budget.charge(&src, "default", hour, None).is_ok(), "defaults are not charged");
        match budget.charge(&src, "c", Duration::from_millis(1), Some(0..0)) {
            Err(ConfigError::Invalid { key, message, .. }) => {
                assert_eq!(key, "c");
                assert_eq!(
                    message,
                    "1ms brings the stop_timeouts and onshutdown timeouts to 2h0m0s1ms, above the shutdown maximum of 2h"
                );
            }
            other => panic!("expected the budget to run out, got {other:?}"),
        }
        assert!(budget.charge(&src, "d", Duration::MAX, Some(0..0)).is_err());
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
