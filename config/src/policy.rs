//! How a service is restarted and stopped: `restart` and `stop_signal`.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("invalid restart policy {0:?}: expected always, on-failure or never")]
    Restart(String),
    #[error("unknown signal {0:?}: expected a name like SIGTERM or TERM")]
    Signal(String),
}

/// When the supervisor starts a service again after it exits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RestartPolicy {
    #[default]
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    /// The TOML spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::Always => "always",
            RestartPolicy::OnFailure => "on-failure",
            RestartPolicy::Never => "never",
        }
    }
}

impl FromStr for RestartPolicy {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "always" => Ok(RestartPolicy::Always),
            "on-failure" => Ok(RestartPolicy::OnFailure),
            "never" => Ok(RestartPolicy::Never),
            _ => Err(PolicyError::Restart(s.to_string())),
        }
    }
}

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A signal number. Names are the Linux x86_64 ones, kept here so this crate needs no libc.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signal(pub i32);

/// Signal `n` is `NAMES[n - 1]`.
const NAMES: [&str; 31] = [
    "SIGHUP",
    "SIGINT",
    "SIGQUIT",
    "SIGILL",
    "SIGTRAP",
    "SIGABRT",
    "SIGBUS",
    "SIGFPE",
    "SIGKILL",
    "SIGUSR1",
    "SIGSEGV",
    "SIGUSR2",
    "SIGPIPE",
    "SIGALRM",
    "SIGTERM",
    "SIGSTKFLT",
    "SIGCHLD",
    "SIGCONT",
    "SIGSTOP",
    "SIGTSTP",
    "SIGTTIN",
    "SIGTTOU",
    "SIGURG",
    "SIGXCPU",
    "SIGXFSZ",
    "SIGVTALRM",
    "SIGPROF",
    "SIGWINCH",
    "SIGIO",
    "SIGPWR",
    "SIGSYS",
];

/// Other names Linux accepts for the same numbers.
const ALIASES: [(&str, i32); 3] = [("SIGIOT", 6), ("SIGPOLL", 29), ("SIGCLD", 17)];

impl Signal {
    pub const INT: Signal = Signal(2);
    pub const KILL: Signal = Signal(9);
    pub const TERM: Signal = Signal(15);

    /// The canonical name, e.g. "SIGTERM"; "unknown" for numbers outside 1..=31.
    pub fn name(&self) -> &'static str {
        usize::try_from(self.0)
            .ok()
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| NAMES.get(i))
            .copied()
            .unwrap_or("unknown")
    }
}

impl Default for Signal {
    fn default() -> Self {
        Signal::TERM
    }
}

impl FromStr for Signal {
    type Err = PolicyError;

    /// Accepts "SIGTERM" or "TERM"; names are case-sensitive.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let short = s.strip_prefix("SIG").unwrap_or(s);
        let canonical = NAMES.iter().position(|n| n[3..] == *short).map(|i| i as i32 + 1);
        let alias = ALIASES.iter().find(|(n, _)| n[3..] == *short).map(|&(_, number)| number);
        canonical.or(alias).map(Signal).ok_or_else(|| PolicyError::Signal(s.to_string()))
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            "unknown" => write!(f, "signal {}", self.0),
            name => f.write_str(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(s: &str) -> Result<i32, PolicyError> {
        s.parse::<Signal>().map(|s| s.0)
    }

    #[test]
    fn signals_parse_with_or_without_prefix() {
        assert_eq!(sig("SIGTERM"), Ok(15));
        assert_eq!(sig("TERM"), Ok(15));
        assert_eq!(sig("SIGHUP"), Ok(1));
        assert_eq!(sig("KILL"), Ok(9));
        assert_eq!(sig("SIGSYS"), Ok(31));
        assert_eq!(sig("SIGWINCH"), Ok(28));
        assert_eq!(sig("IOT"), Ok(6));
    }

    #[test]
    fn bad_signal_names_are_rejected() {
        for bad in ["sigterm", "Term", "SIGFOO", "SIG", "", "15", "SIGSIGTERM", "SIGRTMIN"] {
            assert_eq!(sig(bad), Err(PolicyError::Signal(bad.to_string())), "{bad:?}");
        }
    }

    #[test]
    fn every_number_round_trips_through_its_name() {
        for n in 1..=31 {
            let name = Signal(n).name();
            assert!(name.starts_with("SIG"), "{n}: {name}");
            assert_eq!(sig(name), Ok(n));
        }
        assert_eq!(Signal(0).name(), "unknown");
        assert_eq!(Signal(32).name(), "unknown");
        assert_eq!(Signal(-1).to_string(), "signal -1");
        assert_eq!(Signal::TERM.to_string(), "SIGTERM");
    }

    #[test]
    fn restart_policies() {
        assert_eq!("always".parse(), Ok(RestartPolicy::Always));
        assert_eq!("on-failure".parse(), Ok(RestartPolicy::OnFailure));
        assert_eq!("never".parse(), Ok(RestartPolicy::Never));
        assert_eq!("on_failure".parse::<RestartPolicy>(), Err(PolicyError::Restart("on_failure".into())));
        assert_eq!(RestartPolicy::OnFailure.to_string(), "on-failure");
    }
}
