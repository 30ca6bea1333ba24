//! What a service may use and who it runs as: `memory`, `pids`, `cpu`, `disk` and `user`.
//! The limits become cgroup v2 settings (memory.max, pids.max, cpu.max) in the supervisor;
//! `disk` is the size of the tmpfs that holds the service's writable layer.

use std::str::FromStr;

use toml::Spanned;

use crate::error::{ConfigError, Source};
use crate::scalar::{Integer, Number, StrOrInt};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("invalid size {0:?}: expected an integer optionally followed by K, M, G or T (powers of 1024)")]
    Invalid(String),
    #[error("size {0:?} is too large")]
    TooLarge(String),
}

/// Suffixes and the power of two they multiply by; "Ki" and "K" are the same.
const SUFFIXES: [(&str, u32); 4] = [("K", 10), ("M", 20), ("G", 30), ("T", 40)];

/// Below this the kernel OOM-kills a container before its init gets going.
pub(crate) const MIN_MEMORY: u64 = 4 << 20;

/// The most `cpu` can ask for; cpu.max takes any quota, this only catches typos.
pub(crate) const MAX_CPU: f64 = 1024.0;

/// The cpu.max period the supervisor writes (services/src/spec.rs), in microseconds; the
/// quota is `cpu` times this, rounded.
pub(crate) const CPU_PERIOD_US: f64 = 100_000.0;

/// The least `cpu` can ask for: a quota of 1000us per period, the smallest the kernel
/// accepts. Anything smaller would round to a quota it refuses, or to 0.
pub(crate) const MIN_CPU: f64 = 0.01;

/// memory.max goes into the runtime spec as an i64; more would turn negative.
pub(crate) const MAX_MEMORY: u64 = i64::MAX as u64;

/// Parses a byte count: `64M`, `64Mi` (the same: powers of 1024), `1G`, or plain bytes
/// (`4096`). Suffixes are upper case; no fractions, spaces or `B`.
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, suffix) = text.split_at(digits);
    let shift = if suffix.is_empty() {
        Some(0)
    } else {
        let unit = suffix.strip_suffix('i').unwrap_or(suffix);
        SUFFIXES.iter().find(|(name, _)| *name == unit).map(|&(_, shift)| shift)
    };
    let Some(shift) = shift.filter(|_| !number.is_empty()) else {
        return Err(SizeError::Invalid(text.to_string()));
    };
    // All digits, so the only way parsing fails is overflow.
    let number: u64 = number.parse().map_err(|_| SizeError::TooLarge(text.to_string()))?;
    number.checked_mul(1 << shift).ok_or_else(|| SizeError::TooLarge(text.to_string()))
}

/// The shortest exact form of `bytes` for messages: `4M`, `1536K`, `1000`.
fn format_size(bytes: u64) -> String {
    SUFFIXES
        .iter()
        .rev()
        .find(|(_, shift)| bytes != 0 && bytes.trailing_zeros() >= *shift)
        .map_or_else(|| bytes.to_string(), |(name, shift)| format!("{}{name}", bytes >> shift))
}

/// A byte count in the raw structs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Size(pub u64);

impl FromStr for Size {
    type Err = SizeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_size(s).map(Size)
    }
}

/// `user = "1000"` or `"1000:100"`: numeric only, since resolving a name needs the image's
/// /etc/passwd, which the config does not see. The gid defaults to the uid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct User(pub u32, pub u32);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum UserError {
    #[error("invalid user {0:?}: expected a numeric UID or UID:GID (names would need the image's /etc/passwd)")]
    Form(String),
    #[error("invalid user {0:?}: 4294967295 is (uid_t)-1, which Linux reserves to mean \"no id\"")]
    Reserved(String),
}

/// (uid_t)-1: setuid and chown take it to mean "leave unchanged", and the kernel refuses
/// it as an id.
const NO_ID: u32 = u32::MAX;

impl FromStr for User {
    type Err = UserError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // u32::from_str takes a leading '+'; ids are digits only.
        let id = |t: &str| t.bytes().all(|b| b.is_ascii_digit()).then(|| t.parse::<u32>().ok()).flatten();
        let (uid, gid) = s.split_once(':').unwrap_or((s, s));
        match (id(uid), id(gid)) {
            (Some(NO_ID), _) | (_, Some(NO_ID)) => Err(UserError::Reserved(s.to_string())),
            (Some(uid), Some(gid)) => Ok(User(uid, gid)),
            _ => Err(UserError::Form(s.to_string())),
        }
    }
}

pub(crate) fn memory(raw: Spanned<StrOrInt<Size>>, src: &Source, key: &str) -> Result<u64, ConfigError> {
    let bytes = raw.get_ref().0.0;
    if bytes < MIN_MEMORY {
        let message = format!("memory {} is below the minimum of {}", format_size(bytes), format_size(MIN_MEMORY));
        return Err(src.invalid(Some(raw.span()), key.to_string(), message));
    }
    if bytes > MAX_MEMORY {
        let message = format!("memory {} is above the largest cgroup limit, {MAX_MEMORY} bytes", format_size(bytes));
        return Err(src.invalid(Some(raw.span()), key.to_string(), message));
    }
    Ok(bytes)
}

