//! The built-in `network` target. PID 1 configures the network while containerd and the
//! supervisor start, and says when it is done by writing [`crate::paths::NETWORK_STATE`]
//! (replaced whole, once per boot). Services that list [`TARGET`] in `depends_on` wait for
//! that file; the rest do not wait for the network at all.
//!
//! The target is reached either way: with the address and route up and carrier seen, or
//! degraded, when setup failed or carrier did not come within PID 1's deadline (the boot
//! goes on; the reason is on the console and in `hoist ctl status`).

/// The name services use in `depends_on`; no service may have it.
pub const TARGET: &str = "network";

/// How PID 1's network setup ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    /// Guest uptime (ms) when it ended.
    pub uptime_ms: u64,
    /// None: up. Some: degraded, and why (one line).
    pub degraded: Option<String>,
    /// What is up, when it says more than `up` (the DHCP lease), one line.
    pub detail: Option<String>,
}

impl State {
    /// Up at `uptime_ms`, with nothing more to say.
    pub fn up(uptime_ms: u64) -> State {
        State { uptime_ms, degraded: None, detail: None }
    }

    /// Degraded at `uptime_ms`, and why.
    pub fn degraded(uptime_ms: u64, why: impl Into<String>) -> State {
        State { uptime_ms, degraded: Some(why.into()), detail: None }
    }

    /// The file's text: `up MS [DETAIL]` or `degraded MS REASON`, one line.
    pub fn format(&self) -> String {
        match &self.degraded {
            None => match &self.detail {
                None => format!("up {}\n", self.uptime_ms),
                Some(d) => format!("up {} {}\n", self.uptime_ms, d.replace(['\n', '\r'], " ")),
            },
            Some(why) => format!("degraded {} {}\n", self.uptime_ms, why.replace(['\n', '\r'], " ")),
        }
    }

    /// The state in `text`; None when it does not parse (a file being written is never
    /// seen half-done: PID 1 replaces it whole).
    pub fn parse(text: &str) -> Option<State> {
        let line = text.lines().next()?;
        let mut words = line.splitn(3, ' ');
        let kind = words.next()?;
        let uptime_ms = words.next()?.parse().ok()?;
        match kind {
            "up" => Some(State { uptime_ms, degraded: None, detail: words.next().map(str::to_string) }),
            "degraded" => Some(State::degraded(uptime_ms, words.next().unwrap_or(""))),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::State;

    #[test]
    fn the_state_reads_back() {
        let up = State::up(2500);
        assert_eq!(up.format(), "up 2500\n");
        assert_eq!(State::parse(&up.format()), Some(up));
        let leased = State { detail: Some("DHCP 10.0.2.15/24".into()), ..State::up(3000) };
        assert_eq!(leased.format(), "up 3000 DHCP 10.0.2.15/24\n");
        assert_eq!(State::parse(&leased.format()), Some(leased));
        let down = State::degraded(7000, "no carrier on eth0\nafter 5s");
        assert_eq!(down.format(), "degraded 7000 no carrier on eth0 after 5s\n");
        assert_eq!(State::parse(&down.format()).and_then(|s| s.degraded), Some("no carrier on eth0 after 5s".into()));
        for bad in ["", "up", "up x", "sideways 10", "\nup 10"] {
            assert_eq!(State::parse(bad), None, "{bad:?}");
        }
    }
}
