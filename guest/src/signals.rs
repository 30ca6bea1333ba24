//! PID 1's signal protocol: which signal asks PID 1 for which end of the machine. The
//! control API's `shutdown` and `reboot` send [`Action::signal`] to pid 1; PID 1 maps what
//! it receives back with [`Action::from_signal`]. The ACPI power button powers off too,
//! but it is an input event, not a signal.

/// How the machine ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    PowerOff,
    Reboot,
}

impl Action {
    /// The signal that asks PID 1 for this action.
    pub const fn signal(self) -> i32 {
        match self {
            Action::PowerOff => libc::SIGTERM,
            Action::Reboot => libc::SIGUSR1,
        }
    }

    /// What PID 1 does on `signal`: SIGTERM, SIGINT (Ctrl-Alt-Del) and SIGPWR power off,
    /// SIGUSR1 reboots; any other signal asks for nothing.
    pub const fn from_signal(signal: i32) -> Option<Action> {
        match signal {
            libc::SIGTERM | libc::SIGINT | libc::SIGPWR => Some(Action::PowerOff),
            libc::SIGUSR1 => Some(Action::Reboot),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_is_asked_by_its_own_signal() {
        for a in [Action::PowerOff, Action::Reboot] {
            assert_eq!(Action::from_signal(a.signal()), Some(a));
        }
        assert_eq!(Action::from_signal(libc::SIGHUP), None);
        assert_eq!(Action::from_signal(libc::SIGCHLD), None);
    }
}