/// A service's writable layer (its root's overlay upper, /tmp included), a tmpfs of this
/// size: at least 1 MiB, at most what a tmpfs `size=` takes.
pub(crate) fn disk(raw: Spanned<StrOrInt<Size>>, src: &Source, key: &str) -> Result<u64, ConfigError> {
    const MIN_DISK: u64 = 1 << 20;
    let bytes = raw.get_ref().0.0;
    if bytes < MIN_DISK {
        let message = format!("disk {} is below the minimum of {}", format_size(bytes), format_size(MIN_DISK));
        return Err(src.invalid(Some(raw.span()), key.to_string(), message));
    }
    if bytes > MAX_MEMORY {
        let message = format!("disk {} is above {MAX_MEMORY} bytes", format_size(bytes));
        return Err(src.invalid(Some(raw.span()), key.to_string(), message));
    }
    Ok(bytes)
}

pub(crate) fn pids(raw: Spanned<Integer>, src: &Source, key: &str) -> Result<u32, ConfigError> {
    match u32::try_from(raw.get_ref().0) {
        Ok(n) if n >= 1 => Ok(n),
        _ => {
            let message = format!("expected a number of processes from 1 to {}, got {}", u32::MAX, raw.get_ref().0);
            Err(src.invalid(Some(raw.span()), key.to_string(), message))
        }
    }
}

pub(crate) fn cpu(raw: Spanned<Number>, src: &Source, key: &str) -> Result<f64, ConfigError> {
    let cores = raw.get_ref().0;
    // Written this way round so that NaN fails too.
    if (MIN_CPU..=MAX_CPU).contains(&cores) {
        return Ok(cores);
    }
    let message = format!(
        "expected a number of CPUs from {MIN_CPU} (a {}us quota every {}us) to {MAX_CPU}, got {cores}",
        MIN_CPU * CPU_PERIOD_US,
        CPU_PERIOD_US
    );
    Err(src.invalid(Some(raw.span()), key.to_string(), message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_are_powers_of_1024() {
        assert_eq!(parse_size("1K"), Ok(1024));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("3T"), Ok(3 << 40));
        for (short, long) in [("1K", "1Ki"), ("64M", "64Mi"), ("2G", "2Gi"), ("3T", "3Ti")] {
            assert_eq!(parse_size(short), parse_size(long), "{long}");
        }
    }

    #[test]
    fn plain_integers_are_bytes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size(&u64::MAX.to_string()), Ok(u64::MAX));
    }

    #[test]
    fn overflow_is_reported_not_wrapped() {
        for huge in ["18446744073709551616", "16777216T", "17179869184G", "99999999999999999999K"] {
            assert_eq!(parse_size(huge), Err(SizeError::TooLarge(huge.into())), "{huge}");
        }
        assert_eq!(parse_size("16777215T"), Ok(16_777_215 << 40));
    }

    #[test]
    fn garbage_is_rejected() {
        for bad in ["", "M", "64 parsecs", "64 M", "64m", "64MB", "64iB", "64i", "1.5G", "-1", "+1", " 1", "1 ", "1KK"]
        {
            assert_eq!(parse_size(bad), Err(SizeError::Invalid(bad.into())), "{bad:?}");
        }
        let message = parse_size("64 parsecs").expect_err("garbage").to_string();
        assert_eq!(
            message,
            "invalid size \"64 parsecs\": expected an integer optionally followed by K, M, G or T (powers of 1024)"
        );
    }

    #[test]
    fn the_smallest_cpu_gives_the_smallest_quota() {
        // What the supervisor computes, which must not round below 1000us.
        let quota = |cpu: f64| (cpu * CPU_PERIOD_US).round();
        assert_eq!(quota(MIN_CPU), 1000.0);
        assert!(quota(MIN_CPU - 0.0001) < 1000.0);
        assert_eq!(MAX_MEMORY, 9_223_372_036_854_775_807);
    }

    #[test]
    fn sizes_format_back_exactly() {
        assert_eq!(format_size(0), "0");
        assert_eq!(format_size(1000), "1000");
        assert_eq!(format_size(MIN_MEMORY), "4M");
        assert_eq!(format_size(1536 << 10), "1536K");
        assert_eq!(format_size(1 << 40), "1T");
    }

    #[test]
    fn users_are_numeric() {
        assert_eq!("1000".parse(), Ok(User(1000, 1000)));
        assert_eq!("1000:100".parse(), Ok(User(1000, 100)));
        assert_eq!("0:0".parse(), Ok(User(0, 0)));
        for bad in ["nobody", "1:2:3", "", ":1", "1:", "+1", "-1", "1000:users", "4294967296"] {
            assert_eq!(bad.parse::<User>(), Err(UserError::Form(bad.into())), "{bad:?}");
        }
        assert_eq!("4294967294".parse(), Ok(User(4_294_967_294, 4_294_967_294)));
        for reserved in ["4294967295", "0:4294967295", "4294967295:0"] {
            assert_eq!(reserved.parse::<User>(), Err(UserError::Reserved(reserved.into())), "{reserved:?}");
        }
    }
}
