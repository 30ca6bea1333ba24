//! Human-readable durations: `500ms`, `10s`, `2m`, `1h`, `1m30s`, and a bare `0`.

use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("invalid duration {0:?}: expected a number followed by ms, s, m or h")]
    Invalid(String),
    #[error("invalid duration {0:?}: units must go from largest to smallest, each at most once")]
    Order(String),
    #[error("duration {0:?} is too large")]
    TooLarge(String),
}

/// Units from largest to smallest, in milliseconds.
const UNITS: [(&str, u64); 4] = [("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)];

/// Parses a sequence of `<digits><unit>` parts with units in decreasing order, e.g. `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let invalid = || DurationError::Invalid(text.to_string());
    let too_large = || DurationError::TooLarge(text.to_string());
    let mut rest = text;
    let mut total: u64 = 0;
    // Index into UNITS of the last unit seen; the next one must come after it.
    let mut last: Option<usize> = None;
    if rest.is_empty() {
        return Err(invalid());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let unit_end = rest[digits..].find(|c: char| !c.is_ascii_alphabetic()).map_or(rest.len(), |i| digits + i);
        let (number, unit) = (&rest[..digits], &rest[digits..unit_end]);
        if number.is_empty() {
            return Err(invalid());
        }
        let index = UNITS.iter().position(|(name, _)| *name == unit).ok_or_else(invalid)?;
        if last.is_some_and(|l| index <= l) {
            return Err(DurationError::Order(text.to_string()));
        }
        last = Some(index);
        let number: u64 = number.parse().map_err(|_| too_large())?;
        let millis = number.checked_mul(UNITS[index].1).ok_or_else(too_large)?;
        total = total.checked_add(millis).ok_or_else(too_large)?;
        rest = &rest[unit_end..];
    }
    Ok(Duration::from_millis(total))
}

/// The shortest form [`parse_duration`] reads back (to the millisecond): `10s`, `1h`,
/// `1h0m0s1ms`, `0s`. Units below the largest are written even when 0, so that a sum
/// over a limit reads as one.
pub(crate) fn format_duration(d: Duration) -> String {
    let mut rest = d.as_millis();
    let mut out = String::new();
    for (unit, ms) in UNITS {
        let ms = u128::from(ms);
        let n = rest / ms;
        rest %= ms;
        // From the first non-zero unit on, until nothing is left.
        if n > 0 || !out.is_empty() {
            out.push_str(&format!("{n}{unit}"));
        }
        if rest == 0 && !out.is_empty() {
            break;
        }
    }
    if out.is_empty() { "0s".to_string() } else { out }
}

/// A `Duration` that parses from the human-readable form (for the raw TOML structs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_duration(s).map(HumanDuration)
    }
}

/// A duration of at least `MIN_MS` milliseconds, for timeouts and delays where 0 (or a
/// very short time) would mean a busy loop rather than "none".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AtLeast<const MIN_MS: u64>(pub Duration);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BoundError {
    #[error(transparent)]
    Duration(#[from] DurationError),
    #[error("duration {0:?} is too short: expected {1}")]
    TooShort(String, String),
}

impl<const MIN_MS: u64> FromStr for AtLeast<MIN_MS> {
    type Err = BoundError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let duration = parse_duration(s)?;
        if duration >= Duration::from_millis(MIN_MS) {
            return Ok(AtLeast(duration));
        }
        let expected = if MIN_MS <= 1 { "more than 0".to_string() } else { format!("at least {MIN_MS}ms") };
        Err(BoundError::TooShort(s.to_string(), expected))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Duration {
        parse_duration(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn single_units() {
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("10s"), Duration::from_secs(10));
        assert_eq!(ok("2m"), Duration::from_secs(120));
        assert_eq!(ok("1h"), Duration::from_secs(3600));
    }

    #[test]
    fn combined_units_add_up() {
        assert_eq!(ok("1m30s"), Duration::from_secs(90));
        assert_eq!(ok("1h2m3s4ms"), Duration::from_millis(3_723_004));
    }

    #[test]
    fn zero_is_allowed() {
        assert_eq!(ok("0s"), Duration::ZERO);
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("0ms"), Duration::ZERO);
    }

    #[test]
    fn malformed_durations_are_rejected() {
        for bad in ["", "5", "s", "5x", "5 s", " 5s", "5s ", "1.5s", "-1s", "+1s", "5 parsecs", "5S", "ms5"] {
            assert_eq!(parse_duration(bad), Err(DurationError::Invalid(bad.to_string())), "{bad:?}");
        }
    }

    #[test]
    fn units_must_decrease() {
        assert_eq!(parse_duration("30s1m"), Err(DurationError::Order("30s1m".into())));
        assert_eq!(parse_duration("1s1s"), Err(DurationError::Order("1s1s".into())));
    }

    #[test]
    fn overflow_is_reported_not_wrapped() {
        let huge = "99999999999999999999s";
        assert_eq!(parse_duration(huge), Err(DurationError::TooLarge(huge.into())));
        // Fits in u64 as a number, overflows once converted to milliseconds.
        let hours = format!("{}h", u64::MAX / 1000);
        assert_eq!(parse_duration(&hours), Err(DurationError::TooLarge(hours.clone())));
        // Each part fits, the sum does not.
        let sum = format!("{}s{}ms", u64::MAX / 1000, 1000);
        assert_eq!(parse_duration(&sum), Err(DurationError::TooLarge(sum.clone())));
    }

    #[test]
    fn lower_bounds() {
        assert_eq!("1ms".parse::<AtLeast<1>>(), Ok(AtLeast(Duration::from_millis(1))));
        let zero = "0s".parse::<AtLeast<1>>().expect_err("zero");
        assert_eq!(zero.to_string(), "duration \"0s\" is too short: expected more than 0");
        let short = "99ms".parse::<AtLeast<100>>().expect_err("below the floor");
        assert_eq!(short.to_string(), "duration \"99ms\" is too short: expected at least 100ms");
        assert_eq!("5x".parse::<AtLeast<1>>(), Err(BoundError::Duration(DurationError::Invalid("5x".into()))));
    }

    #[test]
    fn durations_format_back() {
        for (ms, text) in
            [(0, "0s"), (1, "1ms"), (10_000, "10s"), (90_000, "1m30s"), (3_600_000, "1h"), (7_200_001, "2h0m0s1ms")]
        {
            let d = Duration::from_millis(ms);
            assert_eq!(format_duration(d), text);
            assert_eq!(parse_duration(text), Ok(d), "{text}");
        }
        assert_eq!(format_duration(Duration::from_secs(3601)), "1h0m1s");
    }

    #[test]
    fn message_says_what_was_expected() {
        let e = parse_duration("5 parsecs").expect_err("invalid");
        assert_eq!(e.to_string(), "invalid duration \"5 parsecs\": expected a number followed by ms, s, m or h");
    }
}
