//! The two processes PID 1 keeps alive: containerd and the supervisor. PID 1 starts them,
//! reaps them (it is the one reaper of the machine), and restarts them with capped
//! exponential backoff; a child that keeps failing within a short window is marked failed
//! and left alone, so a broken containerd cannot turn into a restart storm.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const BACKOFF_FLOOR: Duration = Duration::from_millis(100);
const BACKOFF_CAP: Duration = Duration::from_secs(5);
/// A run this long resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(10);
/// More than `BURST` exits within `BURST_WINDOW` marks the child failed.
const BURST: usize = 5;
const BURST_WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Running(Pid),
    /// Waiting to be started again at this instant.
    Waiting(Instant),
    Failed,
    Stopped,
}

pub struct Child {
    pub name: &'static str,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// Where stdout/stderr go; None = inherit the console.
    log_file: Option<(PathBuf, u64)>,
    oom_score_adj: i32,
    pub state: State,
    started_at: Option<Instant>,
    backoff: Duration,
    exits: Vec<Instant>,
    pub restarts: u32,
    /// How the last run ended: its exit code, or 128+signal.
    pub last_status: Option<i32>,
}

impl Child {
    pub fn new(name: &'static str, program: impl Into<PathBuf>, args: &[&str]) -> Self {
        Child {
            name,
            program: program.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: Vec::new(),
            log_file: None,
            oom_score_adj: 0,
            state: State::Stopped,
            started_at: None,
            backoff: BACKOFF_FLOOR,
            exits: Vec::new(),
            restarts: 0,
            last_status: None,
        }
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Output into `path`, rotated at `cap` bytes (see [`hoist_guest::logfile`]).
    pub fn log_file(mut self, path: impl Into<PathBuf>, cap: u64) -> Self {
        self.log_file = Some((path.into(), cap));
        self
    }

    pub fn oom_score_adj(mut self, score: i32) -> Self {
        self.oom_score_adj = score;
        self
    }

    pub fn pid(&self) -> Option<Pid> {
        match self.state {
            State::Running(pid) => Some(pid),
            _ => None,
        }
    }

    /// Starts the process now. A spawn failure counts like an exit.
    pub fn start(&mut self, now: Instant) {
        match self.spawn() {
            Ok(pid) => {
                log::debug!("started {} (pid {pid})", self.name);
                self.state = State::Running(pid);
                self.started_at = Some(now);
                // Children inherit PID 1's -1000; give them their own score (raising it
                // needs no privilege and is harmless if the child already runs).
                if let Err(e) = crate::system::set_oom_score_adj(&pid.to_string(), self.oom_score_adj) {
                    log::warn!("{}: oom_score_adj: {e}", self.name);
                }
            }
            Err(e) => {
                log::error!("cannot start {} ({}): {e}", self.name, self.program.display());
                self.on_exit(now, false);
            }
        }
    }

    fn spawn(&self) -> std::io::Result<Pid> {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args).env_clear().env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").stdin(Stdio::null());
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        if let Some((path, cap)) = &self.log_file {
            let write = hoist_guest::logfile::pipe_to(path, *cap)?;
            cmd.stdout(write.try_clone()?).stderr(write);
        }
        // Own process group: a signal meant for one child's group never reaches another.
        cmd.process_group(0);
        // PID 1 runs without transparent huge pages (see `boot`); the flag is inherited,
        // and containerd, the supervisor and the services get the kernel's default back.
        // A failure only leaves the child without huge pages: never a reason not to start it.
        // SAFETY: between fork and exec only prctl(2), a syscall, runs; nothing allocates.
        unsafe {
            cmd.pre_exec(|| {
                let _ = nix::sys::prctl::set_thp_disable(false);
                Ok(())
            });
        }
        // The reaper owns the exit status; the std Child handle is dropped without waiting.
        let child = cmd.spawn()?;
        Ok(Pid::from_raw(child.id() as i32))
    }

    /// Records an exit; schedules the restart, or marks the child failed after a burst.
    /// `stopping` = the exit was asked for (shutdown): no restart.
    pub fn on_exit(&mut self, now: Instant, stopping: bool) {
        if stopping {
            self.state = State::Stopped;
            return;
        }
        if self.started_at.is_some_and(|t| now.duration_since(t) >= STABLE_AFTER) {
            self.backoff = BACKOFF_FLOOR;
        }
        self.exits.retain(|t| now.duration_since(*t) < BURST_WINDOW);
        self.exits.push(now);
        if self.exits.len() > BURST {
            crate::problems::report(format!(
                "{} exited {} times within {}s: marked failed, not restarting",
                self.name,
                self.exits.len(),
                BURST_WINDOW.as_secs()
            ));
            self.state = State::Failed;
            return;
        }
        let delay = self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_CAP);
        self.restarts += 1;
        log::warn!("{} exited; restarting in {} ms", self.name, delay.as_millis());
        self.state = State::Waiting(now + delay);
    }

    /// Starts the child if its restart time has come; returns the next instant to look again.
    pub fn poll(&mut self, now: Instant) -> Option<Instant> {
        match self.state {
            State::Waiting(at) if at <= now => {
                self.start(now);
                self.poll(now)
            }
            State::Waiting(at) => Some(at),
            _ => None,
        }
    }

    pub fn signal(&self, sig: Signal) {
        if let Some(pid) = self.pid() {
            let _ = kill(pid, sig);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_and_resets_after_a_stable_run() {
        let mut c = Child::new("x", "/nonexistent", &[]);
        let t0 = Instant::now();
        let mut delays = Vec::new();
        let mut now = t0;
        for _ in 0..4 {
            c.started_at = Some(now);
            now += Duration::from_secs(16); // each run lasts 16 s >= STABLE_AFTER
            c.on_exit(now, false);
            let State::Waiting(at) = c.state else { panic!("not waiting: {:?}", c.state) };
            delays.push(at - now);
        }
        assert_eq!(delays[0], Duration::from_millis(100));
        // each run lasted 16 s >= STABLE_AFTER, so the backoff was reset every time
        assert!(delays.iter().all(|d| *d == Duration::from_millis(100)), "{delays:?}");

        let mut c = Child::new("y", "/nonexistent", &[]);
        let mut delays = Vec::new();
        for i in 0..5 {
            let now = t0 + Duration::from_millis(i * 10);
            c.started_at = Some(now);
            c.on_exit(now, false);
            let State::Waiting(at) = c.state else { panic!("not waiting") };
            delays.push((at - now).as_millis());
        }
        assert_eq!(delays, [100, 200, 400, 800, 1600]);
    }

    #[test]
    fn a_burst_of_exits_marks_the_child_failed() {
        let mut c = Child::new("x", "/nonexistent", &[]);
        let t0 = Instant::now();
        for i in 0..=BURST as u64 {
            c.on_exit(t0 + Duration::from_millis(i), false);
        }
        assert_eq!(c.state, State::Failed);
        assert_eq!(c.poll(t0 + Duration::from_secs(100)), None);
    }

    #[test]
    fn a_requested_stop_is_not_restarted() {
        let mut c = Child::new("x", "/nonexistent", &[]);
        c.on_exit(Instant::now(), true);
        assert_eq!(c.state, State::Stopped);
    }
}
